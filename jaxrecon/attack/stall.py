"""Stall actions: what a seed does when its last phase ends without converging.

Actions: :class:`PairRepair` (one antipodal pair), :class:`RowRepair` (every suspect row at once:
signs, pairs and weak rows), :class:`RowRedraw` (the weakest row), :class:`Restart`. A method lists
its actions in order; on a stall the first action that applies replaces ``x_hat``
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


def pursuit_score(fmap, z: jax.Array, r: jax.Array) -> jax.Array:
    """``(phi(z)^T r)^2 / |phi(z)|^2`` for one row ``z`` (summed over a ``k``-output map's rows).

    Evaluated on the rows ``[z, stop_gradient(z)]``: the gradient of a one-row product ``z V^T``
    makes XLA on CPU copy the whole of ``V`` (a temporary the size of ``V``, measured with
    ``memory_analysis``), the gradient of a two-row one does not."""
    zz = jnp.stack([z, jax.lax.stop_gradient(z)])
    corr = fmap.project(zz, r).reshape(2, -1)[0]
    norm2 = jnp.sum(jnp.diagonal(fmap.gram(zz, zz)).reshape(2, -1)[0])
    return jnp.sum(corr * corr) / jnp.maximum(norm2, jnp.finfo(z.dtype).tiny)


def refine_row(fmap, z: jax.Array, r: jax.Array, radius, steps: int, angle: float = 0.5) -> jax.Array:
    """``steps`` of projected gradient ascent of :func:`pursuit_score` from ``z``: each a move along
    the tangent gradient by ``angle * 0.6^k`` times the row norm, kept only if the score rises."""
    score = lambda z_: pursuit_score(fmap, z_, r)
    scale = jnp.linalg.norm(z) if radius is None else radius

    def body(k, carry):
        z_, s = carry
        g = jax.grad(score)(z_)
        g = g - jnp.dot(g, z_) / jnp.maximum(jnp.dot(z_, z_), jnp.finfo(z_.dtype).tiny) * z_
        step = angle * (0.6 ** k.astype(z_.dtype)) * scale / jnp.maximum(jnp.linalg.norm(g), jnp.finfo(z_.dtype).tiny)
        z_new = _project((z_ + step * g)[None], radius)[0]
        s_new = score(z_new)
        better = jnp.isfinite(s_new) & (s_new > s)
        return jnp.where(better, z_new, z_), jnp.where(better, s_new, s)

    z, _ = jax.lax.fori_loop(0, steps, body, (z, score(z)))
    return z


def fill_rows(fmap, theta, x: jax.Array, keep: jax.Array, key: jax.Array, radius, candidates: int,
              refine_steps: int, jitter=None) -> jax.Array:
    """Fill the rows of ``x`` outside ``keep``, in row order, each by :func:`pursuit` (refined by
    ``refine_steps`` of :func:`refine_row`) on the residual of the rows kept so far, then kept
    (deflation). Row ``i`` draws its candidates from ``fold_in(key, i)``; only the rows to fill pay
    for a pursuit (a select under ``vmap``)."""
    d = x.shape[1]

    def fill_row(i, x_, keep_):
        r, _ = residual_of_rows(fmap, theta, x_, keep_, jitter)
        z = pursuit(fmap, r, jax.random.fold_in(key, i), d, x_.dtype, radius, candidates)
        z = refine_row(fmap, z, r, radius, refine_steps) if refine_steps else z
        return x_.at[i].set(z.astype(x_.dtype))

    def body(i, carry):
        x_, keep_ = carry
        return jax.lax.cond(keep_[i], lambda: x_, lambda: fill_row(i, x_, keep_)), keep_.at[i].set(True)

    x, _ = jax.lax.fori_loop(0, x.shape[0], body, (x, keep))
    return x


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
                                     self.candidates, solver.method.loss.jitter)


@dataclasses.dataclass(frozen=True)
class RowRedraw:
    """Redraw the weakest row by matching pursuit (:func:`redraw_weakest_row`); always applies."""

    candidates: int = 256

    def validate(self):
        _validate.positive_int("reset_candidates", self.candidates)
        return self

    def __call__(self, solver, tgt, x, key):
        return redraw_weakest_row(tgt, x, key, solver.radius, self.candidates, solver.method.loss.jitter), jnp.asarray(True)


@dataclasses.dataclass(frozen=True)
class Restart:
    """Start the seed afresh from a new random point; always applies."""

    def validate(self):
        return self

    def __call__(self, solver, tgt, x, key):
        return solver.fresh_x(key, x.shape[1], x.dtype), jnp.asarray(True)


@dataclasses.dataclass(frozen=True)
class RowRepair:
    """Repair every suspect row at once (:func:`repair_rows`: signs by :func:`sign_search`,
    antipodal pairs and rows that explain little redrawn with deflation); applies when it finds something."""

    pair_cos: float = 0.9
    useless: float = 1.0
    candidates: int = 1024
    refine_steps: int = 16

    def validate(self):
        _validate.positive_int("reset_candidates", self.candidates)
        if self.refine_steps != 0:
            _validate.positive_int("refine_steps", self.refine_steps)
        _validate.positive_float("useless", self.useless, allow_zero=True)
        return self

    def __call__(self, solver, tgt, x, key):
        return repair_rows(tgt, x, jax.random.fold_in(key, 2), solver.radius, self.pair_cos, self.useless,
                           self.candidates, self.refine_steps, solver.method.loss.jitter)


STALL_ACTIONS = {"pair_repair": PairRepair, "row_repair": RowRepair, "row_redraw": RowRedraw, "restart": Restart}


def sign_search(fmap, theta, x: jax.Array, keep: jax.Array, max_flips: int, jitter=None):
    """Greedy sign choice of the kept rows: ``(x_new, flipped)``.

    The kernel of the ``2n`` rows ``[x; -x]`` is formed once (one pass over the features); each
    round evaluates, for every kept row, the loss of the kept rows with that row's sign changed
    (``n`` solves of ``n x n`` kernels) and flips the best row while it lowers the loss by more
    than 1e-3 relatively and more than the kernel form's rounding, at most ``max_flips`` times.
    For ReLU features ``phi(-z) = phi(z) - V z``, so a row at ``-x_j`` lacks a linear feature; with
    the rows that compensate such deficits (an antipodal pair) left out of ``keep``, a wrongly
    signed row shows as a loss its flip removes.
    """
    n = x.shape[0]
    K, v = fmap.gram_project(jnp.concatenate([x, -x]), theta.astype(x.dtype))
    k = K.shape[0] // (2 * n)
    keep_f = jnp.repeat(keep, k)
    t2 = jnp.sum(jnp.square(theta.astype(x.dtype)))
    scale = jnp.trace(K) / K.shape[0]
    floor = 100 * jnp.finfo(x.dtype).eps * t2  # kernel-form losses closer than this are rounding

    def loss_of(s):
        fr = ((jnp.where(s, n, 0) + jnp.arange(n))[:, None] * k + jnp.arange(k)).reshape(-1)
        A = K[fr][:, fr]
        A = jnp.where(keep_f[:, None] & keep_f[None, :], A, jnp.where(jnp.eye(A.shape[0], dtype=bool), scale, 0.0))
        w = factor_kernel(A, jitter).half_solve(jnp.where(keep_f, v[fr], 0.0))
        return t2 - jnp.sum(w * w)

    def body(carry):
        s, cur, flips, _ = carry
        cand = jax.vmap(lambda i: loss_of(s.at[i].set(~s[i])))(jnp.arange(n))
        cand = jnp.where(keep & jnp.isfinite(cand), cand, jnp.inf)
        best = jnp.argmin(cand)
        go = cand[best] < cur * (1 - 1e-3) - floor
        return jnp.where(go, s.at[best].set(~s[best]), s), jnp.where(go, cand[best], cur), flips + go, go

    s0 = jnp.zeros(n, bool)
    s, _, _, _ = jax.lax.while_loop(lambda c: c[3] & (c[2] < max_flips), body,
                                    (s0, loss_of(s0), jnp.asarray(0, jnp.int32), jnp.asarray(True)))
    return jnp.where(s[:, None], -x, x), s


def drop_costs(fmap, theta, x: jax.Array, jitter=None) -> jax.Array:
    """``(loss, cost)``: the loss of the rows ``x`` and, per row, how much it rises when that row
    is left out (``c_B^T [(A^{-1})_{BB}]^{-1} c_B / |theta|^2`` over the row's ``k`` feature rows)."""
    n = x.shape[0]
    A, v = fmap.gram_project(x, theta.astype(x.dtype))
    f = factor_kernel(A, jitter)
    c = f.solve(v)
    k = A.shape[0] // n
    Ainv = f.solve(jnp.eye(A.shape[0], dtype=A.dtype))
    blocks = jax.vmap(lambda i: jax.lax.dynamic_slice(Ainv, (i * k, i * k), (k, k)))(jnp.arange(n))
    cb = c.reshape(n, k)
    t2 = jnp.sum(jnp.square(theta.astype(x.dtype)))
    cost = jax.vmap(lambda b, ci: ci @ jnp.linalg.solve(b, ci))(blocks, cb) / t2
    return 1.0 - jnp.sum(v * c) / t2, cost


def suspect_rows(x: jax.Array, loss, cost: jax.Array, pair_cos: float, useless: float) -> jax.Array:
    """Rows to redraw: members of an antipodal pair (cosine below ``-pair_cos`` with another row)
    and rows that explain less of ``theta`` than ``useless`` times the loss and than 5 % of the
    median row (``cost`` from :func:`drop_costs`): a right row, even of small weight, explains its
    own training point, far more than the loss near a zero; a row stuck away from every training
    point explains little."""
    n = x.shape[0]
    u = x / jnp.maximum(jnp.linalg.norm(x, axis=1, keepdims=True), jnp.finfo(x.dtype).tiny)
    cos = jnp.where(jnp.eye(n, dtype=bool), 0.0, u @ u.T)
    small = (cost < useless * loss) & (cost < 0.05 * jnp.median(cost))
    return jnp.any(cos < -pair_cos, axis=1) | small


def repair_rows(tgt, x: jax.Array, key: jax.Array, radius, pair_cos: float = 0.9, useless: float = 1.0,
                candidates: int = 256, refine_steps: int = 8, jitter=None):
    """Repair every suspect row at once: ``(x_new, found)``.

    The suspects (:func:`suspect_rows`: antipodal pairs, rows that explain little) are left out, the
    other rows' signs are chosen by :func:`sign_search`, and the suspects are redrawn one after
    another by :func:`fill_rows` (pursuit on the residual of the rows kept so far, each then kept).
    ``found`` is False (and ``x`` unchanged) when there is no suspect and no sign to change.
    """
    fmap, theta = full_precision(tgt)[:2]
    n = x.shape[0]
    loss, cost = drop_costs(fmap, theta, x, jitter)
    bad = suspect_rows(x, loss, cost, pair_cos, useless)
    x_new, flipped = sign_search(fmap, theta, x, ~bad, n, jitter)
    x_new = fill_rows(fmap, theta, x_new, ~bad, key, radius, candidates, refine_steps, jitter)
    found = jnp.any(bad) | jnp.any(flipped)
    return jnp.where(found, x_new, x), found
