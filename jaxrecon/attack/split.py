"""The split start: rows up to sign from the even part of ``theta``, then their signs in one solve.

For an activation whose odd part is linear, ``sigma(z) - sigma(-z) = 2 k z`` (ReLU and GELU:
``k = 1/2``; the "relu-like" symmetry class of :mod:`jaxrecon.theory`), every feature splits as

    phi(x) = e(x) + k V x,        e(x) = (sigma(V x) + sigma(-V x)) / 2   (even in x),

so ``theta = sum_j alpha_j phi(x_j)`` has a part outside the column space of ``V`` that depends on
the training rows only up to sign::

    theta_e = P_perp(V) theta = sum_j alpha_j P_perp(V) e(x_j).

Stage 1 attacks ``theta_e`` with the even features ``P_perp(V) e(x)`` (:class:`EvenFeatures`): the
same method (phases and stall actions), on a problem in which ``x`` and ``-x`` are the same point,
so the sign-flip minima of ReLU features (rows at ``-x_j`` whose linear deficits cancel, the reason
``adam-lm`` stalls once ``n`` nears ``d``: ``benchmarks/RESULTS.md``, Scaling) do not exist there.
Stage 2 chooses the signs ``s`` of the recovered rows ``y_j`` at once: with the even coefficients
``alpha`` (the even fit) the linear part of ``theta`` gives ``d`` equations

    sum_j alpha_j s_j y_j = m,     m = ((V^T V)^{-1} V^T theta - (V^T V)^{-1} V^T E(y)^T alpha) / k,

solved as a box-constrained least-squares problem ``min |A s - m|_G^2`` over ``s in [-1, 1]^n``
(``G = V^T V``; accelerated projected gradient) and rounded. For ``n <= d`` the solution is the
sign vector itself; for ``d < n < 2d`` it is still unique with high probability for generic rows
(Mangasarian & Recht 2011, "Probability of unique integer solution to a system of linear
equations"); near ``n = 2d`` it is not, and :func:`lattice_signs` solves the integer problem by
LLL reduction (measured at ``n = 2d = 100``; beyond that untested). The
method then runs as usual on the full ``theta`` from the signed rows (its LM phase polishes them).

Costs: ``V^T V`` once per attack (``p d^2`` multiply-adds, ``d`` passes of ``n = 1`` rows); an even
first-order step (:meth:`EvenFeatures.residual_value_and_grad`) reads ``V`` three times with ``n``
rows and twice with one column, where a plain one reads it twice; its LM phase has closed-form
products (:meth:`EvenFeatures.residual_linearization`: two passes over row blocks of ``V``, each
reading ``V`` once, as for plain features).
The split needs ``V`` stored (a dense :class:`~jaxrecon.RandomFeatures`).

A prefix of the features (``Method.split_features``, :func:`split_rows`, :func:`prefix_target`).
The first ``p'`` features alone, ``theta[:p'] = sum_j alpha_j phi_{:p'}(x_j)``, carry the same
structure with the prefix ``V[:p']`` of ``V``, so stage 1 and the sign solve can run on them: the
zero is the same while ``p'`` stays well above ``d n`` (the law of the paper, for the prefix), and
each of the stage's passes reads ``p'/p`` of ``V``. Stage 2 runs on every feature. The prefix is a
copy (``p' d`` numbers held next to ``V`` while the attack runs).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..activations import activation_name, get_activation
from ..features.base import FeatureMapBase, Target, static
from ..features.rf_gauss_newton import unit_theta
from ..loss import ResidualLinearization, factor_kernel

#: Loss on the even part at which stage 1 ends and the signs are chosen (the full attack's LM
#: phase then polishes the rows to the method's own tolerance).
SPLIT_TOL = 1e-9
#: Iterations of the accelerated projected gradient of the sign problem (``n x d`` products each).
SIGN_ITERS = 2000
#: A sign vector solves the linear part when its residual is below this fraction of ``|b|``
#: (float32 rows that are right to ~1e-5 leave ~1e-6); above it, :func:`lattice_signs` runs.
SIGN_SOLVED = 1e-4
#: Relative size of the residual at the true signs that the lattice embedding allows for.
SIGN_NOISE = 1e-5
#: Step cap of the LLL reduction (its run time is about 0.15 ms per step at n = 100).
LLL_MAX_ITERS = 1_000_000
_HIGHEST = jax.lax.Precision.HIGHEST


def _vt(V, a):
    """``V^T a`` for ``a`` of shape ``(p,)`` or ``(p, k)``, written ``(a^T V)^T``: XLA on CPU copies
    the whole of ``V`` to form ``V^T`` times a vector, not ``a^T V`` (measured with
    ``memory_analysis``: a temporary the size of ``V``)."""
    return jnp.matmul(a.T, V, precision=_HIGHEST).T


#: Bytes of ``V`` per row block in the even features' ``J^T J`` products (a block is read from
#: memory once and used twice while it is in cache).
EVEN_BLOCK_BYTES = 4 * 2**20


class _EvenTerms(NamedTuple):
    E: jax.Array  # (n, p) even features before projection
    S: jax.Array  # (n, p) (sigma'(Z) - sigma'(-Z)) / 2
    B: jax.Array  # (n, d) E V
    GB: jax.Array  # (d, n) G^{-1} B^T
    fac: Any  # factor of A = F F^T
    c: jax.Array  # (n,) A^{-1} F t
    r: jax.Array  # (p,) the residual
    grad: jax.Array  # (n, d) J^T r


def _block_rows(V) -> int:
    """Rows of ``V`` per block: :data:`EVEN_BLOCK_BYTES` worth, at least one, at most ``p``."""
    p, d = V.shape
    return int(min(p, max(1, EVEN_BLOCK_BYTES // (d * V.dtype.itemsize))))


def _scan_rows(V, rows, fn, init, *arrays):
    """``fn(acc, V_b, *arrays_b) -> (acc, y_b)`` over blocks of ``rows`` rows of ``V`` (``arrays``
    sliced alike on their last axis, of length ``p``), in a ``lax.scan`` plus one shorter block for
    the remainder: ``(acc, y)`` with the ``y_b`` concatenated (``None`` when ``fn`` gives none)."""
    p = V.shape[0]
    count, rest = divmod(p, rows)

    def block(acc, start, size):
        take = lambda a, axis: jax.lax.dynamic_slice_in_dim(a, start, size, axis=axis)
        return fn(acc, take(V, 0), *(take(a, a.ndim - 1) for a in arrays))

    acc, ys = jax.lax.scan(lambda acc, i: block(acc, i * rows, rows), init, jnp.arange(count))
    parts = [] if ys is None else [ys.reshape(-1)]
    if rest:
        acc, y = block(acc, count * rows, rest)
        parts += [] if y is None else [y]
    return acc, (jnp.concatenate(parts) if parts else None)


def odd_slope(activation, surrogate_slope=None) -> float:
    """``k`` with ``sigma(z) - sigma(-z) = 2 k z`` for all ``z``, checked at a few points; a
    ``ValueError`` when the odd part of ``sigma`` is not linear (the split start does not apply)."""
    sigma = get_activation(activation, surrogate_slope)
    with jax.ensure_compile_time_eval():  # concrete numbers, also while a caller is being traced
        z = jnp.asarray([0.3, 1.0, 2.5, 4.0], jnp.float32)
        ks = np.asarray((sigma(z) - sigma(-z)) / (2 * z))
    k = float(ks[1])
    if not np.all(np.abs(ks - k) <= 1e-5 * max(abs(k), 1e-3)):
        raise ValueError(f"start: 'split' needs an activation whose odd part is linear (relu, gelu); "
                         f"{activation_name(activation)!r} is not")
    return k


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class EvenFeatures(FeatureMapBase):
    """The even features ``P_perp(V) e(x)`` of a dense random-features map (module docstring).

    ``E(x) = (sigma(x V^T) + sigma(-x V^T)) / 2`` and ``B(x) = E(x) V`` give every product without
    forming ``P_perp``: ``gram = E E^T - B G^{-1} B^T`` and ``project(x, t) = E t - B G^{-1} V^T t``
    (``G = V^T V``, held as its Cholesky factor ``chol``).
    """

    V: jax.Array
    chol: jax.Array
    activation: Any = static(default="relu")
    surrogate_slope: Any = static(default=None)
    odd: float = static(default=0.5)  # the odd slope k
    dense = True

    @property
    def p(self) -> int:
        return self.V.shape[0]

    @property
    def input_dim(self) -> int:
        return self.V.shape[1]

    def _mm(self, a, b):
        return jnp.matmul(a, b, precision=_HIGHEST)

    def raw(self, x):
        """``(E(x), B(x))``: the even features before projection and their products with ``V``."""
        sigma = get_activation(self.activation, self.surrogate_slope)
        Z = self._mm(jnp.asarray(x, self.V.dtype), self.V.T)
        E = (sigma(Z) + sigma(-Z)) / 2
        return E, self._mm(E, self.V)

    def ginv(self, b):
        """``(V^T V)^{-1} b``."""
        return jax.scipy.linalg.cho_solve((self.chol, True), b)

    def features(self, x):
        E, B = self.raw(x)
        return E - self._mm(self.ginv(B.T).T, self.V.T)

    def gram(self, x1, x2):
        (E1, B1), (E2, B2) = self.raw(x1), self.raw(x2)
        return self._mm(E1, E2.T) - self._mm(B1, self.ginv(B2.T))

    def project(self, x, theta):
        E, B = self.raw(x)
        return self._mm(E, theta) - self._mm(B, self.ginv(_vt(self.V, theta)))

    def adjoint(self, x, alpha):
        E, B = self.raw(x)
        return self._mm(E.T, alpha) - self._mm(self.V, self.ginv(self._mm(B.T, alpha)))

    def _even_terms(self, theta, x, jitter):
        """The pieces of the residual at ``x`` shared by :meth:`residual_value_and_grad` and
        :meth:`residual_linearization`, without forming ``F = P_perp(V) E``: two passes over ``V``
        with ``n`` or ``n + 1`` rows (``Z = x V^T``; ``[E; t^T] V``) and two with one column.

        The residual is ``r = t - E^T c + V G^{-1} B^T c``; as ``V^T r = V^T t`` (``F`` has no part
        in the range of ``V``), ``F r = E r - B G^{-1} V^T t`` needs no pass over ``V``, and
        ``F^T a = E^T a - V G^{-1} B^T a`` one. (``F r`` from ``E t``, ``E E^T c`` and ``B G^{-1}
        B^T c`` instead would save that pass but cancels badly near a zero.)"""
        sigma = get_activation(self.activation, self.surrogate_slope)
        mm, V = self._mm, self.V
        Z = mm(jnp.asarray(x, V.dtype), V.T)
        Fp, Sp = jax.jvp(sigma, (Z,), (jnp.ones_like(Z),))
        Fm, Sm = jax.jvp(sigma, (-Z,), (jnp.ones_like(Z),))
        E, S = (Fp + Fm) / 2, (Sp - Sm) / 2
        t = unit_theta(theta, V.dtype)
        n = E.shape[0]
        BT = mm(jnp.concatenate([E, t[None, :]]), V)  # rows: B = E V, and t^T V
        B, gt = BT[:n], self.ginv(BT[n])  # gt = G^{-1} V^T t
        GB = self.ginv(B.T)  # G^{-1} B^T, (d, n)
        fac = factor_kernel(mm(E, E.T) - mm(B, GB), jitter)
        c = fac.solve(mm(E, t) - mm(B, gt))
        r = t - mm(c, E) + mm(V, mm(GB, c))
        a = fac.solve(mm(E, r) - mm(B, gt))  # A^{-1} F r
        Fa = mm(a, E) - mm(V, mm(GB, a))
        grad = -mm(S * (c[:, None] * (r - Fa)[None, :] + a[:, None] * r[None, :]), V)
        return _EvenTerms(E, S, B, GB, fac, c, r, grad)

    def residual_value_and_grad(self, theta, x, jitter=None):
        """``(|r|^2, 2 J^T r)`` of the residual form (:func:`jaxrecon.loss.residual_value_and_grad`):
        the passes of :meth:`_even_terms` and one for the gradient, that of
        :mod:`jaxrecon.features.rf_gauss_newton` (``r`` and ``F^T a`` lie in the range of
        ``P_perp(V)``, so no other projection is needed)."""
        e = self._even_terms(theta, x, jitter)
        return jnp.sum(e.r * e.r), (2 * e.grad).astype(jnp.asarray(x).dtype)

    def residual_linearization(self, theta, x, jitter=None):
        """The closed-form Gauss-Newton pieces of :mod:`jaxrecon.features.rf_gauss_newton` with
        ``F = P_perp(V) E`` and ``S = (sigma'(Z) - sigma'(-Z)) / 2``, ``F`` never formed.

        A product ``J^T J u`` runs over row blocks of ``V`` (:data:`EVEN_BLOCK_BYTES` each) in two
        passes, each reading ``V`` once. The first forms ``w = (S * (u V^T))^T c`` and, from the
        same block, the sums ``V^T w``, ``E w`` and ``dF r``; then with ``q = G^{-1} V^T w``,
        ``F P_perp w = E w - B q``, ``z = A^{-1} F P_perp w`` and ``b = A^{-1} dF r``, the projected
        ``P_perp_F P_perp w = w - E^T z - V (q - G^{-1} B^T z)``; the second pass forms it per
        block and sums ``(S * (c (P_perp_F P_perp w)^T + b r^T)) V``. (Unblocked, the two
        one-column products ``V^T w`` and ``V q`` read ``V`` twice more.)"""
        mm, V = self._mm, self.V
        e = self._even_terms(theta, x, jitter)
        c, r, fac = e.c, e.r, e.fac
        rows = _block_rows(V)

        def gram_matvec(u):
            u = u.astype(V.dtype)

            def first(acc, Vb, Sb, Eb, rb):
                vtw, Ew, dFr = acc
                dF = Sb * mm(u, Vb.T)
                wb = mm(c, dF)
                return (vtw + mm(wb, Vb), Ew + mm(Eb, wb), dFr + mm(dF, rb)), wb

            n, d = u.shape
            zero = (jnp.zeros((d,), V.dtype), jnp.zeros((n,), V.dtype), jnp.zeros((n,), V.dtype))
            (vtw, Ew, dFr), w = _scan_rows(V, rows, first, zero, e.S, e.E, r)
            q = self.ginv(vtw)
            z = fac.solve(Ew - mm(e.B, q))
            b = fac.solve(dFr)
            q2 = q - mm(e.GB, z)

            def second(acc, Vb, Sb, Eb, rb, wb):
                pw = wb - mm(z, Eb) - mm(Vb, q2)
                return acc + mm(Sb * (c[:, None] * pw[None, :] + b[:, None] * rb[None, :]), Vb), None

            out, _ = _scan_rows(V, rows, second, jnp.zeros(u.shape, V.dtype), e.S, e.E, r, w)
            return out

        return ResidualLinearization(r, c, e.grad, gram_matvec)

    def gram_project(self, x, theta):
        return self.gram_project_raw(*self.raw(x), theta)

    def gram_project_raw(self, E, B, theta):
        """:meth:`gram_project` from ``(E, B) = raw(x)``."""
        A = self._mm(E, E.T) - self._mm(B, self.ginv(B.T))
        return A, self._mm(E, theta) - self._mm(B, self.ginv(_vt(self.V, theta)))


class SplitProblem(NamedTuple):
    """What the split start needs, prepared once per attack (:func:`split_problem`)."""

    even: Target  # EvenFeatures and theta_e = P_perp(V) theta
    m_theta: jax.Array  # (V^T V)^{-1} V^T theta, shape (d,)


def check_split(fmap) -> float:
    """The odd slope ``k`` of ``fmap``, or a ``ValueError`` saying why the split start does not apply
    (it needs a dense :class:`~jaxrecon.RandomFeatures` map with a relu-like activation)."""
    from ..features.random_features import RandomFeatures

    if not isinstance(fmap, RandomFeatures) or not fmap.dense:
        what = fmap.describe() if hasattr(fmap, "describe") else type(fmap).__name__
        raise ValueError("start: 'split' needs random features with V stored (a dense RandomFeatures map: "
                         f"no block_size, and a memory budget that stores V); got {what}")
    return odd_slope(fmap.activation, fmap.surrogate_slope)


def split_arrays(tgt: Target):
    """``(chol, theta_e, m_theta)`` of a prepared dense random-features target: the Cholesky
    factor of ``V^T V``, ``theta_e = P_perp(V) theta`` and ``(V^T V)^{-1} V^T theta``."""
    V = tgt.fmap.weights()
    chol = jnp.linalg.cholesky(jnp.matmul(V.T, V, precision=_HIGHEST))
    theta = tgt.theta.astype(V.dtype)
    m_theta = jax.scipy.linalg.cho_solve((chol, True), _vt(V, theta))
    theta_e = theta - jnp.matmul(V, m_theta, precision=_HIGHEST)
    return chol, theta_e, m_theta


def split_rows(p: int, d: int, n: int, features: float) -> int:
    """Features (rows of ``V``) the first stage uses: all ``p`` when ``features`` is 0, else
    ``ceil(features * d * n)``, at least ``2 d`` (so that ``V^T V`` of the prefix is well
    conditioned) and at most ``p``."""
    if not features:
        return p
    return int(min(p, max(math.ceil(features * d * n), 2 * d)))


def prefix_target(tgt: Target, rows: int) -> Target:
    """The prepared dense random-features target restricted to its first ``rows`` features: the map
    with ``V[:rows]`` (the map with ``p = rows`` and the same key, whose rows are the same numbers)
    and ``theta[:rows]``; batched targets (a leading axis) alike. ``theta[:rows]`` lies in the span
    of the prefix's features at the training rows, as ``theta`` does in theirs, so the first stage's
    zero is the same. ``rows = p`` returns ``tgt``."""
    fmap = tgt.fmap
    if rows >= fmap.p:
        return tgt
    V = fmap.weights()
    return Target(fmap.replace(p=rows, V=V[..., :rows, :]), tgt.theta[..., :rows], tgt.floor)


def split_problem(tgt: Target, arrays=None) -> SplitProblem:
    """The even target and the linear part of ``theta`` of a prepared dense random-features target
    (``arrays``: :func:`split_arrays`, when already computed). The even features hold the map's
    own ``V``: called outside ``jit`` on a prepared target, no copy of ``V`` is made (a
    :func:`prefix_target` holds a copy of its rows)."""
    fmap = tgt.fmap
    k = check_split(fmap)
    chol, theta_e, m_theta = split_arrays(tgt) if arrays is None else arrays
    even = EvenFeatures(fmap.weights(), chol, fmap.activation, fmap.surrogate_slope, k)
    return SplitProblem(Target(even, theta_e), m_theta)


def box_least_squares(A: jax.Array, b: jax.Array, iters: int = SIGN_ITERS) -> jax.Array:
    """``argmin |A s - b|^2`` over ``s in [-1, 1]^n`` by accelerated projected gradient (FISTA),
    from ``s = 0``; ``A`` is ``(m, n)``."""
    L = jnp.maximum(jnp.linalg.eigvalsh(A.T @ A)[-1], jnp.finfo(A.dtype).tiny)

    def body(_, carry):
        s, z, t = carry
        s_new = jnp.clip(z - (A.T @ (A @ z - b)) / L, -1.0, 1.0)
        t_new = (1 + jnp.sqrt(1 + 4 * t * t)) / 2
        return s_new, s_new + (t - 1) / t_new * (s_new - s), t_new

    s0 = jnp.zeros(A.shape[1], A.dtype)
    s, _, _ = jax.lax.fori_loop(0, iters, body, (s0, s0, jnp.asarray(1.0, A.dtype)))
    return s


def polish_signs(A: jax.Array, b: jax.Array, s: jax.Array) -> jax.Array:
    """Single sign flips of ``s in {-1, 1}^n`` while one lowers ``|A s - b|^2`` (the best flip
    each round, at most ``n`` rounds): the rounding of the relaxed solution can leave a few wrong
    signs where the box problem's solution is not unique (``n`` near ``2 d``)."""
    n = s.shape[0]

    col2 = jnp.sum(A * A, axis=0)

    def body(carry):
        s_, k, _ = carry
        res = A @ s_ - b
        g = -4 * s_ * (A.T @ res) + 4 * col2  # |res - 2 s_j a_j|^2 - |res|^2 for flipping j
        j = jnp.argmin(g)
        go = g[j] < -1e-6 * jnp.sum(jnp.square(res))
        return jnp.where(go, s_.at[j].multiply(-1), s_), k + 1, go

    s, _, _ = jax.lax.while_loop(lambda c: c[2] & (c[1] < n), body, (s, jnp.asarray(0), jnp.asarray(True)))
    return s


def lll_reduce(B: np.ndarray, delta: float = 0.99, max_iters: int = LLL_MAX_ITERS) -> np.ndarray:
    """The LLL reduction (Lenstra, Lenstra & Lovasz 1982) of the rows of ``B``, in floating point
    (Gram-Schmidt coefficients updated after each swap, rows re-orthogonalised once); stops after
    ``max_iters`` steps. NumPy on the host: the reduction is a sequential, data-dependent loop."""
    B = np.array(B, dtype=np.float64)
    m = B.shape[0]
    Bs, mu, bb = np.zeros_like(B), np.zeros((m, m)), np.zeros(m)

    def orthogonalize(k):
        scale = np.where(bb[:k] > 0, bb[:k], 1.0)
        c1 = (Bs[:k] @ B[k]) / scale
        v = B[k] - c1 @ Bs[:k]
        c2 = (Bs[:k] @ v) / scale
        Bs[k], mu[k, :k] = v - c2 @ Bs[:k], c1 + c2
        bb[k] = Bs[k] @ Bs[k]

    for k in range(m):
        orthogonalize(k)
    k, it = 1, 0
    while k < m and it < max_iters:
        it += 1
        for j in range(k - 1, -1, -1):  # size reduction
            q = np.round(mu[k, j])
            if q != 0:
                B[k] -= q * B[j]
                mu[k, :j] -= q * mu[j, :j]
                mu[k, j] -= q
        if bb[k] >= (delta - mu[k, k - 1] ** 2) * bb[k - 1]:  # Lovasz condition
            k += 1
            continue
        B[[k, k - 1]], mu[[k, k - 1]] = B[[k - 1, k]], mu[[k - 1, k]]
        orthogonalize(k - 1)
        orthogonalize(k)
        if k + 1 < m:
            mu[k + 1:, [k - 1, k]] = (B[k + 1:] @ Bs[[k - 1, k]].T) / bb[[k - 1, k]]
        k = max(k - 1, 1)
    return B


def lattice_signs(A: np.ndarray, b: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Signs ``s in {-1, 1}^n`` with ``A s = b`` by lattice reduction, when ``s`` (the polished
    rounding) leaves a residual above ``SIGN_SOLVED * |b|``; else ``s`` unchanged.

    The embedding of Lagarias & Odlyzko (1985) for subset sums: the rows ``(e_j, 0, K a_j)`` and
    ``(0, 1, -K b)`` span a lattice holding ``(s, 1, K (A s - b))``, of norm about ``sqrt(n + 1)``
    when ``K |A s - b|`` is small; with ``K = 1 / (SIGN_NOISE |b|)`` every other short vector has a
    large last part, so LLL finds the solution as a basis row. For ``n`` near ``2d`` the relaxation
    is not unique and this is what recovers the signs (n = 100, d = 50: 20 wrong after the
    polish, none after LLL, in about 15 s of NumPy)."""
    A, b, s = (np.asarray(a, np.float64) for a in (A, b, s))
    nb = np.linalg.norm(b)
    res = np.linalg.norm(A @ s - b)
    if res <= SIGN_SOLVED * nb or nb == 0:
        return s.astype(np.float32)
    d, n = A.shape
    K = 1.0 / (SIGN_NOISE * nb)
    basis = np.zeros((n + 1, n + 1 + d))
    basis[:n, :n], basis[:n, n + 1:] = np.eye(n), K * A.T
    basis[n, n], basis[n, n + 1:] = 1.0, -K * b
    best, best_res = s, res
    for row in lll_reduce(basis):
        t = row[n]
        if abs(abs(t) - 1) < 1e-6 and np.all(np.abs(np.abs(row[:n]) - 1) < 1e-6):
            cand = np.sign(row[:n] * t)
            r = np.linalg.norm(A @ cand - b)
            if r < best_res:
                best, best_res = cand, r
    return best.astype(np.float32)


def choose_signs(problem: SplitProblem, y: jax.Array, jitter=None, iters: int = SIGN_ITERS):
    """``(x, s)``: the rows ``y`` (right up to sign) with signs chosen from the linear part of
    ``theta`` (module docstring: the relaxed problem, rounded, then :func:`polish_signs`); ``s`` the
    relaxed signs in ``[-1, 1]`` (near ``+-1`` where the choice is clear). With ``k = 0`` (no odd
    part) the rows are returned as they are."""
    even = problem.even.fmap
    if even.odd == 0:
        return y, jnp.ones(y.shape[0], y.dtype)
    E, B = even.raw(y)
    A_even, v = even.gram_project_raw(E, B, problem.even.theta)
    alpha = factor_kernel(A_even, jitter).solve(v)
    m = (problem.m_theta - even.ginv(B.T @ alpha)) / even.odd
    A = y.T * alpha[None, :]  # (d, n): column j is alpha_j y_j
    W = even.chol.T  # |W u|^2 = u^T V^T V u: the residual's norm in feature space
    scale = jnp.maximum(jnp.linalg.norm(W @ A), jnp.finfo(y.dtype).tiny)
    A, b = (W @ A) / scale, (W @ m) / scale
    relaxed = box_least_squares(A, b, iters)
    s = polish_signs(A, b, jnp.where(relaxed < 0, -1.0, 1.0).astype(y.dtype))
    s = jax.pure_callback(lattice_signs, jax.ShapeDtypeStruct(s.shape, jnp.float32), A, b, s,
                          vmap_method="sequential").astype(y.dtype)
    return jnp.where((s < 0)[:, None], -y, y), relaxed
