"""Stall actions: what a seed does when its last phase ends without converging.

A method lists its actions in order; on a stall the first action that applies replaces ``x_hat``
and the method's first phase starts again (with a fresh state). Each action is a frozen dataclass
called as ``action(solver, tgt, x, key) -> (x_new, applies)`` on the prepared target.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from .. import _validate
from ..loss import factor_kernel
from .lm import full_precision, row_weights


def _project(x, radius):
    from ..data.synthetic import project_to_sphere

    return x if radius is None else project_to_sphere(x, radius)


def residual_of_rows(fmap, theta, x: jax.Array, keep: jax.Array, jitter=None):
    """``(r, c)``: ``r = P_perp theta`` for the span of the feature rows of the rows of ``x`` where
    ``keep``, and ``c`` the coefficients of those feature rows in theta's projection (0 elsewhere)."""
    A, v = fmap.gram_project(x, theta)
    keep = jnp.repeat(keep, A.shape[0] // x.shape[0])  # k feature rows per input (sample-major)
    both = keep[:, None] & keep[None, :]
    scale = jnp.trace(A) / A.shape[0]
    A = jnp.where(both, A, jnp.where(jnp.eye(A.shape[0], dtype=bool), scale, 0.0))
    c = jnp.where(keep, factor_kernel(A, jitter).solve(jnp.where(keep, v, 0.0)), 0.0)
    return theta.astype(x.dtype) - fmap.adjoint(x, c), c


def pursuit(fmap, r: jax.Array, key, d: int, dtype, radius, candidates: int) -> jax.Array:
    """Matching pursuit: the best of ``candidates`` random sphere points by
    ``(phi(z)^T r)^2 / |phi(z)|^2`` (for ``k``-output maps the score sums over the ``k`` rows)."""
    cands = _project(jax.random.normal(key, (candidates, d), dtype), radius)
    corr = fmap.project(cands, r).reshape(cands.shape[0], -1)
    norms = jax.vmap(lambda z: jnp.diagonal(fmap.gram(z[None], z[None])))(cands)  # |phi(z)|^2, no cross terms
    score = jnp.sum(corr * corr, axis=1) / jnp.maximum(jnp.sum(norms, axis=1), jnp.finfo(dtype).tiny)
    return cands[jnp.argmax(score)]


def redraw_weakest_row(tgt, x: jax.Array, key: jax.Array, radius, candidates: int = 256, jitter=None):
    """Replace the row of ``x`` that explains least of ``theta`` by a matching-pursuit pick.

    With ``c = (A + shift)^{-1} Phi_hat theta``, the row with the smallest ``|c_i|`` is redrawn by
    :func:`pursuit` against ``r = P_perp theta``, what the current rows leave unexplained. A stall
    is typically one or two rows stuck far from any training point; a correct row with a small
    ``c_i`` is re-found, since ``r`` points to it.
    """
    fmap, theta = full_precision(tgt)[:2]
    r, c = residual_of_rows(fmap, theta, x, jnp.ones(x.shape[0], bool), jitter)
    weight = row_weights(c, x.shape[0])
    return x.at[jnp.argmin(weight)].set(pursuit(fmap, r, key, x.shape[1], x.dtype, radius, candidates))


def repair_antipodal_pair(tgt, x: jax.Array, key: jax.Array, radius, pair_cos: float = 0.9,
                          candidates: int = 256, jitter=None):
    """Undo the sign-flip local minimum of ReLU features: ``(x_new, found)``.

    Since ``relu(z) = z/2 + |z|/2``, a row at ``-x_j`` has the right even part and the wrong linear
    part ``-V x_j / 2``; two rows ``z, -z`` span the linear feature ``V z``
    (``phi(z) - phi(-z) = V z``). So rows flipped to ``-x_j`` plus one antipodal pair along
    ``w = sum_flipped alpha_j x_j`` explain ``theta`` up to the two training points the pair
    displaced: a spurious minimum whose loss is the weight of those two points. Here: find the most
    antipodal pair of rows (cosine below ``-pair_cos``), regress its direction on the other rows,
    flip the rows it compensates (``|gamma_j| > 0.1 max |gamma|``), and redraw both rows of the pair
    by :func:`pursuit` on the residual of the others. ``found`` is False (and ``x`` unchanged) when
    no row pair is that antipodal.
    """
    fmap, theta = full_precision(tgt)[:2]
    n, d = x.shape
    u = x / jnp.maximum(jnp.linalg.norm(x, axis=1, keepdims=True), jnp.finfo(x.dtype).tiny)
    cos = jnp.where(jnp.eye(n, dtype=bool), jnp.inf, u @ u.T)
    flat = jnp.argmin(cos)
    a, b = flat // n, flat % n
    found = cos[a, b] < -pair_cos
    others = (jnp.arange(n) != a) & (jnp.arange(n) != b)
    direction = u[a] - u[b]
    Xo = jnp.where(others[:, None], x, 0.0)
    G = Xo @ Xo.T
    gamma = jnp.linalg.solve(G + 1e-6 * jnp.trace(G) / n * jnp.eye(n, dtype=x.dtype), Xo @ direction)
    gamma = jnp.where(others, jnp.abs(gamma), 0.0)
    flip = others & (gamma > 0.1 * jnp.max(gamma))
    x_new = jnp.where(flip[:, None], -x, x)
    ka, kb = jax.random.split(key)
    keep = others
    for row, k in ((a, ka), (b, kb)):  # a on the residual of the others, then b with a's new value
        r, _ = residual_of_rows(fmap, theta, x_new, keep, jitter)
        x_new = x_new.at[row].set(pursuit(fmap, r, k, d, x.dtype, radius, candidates))
        keep = keep.at[row].set(True)
    return jnp.where(found, x_new, x), found


@dataclasses.dataclass(frozen=True)
class PairRepair:
    """Undo a sign-flip minimum of ReLU features (:func:`repair_antipodal_pair`); applies only
    when two rows are antipodal (cosine below ``-pair_cos``)."""

    pair_cos: float = 0.9
    candidates: int = 256

    def validate(self):
        _validate.positive_int("reset_candidates", self.candidates)
        return self

    def __call__(self, solver, tgt, x, key):
        return repair_antipodal_pair(tgt, x, jax.random.fold_in(key, 1), solver.radius, self.pair_cos,
                                     self.candidates, solver.method.jitter)


@dataclasses.dataclass(frozen=True)
class RowRedraw:
    """Redraw the weakest row by matching pursuit (:func:`redraw_weakest_row`); always applies."""

    candidates: int = 256

    def validate(self):
        _validate.positive_int("reset_candidates", self.candidates)
        return self

    def __call__(self, solver, tgt, x, key):
        return redraw_weakest_row(tgt, x, key, solver.radius, self.candidates, solver.method.jitter), jnp.asarray(True)


@dataclasses.dataclass(frozen=True)
class Restart:
    """Start the seed afresh from a new random point; always applies."""

    def validate(self):
        return self

    def __call__(self, solver, tgt, x, key):
        return solver.fresh_x(key, x.shape[1], x.dtype), jnp.asarray(True)


STALL_ACTIONS = {"pair_repair": PairRepair, "row_redraw": RowRedraw, "restart": Restart}
