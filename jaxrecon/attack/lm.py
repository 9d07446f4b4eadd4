"""The Levenberg-Marquardt phase: damped Gauss-Newton steps on the residual, solved by CG.

The residual ``r(x_hat) = P_perp theta / |theta|`` lives in ``R^p`` but the unknowns are only
``n * d``: the normal equations ``(J^T J + mu D) delta = -J^T r`` are solved matrix-free by
conjugate gradients, each iteration one product ``J^T J u``
(:func:`jaxrecon.loss.residual_linearization`: a closed form for dense random features, else a JVP
and a VJP of the linearised residual), so ``J`` is never formed.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from .. import _validate
from ..features.base import Target
from ..loss import residual_linearization, residual_loss
from .state import Phase, plateau_after, plateau_start


@dataclasses.dataclass(frozen=True)
class LevenbergMarquardt:
    """An LM phase.

    Attributes:
      cg_iters: conjugate-gradient iterations per step.
      damping: initial relative damping (reset when the phase starts).
      stall_after: steps after which an unconverged phase has stalled (the method's stall actions
        then run).
      cg_tol: ``0`` (default): always ``cg_iters`` iterations. ``> 0``: an inexact Newton
        (Eisenstat-Walker) forcing term: CG stops once its residual is below
        ``min(cg_tol, |r|)`` times ``|J^T r|`` (``|r|`` the LM residual: loose far away, tight near
        a zero, so the final steps still converge fast), ``cg_iters`` at most.
      stall_plateau: ``None`` (default): only ``stall_after`` ends the phase. An int ``W``: the
        phase also stalls once its loss has not fallen by a relative ``stall_rtol`` (default 1 %)
        over ``W`` steps while it is above :data:`STALL_FLOOR`: LM sits in a spurious minimum
        (every step rejected, or accepted ones that gain nothing), and its remaining steps to
        ``stall_after`` would only repeat that. Below the floor the loss is left to the method's
        tolerance and precision stop.
    """

    cg_iters: int = 30
    damping: float = 1e-3
    stall_after: int = 100
    cg_tol: float = 0.0
    stall_plateau: Optional[int] = None
    stall_rtol: float = 0.01

    def validate(self) -> "LevenbergMarquardt":
        _validate.positive_int("cg_iters", self.cg_iters)
        _validate.positive_float("damping", self.damping)
        _validate.positive_int("polish_steps", self.stall_after)
        _validate.positive_float("cg_tol", self.cg_tol, allow_zero=True)
        if self.stall_plateau is not None:
            _validate.positive_int("stall_plateau", self.stall_plateau)
        _validate.positive_float("stall_rtol", self.stall_rtol)
        if self.stall_rtol >= 1:
            raise ValueError(f"stall_rtol: must be in (0, 1), got {self.stall_rtol!r}")
        return self


#: The LM plateau stall (``stall_plateau``) counts only steps whose loss is above this: lower
#: losses sit at or near a zero whose float32 floor (1e-12 ... 4e-10 measured) the method's
#: tolerance and precision stop handle; the spurious minima measured so far sit at >= 4e-7.
STALL_FLOOR = 1e-8


def full_precision(tgt: Target) -> Target:
    """``tgt`` with its feature map's matmuls at full precision (``"highest"``), where it has a choice.

    The LM phase always runs on it: reduced precision (TF32, bf16) speeds up the first-order
    phase, but the last digits of an exact reconstruction need exact products.
    """
    if tgt.fmap.precision != "highest":
        return tgt._replace(fmap=tgt.fmap.with_precision("highest"))
    return tgt


def row_weights(c: jax.Array, n: int) -> jax.Array:
    """``sum_k c_{ik}^2`` per input row (feature rows are sample-major, ``k`` per input for
    ``k``-output models)."""
    return jnp.sum((c * c).reshape(n, -1), axis=1)


class LMSystem(NamedTuple):
    """The damped, row-scaled Gauss-Newton system ``(J^T J + mu D) delta = -J^T r`` of one LM step."""

    loss: jax.Array  # |r|^2 at x
    grad: jax.Array  # J^T r, shape (n, d)
    mu: jax.Array  # absolute damping
    D: jax.Array  # (n, 1) row scales (Marquardt scaling and Jacobi preconditioner)
    matvec: Callable  # u -> J^T J u (matrix-free)


def lm_system(tgt: Target, x: jax.Array, damping, jitter: Optional[float] = None) -> LMSystem:
    """Linearise the residual at ``x`` and set up the LM system.

    Row scales: ``d r / d x_i`` is proportional to the coefficient ``c_i`` of row ``i`` in theta's
    projection, so ``J^T J``'s diagonal blocks scale like ``c_i^2``. Rows with small ``c_i``
    (training points with small ``alpha_i``) make plain CG crawl; Marquardt scaling ``D = c_i^2``
    (damping ``mu * D``) with ``D`` as Jacobi preconditioner makes the step scale-free across rows.
    ``mu = damping * s`` where ``s`` is the Rayleigh quotient of ``D^{-1/2} J^T J D^{-1/2}`` along
    the gradient (a scale-free damping).
    """
    lin = residual_linearization(tgt.fmap, tgt.theta, x, jitter)
    r, g = lin.residual, lin.grad
    c2 = row_weights(lin.coef, x.shape[0])
    D = (c2 / jnp.maximum(jnp.mean(c2), jnp.finfo(x.dtype).tiny) + 1e-6)[:, None].astype(x.dtype)
    u = g / D
    scale = jnp.sum(u * lin.gram_matvec(u)) / jnp.maximum(jnp.sum(g * u), jnp.finfo(x.dtype).tiny)
    return LMSystem(jnp.sum(r * r), g, damping * scale, D, lin.gram_matvec)


def _vdot(a, b):
    return jnp.vdot(a, b, precision=jax.lax.Precision.HIGHEST)


def cg_solve(matvec: Callable, b: jax.Array, precond: Callable, tol, maxiter: int, x0=None):
    """Preconditioned conjugate gradients for an SPD ``matvec``: ``(x, iterations)``.

    Stops once ``|b - A x| <= tol * |b|`` (never, for ``tol = 0``, before ``maxiter``) or after
    ``maxiter`` iterations. The iterates are those of ``jax.scipy.sparse.linalg.cg`` (same
    recurrences), but the number of iterations used is returned, and without ``x0`` the start
    ``x = 0`` costs no product. A ``lax.while_loop``: jit- and vmap-safe (vmapped, each system
    keeps its own count).
    """
    tol2 = jnp.square(tol) * _vdot(b, b)
    r0 = b if x0 is None else b - matvec(x0)
    x0 = jnp.zeros_like(b) if x0 is None else x0
    z0 = precond(r0)

    def cond(v):
        _, r, _, _, k = v
        return (_vdot(r, r) > tol2) & (k < maxiter)

    def body(v):
        x, r, gamma, p, k = v
        Ap = matvec(p)
        alpha = gamma / _vdot(p, Ap)
        x, r = x + alpha * p, r - alpha * Ap
        z = precond(r)
        gamma_next = _vdot(r, z)
        return x, r, gamma_next, z + (gamma_next / gamma) * p, k + 1

    x, *_, k = jax.lax.while_loop(cond, body, (x0, r0, _vdot(r0, z0), z0, jnp.asarray(0, jnp.int32)))
    return x, k


class LMDirection(NamedTuple):
    """One LM step's direction, the loss and gradient it was solved at, and the CG iterations used
    (each one product ``J^T J u``: two passes over a stored or streamed ``V``)."""

    delta: jax.Array
    loss: jax.Array
    grad: jax.Array
    cg_iters: jax.Array


def lm_direction(tgt: Target, x: jax.Array, damping, cg_iters: int, jitter: Optional[float] = None,
                 cg_tol: float = 0.0, x0: Optional[jax.Array] = None) -> LMDirection:
    """Solve the LM system by preconditioned CG (:func:`cg_solve`, started at ``x0`` or zero).
    At most ``cg_iters`` iterations; with ``cg_tol > 0`` fewer, to the relative tolerance
    ``min(cg_tol, |r|)`` (see :class:`LevenbergMarquardt`)."""
    sys_ = lm_system(tgt, x, damping, jitter)
    matvec = lambda u: sys_.matvec(u) + sys_.mu * sys_.D * u
    tol = jnp.minimum(cg_tol, jnp.sqrt(sys_.loss)) if cg_tol else 0.0
    delta, iters = cg_solve(matvec, -sys_.grad, lambda u: u / sys_.D, tol, cg_iters, x0)
    return LMDirection(delta, sys_.loss, sys_.grad, iters)


class LMWatch(NamedTuple):
    """The phase state of an LM phase with ``stall_plateau``: the damping, the loss when it last
    fell by ``stall_rtol`` (or was at most :data:`STALL_FLOOR`), and the steps since then."""

    damping: jax.Array
    mark_loss: jax.Array
    since: jax.Array


class LMPhase(NamedTuple):
    """:class:`LevenbergMarquardt` bound to a jitter and a row radius.

    A step is accepted when it lowers the loss (``damping /= 3``), otherwise rejected
    (``damping *= 4``); the damping stays in ``[1e-12, 1e6]``. The phase state is the damping, or
    an :class:`LMWatch` with ``stall_plateau``.
    """

    config: LevenbergMarquardt
    jitter: Optional[float]
    project: Callable
    kind: Phase = Phase.LM

    def init(self, x, dtype):
        damping = jnp.asarray(self.config.damping, dtype)
        if self.config.stall_plateau is None:
            return damping
        return LMWatch(damping, *plateau_start(dtype))

    def step(self, tgt, x, state):
        return self.step_counted(tgt, x, state)[:4]

    def step_counted(self, tgt, x, state):
        """:meth:`step` and the CG iterations its direction used."""
        if self.config.stall_plateau is None:
            return self._step(tgt, x, state)
        x_new, damping, loss, ok, iters = self._step(tgt, x, state.damping)
        fell = ok & ((loss < state.mark_loss * (1 - self.config.stall_rtol)) | (loss <= STALL_FLOOR))
        return x_new, LMWatch(damping, *plateau_after(state.mark_loss, state.since, loss, fell)), loss, ok, iters

    def _step(self, tgt, x, damping):
        tgt = full_precision(tgt)
        delta, loss, g, iters = lm_direction(tgt, x, damping, self.config.cg_iters, self.jitter, self.config.cg_tol)
        x_new = self.project(x + delta)
        loss_new = residual_loss(tgt.fmap, tgt.theta, x_new, self.jitter)
        accept = jnp.isfinite(loss_new) & (loss_new < loss)
        damping_next = jnp.clip(jnp.where(accept, damping / 3.0, damping * 4.0), 1e-12, 1e6)
        ok = jnp.isfinite(loss) & jnp.all(jnp.isfinite(g))
        return jnp.where(accept, x_new, x), damping_next.astype(damping.dtype), loss, ok, iters

    def done(self, value, in_phase, state=None):
        after = in_phase >= self.config.stall_after
        if self.config.stall_plateau is None:
            return after
        return after | (state.since >= self.config.stall_plateau)
