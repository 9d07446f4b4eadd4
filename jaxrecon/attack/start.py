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

from .lm import full_precision
from .stall import fill_rows, pursuit_score, refine_row  # noqa: F401  (the start's pieces, re-exported)

#: Starts a method can name (:attr:`~jaxrecon.attack.Method.start`).
from .parts import STARTS  # noqa: F401  (re-exported)


def pursuit_start(tgt, key: jax.Array, n: int, radius, dtype, candidates: int = 256, refine_steps: int = 8,
                  jitter=None) -> jax.Array:
    """``(n, d)`` rows chosen greedily against ``theta`` (module docstring; :func:`~jaxrecon.attack.stall.fill_rows`
    from no rows); ``tgt`` is the prepared attack target. Row ``i`` draws its candidates from ``fold_in(key, i)``."""
    fmap, theta = full_precision(tgt)[:2]
    x0 = jnp.zeros((n, fmap.input_dim), dtype)
    return fill_rows(fmap, theta, x0, jnp.zeros(n, bool), key, radius, candidates, refine_steps, jitter)


def start_rows(solver, key: jax.Array, tgt, dtype) -> jax.Array:
    """The first iterate of a seed under ``solver.method.start``: random rows
    (:meth:`~jaxrecon.attack.loop.Solver.fresh_x`) or :func:`pursuit_start`."""
    d = tgt.fmap.input_dim
    if solver.method.start.kind in ("random", "split"):
        return solver.fresh_x(key, d, dtype)
    return pursuit_start(tgt, key, solver.n, solver.radius, dtype, jitter=solver.method.loss.jitter)
