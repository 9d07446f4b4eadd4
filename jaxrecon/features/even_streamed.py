"""The even features ``P_perp(V) e(x)`` over a streamed ``V``: every product as passes over blocks.

The products of :class:`~jaxrecon.features.even.EvenFeatures` (same formulas, same names) for a map
whose ``V`` is not stored: ``ev.source`` is a streamed :class:`~jaxrecon.RandomFeatures`, and each
pass is a ``lax.scan`` over its blocks of ``B = block_size`` rows (``RandomFeatures._sum_blocks`` /
``_scan_blocks``), each block regenerated from the key (``RandomFeatures.rows``: the numbers of the
stored ``V``) and its rows beyond ``p`` zeroed; a sharded source splits the blocks over its
devices and sums each pass with one ``psum``. Only the sums' order differs from the stored path.

Memory: one block of ``V`` (with the generator's block-sized buffers) and its ``n x B`` even
features ``E`` and ``S`` (never the ``n x p`` arrays the stored path keeps: each pass recomputes
its block's pre-activations ``x V_b^T``), the ``n x d`` array ``B = E V``, the ``n x n`` kernel,
and ``p``-vectors held between passes (the residual ``r``; ``w`` in an LM product):
``O(n B + B d + n^2 + n d + p)`` per evaluation, measured within 10 % of the plain streamed map's
step and LM product (``tests/test_split_streamed.py``). :func:`raw` and :func:`features` return
``n x p`` arrays (for tests at small sizes; the attack and the sign solve do not call them).

Passes over ``V`` (each a regeneration of every block): ``gram``, ``project``, ``gram_project``
and ``raw`` one; ``adjoint`` and ``features`` two; the residual and its gradient three
(:func:`residual_and_grad`: the kernel, then ``r`` and ``E r``, then ``J^T r``); an LM product
``J^T J u`` two (:func:`linearization`); the split arrays two (``V^T V`` and ``V^T theta``, then
``theta_e``). The stored path reads ``V`` as often with ``n`` rows, and besides in one-column
products that a pass here does on the block at hand.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ..activations import get_activation
from ..loss import ResidualLinearization, factor_kernel
from .rf_gauss_newton import unit_theta

_HIGHEST = jax.lax.Precision.HIGHEST


def _mm(a, b):
    return jnp.matmul(a, b, precision=_HIGHEST)


def block_rows(fm, b):
    """``(V_b, mask)``: the rows of block ``b`` of the streamed map ``fm`` (``(B, d)``, rows at or
    beyond ``p`` set to zero) and which of them are real rows."""
    B = fm.block_size
    mask = (b * B + jnp.arange(B)) < fm.p
    return jnp.where(mask[:, None], fm.rows(b * B, B), 0), mask


def _block(sigma, fm, b, x, u=None, slope=False):
    """``(V_b, E_b, S_b, dF_b)`` of block ``b``: the even features ``E_b`` (``(n, B)``), with
    ``slope`` their odd derivative ``S_b = (sigma'(Z) - sigma'(-Z)) / 2`` (else ``None``), with ``u``
    ``dF_b = S_b * (u V_b^T)`` (``x`` and ``u`` in one matmul); zero beyond ``p``."""
    Vb, mask = block_rows(fm, b)
    n = x.shape[0]
    ZU = _mm(x if u is None else jnp.concatenate([x, u]), Vb.T)
    Z = ZU[:n]
    if slope or u is not None:
        Fp, Sp = jax.jvp(sigma, (Z,), (jnp.ones_like(Z),))
        Fm, Sm = jax.jvp(sigma, (-Z,), (jnp.ones_like(Z),))
        E, S = (Fp + Fm) / 2, jnp.where(mask[None, :], (Sp - Sm) / 2, 0)
    else:
        E, S = (sigma(Z) + sigma(-Z)) / 2, None
    E = jnp.where(mask[None, :], E, 0)
    return Vb, E, S, (None if u is None else S * ZU[n:])


def _sigma(ev):
    return get_activation(ev.activation, ev.surrogate_slope)


def _x(ev, x):
    return jnp.asarray(x, ev.source.feature_dtype)


def _zeros(*shape, ev):
    return jnp.zeros(shape, ev.source.feature_dtype)


def _unblock(ev, y):
    """A per-block output ``(n_blocks, B)`` as the length-``p`` vector."""
    return y.reshape(-1)[: ev.p]


def vt(ev, a):
    """``V^T a`` for ``a`` of shape ``(p,)``: one pass."""
    fm = ev.source
    return fm._sum_blocks(lambda fm, b, _, ab: _mm(ab, block_rows(fm, b)[0]), _zeros(fm.d, ev=ev), None,
                          fm._blocked(jnp.asarray(a, fm.feature_dtype)))


def gram_and_vt(fm, theta):
    """``(V^T V, V^T theta)`` of the streamed map ``fm``: one pass."""

    def contrib(fm, b, _, tb):
        Vb, _ = block_rows(fm, b)
        return _mm(Vb.T, Vb), _mm(tb, Vb)

    init = (jnp.zeros((fm.d, fm.d), fm.feature_dtype), jnp.zeros((fm.d,), fm.feature_dtype))
    return fm._sum_blocks(contrib, init, None, fm._blocked(theta))


def minus_range(fm, theta, m):
    """``theta - V m`` (length ``p``): one pass."""

    def contrib(fm, b, m, tb):
        return jnp.zeros((), fm.feature_dtype), tb - _mm(block_rows(fm, b)[0], m)

    _, out = fm._scan_blocks(contrib, jnp.zeros((), fm.feature_dtype), m, fm._blocked(theta))
    return out.reshape(-1)[: fm.p]


def _sum_B(ev, x):
    """``B = E V`` (``(n, d)``): one pass."""
    sigma, fm = _sigma(ev), ev.source

    def contrib(fm, b, x, _):
        Vb, E, _, _ = _block(sigma, fm, b, x)
        return _mm(E, Vb)

    return fm._sum_blocks(contrib, _zeros(x.shape[0], fm.d, ev=ev), x)


def _per_block(ev, x, q, row_fn, extra=None):
    """``stack_b row_fn(E_b, V_b q, extra)`` as ``(..., p)``, the blocks' outputs joined on the last axis."""
    sigma, fm = _sigma(ev), ev.source

    def contrib(fm, b, args, _):
        x, q, extra = args
        Vb, E, _, _ = _block(sigma, fm, b, x)
        return jnp.zeros((), fm.feature_dtype), row_fn(E, _mm(Vb, q), extra)

    _, ys = fm._scan_blocks(contrib, jnp.zeros((), fm.feature_dtype), (x, q, extra), None)
    return jnp.moveaxis(ys, 0, -2).reshape(*ys.shape[1:-1], -1)[..., : ev.p]


def raw(ev, x):
    """``(E(x), B(x))``, ``E`` materialised (``n x p``): one pass."""
    sigma, fm, x = _sigma(ev), ev.source, _x(ev, x)

    def contrib(fm, b, x, _):
        Vb, E, _, _ = _block(sigma, fm, b, x)
        return _mm(E, Vb), E

    B, Es = fm._scan_blocks(contrib, _zeros(x.shape[0], fm.d, ev=ev), x, None)
    return jnp.moveaxis(Es, 0, 1).reshape(x.shape[0], -1)[:, : ev.p], B


def features(ev, x):
    """``E - (G^{-1} B^T)^T V^T`` (``n x p``, materialised): two passes."""
    x = _x(ev, x)
    return _per_block(ev, x, ev.ginv(_sum_B(ev, x).T), lambda E, Vq, _: E - Vq.T)


def adjoint(ev, x, alpha):
    """``E^T alpha - V G^{-1} B^T alpha``: two passes."""
    x = _x(ev, x)
    alpha = jnp.asarray(alpha, x.dtype)
    q = ev.ginv(_mm(_sum_B(ev, x).T, alpha))
    return _per_block(ev, x, q, lambda E, Vq, alpha: _mm(alpha, E) - Vq, alpha)


def gram(ev, x1, x2):
    """``E1 E2^T - B1 G^{-1} B2^T``: one pass."""
    sigma, fm = _sigma(ev), ev.source
    x1, x2 = _x(ev, x1), _x(ev, x2)

    def contrib(fm, b, xs, _):
        Vb, E1, _, _ = _block(sigma, fm, b, xs[0])
        _, E2, _, _ = _block(sigma, fm, b, xs[1])
        return _mm(E1, E2.T), _mm(E1, Vb), _mm(E2, Vb)

    n1, n2, d = x1.shape[0], x2.shape[0], fm.d
    K, B1, B2 = fm._sum_blocks(contrib, (_zeros(n1, n2, ev=ev), _zeros(n1, d, ev=ev), _zeros(n2, d, ev=ev)),
                               (x1, x2))
    return K - _mm(B1, ev.ginv(B2.T))


def _kernel_pass(ev, x, theta):
    """``(E E^T, E t, B, V^T t)`` for the blocked ``theta``: one pass."""
    sigma, fm = _sigma(ev), ev.source

    def contrib(fm, b, x, tb):
        Vb, E, _, _ = _block(sigma, fm, b, x)
        return _mm(E, E.T), _mm(E, tb), _mm(E, Vb), _mm(tb, Vb)

    n, d = x.shape[0], fm.d
    init = (_zeros(n, n, ev=ev), _zeros(n, ev=ev), _zeros(n, d, ev=ev), _zeros(d, ev=ev))
    return fm._sum_blocks(contrib, init, x, fm._blocked(jnp.asarray(theta, fm.feature_dtype)))


def project(ev, x, theta):
    """``E t - B G^{-1} V^T t``: one pass."""
    _, Et, B, Vt = _kernel_pass(ev, _x(ev, x), theta)
    return Et - _mm(B, ev.ginv(Vt))


def gram_project_b(ev, x, theta):
    """``(gram(x, x), project(x, theta), B)``: one pass."""
    EE, Et, B, Vt = _kernel_pass(ev, _x(ev, x), theta)
    return EE - _mm(B, ev.ginv(B.T)), Et - _mm(B, ev.ginv(Vt)), B


class _Terms(NamedTuple):
    B: jax.Array  # (n, d) E V
    GB: jax.Array  # (d, n) G^{-1} B^T
    fac: Any  # factor of A = F F^T
    c: jax.Array  # (n,) A^{-1} F t
    r: jax.Array  # (n_blocks, B) the residual, per block
    grad: jax.Array  # (n, d) J^T r


def _terms(ev, theta, x, jitter) -> _Terms:
    """The residual and its gradient (``EvenFeatures._even_terms``) in three passes: the kernel
    (``E E^T``, ``[E; t^T] V``, ``E t``); ``r_b = t_b - c E_b + V_b G^{-1} B^T c`` (kept) and ``E r``;
    ``J^T r = -sum_b (S_b * (c (r_b - F_b^T a)^T + a r_b^T)) V_b`` with ``a = A^{-1} F r``."""
    sigma, fm, x = _sigma(ev), ev.source, _x(ev, x)
    t = unit_theta(theta, fm.feature_dtype)
    EE, Et, B, Vt = _kernel_pass(ev, x, t)
    gt, GB = ev.ginv(Vt), ev.ginv(B.T)
    fac = factor_kernel(EE - _mm(B, GB), jitter)
    c = fac.solve(Et - _mm(B, gt))

    def residual(fm, b, args, tb):
        x, c, GBc = args
        Vb, E, _, _ = _block(sigma, fm, b, x)
        rb = tb - _mm(c, E) + _mm(Vb, GBc)
        return _mm(E, rb), rb

    Er, r = fm._scan_blocks(residual, _zeros(x.shape[0], ev=ev), (x, c, _mm(GB, c)), fm._blocked(t))
    a = fac.solve(Er - _mm(B, gt))

    def gradient(fm, b, args, rb):
        x, c, a, GBa = args
        Vb, E, S, _ = _block(sigma, fm, b, x, slope=True)
        Fa = _mm(a, E) - _mm(Vb, GBa)
        return -_mm(S * (c[:, None] * (rb - Fa)[None, :] + a[:, None] * rb[None, :]), Vb)

    grad = fm._sum_blocks(gradient, _zeros(*x.shape, ev=ev), (x, c, a, _mm(GB, a)), r)
    return _Terms(B, GB, fac, c, r, grad)


def residual_and_grad(ev, theta, x, jitter=None):
    """``(r, J^T r)``: three passes (:func:`_terms`); ``r`` blocked (zero beyond ``p``)."""
    e = _terms(ev, theta, x, jitter)
    return e.r, e.grad


def linearization(ev, theta, x, jitter=None) -> ResidualLinearization:
    """``EvenFeatures.residual_linearization`` over the blocks: the set-up of :func:`_terms` and,
    per product ``J^T J u``, the stored path's two passes, each block's ``E_b``, ``S_b`` recomputed
    from ``[x; u] V_b^T`` and ``w`` kept per block between them."""
    sigma, fm, x = _sigma(ev), ev.source, _x(ev, x)
    e = _terms(ev, theta, x, jitter)
    n, d = x.shape

    def first(fm, b, args, rb):
        x, u, c = args
        Vb, E, _, dF = _block(sigma, fm, b, x, u)
        wb = _mm(c, dF)
        return (_mm(wb, Vb), _mm(E, wb), _mm(dF, rb)), wb

    def second(fm, b, args, xb):
        x, c, z, q2, bb = args
        wb, rb = xb
        Vb, E, S, _ = _block(sigma, fm, b, x, slope=True)
        pw = wb - _mm(z, E) - _mm(Vb, q2)
        return _mm(S * (c[:, None] * pw[None, :] + bb[:, None] * rb[None, :]), Vb)

    def gram_matvec(u):
        u = u.astype(fm.feature_dtype)
        init = (_zeros(d, ev=ev), _zeros(n, ev=ev), _zeros(n, ev=ev))
        (vtw, Ew, dFr), w = fm._scan_blocks(first, init, (x, u, e.c), e.r)
        q = ev.ginv(vtw)
        z = e.fac.solve(Ew - _mm(e.B, q))
        bb = e.fac.solve(dFr)
        return fm._sum_blocks(second, _zeros(n, d, ev=ev), (x, e.c, z, q - _mm(e.GB, z), bb), (w, e.r))

    return ResidualLinearization(_unblock(ev, e.r), e.c, e.grad, gram_matvec)
