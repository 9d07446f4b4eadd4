"""Measured numbers from committed results: regenerate them, or check that the documents still say them.

    python benchmarks/readme_numbers.py            # rewrite the marked blocks of FILES
    python benchmarks/readme_numbers.py --check    # exit 1 if a file differs (run by the tests)

A block is the text between ``<!-- numbers:NAME -->`` and ``<!-- /numbers:NAME -->`` in one of
:data:`FILES` (README.md's headline numbers, benchmarks/RESULTS.md's tables); each NAME below has a
function that renders it from ``benchmarks/results/NAME/`` (a sweep directory: results.csv,
thresholds.csv, sweep.json). The documentation (docs/conf.py) renders the same functions at build
time. Nothing is recomputed: rerun the sweep that the block names to change its numbers.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
#: The files whose blocks are rendered and checked, relative to the repository root.
FILES = ("README.md", "benchmarks/RESULTS.md")


def _thresholds(name: str) -> list[dict]:
    with open(RESULTS / name / "thresholds.csv") as f:
        return list(csv.DictReader(f))


def _table(name: str) -> dict:
    from jaxrecon.sweeps import read_results

    return read_results(RESULTS / name)


def _run_seconds(name: str) -> float:
    meta = json.loads((RESULTS / name / "sweep.json").read_text())
    return sum(r["seconds"] for r in meta.get("runs", []))


def _f(v, digits=2) -> str:
    v = float(v)
    return "–" if not np.isfinite(v) else f"{v:.{digits}f}"


def law_quick() -> str:
    t = _table("law_quick")
    thr = _thresholds("law_quick")
    crossing = ", ".join(_f(r["threshold_p_over_dn"]) for r in thr)
    logit = ", ".join(f"{_f(r['logit_p_over_dn'])} [{_f(r['logit_lo'])}, {_f(r['logit_hi'])}]" for r in thr)
    pairs = ", ".join(f"({r['d']}, {r['n']})" for r in thr)
    exact = []
    for ratio in (8, 4, 2):
        sel = np.isclose(t["p_over_dn"], ratio, rtol=0.05)
        exact.append(f"{int(t['identified'][sel].sum())}/{int(sel.sum())} at {ratio}·dn")
    return (f"`law_quick` (method `{t['method'][0]}`, {int(t['seed'].max()) + 1} seeds; "
            f"{_run_seconds('law_quick'):.0f} s of grid points on the 2-core CPU of `benchmarks/RESULTS.md`) "
            f"gives for (d, n) = {pairs}: p*/(dn) = {crossing} by the error crossing and "
            f"{logit} by the logistic fit of P(identified) [95 % interval]; identified seeds: "
            f"{', '.join(exact)}.")


def _rate_table(name: str, methods=None) -> str:
    t = _table(name)
    methods = methods or sorted(set(t["method"].tolist()))
    ratios = sorted(set(np.round(t["p_over_dn"], 2).tolist()))
    head = "| p/(dn) | " + " | ".join(f"`{m}` solved | identified" for m in methods) + " |"
    rule = "|---:|" + "---:|---:|" * len(methods)
    rows = [head, rule]
    for r in ratios:
        cells = []
        for m in methods:
            sel = (t["method"] == m) & np.isclose(t["p_over_dn"], r, atol=0.006)
            cells.append(f"{int(t['solved'][sel].sum())}/{int(sel.sum())} | {int(t['identified'][sel].sum())}/{int(sel.sum())}")
        rows.append(f"| {r:g} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def solve_rate() -> str:
    t = _table("solve_rate")
    d, n = int(t["d"][0]), int(t["n"][0])
    per_seed = {m: float(np.mean(t["seconds"][t["method"] == m])) / max(1, int(t["seed"].max()) + 1)
                for m in sorted(set(t["method"].tolist()))}
    cost = ", ".join(f"`{m}` {s:.1f} s" for m, s in per_seed.items())
    return (f"d = {d}, n = {n}, ReLU, float32, {int(t['seed'].max()) + 1} seeds per point, 3000 steps "
            f"(random starts; mean run time per seed and point: {cost}):\n\n" + _rate_table("solve_rate"))


def sharp_law() -> str:
    thr = _thresholds("sharp_law")
    t = _table("sharp_law")
    rows = ["| (d, n) | d·n | p*/(dn) [95 %] | width [95 %] | P(identified) at p/(dn) = 0.9, 1, 1.1, 1.25 |",
            "|---|---:|---:|---:|---|"]
    for r in sorted(thr, key=lambda r: int(r["d"]) * int(r["n"])):
        d, n = int(r["d"]), int(r["n"])
        ps = []
        for ratio in (0.9, 1.0, 1.1, 1.25):
            sel = (t["d"] == d) & (t["n"] == n) & np.isclose(t["p_over_dn"], ratio, atol=0.02)
            ps.append(f"{t['identified'][sel].mean():.2f}" if sel.any() else "–")
        rows.append(f"| ({d}, {n}) | {d * n} | {_f(r['logit_p_over_dn'], 3)} [{_f(r['logit_lo'], 3)}, "
                    f"{_f(r['logit_hi'], 3)}] | {_f(r['logit_width'], 3)} [{_f(r['logit_width_lo'], 3)}, "
                    f"{_f(r['logit_width_hi'], 3)}] | {', '.join(ps)} |")
    return (f"Planted starts (X + 0.1·N(0, I)), ReLU, float32, 20 seeds per point "
            f"({_run_seconds('sharp_law') / 60:.0f} min of grid points on the 2-core CPU):\n\n" + "\n".join(rows))


BLOCKS = {"law_quick": law_quick, "solve_rate": solve_rate, "sharp_law": sharp_law}


def render(text: str) -> str:
    for name, fn in BLOCKS.items():
        pattern = re.compile(rf"(<!-- numbers:{name} -->\n).*?(<!-- /numbers:{name} -->)", re.S)
        if pattern.search(text) and (RESULTS / name).is_dir():
            text = pattern.sub(lambda m: m.group(1) + fn() + "\n" + m.group(2), text)
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a file is not up to date")
    args = ap.parse_args(argv)
    stale = []
    for name in FILES:
        path = ROOT / name
        old = path.read_text()
        new = render(old)
        if new == old:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(new)
    if args.check:
        if stale:
            print(f"{', '.join(stale)}: numbers differ from benchmarks/results/: run python benchmarks/readme_numbers.py",
                  file=sys.stderr)
            return 1
        return 0
    print(f"numbers regenerated in {', '.join(stale)}" if stale else "numbers up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
