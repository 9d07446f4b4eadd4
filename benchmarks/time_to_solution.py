"""Time-to-solution of reconstruction methods: error and loss against wall-clock seconds.

    python benchmarks/time_to_solution.py                        # d=100, n=20, p/(dn) in {2,5,10}, 8 seeds
    python benchmarks/time_to_solution.py --budget 60 --seeds 8 --p-over-dn 0.5 2 5 10 \\
        --methods published adam "adam:optimizer=lbfgs,lr=1,schedule=constant,warmup=0" adam-lm

For each p (one synthetic data set and one RF model, float32 unless --x64) and each method, the
seeds run vmapped in ONE compiled program under a wall-clock budget that includes compilation;
after every chunk of steps the matched errors of every seed are recorded. So every method gets
the same conditions: the same seeds, the same CPU, the same budget, shared by the vmapped seeds
(a seed's "seconds" is the wall-clock of the whole program until that seed stopped, which is a
harder bound than running it alone). A method spec is a name from ``jaxrecon.METHODS`` with
optional overrides: ``name:key=value,key=value``.

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
from jaxrecon.reconstruct import method_config

from _common import machine, save


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


def run_one(target, x, n, seeds, cfg, budget, chunk, steps):
    trace = []

    def record(elapsed, state):
        xh = np.asarray(state.x_hat)
        ms = [jr.match(x, xh[s]) for s in range(seeds)]
        trace.append({"t": elapsed, "steps": np.asarray(state.steps).tolist(),
                      "loss": np.asarray(state.loss).tolist(),
                      "error_sign": [m.error_sign for m in ms], "error_abs": [m.error_abs for m in ms]})

    res = jr.reconstruct_seeds(target, jax.random.key(7), n, seeds, method=cfg, steps=steps, chunk=chunk,
                               progress=False, time_budget=budget, callback=record)
    final = [jr.match(x, res.x_hat[s]) for s in range(seeds)]
    return {
        "seconds": res.seconds.tolist(), "compile_s": res.compile_seconds, "steps": res.steps.tolist(),
        "loss": res.loss.tolist(), "status": res.status, "restarts": res.restarts.tolist(),
        "error_sign": [m.error_sign for m in final], "error_abs": [m.error_abs for m in final],
        "trace": trace,
    }


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
            t = np.array([c["t"] for c in r["trace"]])
            e = np.array([c["error_sign"] for c in r["trace"]])  # (chunks, seeds)
            if len(t) == 0:
                continue
            q1, med, q3 = np.percentile(e, [25, 50, 75], axis=1)
            ax.plot(t, med, color=colors[r["method"]], label=r["method"])
            ax.fill_between(t, q1, q3, color=colors[r["method"]], alpha=0.2, lw=0)
        ax.set_xscale("log")
        ax.set_yscale("log")
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
    ap.add_argument("--budget", type=float, default=60.0, help="wall-clock seconds per (method, p), compile included")
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--chunk", type=int, default=25)
    ap.add_argument("--methods", nargs="+", default=["published", "adam", "adam-lm"])
    ap.add_argument("--x64", action="store_true")
    ap.add_argument("--name", default="time_to_solution")
    args = ap.parse_args()
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    dtype = "float64" if args.x64 else "float32"
    results = []
    for pr in args.p_over_dn:
        p = int(round(pr * args.d * args.n))
        data = jr.synthetic(jax.random.key(1), args.n, args.d, dtype=dtype)
        fmap = jr.RandomFeatures(jax.random.key(2), args.d, p, dtype=dtype)
        target = jr.Target(fmap, jr.fit(fmap, data.x, data.y))
        x = np.asarray(data.x)
        for spec in args.methods:
            r = run_one(target, x, args.n, args.seeds, parse_method(spec), args.budget, args.chunk, args.steps)
            r.update(method=spec, p=p, p_over_dn=pr)
            s = summarise(r, 1e-3)
            results.append(r)
            print(f"p={pr:>5g}dn {spec:>28}: ok(err<=1e-3) {s['success']:.2f}  median err {s['median_error_sign']:.2e}"
                  f"  median s(ok) {s['median_seconds_success']:.1f}  median loss {s['median_loss']:.1e}"
                  f"  compile {r['compile_s']:.1f}s  restarts {sum(r['restarts'])}", flush=True)
    path = save(args.name, {"machine": machine(), "args": vars(args), "results": results})
    fig = Path(__file__).parent / f"{args.name}.png"
    plot(results, fig)
    print(f"wrote {path} and {fig}")


if __name__ == "__main__":
    main()
