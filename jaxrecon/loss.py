"""Kernel solves, the projector loss and span residuals.

For candidate inputs ``x_hat`` (``n x d``) with features ``Phi_hat = Phi(x_hat)`` (``m x p``), the
projector loss of the paper (Eq. 6) is

    L(x_hat) = || P_perp theta ||^2 / || theta ||^2 = 1 - v^T A^{-1} v / ||theta||^2,

with the ``m x m`` kernel ``A = Phi_hat Phi_hat^T`` and ``v = Phi_hat theta``. Everything is a
kernel quantity, so features never exist as a whole ``m x p`` matrix when the map streams.

Numerics. ``A`` is factored once by Cholesky after adding a *relative* jitter

    A + jitter * (trace(A) / m) * I,

the scale-free regulariser neural-tangents uses for NTK solves. The default jitter is
:func:`default_jitter` (``1e-8`` in float32, ``1e-13`` in float64). The kernel form of the loss
is biased by about ``jitter * trace(A) / (m * lambda_min(A))`` (measured ``1.2e-7`` at ``1e-7``
for d=100, n=20, p=10dn in float32, above the published stopping tolerance ``1e-7``), so the
float32 jitter sits at rounding level; the residual form's bias is second order in the jitter.
A kernel that still fails to factor gives a non-finite loss, which the attack reports.

Two forms of the loss are provided:

* ``form="kernel"`` (default, one pass over the features): ``1 - |L^{-1} v|^2 / |theta|^2``. It is
  what the published attack minimises; in float32 its cancellation limits resolution to ~1e-6.
* ``form="residual"``: ``|theta - Phi_hat^T c|^2 / |theta|^2`` with ``c = A^{-1} v``, computed from
  the ``p``-dimensional residual. It needs a second pass (``adjoint``) but is accurate down to
  ~1e-12 in float32, which the exact-reconstruction methods need.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from . import _validate

LOSS_FORMS = ("kernel", "residual")


def default_jitter(dtype) -> float:
    """Relative jitter added to kernels before Cholesky, by dtype."""
    return 1e-13 if jnp.dtype(dtype) == jnp.float64 else 1e-8


class KernelFactor(NamedTuple):
    """Cholesky factor ``L`` of ``A + jitter * trace(A)/m * I`` (lower triangular, ``m x m``)."""

    chol: jax.Array
    shift: jax.Array  # the absolute diagonal shift that was added

    def solve(self, b: jax.Array) -> jax.Array:
        """``(A + shift I)^{-1} b`` for ``b`` of shape ``(m,)`` or ``(m, k)``."""
        return jax.scipy.linalg.cho_solve((self.chol, True), b)

    def half_solve(self, b: jax.Array) -> jax.Array:
        """``L^{-1} b``, so that ``|L^{-1} b|^2 = b^T (A + shift I)^{-1} b``."""
        return jax.scipy.linalg.solve_triangular(self.chol, b, lower=True)


def factor_kernel(A: jax.Array, jitter: float | None = None) -> KernelFactor:
    """Factor a PSD kernel once (prepare once, apply many): Cholesky with relative jitter."""
    m = A.shape[0]
    jitter = default_jitter(A.dtype) if jitter is None else jitter
    shift = jitter * jnp.trace(A) / m
    chol = jnp.linalg.cholesky(A + shift * jnp.eye(m, dtype=A.dtype))
    return KernelFactor(chol, shift)


def _check(fmap, theta, x_hat):
    _validate.matrix("x_hat", x_hat, width=fmap.input_dim)
    _validate.vector("theta", theta, fmap.p)


def loss_from_kernel(A, v, theta_sqnorm, jitter=None):
    """``1 - v^T (A + shift)^{-1} v / |theta|^2`` from precomputed kernel quantities."""
    w = factor_kernel(A, jitter).half_solve(v)
    return 1.0 - jnp.sum(w * w) / theta_sqnorm


def _residual_and_coef(fmap, theta, x_hat, jitter=None):
    """``(P_perp theta / |theta|, (A + shift)^{-1} Phi_hat theta / |theta|)`` for a prepared map."""
    A, v = fmap.gram_project(x_hat, theta)
    c = factor_kernel(A, jitter).solve(v)
    r = theta.astype(A.dtype) - fmap.adjoint(x_hat, c)
    norm = jnp.linalg.norm(theta).astype(A.dtype)
    return r / norm, c / norm


def projector_residual(fmap, theta, x_hat, jitter=None) -> jax.Array:
    """``r = P_perp theta / |theta|`` (shape ``(p,)``): the residual whose square norm is the loss."""
    _check(fmap, theta, x_hat)
    return _residual_and_coef(fmap.prepare(), theta, x_hat, jitter)[0]


class ResidualLinearization(NamedTuple):
    """The residual ``r(x_hat) = P_perp theta / |theta|`` linearised at ``x_hat`` (Gauss-Newton).

    ``J`` is the Jacobian of ``r`` with respect to ``x_hat`` (``p x (n d)``); it is never formed.
    """

    residual: jax.Array  # r, shape (p,)
    coef: jax.Array  # c = (A + shift)^{-1} Phi_hat theta / |theta|, shape (m,)
    grad: jax.Array  # J^T r, shape (n, d): half the gradient of the loss |r|^2
    gram_matvec: Callable  # u (n, d) -> J^T J u (n, d)


def residual_linearization(fmap, theta, x_hat, jitter=None) -> ResidualLinearization:
    """Linearise the projector residual at ``x_hat`` for Gauss-Newton / Levenberg-Marquardt steps.

    The map's ``residual_linearization(theta, x_hat, jitter)`` may give a closed form (e.g.
    :meth:`jaxrecon.RandomFeatures.residual_linearization`, two matmuls per ``J^T J u``); where it
    returns ``None`` (the default of :class:`jaxrecon.features.base.FeatureMapBase`),
    ``jax.linearize`` and ``jax.linear_transpose`` of :func:`projector_residual` give ``J u`` and
    ``J^T v`` for any map.
    """
    _check(fmap, theta, x_hat)
    fmap = fmap.prepare()
    lin = fmap.residual_linearization(theta, x_hat, jitter)
    if lin is not None:
        return lin
    r, jvp_fn, c = jax.linearize(lambda xx: _residual_and_coef(fmap, theta, xx, jitter), x_hat, has_aux=True)
    vjp_fn = jax.linear_transpose(jvp_fn, x_hat)
    return ResidualLinearization(r, c, vjp_fn(r)[0], lambda u: vjp_fn(jvp_fn(u))[0])


def projector_loss(fmap, theta, x_hat, jitter=None, form: str = "kernel") -> jax.Array:
    """Projector loss ``|P_perp_{Phi(x_hat)} theta|^2 / |theta|^2`` (paper Eq. 6), unclipped.

    Args:
      fmap: a feature map (see :mod:`jaxrecon.features.base`).
      theta: parameters to explain, shape ``(p,)``.
      x_hat: candidate inputs, shape ``(n, d)``.
      jitter: relative Cholesky jitter (default :func:`default_jitter`).
      form: ``"kernel"`` (one pass, the published form) or ``"residual"`` (accurate to ~eps^2).

    Returns:
      A scalar in ``[0, 1]`` up to rounding; it is *not* clipped, so gradients are exact.
    """
    _validate.choice("form", form, LOSS_FORMS)
    _check(fmap, theta, x_hat)
    if form == "residual":
        r = projector_residual(fmap, theta, x_hat, jitter)
        return jnp.sum(r * r)
    fmap = fmap.prepare()
    A, v = fmap.gram_project(x_hat, theta)
    return loss_from_kernel(A, v, jnp.sum(theta.astype(A.dtype) ** 2), jitter)


def span_residuals(fmap, x_hat, x, jitter=None) -> jax.Array:
    """``|P_perp_{Phi(x_hat)} phi(x_i)| / sqrt(p)`` for each row ``x_i`` of ``x`` (paper Fig. 2).

    Computed from kernels: ``|phi_i|^2 - c_i^T (A + shift)^{-1} c_i`` with ``c_i = Phi_hat phi(x_i)``,
    using one factor of ``A``. Values below ``sqrt(eps)`` of the dtype are at rounding level.
    For maps with ``k`` outputs, rows are the ``n * k`` feature rows of ``x``.
    """
    _validate.matrix("x_hat", x_hat, width=fmap.input_dim)
    _validate.matrix("x", x, width=fmap.input_dim)
    fmap = fmap.prepare()
    A = fmap.gram(x_hat, x_hat)
    C = fmap.gram(x_hat, x)  # (m_hat, m)
    W = factor_kernel(A, jitter).half_solve(C)
    self_sq = jnp.diagonal(fmap.gram(x, x))
    res_sq = jnp.maximum(self_sq - jnp.sum(W * W, axis=0), 0.0)
    return jnp.sqrt(res_sq / fmap.p)


def report_loss(loss):
    """Loss clipped to ``[0, 1]`` for tables and files (never used inside a gradient)."""
    return jnp.clip(loss, 0.0, 1.0)
