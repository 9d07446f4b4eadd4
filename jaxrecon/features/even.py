"""The even features of the split start: ``P_perp(V) e(x)``, over a stored or a streamed ``V``.

For an activation whose odd part is linear, ``sigma(z) - sigma(-z) = 2 k z`` (:func:`odd_slope`;
ReLU and GELU: ``k = 1/2``), every random feature splits as ``phi(x) = e(x) + k V x`` with
``e(x) = (sigma(V x) + sigma(-V x)) / 2`` even in ``x``; :class:`EvenFeatures` is the feature map
``P_perp(V) e(x)`` on which the split start's first stage runs (:mod:`jaxrecon.attack.split`).

``V`` comes from one of two places:

* stored (``V`` set, a dense :class:`~jaxrecon.RandomFeatures` or a prefix copy of one): every
  product is a few matmuls with the whole ``V``; the LM product runs over row blocks of
  :data:`EVEN_BLOCK_BYTES` (:meth:`EvenFeatures.residual_linearization`);
* streamed (``V = None``, ``source`` a streamed :class:`~jaxrecon.RandomFeatures`): ``V`` is never
  materialised; every product is a ``lax.scan`` over the source's blocks of ``block_size`` rows,
  each regenerated from the key (``RandomFeatures.rows``: the same numbers as the stored ``V``),
  and over its devices when the source is sharded (one ``psum`` per pass):
  :mod:`jaxrecon.features.even_streamed`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..activations import activation_name, get_activation
from ..loss import ResidualLinearization, factor_kernel
from . import even_streamed as streamed
from .base import FeatureMapBase, static
from .rf_gauss_newton import unit_theta

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
    """The even features ``P_perp(V) e(x)`` of a random-features map (module docstring).

    ``E(x) = (sigma(x V^T) + sigma(-x V^T)) / 2`` and ``B(x) = E(x) V`` give every product without
    forming ``P_perp``: ``gram = E E^T - B G^{-1} B^T`` and ``project(x, t) = E t - B G^{-1} V^T t``
    (``G = V^T V``, held as its Cholesky factor ``chol``).

    ``V``: the stored rows (``None`` for a streamed map); ``source``: the streamed
    :class:`~jaxrecon.RandomFeatures` whose blocks give the rows when ``V`` is ``None`` (its ``p``
    rows, ``block_size`` at a time; see :mod:`jaxrecon.features.even_streamed` for what a pass holds).
    """

    V: Any
    chol: jax.Array
    activation: Any = static(default="relu")
    surrogate_slope: Any = static(default=None)
    odd: float = static(default=0.5)  # the odd slope k
    source: Any = None  # the streamed RandomFeatures map, when V is None

    @property
    def dense(self) -> bool:
        return self.V is not None

    @property
    def p(self) -> int:
        return self.V.shape[0] if self.dense else self.source.p

    @property
    def input_dim(self) -> int:
        return self.V.shape[1] if self.dense else self.source.d

    def _mm(self, a, b):
        return jnp.matmul(a, b, precision=_HIGHEST)

    def _vt(self, a):
        """``V^T a`` for ``a`` of shape ``(p,)`` (``(a^T V)^T``, :func:`_vt`; a pass when streamed)."""
        return _vt(self.V, a) if self.dense else streamed.vt(self, a)

    def raw(self, x):
        """``(E(x), B(x))``: the even features before projection (``n x p``, materialised) and their
        products with ``V``."""
        if not self.dense:
            return streamed.raw(self, x)
        sigma = get_activation(self.activation, self.surrogate_slope)
        Z = self._mm(jnp.asarray(x, self.V.dtype), self.V.T)
        E = (sigma(Z) + sigma(-Z)) / 2
        return E, self._mm(E, self.V)

    def ginv(self, b):
        """``(V^T V)^{-1} b``."""
        return jax.scipy.linalg.cho_solve((self.chol, True), b)

    def features(self, x):
        if not self.dense:
            return streamed.features(self, x)
        E, B = self.raw(x)
        return E - self._mm(self.ginv(B.T).T, self.V.T)

    def gram(self, x1, x2):
        if not self.dense:
            return streamed.gram(self, x1, x2)
        (E1, B1), (E2, B2) = self.raw(x1), self.raw(x2)
        return self._mm(E1, E2.T) - self._mm(B1, self.ginv(B2.T))

    def project(self, x, theta):
        if not self.dense:
            return streamed.project(self, x, theta)
        E, B = self.raw(x)
        return self._mm(E, theta) - self._mm(B, self.ginv(_vt(self.V, theta)))

    def adjoint(self, x, alpha):
        if not self.dense:
            return streamed.adjoint(self, x, alpha)
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
        if not self.dense:
            r, grad = streamed.residual_and_grad(self, theta, x, jitter)
            return jnp.sum(r * r), (2 * grad).astype(jnp.asarray(x).dtype)
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
        one-column products ``V^T w`` and ``V q`` read ``V`` twice more.) A streamed map runs the
        same passes over its own blocks (:func:`jaxrecon.features.even_streamed.linearization`)."""
        if not self.dense:
            return streamed.linearization(self, theta, x, jitter)
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
        return self.gram_project_b(x, theta)[:2]

    def gram_project_b(self, x, theta):
        """``(gram(x, x), project(x, theta), B(x))``: :meth:`gram_project` and ``B = E V`` (the
        sign solve's needs), one pass over a streamed ``V``."""
        if not self.dense:
            return streamed.gram_project_b(self, x, theta)
        E, B = self.raw(x)
        return (*self.gram_project_raw(E, B, theta), B)

    def gram_project_raw(self, E, B, theta):
        """:meth:`gram_project` from ``(E, B) = raw(x)``."""
        A = self._mm(E, E.T) - self._mm(B, self.ginv(B.T))
        return A, self._mm(E, theta) - self._mm(B, self.ginv(self._vt(theta)))


