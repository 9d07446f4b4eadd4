"""Starting points of the attack: random rows (as published), or greedy matching pursuit of rows.

``start="pursuit"`` builds ``x_hat`` one row at a time against ``theta``::

    r = theta
    for i in 1..n:
        z_i = argmax_z (phi(z)^T r)^2 / |phi(z)|^2     # best of `candidates` random sphere points,
                                                        # refined by projected gradient ascent
        r   = P_perp(z_1..z_i) theta                    # deflate: what the chosen rows leave unexplained

For a single training point the score is maximal exactly at it (Cauchy-Schwarz, ``phi`` positively
homogeneous), and near convergence the residual points at the rows still missing (the reason the
row-redraw stall action uses the same score). With many rows the linear part of the kernel
favours mixtures ``sum_j alpha_j x_j`` early on, so the start is a good n-term approximation of
``theta`` rather than the training set: whether it pays is measured (``benchmarks/RESULTS.md``).

Cost: ``n (candidates + 2 refine_steps + 2 n)`` feature rows of products with ``V``, i.e. about
``candidates / 2 + refine_steps + n`` first-order steps' worth of passes over ``V``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..data.synthetic import project_to_sphere
from .lm import full_precision
from .stall import pursuit, residual_of_rows

#: Starts a method can name (:attr:`~jaxrecon.attack.Method.start`).
STARTS = ("random", "pursuit")


def pursuit_score(fmap, z: jax.Array, r: jax.Array) -> jax.Array:
    """``(phi(z)^T r)^2 / |phi(z)|^2`` for one row ``z`` (summed over a ``k``-output map's rows)."""
    corr = fmap.project(z[None], r)
    norm2 = jnp.sum(jnp.diagonal(fmap.gram(z[None], z[None])))
    return jnp.sum(corr * corr) / jnp.maximum(norm2, jnp.finfo(z.dtype).tiny)


def refine_row(fmap, z: jax.Array, r: jax.Array, radius, steps: int, angle: float = 0.5) -> jax.Array:
    """``steps`` of projected gradient ascent of :func:`pursuit_score` from ``z``: each a move along
    the tangent gradient by ``angle * 0.6^k`` times the row norm, kept only if the score rises."""
    score = lambda z_: pursuit_score(fmap, z_, r)
    scale = jnp.linalg.norm(z) if radius is None else radius
    put_back = (lambda v: v) if radius is None else (lambda v: project_to_sphere(v[None], radius)[0])

    def body(k, carry):
        z_, s = carry
        g = jax.grad(score)(z_)
        g = g - jnp.dot(g, z_) / jnp.maximum(jnp.dot(z_, z_), jnp.finfo(z_.dtype).tiny) * z_
        step = angle * (0.6 ** k.astype(z_.dtype)) * scale / jnp.maximum(jnp.linalg.norm(g), jnp.finfo(z_.dtype).tiny)
        z_new = put_back(z_ + step * g)
        s_new = score(z_new)
        better = jnp.isfinite(s_new) & (s_new > s)
        return jnp.where(better, z_new, z_), jnp.where(better, s_new, s)

    z, _ = jax.lax.fori_loop(0, steps, body, (z, score(z)))
    return z


def pursuit_start(tgt, key: jax.Array, n: int, radius, dtype, candidates: int = 256, refine_steps: int = 8,
                  jitter=None) -> jax.Array:
    """``(n, d)`` rows chosen greedily against ``theta`` (module docstring); ``tgt`` is the prepared
    attack target. Row ``i`` draws its candidates from ``fold_in(key, i)``."""
    fmap, theta = full_precision(tgt)[:2]
    d = fmap.input_dim

    def body(i, carry):
        x, keep, r = carry
        z = pursuit(fmap, r, jax.random.fold_in(key, i), d, dtype, radius, candidates)
        z = refine_row(fmap, z, r, radius, refine_steps)
        x, keep = x.at[i].set(z.astype(x.dtype)), keep.at[i].set(True)
        r, _ = residual_of_rows(fmap, theta, x, keep, jitter)
        return x, keep, r.astype(dtype)

    init = (jnp.zeros((n, d), dtype), jnp.zeros(n, bool), theta.astype(dtype))
    x, _, _ = jax.lax.fori_loop(0, n, body, init)
    return x


def start_rows(solver, key: jax.Array, tgt, dtype) -> jax.Array:
    """The first iterate of a seed under ``solver.method.start``: random rows
    (:meth:`~jaxrecon.attack.loop.Solver.fresh_x`) or :func:`pursuit_start`."""
    d = tgt.fmap.input_dim
    if solver.method.start == "random":
        return solver.fresh_x(key, d, dtype)
    return pursuit_start(tgt, key, solver.n, solver.radius, dtype, jitter=solver.method.jitter)
