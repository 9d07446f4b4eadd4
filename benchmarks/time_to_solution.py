"""Time-to-solution of reconstruction methods: error and loss against wall-clock seconds.

    python benchmarks/time_to_solution.py                        # d=100, n=20, p/(dn) in {2,5,10}, 8 seeds
    python benchmarks/time_to_solution.py --budget 60 --seeds 8 --p-over-dn 0.5 2 5 10 \\
        --methods published adam "adam:optimizer=lbfgs,lr=1,schedule=constant,warmup=0" adam-lm

For each p (one synthetic data set and one RF model, float32 unless --x64) and each method, every
seed runs ALONE, one after the other, each under the wall-clock ``--budget`` that includes its own
compilation (each seed's program is compiled afresh and the compile time is part of its seconds);
after every chunk of steps the matched errors are recorded. So every method gets the same
conditions: the same seeds, the same CPU, the same budget per seed. ``--vmapped`` instead runs the
seeds vmapped in ONE program under one budget shared by all of them (a seed's "seconds" is then the
wall-clock of the whole program until that seed stopped). A method spec is a name from
``jaxrecon.METHODS`` with optional overrides: ``name:key=value,key=value``.

Writes ``benchmarks/results/time_to_solution.json`` and ``benchmarks/time_to_solution.png``
(error_sign vs seconds, median and quartiles across seeds, one panel per p).
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import jax
import numpy as np

import jaxrecon as jr
from jaxrecon.attack import method_config

from _common import load, machine, save


def parse_method(spec: str):
    name, _, opts = spec.partition(":")
    overrides = {}
    for item in filter(None, opts.split(",")):
        k, _, v = item.partition("=")
        try:
            overrides[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            overrides[k] = v
    return method_config(name, **overrides)


def run_one(target, x, n, key, seeds, cfg, budget, chunk, steps):
    """Seeds vmapped in one program; one trace per seed (shared times)."""
    times, errs = [], []

    def record(elapsed, state):
        xh = np.asarray(state.x_hat)
        times.append(elapsed)
        errs.append([jr.match(x, xh[s]).error_sign for s in range(seeds)])

    res = jr.reconstruct_seeds(target, key, n, seeds, method=cfg, steps=steps, chunk=chunk,
                               progress=False, time_budget=budget, callback=record)
    final = [jr.match(x, res.x_hat[s]) for s in range(seeds)]
    errs = np.asarray(errs).reshape(len(times), seeds)
    return {
        "seconds": res.seconds.tolist(), "compile_s": [res.compile_seconds] * seeds,
        "steps": res.steps.tolist(), "loss": res.loss.tolist(), "status": res.status,
        "stalls": res.stalls.tolist(), "error_sign": [m.error_sign for m in final],
        "error_abs": [m.error_abs for m in final],
        "trace": [{"t": times, "error_sign": errs[:, s].tolist()} for s in range(seeds)],
    }


def run_per_seed(target, x, n, key, seeds, cfg, budget, chunk, steps):
    """Each seed alone (its own program and compile), one after the other."""
    out = None
    for s, k in enumerate(jax.random.split(key, seeds)):
        jax.clear_caches()  # every seed pays its own compilation, as a lone run would
        r = run_one(target, x, n, k, 1, cfg, budget, chunk, steps)
        out = r if out is None else {key_: out[key_] + r[key_] for key_ in out}
        print(f"    seed {s}: error_sign {r['error_sign'][0]:.2e}  {r['seconds'][0]:.1f} s  "
              f"steps {r['steps'][0]}  {r['status'][0]}", flush=True)
    return out


def summarise(r, threshold):
    err = np.array(r["error_sign"])
    secs = np.array(r["seconds"])
    ok = err <= threshold
    return {"success": float(ok.mean()), "median_error_sign": float(np.median(err)),
            "median_seconds_success": float(np.median(secs[ok])) if ok.any() else float("nan"),
            "median_loss": float(np.median(r["loss"]))}


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ps = sorted({r["p_over_dn"] for r in results})
    fig, axes = plt.subplots(1, len(ps), figsize=(4.2 * len(ps), 3.6), squeeze=False, sharey=True)
    methods = list(dict.fromkeys(r["method"] for r in results))
    colors = dict(zip(methods, plt.cm.tab10.colors))
    for ax, pr in zip(axes[0], ps):
        for r in (r for r in results if r["p_over_dn"] == pr):
            traces = [tr for tr in r["trace"] if len(tr["t"])]
            if not traces:
                continue
            t = np.unique(np.concatenate([tr["t"] for tr in traces]))
            # each seed's error at time t is its last recorded value (its first value before that)
            e = np.stack([np.asarray(tr["error_sign"])[np.clip(np.searchsorted(tr["t"], t, "right") - 1, 0, None)]
                          for tr in traces], axis=1)
            q1, med, q3 = np.percentile(e, [25, 50, 75], axis=1)
            ax.plot(t, med, color=colors[r["method"]], label=r["method"])
            ax.fill_between(t, q1, q3, color=colors[r["method"]], alpha=0.2, lw=0)
        ax.set_yscale("log")
        ax.set_xlim(left=0)
        ax.set_title(f"p = {pr:g}·dn")
        ax.set_xlabel("wall-clock seconds (compile included)")
        ax.axhline(1e-3, color="gray", lw=0.8, ls=":")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("error_sign (median, IQR over seeds)")
    axes[0][-1].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=100)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--p-over-dn", type=float, nargs="+", default=[2, 5, 10])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--budget", type=float, default=60.0,
                    help="wall-clock seconds per seed (per (method, p) with --vmapped), compile included")
    ap.add_argument("--vmapped", action="store_true", help="all seeds in one program sharing one budget")
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--chunk", type=int, default=25)
    ap.add_argument("--methods", nargs="+", default=["published", "adam", "adam-lm"])
    ap.add_argument("--x64", action="store_true")
    ap.add_argument("--data-seed", type=int, default=1,
                    help="the data set is drawn from key DATA_SEED and the random features from DATA_SEED + 1")
    ap.add_argument("--name", default="time_to_solution")
    ap.add_argument("--replot", action="store_true", help="only redraw the figure from results/NAME.json")
    ap.add_argument("--reuse", metavar="OLD", help="copy into this run's results and figure the (method, p) "
                    "rows of results/OLD.json that this run does not measure (marked reused_from=OLD)")
    args = ap.parse_args()
    if args.replot:
        results = load(args.name)["results"]
        plot(results, Path(__file__).parent / f"{args.name}.png")
        return
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    dtype = "float64" if args.x64 else "float32"
    results = []
    for pr in args.p_over_dn:
        p = int(round(pr * args.d * args.n))
        data = jr.synthetic(jax.random.key(args.data_seed), args.n, args.d, dtype=dtype)
        fmap = jr.RandomFeatures(jax.random.key(args.data_seed + 1), args.d, p, dtype=dtype)
        target = jr.Target(fmap, jr.fit(fmap, data.x, data.y))
        x = np.asarray(data.x)
        for spec in args.methods:
            run = run_one if args.vmapped else run_per_seed
            r = run(target, x, args.n, jax.random.key(7), args.seeds, parse_method(spec), args.budget, args.chunk,
                    args.steps)
            r.update(method=spec, p=p, p_over_dn=pr)
            s = summarise(r, 1e-3)
            results.append(r)
            print(f"p={pr:>5g}dn {spec:>28}: ok(err<=1e-3) {s['success']:.2f}  median err {s['median_error_sign']:.2e}"
                  f"  median s(ok) {s['median_seconds_success']:.1f}  median loss {s['median_loss']:.1e}"
                  f"  compile {np.median(r['compile_s']):.1f}s  stalls {sum(r.get('stalls', r.get('restarts', [])))}", flush=True)
    if args.reuse:
        old = load(args.reuse)
        measured = {(r["method"], r["p_over_dn"]) for r in results}
        for r in old["results"]:
            if (r["method"], r["p_over_dn"]) not in measured and r["p_over_dn"] in args.p_over_dn:
                results.append({**r, "reused_from": args.reuse, "reused_machine": old["machine"]})
        results.sort(key=lambda r: (-r["p_over_dn"], r.get("reused_from") is not None))
    path = save(args.name, {"machine": machine(), "args": vars(args), "results": results})
    fig = Path(__file__).parent / f"{args.name}.png"
    plot(results, fig)
    print(f"wrote {path} and {fig}")


if __name__ == "__main__":
    main()
