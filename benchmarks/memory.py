"""Peak host memory of plain `jaxrecon reconstruct` runs at CIFAR size, against the memory targets.

    python benchmarks/memory.py                       # d=3072, n=10, p=10dn: auto (V stored), 2GB budget
    python benchmarks/memory.py --budgets 2GB 4GB auto --steps 2 --name memory_cpu

Each run is a child process (`python -m jaxrecon.cli reconstruct ... --no-save`); its peak resident
memory is the child's `ru_maxrss` (the whole process: runtime, compiled programs, V, temporaries).
Targets (issue "Paper scale"): V stored: peak <= 1.3 x (dense V) + 1 GB; `--memory-budget 2GB`:
peak < 2.5 GB. The run's own log line `memory: ...` (the layout the policy chose) is kept.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

from _common import machine, save


def run_one(d: int, n: int, p: int, steps: int, budget: str) -> dict:
    cmd = [sys.executable, "-m", "jaxrecon.cli", "reconstruct", "--d", str(d), "--n", str(n), "--p", str(p),
           "--steps", str(steps), "--seeds", "1", "--no-save", "--memory-budget", budget]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # kB on Linux
    if peak <= before * 1024:
        peak = float("nan")  # an earlier child peaked higher: this run's peak is not observable here
    layout = next((line.strip() for line in proc.stdout.splitlines() if line.strip().startswith("memory:")), "")
    v_bytes = 4 * d * p
    target = 1.3 * v_bytes + 1e9 if "stored" in layout else (2.5e9 if budget == "2GB" else float("nan"))
    row = dict(budget=budget, d=d, n=n, p=p, steps=steps, returncode=proc.returncode, wall_s=round(wall, 1),
               peak_bytes=peak, dense_v_bytes=v_bytes, target_bytes=target, layout=layout,
               met=bool(peak <= target) if target == target and peak == peak else None)
    if proc.returncode != 0:
        row["stderr_tail"] = proc.stderr[-2000:]
    print(f"{budget:>6}: peak {peak / 1e9:.2f} GB (target {target / 1e9:.2f} GB), {wall:.0f} s, {layout}", flush=True)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--d", type=int, default=3072)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--p-over-dn", type=float, default=10.0)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--budgets", nargs="+", default=["2GB", "auto"],
                    help="--memory-budget values, smallest first (a child's peak is only seen if it exceeds the earlier ones)")
    ap.add_argument("--name", default="memory_cpu", help="results file benchmarks/results/NAME.json")
    args = ap.parse_args(argv)
    p = int(round(args.p_over_dn * args.d * args.n))
    rows = [run_one(args.d, args.n, p, args.steps, b) for b in args.budgets]
    print(f"wrote {save(args.name, dict(machine=machine(), args=vars(args), rows=rows))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
