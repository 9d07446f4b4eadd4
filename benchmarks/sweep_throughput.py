"""Throughput of one sweep grid point: 16 seeds vmapped in one program vs the same 16 seeds one by one.

    python benchmarks/sweep_throughput.py                 # d=20 n=5 p=2dn, 16 seeds, 3000 Adam steps
    python benchmarks/sweep_throughput.py --d 50 --n 10 --p-over-dn 2 --steps 2000

Both variants run the same per-seed function (data, RF fit, attack, span residual; see
``jaxrecon.sweeps.make_trial``): vmapped, it is ``jax.vmap(trial)`` compiled once; looped, the
unbatched ``trial`` is compiled once and called for each seed. Wall-clock is reported with and
without compilation. Numbers go to stdout (and to ``--json`` if given).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxrecon.io import versions  # noqa: E402
from jaxrecon.sweeps import ProgramCache, SweepConfig, compiled_program, grid, run_point  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=20)
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--p-over-dn", type=float, default=2.0)
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--method", default="adam")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs after compilation (best is kept)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    cfg = SweepConfig(d=[args.d], n=[args.n], p_over_dn=[args.p_over_dn], method=[args.method],
                      seeds=args.seeds, steps=args.steps, pad_p="none")
    resolved = cfg.resolved()
    point = grid(resolved)[0]
    res = {"point": point._asdict(), "seeds": args.seeds, "steps": args.steps,
           "versions": versions(), "cpu_count": os.cpu_count(), "machine": platform.machine()}
    try:
        res["affinity"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    errors = {}
    for vmapped in (True, False):
        name = "vmapped" if vmapped else "looped"
        t0 = time.perf_counter()
        program = compiled_program(point, resolved, vmapped=vmapped, cache=ProgramCache())
        compile_s = time.perf_counter() - t0
        runs = []
        for _ in range(args.repeats):
            po = run_point(point, resolved, vmapped=vmapped, program=program)
            runs.append(po.seconds)
        errors[name] = po
        res[name] = {"compile_s": compile_s, "run_s": min(runs), "runs_s": runs,
                     "total_s": compile_s + min(runs), "steps_taken": po.steps.tolist()}
        print(f"{name:8s} compile {compile_s:7.2f}s  run {min(runs):7.2f}s  (runs {np.round(runs, 2).tolist()})",
              flush=True)
    v, l = res["vmapped"], res["looped"]
    res["speedup_run"] = l["run_s"] / v["run_s"]
    res["speedup_with_compile"] = l["total_s"] / v["total_s"]
    res["max_abs_diff_loss"] = float(np.max(np.abs(errors["vmapped"].loss - errors["looped"].loss)))
    print(f"throughput vmapped / looped: {res['speedup_run']:.2f}x (compile excluded), "
          f"{res['speedup_with_compile']:.2f}x (compile included); device {res['versions']['device']}, "
          f"{res.get('affinity', res['cpu_count'])} cores")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2, default=str)
    return res


if __name__ == "__main__":
    main()
