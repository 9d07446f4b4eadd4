"""Cost of one Levenberg-Marquardt direction of ``adam-lm``: closed-form J^T J vs autodiff.

    python benchmarks/lm_step.py                 # d=100, n=20, p = 10dn, float32, 30 CG iterations

Times ``jaxrecon.attack.lm.lm_direction`` (linearise the residual, set up the row-scaled system,
30 preconditioned CG iterations) for a dense random-features map, (a) with the closed form of
:meth:`RandomFeatures.residual_linearization` and (b) with it disabled, so that
``jax.linearize`` / ``jax.linear_transpose`` of the residual are used; same inputs, one process.
Records compile and run seconds (best of 5) and the relative difference of the two directions.
"""

from __future__ import annotations

import argparse
import importlib
import time

import jax
import jax.numpy as jnp

import jaxrecon as jr

from _common import block, machine, save, timed

R = importlib.import_module("jaxrecon.attack.lm")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=100)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--p-over-dn", type=float, default=10)
    ap.add_argument("--cg-iters", type=int, default=30)
    args = ap.parse_args()
    p = int(args.p_over_dn * args.d * args.n)
    data = jr.synthetic(jax.random.key(1), args.n, args.d)
    fmap = jr.RandomFeatures(jax.random.key(2), args.d, p).prepare()
    target = jr.Target(fmap, jr.fit(fmap, data.x, data.y))
    x = data.x + 0.3 * jax.random.normal(jax.random.key(3), data.x.shape)
    out = {}
    closed_form = jr.RandomFeatures.residual_linearization
    for name in ("closed_form", "autodiff"):
        if name == "autodiff":
            jr.RandomFeatures.residual_linearization = lambda self, theta, x, jitter=None: None
        try:
            f = jax.jit(lambda t, xx: R.lm_direction(t, xx, jnp.float32(1e-3), args.cg_iters)[0])
            t0 = time.perf_counter()
            direction = block(f(target, x))
            compile_s = time.perf_counter() - t0
            run_s = timed(f, target, x, repeats=5)
        finally:
            jr.RandomFeatures.residual_linearization = closed_form
        out[name] = {"compile_s": compile_s, "run_s": run_s, "direction": direction}
        print(f"{name:>12}: compile+first run {compile_s:.2f} s, run {run_s * 1e3:.1f} ms", flush=True)
    a, b = out["closed_form"].pop("direction"), out["autodiff"].pop("direction")
    rel = float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))
    ratio = out["autodiff"]["run_s"] / out["closed_form"]["run_s"]
    print(f"autodiff / closed form: {ratio:.2f}x run time; directions differ by {rel:.1e} (relative)")
    path = save("lm_step", {"machine": machine(), "args": vars(args), "results": out, "speedup": ratio,
                            "relative_difference": rel})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
