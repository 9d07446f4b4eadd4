"""The first-order step's loss and gradient: autodiff of the residual form against its closed form;
with ``--lm``, the LM phase's set-up and ``J^T J u`` products instead.

    python benchmarks/first_order_step.py                       # d, n = 100 20, 768 40, 3072 10
    python benchmarks/first_order_step.py --sizes 768x40
    python benchmarks/first_order_step.py --lm --out lm_products  # before/after: run under each tree

Per size (p = 10 d n, float32, V stored, synthetic sphere rows and theta = sum of their features)
and per problem (the plain random features and the split start's even features
``P_perp(V) e(x)``), the best-of-3 seconds of one jitted call of

* ``autodiff``: ``jax.value_and_grad`` of ``projector_loss(..., form="residual")`` (the first-order
  step of the residual-form methods before the closed form);
* ``closed``: ``jaxrecon.loss.residual_value_and_grad`` (what the step calls now);
* ``kernel``: ``jax.value_and_grad`` of the kernel form, for reference (cheaper still, but resolves
  the loss only to ~1e-6 in float32),

at a point 0.1 away from the training rows, and the relative difference of the closed-form gradient
from autodiff's. Results: ``benchmarks/results/first_order_step.json``.

``--lm``: per size and problem, the best-of-3 seconds of ``residual_linearization`` with 0 and
with 4 chained ``gram_matvec`` products (jitted): the set-up, and per product the difference / 4.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import jaxrecon as jr
from jaxrecon.attack import split as S
from jaxrecon.loss import projector_loss, residual_linearization, residual_value_and_grad

from _common import block, machine, save, timed


def _problem(d, n):
    """``(p, [("plain", target), ("even", target)], y)``: p = 10 d n, float32, V stored, synthetic
    sphere rows, theta the sum of their features, and the point ``y`` 0.1 away from the rows."""
    p = 10 * d * n
    data = jr.synthetic(jax.random.key(1), n, d, dtype="float32")
    fmap = jr.RandomFeatures(jax.random.key(2), d, p, dtype="float32").prepare()
    theta = fmap.adjoint(data.x, jnp.ones(n, jnp.float32))
    even = S.split_problem(jr.Target(fmap, theta)).even
    y = data.x + 0.1 * jax.random.normal(jax.random.key(5), data.x.shape, jnp.float32)
    return p, [("plain", jr.Target(fmap, theta)), ("even", even)], y


def measure(d, n):
    p, targets, y = _problem(d, n)
    forms = {
        "autodiff": jax.jit(jax.value_and_grad(lambda f, t, x: projector_loss(f, t, x, form="residual"), argnums=2)),
        "closed": jax.jit(residual_value_and_grad),
        "kernel": jax.jit(jax.value_and_grad(lambda f, t, x: projector_loss(f, t, x, form="kernel"), argnums=2)),
    }
    rows = []
    for name, tgt in targets:
        out, row = {}, {"d": d, "n": n, "p": p, "features": name}
        for form, fn in forms.items():
            out[form] = block(fn(tgt.fmap, tgt.theta, y))  # compile and warm up
            row[f"{form}_s"] = timed(fn, tgt.fmap, tgt.theta, y)
        g_auto, g_closed = out["autodiff"][1], out["closed"][1]
        row["grad_rel_diff"] = float(jnp.linalg.norm(g_closed - g_auto) / jnp.linalg.norm(g_auto))
        row["speedup"] = row["autodiff_s"] / row["closed_s"]
        print(f"d={d:5d} n={n:3d} {name:5s}  autodiff {row['autodiff_s']:.3f} s  closed {row['closed_s']:.3f} s "
              f"({row['speedup']:.2f}x)  kernel {row['kernel_s']:.3f} s  grad diff {row['grad_rel_diff']:.1e}",
              flush=True)
        rows.append(row)
    return rows


def measure_lm(d, n):
    p, targets, y = _problem(d, n)

    def chain(k):
        def f(fm, t, x):
            lin = residual_linearization(fm, t, x)
            u = lin.grad
            for _ in range(k):
                u = lin.gram_matvec(u)
            return lin.residual, u
        return jax.jit(f)

    rows = []
    for name, tgt in targets:
        secs = {}
        for k in (0, 4):
            fn = chain(k)
            block(fn(tgt.fmap, tgt.theta, y))
            secs[k] = timed(fn, tgt.fmap, tgt.theta, y)
        row = {"d": d, "n": n, "p": p, "features": name, "setup_s": secs[0], "product_s": (secs[4] - secs[0]) / 4}
        print(f"d={d:5d} n={n:3d} {name:5s}  set-up {row['setup_s']:.3f} s  J^T J u {row['product_s']:.3f} s",
              flush=True)
        rows.append(row)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["100x20", "768x40", "3072x10"], help="d x n pairs")
    ap.add_argument("--lm", action="store_true", help="time the LM set-up and products instead")
    ap.add_argument("--out", default=None, help="results name (default first_order_step)")
    args = ap.parse_args()
    rows = []
    for size in args.sizes:
        d, n = (int(v) for v in size.lower().split("x"))
        rows += measure_lm(d, n) if args.lm else measure(d, n)
    print("saved", save(args.out or "first_order_step", {"machine": machine(), "rows": rows}))


if __name__ == "__main__":
    main()
