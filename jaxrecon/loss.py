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

Scale. The loss is invariant to the scale of ``theta``, and so is its computation: every form
first divides ``theta`` by the power of two at or above its largest entry
(:func:`normalized_theta`), so ``|theta|^2`` can neither overflow nor underflow (``theta * 1e25``
in float32 gives the loss of ``theta``), and as the division by a power of two is exact, a
``theta`` of ordinary size gives bit for bit the numbers it gave without it. An all-zero
``theta`` gives ``0 / 0 = nan``: the attack reports such a problem as degenerate
(:mod:`jaxrecon.attack.degenerate`).

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


def normalized_theta(theta, dtype=None) -> jax.Array:
    """``theta / 2^e`` with ``2^e`` the power of two at or above ``max |theta_j|`` (exact scaling).

    The largest entry of the result lies in ``[1/2, 1)``, so its squared norm lies in ``[1/4, p)``;
    an all-zero (or non-finite) ``theta`` is returned unchanged.
    """
    theta = jnp.asarray(theta, dtype)
    _, e = jnp.frexp(jnp.max(jnp.abs(theta)))
    return jnp.ldexp(theta, -e)


def feature_rows(fmap, x) -> int:
    """The number of feature rows of inputs ``x`` (``n``, or ``n * k`` for ``k`` outputs), from shapes."""
    theta = jax.ShapeDtypeStruct((fmap.p,), jnp.asarray(x).dtype)
    return int(jax.eval_shape(lambda xx, t: fmap.project(xx, t), x, theta).shape[0])


def _check(fmap, theta, x_hat):
    _validate.matrix("x_hat", x_hat, width=fmap.input_dim)
    _validate.vector("theta", theta, fmap.p)


def loss_from_kernel(A, v, theta_sqnorm, jitter=None):
    """``1 - v^T (A + shift)^{-1} v / |theta|^2`` from precomputed kernel quantities."""
    w = factor_kernel(A, jitter).half_solve(v)
    return 1.0 - jnp.sum(w * w) / theta_sqnorm


def _residual_and_coef(fmap, theta, x_hat, jitter=None):
    """``(P_perp theta / |theta|, (A + shift)^{-1} Phi_hat theta / |theta|)`` for a prepared map."""
    theta = normalized_theta(theta)
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


def _own_value_and_grad(fmap, theta, x_hat, jitter):
    """The prepared map's own closed-form ``(|r|^2, 2 J^T r)``, or ``None`` (maps that only follow
    the protocol may lack the method)."""
    own = getattr(fmap, "residual_value_and_grad", None)
    return None if own is None else own(theta, x_hat, jitter)


def residual_value_and_grad(fmap, theta, x_hat, jitter=None) -> tuple[jax.Array, jax.Array]:
    """The residual form of the loss, ``|r|^2``, and its gradient ``2 J^T r`` in one call.

    The first-order phase of the residual-form methods calls it. Where the map has a closed form
    (its own ``residual_value_and_grad``, else its ``residual_linearization``: dense and streamed
    random features, the split start's even features) the gradient is that ``J^T r``: for dense
    random features two passes over ``V`` per step, 1.4-1.7x faster than autodiff at d = 768 and
    3072, for the even features 2.4-3.9x (``benchmarks/first_order_step.py``). It leaves out the
    derivative of the jitter's shift, a relative change of order ``jitter`` (``1e-8`` in float32).
    Other maps: ``jax.value_and_grad`` of ``projector_loss(..., form="residual")``, unchanged.
    """
    _check(fmap, theta, x_hat)
    fmap = fmap.prepare()
    own = _own_value_and_grad(fmap, theta, x_hat, jitter)
    if own is not None:
        return own
    lin = fmap.residual_linearization(theta, x_hat, jitter)
    if lin is None:
        return jax.value_and_grad(lambda xx: projector_loss(fmap, theta, xx, jitter, "residual"))(x_hat)
    r = lin.residual
    return jnp.sum(r * r), (2 * lin.grad).astype(jnp.asarray(x_hat).dtype)


def residual_loss(fmap, theta, x_hat, jitter=None) -> jax.Array:
    """``|r|^2``, the residual form of the loss: from the map's own closed form where it has one
    (its gradient, unused, is left out by XLA), else ``|projector_residual|^2``. The LM phase's
    trial loss; for the split start's even features three reads of ``V`` instead of six."""
    _check(fmap, theta, x_hat)
    fmap = fmap.prepare()
    own = _own_value_and_grad(fmap, theta, x_hat, jitter)
    if own is not None:
        return own[0]
    r = _residual_and_coef(fmap, theta, x_hat, jitter)[0]
    return jnp.sum(r * r)


def projector_loss(fmap, theta, x_hat, jitter=None, form: str = "kernel") -> jax.Array:
    """Projector loss ``|P_perp_{Phi(x_hat)} theta|^2 / |theta|^2`` (paper Eq. 6), unclipped.

    Args:
      fmap: a feature map (see :mod:`jaxrecon.features.base`).
      theta: parameters to explain, shape ``(p,)``.
      x_hat: candidate inputs, shape ``(n, d)``.
      jitter: relative Cholesky jitter (default :func:`default_jitter`).
      form: ``"kernel"`` (one pass, the published form) or ``"residual"`` (accurate to ~eps^2).

    Returns:
      A scalar in ``[0, 1]`` up to rounding; it is *not* clipped, so gradients are exact. It does
      not depend on the scale of ``theta`` (see the module docstring); all-zero ``theta``: ``nan``.
    """
    _validate.choice("form", form, LOSS_FORMS)
    _check(fmap, theta, x_hat)
    if form == "residual":
        r = projector_residual(fmap, theta, x_hat, jitter)
        return jnp.sum(r * r)
    fmap = fmap.prepare()
    theta = normalized_theta(theta)
    A, v = fmap.gram_project(x_hat, theta)
    return loss_from_kernel(A, v, jnp.sum(theta.astype(A.dtype) ** 2), jitter)


SPAN_FORMS = ("residual", "kernel")


def span_residuals(fmap, x_hat, x, jitter=None, form: str = "residual") -> jax.Array:
    """``|P_perp_{Phi(x_hat)} phi(x_i)| / sqrt(p)`` for each feature row ``phi(x_i)`` of ``x`` (paper Fig. 2).

    ``form="residual"`` (default) forms the residual itself,

        r_i = phi_i - Phi_hat^T a_i,   a_i = (A + shift)^{-1} Phi_hat phi_i,

    followed by one step of iterative refinement (``a_i += (A + shift)^{-1} Phi_hat r_i``, which
    also removes the jitter's bias). Its error is of order ``eps * |phi_i|``. Measured worst
    ``|r_i - r_i^true| / |phi_i|`` against a float64 NumPy least-squares projection (d=10, n=8,
    p=400, ``x_hat = x + delta * noise`` for ``delta`` from 0 to 1, so true residuals from 0 to
    0.5): ``3e-8`` in float32 (``7e-8`` streamed), ``1e-15`` in float64, and ``1e-14`` for float32
    features when float64 is enabled (:func:`jaxrecon.x64`): dense float32 features are then solved
    and subtracted in float64, leaving only the rounding of the features themselves. Dense maps
    materialise ``Phi(x)`` and ``Phi(x_hat)``; other maps (streamed random features, networks) go
    row by row (``lax.map``) through ``adjoint``, ``project`` and ``gram``, ``O(p)`` numbers per row.

    ``form="kernel"`` is the identity ``|phi_i|^2 - c_i^T (A + shift)^{-1} c_i`` with
    ``c_i = Phi_hat phi_i`` (one pass over the features): its cancellation puts a floor of about
    ``sqrt(eps)`` on the result (measured as above: ``4e-4`` in float32, ``4e-7`` in float64).

    For maps with ``k`` outputs, rows are the ``n * k`` feature rows of ``x``.
    """
    _validate.matrix("x_hat", x_hat, width=fmap.input_dim)
    _validate.matrix("x", x, width=fmap.input_dim)
    _validate.choice("form", form, SPAN_FORMS)
    fmap = fmap.prepare()
    if form == "kernel":
        A = fmap.gram(x_hat, x_hat)
        C = fmap.gram(x_hat, x)  # (m_hat, m)
        W = factor_kernel(A, jitter).half_solve(C)
        self_sq = jnp.diagonal(fmap.gram(x, x))
        return jnp.sqrt(jnp.maximum(self_sq - jnp.sum(W * W, axis=0), 0.0) / fmap.p)
    if fmap.dense:
        norms = _dense_span_residuals(fmap, x_hat, x, jitter)
    else:
        norms = _streamed_span_residuals(fmap, x_hat, x, jitter)
    return norms / jnp.sqrt(jnp.asarray(fmap.p, norms.dtype))


def _accumulation_dtype(dtype):
    """float64 when it is enabled, else ``dtype``."""
    return jnp.float64 if jax.config.jax_enable_x64 else dtype


def _dense_span_residuals(fmap, x_hat, x, jitter):
    """``|r_i|`` of every row with ``Phi(x_hat)`` and ``Phi(x)`` materialised (see :func:`span_residuals`)."""
    F_hat, F = fmap.features(x_hat), fmap.features(x)
    acc = _accumulation_dtype(F.dtype)
    F_hat, F = F_hat.astype(acc), F.astype(acc)
    hi = jax.lax.Precision.HIGHEST
    fac = factor_kernel(jnp.matmul(F_hat, F_hat.T, precision=hi), jitter)
    a = fac.solve(jnp.matmul(F_hat, F.T, precision=hi))  # (m_hat, m)
    R = F - jnp.matmul(a.T, F_hat, precision=hi)
    a = a + fac.solve(jnp.matmul(F_hat, R.T, precision=hi))  # one step of iterative refinement
    R = F - jnp.matmul(a.T, F_hat, precision=hi)
    return jnp.linalg.norm(R, axis=1).astype(F.dtype)


def _streamed_span_residuals(fmap, x_hat, x, jitter):
    """``|r_i|`` row by row through ``adjoint`` / ``project`` / ``gram`` (see :func:`span_residuals`)."""
    fac = factor_kernel(fmap.gram(x_hat, x_hat), jitter)
    m, dtype = feature_rows(fmap, x), fac.chol.dtype

    def row(i):
        phi = fmap.adjoint(x, jax.nn.one_hot(i, m, dtype=dtype))
        a = fac.solve(fmap.project(x_hat, phi))
        r = phi - fmap.adjoint(x_hat, a)
        a = a + fac.solve(fmap.project(x_hat, r))  # one step of iterative refinement
        return jnp.linalg.norm(phi - fmap.adjoint(x_hat, a))

    return jax.lax.map(row, jnp.arange(m))


def report_loss(loss):
    """Loss clipped to ``[0, 1]`` for tables and files (never used inside a gradient)."""
    return jnp.clip(loss, 0.0, 1.0)
