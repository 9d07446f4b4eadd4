"""Closed-form Gauss-Newton pieces of the projector residual for random features (dense, streamed, sharded).

With ``Z = x V^T``, ``F = sigma(Z)``, ``S = sigma'(Z)`` (the map's derivative, surrogate
included), ``A = F F^T + shift``, ``c = A^{-1} F t`` and ``r = t - F^T c`` for
``t = theta / |theta|``, a perturbation ``u`` of ``x`` gives ``dF = S * (u V^T)`` and

    J u = -P_perp w - F^T A^{-1} (dF r),    w = dF^T c,
    J^T J u = (S * (c (P_perp w)^T + b r^T)) V,    b = A^{-1} (dF r),

since ``F P_perp = 0``; ``J^T r = -(S * (c (r - F^T a)^T + a r^T)) V`` with ``a = A^{-1} F r``
(of order the jitter's shift, kept for an exact gradient). The derivative of the jitter's shift
(``jitter * trace(A) / n``) is left out, a relative change of order ``jitter``.

Dense ``V``: two ``n x d x p`` matmuls per product. Streamed (and sharded) ``V``: the same sums
over row blocks of ``V`` (each device sums its blocks, one ``psum`` per pass). Set-up: one pass for
``A`` and ``F t``, one for ``r`` (stored, ``p`` numbers) and ``F r``, one for ``J^T r``. Each
product ``J^T J u``: two passes, the first for ``w`` (stored per block), ``F w`` and ``dF r``,
the second for ``(S * (c (w - F^T A^{-1} F w)^T + b r^T)) V``; against about five passes (and
the kernel's derivative) through autodiff.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..loss import ResidualLinearization, factor_kernel, normalized_theta


def unit_theta(theta, dtype):
    """``theta / |theta|`` in ``dtype``, after an exact power-of-two rescaling (``|t|^2`` cannot overflow)."""
    t = normalized_theta(theta, dtype)
    return t / jnp.linalg.norm(t)


def stored_linearization(F, S, V, t, mm, jitter=None) -> ResidualLinearization:
    """The closed form (module docstring) with all ``p`` features at hand: ``F`` and ``S`` (``n x p``),
    ``V`` (``p x d``), the unit ``t`` and the matmul ``mm``. (The split start's even features,
    projected on the complement of ``V``'s columns, have their own:
    :meth:`jaxrecon.features.even.EvenFeatures.residual_linearization`.)"""
    fac = factor_kernel(mm(F, F.T), jitter)
    c = fac.solve(mm(F, t))
    r = t - mm(c, F)
    a = fac.solve(mm(F, r))
    grad = -mm(S * (c[:, None] * (r - mm(a, F))[None, :] + a[:, None] * r[None, :]), V)

    def gram_matvec(u):
        dF = S * mm(u, V.T)
        w = mm(c, dF)
        pw = w - mm(fac.solve(mm(F, w)), F)
        b = fac.solve(mm(dF, r))
        return mm(S * (c[:, None] * pw[None, :] + b[:, None] * r[None, :]), V)

    return ResidualLinearization(r, c, grad, gram_matvec)


def dense_linearization(fmap, theta, x, jitter=None) -> ResidualLinearization:
    """The closed form (module docstring) with ``V`` stored: all ``p`` features at once."""
    V = fmap.weights()
    mm = fmap._matmul
    Z = mm(x, V.T)
    F, S = jax.jvp(fmap.sigma, (Z,), (jnp.ones_like(Z),))
    return stored_linearization(F, S, V, unit_theta(theta, fmap.feature_dtype), mm, jitter)


def _block(fm, b, x, u=None):
    """``(V_b, F_b, S_b, dF_b)`` of block ``b`` (``dF_b = S_b * (u V_b^T)``, ``None`` without ``u``);
    rows beyond ``p`` masked to zero. With ``u``, ``x`` and ``u`` share one matmul."""
    B, n = fm.block_size, x.shape[0]
    Vb = fm.rows(b * B, B)
    ZU = fm._matmul(x if u is None else jnp.concatenate([x, u]), Vb.T)
    Z = ZU[:n]
    F, S = jax.jvp(fm.sigma, (Z,), (jnp.ones_like(Z),))
    mask = ((b * B + jnp.arange(B)) < fm.p)[None, :]
    F, S = jnp.where(mask, F, 0), jnp.where(mask, S, 0)
    return Vb, F, S, (None if u is None else S * ZU[n:])


def _back_pass(fmap, x, c, left, beta, base_b, r_b):
    """``sum_b (S_b * (c (base_b - F_b^T left)^T + beta r_b^T)) V_b`` (shape ``(n, d)``)."""
    init = jnp.zeros(x.shape, fmap.feature_dtype)

    def contrib(fm, b, args, xb):
        x, c, left, beta = args
        base, rb = xb
        Vb, F, S, _ = _block(fm, b, x)
        alpha = base - fm._matmul(left, F)
        return fm._matmul(S * (c[:, None] * alpha[None, :] + beta[:, None] * rb[None, :]), Vb)

    return fmap._sum_blocks(contrib, init, (x, c, left, beta), (base_b, r_b))


def streamed_linearization(fmap, theta, x, jitter=None) -> ResidualLinearization:
    """The closed form (module docstring) summed over the blocks (and devices) of a streamed map."""
    t = unit_theta(theta, fmap.feature_dtype)
    A, v = fmap.gram_project(x, t)
    fac = factor_kernel(A, jitter)
    c = fac.solve(v)
    n = x.shape[0]
    zeros_n = jnp.zeros((n,), fmap.feature_dtype)

    def residual_block(fm, b, args, tb):  # r_b = t_b - F_b^T c, and F_b r_b
        x, c = args
        _, F, _, _ = _block(fm, b, x)
        rb = tb - fm._matmul(c, F)
        return fm._matmul(F, rb), rb

    Fr, r_b = fmap._scan_blocks(residual_block, zeros_n, (x, c), fmap._blocked(t))
    a = fac.solve(Fr)
    grad = -_back_pass(fmap, x, c, a, a, r_b, r_b)

    def forward_block(fm, b, args, rb):  # w_b = c^T dF_b, and (F_b w_b, dF_b r_b)
        x, u, c = args
        _, F, _, dF = _block(fm, b, x, u)
        wb = fm._matmul(c, dF)
        return (fm._matmul(F, wb), fm._matmul(dF, rb)), wb

    def gram_matvec(u):
        u = u.astype(fmap.feature_dtype)
        (Fw, dFr), w_b = fmap._scan_blocks(forward_block, (zeros_n, zeros_n), (x, u, c), r_b)
        return _back_pass(fmap, x, c, fac.solve(Fw), fac.solve(dFr), w_b, r_b)

    return ResidualLinearization(r_b.reshape(-1)[: fmap.p], c, grad, gram_matvec)
