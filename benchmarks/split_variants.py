"""Options of ``adam-lm-split`` compared over data seeds on one image command: time and steps to the end.

    python benchmarks/split_variants.py --data photos16 --n 10 --seeds 0 1 2 3 4 5 \\
        --variant "full=--split-features 0 --stall-plateau 0" \\
        --variant "prefix=--stall-plateau 0" \\
        --variant "prefix+stall=" \\
        --variant "full+stall=--split-features 0" \\
        --out benchmarks/results/split_variants_photos16_n10

Each run is ``jaxrecon reconstruct --seed S --data D --n N --p-over-dn R --method adam-lm-split
--seeds 1 FLAGS`` in its own process, one at a time (timings are only comparable on an otherwise
idle machine); ``--seed`` draws the data subset's features and the attack's key, so a seed is a
different problem and start. A row per run is appended to ``OUT/results.csv`` (resumable: a
finished ``(variant, seed)`` is skipped) with the attack's seconds (``summary.json``, compilation
excluded), the command's wall-clock seconds, steps, status, the largest per-image error and whether
every image was recovered. The table printed at the end gives, per variant, the seconds per seed,
their total and median, and the runs in which every image was exact.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIELDS = ["variant", "flags", "seed", "data", "n", "p_over_dn", "seconds", "wall_s", "steps", "status",
          "error_sign_max", "identified", "loss"]


def parse_variant(spec: str) -> tuple:
    """``"NAME=FLAGS"`` -> ``(NAME, FLAGS)``; a ``ValueError`` naming the argument otherwise."""
    name, sep, flags = spec.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"--variant: expected NAME=FLAGS (FLAGS may be empty), got {spec!r}")
    return name.strip(), flags.strip()


def run_one(args, name: str, flags: str, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        cmd = ["jaxrecon", "reconstruct", "--seed", str(seed), "--data", args.data, "--n", str(args.n),
               "--p-over-dn", str(args.p_over_dn), "--method", "adam-lm-split", "--seeds", "1", "--out", out,
               *flags.split()]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
        summary = json.loads((Path(out) / "summary.json").read_text())
    res = summary["results"][0]
    errors = summary["images"]["per_seed"][0]["error"]
    return {"variant": name, "flags": flags, "seed": seed, "data": args.data, "n": args.n,
            "p_over_dn": args.p_over_dn, "seconds": round(res["seconds"], 2), "wall_s": round(wall, 2),
            "steps": res["steps"], "status": res["status"], "error_sign_max": max(errors),
            "identified": res["identified"], "loss": res["loss"]}


def table(rows: list) -> str:
    lines = [f"{'variant':<16} {'seconds per seed':<44} {'total':>8} {'median':>8} {'all exact':>10}"]
    for name in dict.fromkeys(r["variant"] for r in rows):
        mine = sorted((r for r in rows if r["variant"] == name), key=lambda r: int(r["seed"]))
        secs = [float(r["seconds"]) for r in mine]
        exact = sum(str(r["identified"]) == "True" for r in mine)
        lines.append(f"{name:<16} {' '.join(f'{s:.1f}' for s in secs):<44} {sum(secs):8.1f} "
                     f"{statistics.median(secs):8.1f} {exact:>5}/{len(mine)}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="photos16")
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--p-over-dn", type=float, default=10.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    ap.add_argument("--variant", action="append", required=True, help="NAME=FLAGS (repeatable)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/split_variants"))
    args = ap.parse_args(argv)
    try:
        variants = [parse_variant(v) for v in args.variant]
    except ValueError as e:
        ap.error(str(e))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.csv"
    rows = list(csv.DictReader(path.open())) if path.exists() else []
    done = {(r["variant"], int(r["seed"])) for r in rows}
    for seed in args.seeds:  # seeds outer: the variants of one seed run close together in time
        for name, flags in variants:
            if (name, seed) in done:
                continue
            row = run_one(args, name, flags, seed)
            new = not path.exists()
            with path.open("a", newline="") as f:
                w = csv.DictWriter(f, FIELDS)
                if new:
                    w.writeheader()
                w.writerow(row)
            rows.append({k: str(v) for k, v in row.items()})
            print(f"seed {seed} {name}: {row['seconds']} s, {row['steps']} steps, {row['status']}, "
                  f"max error {row['error_sign_max']:.2e}", flush=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
