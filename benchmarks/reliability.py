"""The reliability suite: bad inputs, corrupted state and faults, each judged clean, misleading or bad.

    python3 benchmarks/reliability.py --out benchmarks/results/reliability     # every case (~15 min)
    python3 benchmarks/reliability.py --area data --out /tmp/rel                # one area
    python3 benchmarks/reliability.py --list

Cases live in ``benchmarks/reliability_cases/<area>.py`` (``CASES``; :mod:`reliability_cases._case`
says how a case is judged). Each runs the ``jaxrecon`` command in its own empty directory. The run
writes ``cases.csv`` (one row per case: area, name, outcome, detail; resumable: cases already in it
are skipped) and ``table.md`` (counts per area and outcome, then every case that is not clean).
"""

from __future__ import annotations

import argparse
import csv
import importlib
import pkgutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reliability_cases._case import OUTCOMES, run_case  # noqa: E402

FIELDS = ("area", "name", "outcome", "seconds", "detail")


def all_cases() -> list:
    import reliability_cases

    cases = []
    for info in sorted(pkgutil.iter_modules(reliability_cases.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        cases.extend(importlib.import_module(f"reliability_cases.{info.name}").CASES)
    names = [c.name for c in cases]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SystemExit(f"reliability: duplicate case names {dup}")
    return cases


def table(rows: list) -> str:
    areas = sorted({r["area"] for r in rows})
    lines = ["| area | cases | " + " | ".join(OUTCOMES) + " |", "|---|---:|" + "---:|" * len(OUTCOMES)]
    for a in areas + ["all"]:
        sel = [r for r in rows if a == "all" or r["area"] == a]
        c = Counter(r["outcome"] for r in sel)
        name = "**all**" if a == "all" else a
        lines.append(f"| {name} | {len(sel)} | " + " | ".join(str(c.get(o, 0)) for o in OUTCOMES) + " |")
    rest = [r for r in rows if r["outcome"] != "clean"]
    if rest:
        lines += ["", "Not clean:", ""] + [f"* `{r['area']}/{r['name']}`: {r['outcome']}: {r['detail']}" for r in rest]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/reliability", help="directory for cases.csv and table.md")
    ap.add_argument("--area", action="append", help="run only these areas (repeatable)")
    ap.add_argument("--name", action="append", help="run only these cases (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    a = ap.parse_args(argv)
    cases = [c for c in all_cases() if (not a.area or c.area in a.area) and (not a.name or c.name in a.name)]
    if a.list:
        for c in cases:
            print(f"{c.area}/{c.name}")
        print(f"{len(cases)} cases")
        return 0
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "cases.csv"
    rows = list(csv.DictReader(path.open())) if path.exists() else []
    done = {(r["area"], r["name"]) for r in rows}
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        if not rows:
            w.writeheader()
        for i, c in enumerate(cases):
            if (c.area, c.name) in done:
                continue
            t = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="jr-rel-") as tmp:
                outcome, detail = run_case(c, Path(tmp) / "case")
                detail = str(detail).replace(str(Path(tmp) / "case"), "{dir}")  # no paths of this machine
            row = {"area": c.area, "name": c.name, "outcome": outcome, "seconds": f"{time.perf_counter() - t:.1f}",
                   "detail": " ".join(str(detail).split())[:300]}
            w.writerow(row)
            f.flush()
            rows.append(row)
            print(f"[{i + 1}/{len(cases)}] {c.area}/{c.name}: {outcome} ({row['seconds']} s) {row['detail'][:100]}",
                  flush=True)
    (out / "table.md").write_text(table(rows))
    print(table(rows))
    bad = sum(r["outcome"] != "clean" for r in rows)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
