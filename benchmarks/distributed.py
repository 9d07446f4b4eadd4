"""Scaling of a sweep over K local processes: wall-clock, grid points per second, efficiency.

    python benchmarks/distributed.py                      # K = 1, 2, 4 CPU processes, a small law grid
    python benchmarks/distributed.py --processes 1,2 --steps 500 --json out.json
    python benchmarks/distributed.py --devices 1          # on a GPU machine: one GPU per process

Each K runs the same grid from scratch into a fresh directory as K ``jaxrecon sweep`` processes
on localhost (``--coordinator``), with the persistent compilation cache off, so every process
compiles what it runs, as on a fresh cluster. Wall-clock is from the launch to the last process's
exit (start-up, compilation, the points, the merge and the report); efficiency is
``T(1) / (K T(K))``. On a CPU with fewer cores than processes the processes share cores, so
efficiency there measures overheads and oversubscription, not a cluster.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from _common import machine, save  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run_k(k: int, flags: list, out: Path, devices: int) -> float:
    """Wall-clock seconds of the sweep as ``k`` processes (raises if one fails)."""
    env = {**os.environ, "JAXRECON_CACHE_DIR": "off"}
    if devices:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
        env.setdefault("JAX_PLATFORMS", "cpu")
    port = _free_port()
    t0 = time.perf_counter()
    procs = []
    for i in range(k):
        extra = [] if k == 1 else ["--coordinator", f"localhost:{port}", "--num-processes", str(k),
                                   "--process-id", str(i)]
        log = open(out.parent / f"{out.name}.process{i}.log", "w")
        procs.append((subprocess.Popen([sys.executable, "-m", "jaxrecon.cli", "sweep", *flags, "--out", str(out),
                                        *extra], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    codes = [p.wait() for p, _ in procs]
    seconds = time.perf_counter() - t0
    for _, log in procs:
        log.close()
    if any(codes):
        raise RuntimeError(f"K={k}: exit codes {codes}; see {out.parent}")
    return seconds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", default="1,2,4", help="values of K")
    ap.add_argument("--d", default="10,20")
    ap.add_argument("--n", default="4")
    ap.add_argument("--p-over-dn", default="0.5,1,1.5,2,3,4,6,8")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--method", default="adam-lm")
    ap.add_argument("--devices", type=int, default=1, help="CPU devices per process (0: leave the backend's)")
    ap.add_argument("--keep", default=None, help="directory to keep the runs and their logs in (default: a temporary one)")
    ap.add_argument("--json", default=None, help="also save the results (benchmarks/results/NAME.json)")
    args = ap.parse_args(argv)
    flags = ["--d", args.d, "--n", args.n, "--p-over-dn", args.p_over_dn, "--seeds", str(args.seeds),
             "--steps", str(args.steps), "--method", args.method, "--name", "scaling", "--quiet", "--no-plot",
             "--bootstrap", "100"]
    points = len(args.d.split(",")) * len(args.n.split(",")) * len(args.p_over_dn.split(","))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = args.keep or tmp
        Path(tmp).mkdir(parents=True, exist_ok=True)
        for k in [int(v) for v in args.processes.split(",")]:
            seconds = run_k(k, flags, Path(tmp) / f"k{k}", args.devices)
            rows.append({"processes": k, "seconds": seconds, "points_per_second": points / seconds})
            print(f"K={k}: {seconds:.1f}s  {points / seconds:.3f} points/s", flush=True)
    base = next((r["seconds"] for r in rows if r["processes"] == 1), None)
    for r in rows:
        r["efficiency"] = base / (r["processes"] * r["seconds"]) if base else None
    print(f"grid: {points} points x {args.seeds} seeds, {args.steps} steps, {args.method}")
    print("K  seconds  points/s  efficiency")
    for r in rows:
        eff = f"{r['efficiency']:.2f}" if r["efficiency"] is not None else "-"
        print(f"{r['processes']:<2} {r['seconds']:8.1f}  {r['points_per_second']:8.3f}  {eff:>10}")
    if args.json:
        print("wrote", save(args.json, {"machine": machine(), "grid": {k: v for k, v in vars(args).items() if k != "keep"}, "points": points,
                                      "runs": rows}))


if __name__ == "__main__":
    main()
