"""Starting points of the attack, as objects that wrap the solver's first phase.

A start (chosen by :func:`start_for` from the method's ``start`` part) has two methods::

    x0, first_state, loss, steps = start.init(solver, key, tgt, dtype)   # a seed's first iterate
    x = start.fresh(solver, key, tgt, x)     # new rows for a seed that escalates (stall.escalate)

* :class:`RandomStart`: rows ``N(0, I)`` (on the sphere with ``init="sphere"``), as published;
* :class:`PursuitStart`: greedy matching pursuit of rows against ``theta`` (below);
* :class:`BestOf`: the best of ``candidates`` starts of another kind after ``candidate_steps``
  first-order steps each (vmapped), with its optimiser state;
* :class:`SplitStart`: the split start (:mod:`jaxrecon.attack.split`): the method's own phases on
  the even problem, then the rows' signs in one solve;
* :class:`Given`: a start the caller gives (``x0``), rows put back on the sphere.

A population (``Method.population``) is K starts per seed advanced in rounds
(:mod:`jaxrecon.attack.population`); each member starts by the method's start.

Pursuit.

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
``theta`` rather than the training set: whether it pays is measured (``benchmarks/HISTORY.md``, "Starts, processes, compilation").

Cost: ``n (candidates + 2 refine_steps + 2 n)`` feature rows of products with ``V``, i.e. about
``candidates / 2 + refine_steps + n`` first-order steps' worth of passes over ``V``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

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
    """The rows :func:`start_for` ``(solver.method)`` starts from (before any candidate steps or the
    split start's stages): random rows or :func:`pursuit_start`."""
    kind = PursuitStart() if solver.method.start.kind == "pursuit" else RandomStart()
    return kind.rows(solver, key, tgt, dtype)


def _inf(dtype):
    return jnp.asarray(jnp.inf, dtype)


@dataclasses.dataclass(frozen=True)
class RandomStart:
    """Rows ``N(0, I)``, projected to the sphere when ``start.init="sphere"``
    (:meth:`~jaxrecon.attack.loop.Solver.fresh_x`)."""

    def rows(self, solver, key, tgt, dtype):
        return solver.fresh_x(key, tgt.fmap.input_dim, dtype)

    def init(self, solver, key, tgt, dtype):
        x0 = self.rows(solver, key, tgt, dtype)
        return x0, solver.phases[0].init(x0, dtype), _inf(dtype), 0

    def fresh(self, solver, key, tgt, x):
        return solver.fresh_x(key, x.shape[1], x.dtype)


@dataclasses.dataclass(frozen=True)
class PursuitStart(RandomStart):
    """Rows by greedy matching pursuit against ``theta`` (:func:`pursuit_start`); an escalating seed
    gets a new pursuit start from a new key."""

    def rows(self, solver, key, tgt, dtype):
        return pursuit_start(tgt, key, solver.n, solver.radius, dtype, jitter=solver.method.loss.jitter)

    def fresh(self, solver, key, tgt, x):
        return self.rows(solver, key, tgt, x.dtype)


@dataclasses.dataclass(frozen=True)
class BestOf:
    """The best of ``candidates`` starts of ``inner`` (vmapped over their keys) after ``steps``
    first-order steps each; the seed goes on from it with its optimiser state, the steps counted."""

    inner: Any
    candidates: int
    steps: int

    def init(self, solver, key, tgt, dtype):
        first = solver.phases[0]

        def candidate(k):
            x0 = self.inner.rows(solver, k, tgt, dtype)

            def body(_, carry):
                x, s = carry
                x_next, s_next, _, ok = first.step(tgt, x, s)
                return jnp.where(ok, x_next, x), s_next

            x, s = jax.lax.fori_loop(0, self.steps, body, (x0, first.init(x0, dtype)))
            return x, s, solver.loss_fn(tgt, x)

        xs, states, losses = jax.vmap(candidate)(jax.random.split(key, self.candidates))
        best = jnp.argmin(jnp.where(jnp.isfinite(losses), losses, jnp.inf))
        take = lambda tree: jax.tree_util.tree_map(lambda a: a[best], tree)
        return xs[best], take(states), losses[best].astype(dtype), self.steps

    def fresh(self, solver, key, tgt, x):
        return self.inner.fresh(solver, key, tgt, x)


@dataclasses.dataclass(frozen=True)
class SplitStart:
    """The split start run whole: the first stage (:func:`~jaxrecon.attack.loop.advance_split`,
    at most ``start.split.steps`` steps) on ``tgt.split``, then the signs. The driver runs the same
    pieces in chunks, with progress (:mod:`jaxrecon.attack.driver`). An escalating seed gets random
    rows: a split start inside a stall would compile the first stage into the main program, ignore
    the chunk's step bound and (under ``vmap``, where a stall's work runs every round) cost a whole
    sign solve per round."""

    def init(self, solver, key, tgt, dtype):
        from .loop import advance_split, init_split  # the loop's own phases, on the even problem
        from .signs import choose_signs

        state = advance_split(solver, tgt, init_split(solver, key, tgt), solver.method.start.split.steps)
        x0, _ = choose_signs(tgt.split, state.x_hat, solver.method.loss.jitter)
        x0 = solver.project(jnp.asarray(x0, dtype))
        return x0, solver.phases[0].init(x0, dtype), _inf(dtype), state.steps

    def fresh(self, solver, key, tgt, x):
        return RandomStart().fresh(solver, key, tgt, x)


@dataclasses.dataclass(frozen=True)
class Given:
    """A start the caller gives (rows put back on the sphere); ``steps``: steps already spent on it."""

    x0: Any
    steps: Any = 0

    def init(self, solver, key, tgt, dtype):
        x0 = solver.project(jnp.asarray(self.x0, dtype))
        return x0, solver.phases[0].init(x0, dtype), _inf(dtype), self.steps

    def fresh(self, solver, key, tgt, x):
        return start_for(solver.method).fresh(solver, key, tgt, x)


def start_for(method, degenerate: bool = False):
    """The start object of ``method`` (its ``start`` part); a degenerate problem starts from random
    rows (no step is taken)."""
    part = method.start
    if part.kind == "split" and not degenerate:
        return SplitStart()
    inner = PursuitStart() if part.kind == "pursuit" else RandomStart()
    if part.candidates > 1:
        return BestOf(inner, part.candidates, part.candidate_steps)
    return inner
