"""Cost of one Levenberg-Marquardt direction of ``adam-lm``: closed-form J^T J vs autodiff.

    python benchmarks/lm_step.py                 # d=100, n=20, p = 10dn, float32, 30 CG iterations

Times ``jaxrecon.attack.lm.lm_direction`` (linearise the residual, set up the row-scaled system,
30 preconditioned CG iterations) for a dense random-features map, (a) with the closed form of
:meth:`RandomFeatures.residual_linearization` and (b) with it disabled, so that
``jax.linearize`` / ``jax.linear_transpose`` of the residual are used; same inputs, one process.
Records compile and run seconds (best of 5) and the relative difference of the two directions.

``--streamed B`` times the same for V streamed in blocks of ``B`` rows (closed form summed over
blocks, two passes per product, vs autodiff). ``--converge`` runs LM steps from a start near the
training set until the loss is below ``1e-12`` (at most 40 steps), with all ``--cg-iters`` CG
iterations per step (``cg_tol=0``) and with the adaptive tolerance ``cg_tol=0.1``: steps, CG
products, seconds and the final loss of each.
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
    ap.add_argument("--streamed", type=int, default=None, help="also time V streamed in blocks of this many rows")
    ap.add_argument("--converge", action="store_true", help="also time LM convergence, fixed vs adaptive CG")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--name", default="lm_step", help="results/NAME.json")
    args = ap.parse_args()
    p = int(args.p_over_dn * args.d * args.n)
    data = jr.synthetic(jax.random.key(1), args.n, args.d)
    fmap = jr.RandomFeatures(jax.random.key(2), args.d, p).prepare()
    target = jr.Target(fmap, jr.fit(fmap, data.x, data.y))
    x = data.x + 0.3 * jax.random.normal(jax.random.key(3), data.x.shape)
    out = {}
    maps = {"": fmap} if args.streamed is None else {"": fmap, "streamed_": fmap.replace(V=None, block_size=args.streamed)}
    for prefix, fm in maps.items():
        tgt = jr.Target(fm, target.theta)
        for name in ("closed_form", "autodiff"):
            out[prefix + name] = _time_direction(tgt, x, args, autodiff=name == "autodiff")
            print(f"{prefix + name:>22}: compile+first run {out[prefix + name]['compile_s']:.2f} s, "
                  f"run {out[prefix + name]['run_s'] * 1e3:.1f} ms", flush=True)
        a, b = out[prefix + "closed_form"].pop("direction"), out[prefix + "autodiff"].pop("direction")
        rel = float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))
        ratio = out[prefix + "autodiff"]["run_s"] / out[prefix + "closed_form"]["run_s"]
        out[prefix + "speedup"], out[prefix + "relative_difference"] = ratio, rel
        print(f"{prefix}autodiff / closed form: {ratio:.2f}x run time; directions differ by {rel:.1e} (relative)")
    if args.converge:
        x_near = data.x + 0.02 * jax.random.normal(jax.random.key(4), data.x.shape)
        for tol in (0.0, 0.1):
            out[f"converge_cg_tol_{tol}"] = r = _converge(target, x_near, args.cg_iters, tol)
            print(f"converge cg_tol={tol}: {r['steps']} LM steps, {r['seconds']:.1f} s, final loss "
                  f"{r['loss']:.2e}", flush=True)
    ratio, rel = out["speedup"], out["relative_difference"]
    path = save(args.name, {"machine": machine(), "args": vars(args), "results": out, "speedup": ratio,
                            "relative_difference": rel})
    print(f"wrote {path}")


def _time_direction(target, x, args, autodiff: bool) -> dict:
    """Compile and run seconds of one LM direction (closed form, or autodiff with it switched off)."""
    closed_form = jr.RandomFeatures.residual_linearization
    if autodiff:
        jr.RandomFeatures.residual_linearization = lambda self, theta, x, jitter=None: None
    try:
        f = jax.jit(lambda t, xx: R.lm_direction(t, xx, jnp.float32(1e-3), args.cg_iters)[0])
        t0 = time.perf_counter()
        direction = block(f(target, x))
        compile_s = time.perf_counter() - t0
        run_s = timed(f, target, x, repeats=args.repeats)
    finally:
        jr.RandomFeatures.residual_linearization = closed_form
    return {"compile_s": compile_s, "run_s": run_s, "direction": direction}


def _converge(target, x, cg_iters: int, cg_tol: float, max_steps: int = 40, tol: float = 1e-12) -> dict:
    """LM steps (one compiled step, host loop) until the residual loss is below ``tol``."""
    phase = R.LMPhase(R.LevenbergMarquardt(cg_iters=cg_iters, cg_tol=cg_tol), None, lambda z: z)
    step = jax.jit(phase.step)
    loss_of = jax.jit(lambda t, z: jnp.sum(R.projector_residual(t.fmap, t.theta, z) ** 2))
    damping = phase.init(x, x.dtype)
    block(step(target, x, damping)), block(loss_of(target, x))  # compile
    t0, loss, steps = time.perf_counter(), float("inf"), 0
    for steps in range(1, max_steps + 1):
        x, damping, _, _ = block(step(target, x, damping))
        loss = float(loss_of(target, x))
        if loss < tol:
            break
    return {"steps": steps, "seconds": time.perf_counter() - t0, "loss": loss}


if __name__ == "__main__":
    main()
