"""Reconstruction: find ``x_hat`` whose features span ``theta`` by minimising the projector loss.

The attack is a pure, jit- and vmap-compatible loop over an explicit state::

    solver = make_solver(target, n, method="published")
    state  = init_state(solver, key, target)             # x_hat ~ N(0, I)
    state  = run_steps(solver, target, state, max_steps)  # lax.while_loop, per-seed stopping

and two entry points built on it:

* :func:`reconstruct` -- one key in, one :class:`ReconResult` out; pure, so
  ``jax.vmap(lambda k: reconstruct(target, k, n=20))(keys)`` runs many seeds in one program.
* :func:`reconstruct_seeds` -- the driver used by the CLI: many seeds vmapped in one compiled
  program, advanced in compiled chunks of steps with a progress bar between chunks, per-seed
  stopping and per-seed wall-clock.

After every step each row of ``x_hat`` is put back on the sphere of radius ``sqrt(d)``
(``radius=None`` keeps rows free). A seed stops when its loss is ``<= tol``; a stopped seed no
longer changes. A non-finite loss or gradient stops the seed with status ``"nonfinite"`` and keeps
its last finite iterate: the attack never returns NaNs silently.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import _validate
from .activations import PUBLISHED_SURROGATE_SLOPE
from .data.synthetic import project_to_sphere
from .features.base import Target
from .loss import LOSS_FORMS, factor_kernel, projector_loss, projector_residual, residual_linearization

# Status codes stored in the state (int32) and their names.
RUNNING, CONVERGED, BUDGET, NONFINITE = 0, 1, 2, 3
_STALLED = 2  # ReconState.phase inside _advance only: a stalled polish phase awaiting recover()
STATUS_NAMES = {RUNNING: "running", CONVERGED: "converged", BUDGET: "budget", NONFINITE: "nonfinite"}

#: Optimisers accepted by name (any ``optax.<name>`` taking ``learning_rate`` also works).
COMMON_OPTIMIZERS = ("adabelief", "adagrad", "adam", "adamax", "adamw", "amsgrad", "lamb", "lbfgs",
                     "lion", "nadam", "novograd", "radam", "rmsprop", "sgd", "sm3", "yogi")


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """Everything that defines an attack method; hashable, so it can be a static jit argument.

    Attributes:
      optimizer: name of an optax optimiser (see :data:`COMMON_OPTIMIZERS`).
      lr: learning rate (peak learning rate when a schedule is used).
      momentum: momentum for ``sgd`` (``None``: plain SGD).
      schedule: ``"constant"``, ``"cosine"`` or ``"exponential"`` (decay to ``lr * final_lr_ratio``
        over ``decay_steps``), with ``warmup`` linear warm-up steps.
      loss_form: ``"kernel"`` or ``"residual"`` (see :mod:`jaxrecon.loss`).
      surrogate_slope: leaky ReLU derivative used by the attack (``None``: exact derivative).
      init: ``"gaussian"`` (``x_hat ~ N(0, I)``, as published) or ``"sphere"`` (projected).
      tol: stop a seed when its loss is ``<= tol``.
      jitter: relative Cholesky jitter (``None``: dtype default).
      polish: ``"lm"`` switches to Levenberg-Marquardt steps (:func:`make_lm_step`) once the loss
        is ``<= polish_below`` or after ``first_steps`` first-order steps; ``None``: first order only.
      cg_iters: conjugate-gradient iterations per LM step; damping: initial relative LM damping.
      polish_steps: LM steps after which an unconverged polish phase has stalled. With
        ``stall_window = W > 0`` it has also stalled when, at a multiple of ``W`` LM steps, the
        loss is above ``stall_ratio`` times the loss ``W`` steps earlier. On a stall,
        ``on_stall="restart"`` starts the seed afresh from a new point, ``"redraw_row"`` redraws
        only its weakest row (:func:`redraw_weakest_row`, best of ``reset_candidates``), and
        first-order steps resume.
      flip_candidates: with ``on_stall="redraw_row"``, stalls cycle through ``flip_candidates``
        sign flips and one redraw: the ``k``-th stall of a cycle flips the row whose flip
        ``x_i -> -x_i`` raises the loss the ``k``-th least (:func:`flip_ranking`) and LM resumes
        at once. ReLU features have such sign-flipped local minima (a row converged to ``-x_j``).
      repair_pairs: on a stall, first look for an antipodal pair of rows and, if there is one,
        undo the sign-flip minimum it belongs to (:func:`repair_antipodal_pair`); first-order
        steps resume. Otherwise the ``on_stall`` action.
      restarts: candidates started per seed; the best after ``restart_steps`` steps is kept.
    """

    optimizer: str = "sgd"
    lr: float = 20.0
    momentum: Optional[float] = 0.9
    schedule: str = "constant"
    warmup: int = 0
    decay_steps: int = 0
    final_lr_ratio: float = 1e-2
    loss_form: str = "kernel"
    surrogate_slope: Optional[float] = None
    init: str = "gaussian"
    tol: float = 1e-7
    jitter: Optional[float] = None
    polish: Optional[str] = None
    polish_below: float = 1e-3
    first_steps: Optional[int] = None
    cg_iters: int = 30
    damping: float = 1e-3
    polish_steps: int = 100
    stall_window: int = 0
    stall_ratio: float = 0.5
    on_stall: str = "restart"
    flip_candidates: int = 0
    repair_pairs: bool = False
    reset_candidates: int = 256
    restarts: int = 1
    restart_steps: int = 0

    def validate(self) -> "MethodConfig":
        opt = getattr(optax, self.optimizer, None) if isinstance(self.optimizer, str) else None
        if not callable(opt) or self.optimizer.startswith("_"):
            raise ValueError(
                f"optimizer: unknown optax optimiser {self.optimizer!r}; common choices: "
                f"{list(COMMON_OPTIMIZERS)}"
            )
        _validate.positive_float("lr", self.lr)
        _validate.choice("schedule", self.schedule, ("constant", "cosine", "exponential"))
        _validate.choice("loss_form", self.loss_form, LOSS_FORMS)
        _validate.choice("init", self.init, ("gaussian", "sphere"))
        _validate.positive_float("tol", self.tol, allow_zero=True)
        if self.polish is not None:
            _validate.choice("polish", self.polish, ("lm",))
        _validate.positive_int("restarts", self.restarts)
        _validate.positive_int("cg_iters", self.cg_iters)
        _validate.positive_int("polish_steps", self.polish_steps)
        if self.stall_window:
            _validate.positive_int("stall_window", self.stall_window)
        if not 0.0 < self.stall_ratio <= 1.0:
            raise ValueError(f"stall_ratio: must be in (0, 1], got {self.stall_ratio!r}")
        if self.flip_candidates:
            _validate.positive_int("flip_candidates", self.flip_candidates)
        _validate.choice("on_stall", self.on_stall, ("restart", "redraw_row"))
        _validate.positive_int("reset_candidates", self.reset_candidates)
        if self.restarts > 1:
            _validate.positive_int("restart_steps", self.restart_steps)
        if self.first_steps is not None:
            _validate.positive_int("first_steps", self.first_steps)
        if self.momentum is not None:
            _validate.positive_float("momentum", self.momentum, allow_zero=True)
        return self


#: Named methods. ``published`` is the paper's recipe and must stay exactly so.
METHODS: dict[str, MethodConfig] = {
    "published": MethodConfig(
        optimizer="sgd", lr=20.0, momentum=0.9, loss_form="kernel",
        surrogate_slope=PUBLISHED_SURROGATE_SLOPE, init="gaussian", tol=1e-7,
    ),
    # Adam with warm-up and cosine decay on the accurate residual form of the loss.
    "adam": MethodConfig(
        optimizer="adam", lr=0.05, momentum=None, schedule="cosine", warmup=100,
        loss_form="residual", init="sphere", tol=1e-12,
    ),
    # The default: Adam until the loss is below 1e-3 (or 300 steps), then row-scaled
    # Levenberg-Marquardt on the residual; when LM stalls (40 steps without converging), an
    # antipodal pair of rows is repaired (sign-flip minimum), else the weakest row is redrawn by
    # matching pursuit, and Adam resumes (issue "Exact reconstruction, fast").
    "adam-lm": MethodConfig(
        optimizer="adam", lr=0.05, momentum=None, schedule="cosine", warmup=100, loss_form="residual",
        init="sphere", tol=1e-12, polish="lm", polish_below=1e-3, first_steps=300, polish_steps=40,
        on_stall="redraw_row", repair_pairs=True, cg_iters=30,
    ),
}
DEFAULT_METHOD = "adam-lm"


def method_config(method: str = DEFAULT_METHOD, **overrides) -> MethodConfig:
    """Look up a named method and apply overrides (``None`` values are ignored)."""
    if method not in METHODS:
        raise ValueError(f"method: unknown method {method!r}; allowed: {sorted(METHODS)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    fields = {f.name for f in dataclasses.fields(MethodConfig)}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"method options: unknown option(s) {sorted(unknown)}; allowed: {sorted(fields)}")
    cfg = dataclasses.replace(METHODS[method], **overrides)
    # An explicitly chosen optimiser other than SGD has no momentum argument.
    if cfg.optimizer != "sgd" and "momentum" not in overrides:
        cfg = dataclasses.replace(cfg, momentum=None)
    return cfg.validate()


def _schedule(cfg: MethodConfig, total_steps: int):
    if cfg.schedule == "constant" and cfg.warmup == 0:
        return cfg.lr
    decay = cfg.decay_steps or max(total_steps - cfg.warmup, 1)
    if cfg.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0, cfg.lr, max(cfg.warmup, 1), cfg.warmup + decay, cfg.lr * cfg.final_lr_ratio
        )
    if cfg.schedule == "exponential":
        return optax.warmup_exponential_decay_schedule(
            0.0, cfg.lr, max(cfg.warmup, 1), decay, cfg.final_lr_ratio, end_value=cfg.lr * cfg.final_lr_ratio
        )
    return optax.linear_schedule(0.0, cfg.lr, cfg.warmup) if cfg.warmup else cfg.lr


def make_optimizer(cfg: MethodConfig, total_steps: int) -> optax.GradientTransformationExtraArgs:
    """The optax transformation for a method (``value``/``value_fn`` extra args always accepted)."""
    factory = getattr(optax, cfg.optimizer)
    lr = _schedule(cfg, total_steps)
    try:
        if cfg.optimizer == "sgd":
            opt = factory(learning_rate=lr, momentum=cfg.momentum)
        else:
            opt = factory(learning_rate=lr)
    except TypeError as e:
        raise ValueError(f"optimizer: optax.{cfg.optimizer} cannot be built with a learning rate ({e})") from None
    if not isinstance(opt, optax.GradientTransformation):
        raise ValueError(f"optimizer: optax.{cfg.optimizer} is not an optimiser")
    return optax.with_extra_args_support(opt)


class ReconState(NamedTuple):
    """State of one seed's attack (vmapped states have a leading seed axis)."""

    x_hat: jax.Array  # (n, d) current iterate
    opt_state: Any  # first-order optimiser state
    damping: jax.Array  # Levenberg-Marquardt damping (relative), used in the polish phase
    loss: jax.Array  # loss at x_hat (inf before the first evaluation)
    steps: jax.Array  # int32: steps taken (first-order and polish, all restarts)
    phase: jax.Array  # int32: 0 first-order, 1 polish
    phase_start: jax.Array  # int32: value of ``steps`` when the current phase began
    restarts: jax.Array  # int32: stalled polish phases (each followed by a restart or a row redraw)
    key: jax.Array  # the seed's key (fresh starts use fold_in(key, restart))
    status: jax.Array  # int32: RUNNING / CONVERGED / BUDGET / NONFINITE
    ref_loss: jax.Array  # polish phase: loss at the last stall-window check (inf before the first)


class ReconResult(NamedTuple):
    x_hat: jax.Array  # (n, d)
    loss: jax.Array  # final loss at x_hat (unclipped)
    steps: jax.Array
    status: jax.Array
    restarts: jax.Array  # stalled polish phases (each followed by a restart or a row redraw)


class Solver(NamedTuple):
    """A method bound to a problem size: pure functions of a prepared target.

    ``init(x0) -> opt_state``;
    ``step(target, x_hat, opt_state) -> (x_next, opt_state_next, loss_at_x_hat, ok)`` (first order);
    ``polish_step(target, x_hat, damping) -> (x_next, damping_next, loss_at_x_hat, ok)`` (second
    order, ``None`` when the method has no polish phase). ``target`` is already prepared for the
    attack (see :func:`attack_target`).
    """

    cfg: MethodConfig
    n: int
    radius: Optional[float]
    loss_fn: Callable
    init: Callable
    step: Callable
    polish_step: Optional[Callable]


def attack_target(target: Target, cfg: MethodConfig) -> Target:
    """The target the attack differentiates: surrogate derivative if the method asks, map prepared."""
    fmap = target.fmap
    if cfg.surrogate_slope is not None and hasattr(fmap, "with_surrogate"):
        fmap = fmap.with_surrogate(cfg.surrogate_slope)
    return Target(fmap.prepare(), target.theta)


def full_precision(tgt: Target) -> Target:
    """``tgt`` with its feature map's matmuls at full precision (``"highest"``), where it has a choice.

    The polish phase always runs on it: reduced precision (TF32, bf16) speeds up the first-order
    phase, but the last digits of an exact reconstruction need exact products.
    """
    fmap = tgt.fmap
    if getattr(fmap, "precision", "highest") != "highest":
        return Target(fmap.replace(precision="highest"), tgt.theta)
    return tgt


def _project(x, radius):
    return x if radius is None else project_to_sphere(x, radius)


def _row_weights(c: jax.Array, n: int) -> jax.Array:
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


def lm_system(cfg: MethodConfig, tgt: Target, x: jax.Array, damping) -> LMSystem:
    """Linearise ``r(x) = P_perp theta / |theta|`` at ``x`` and set up the LM system (see make_lm_step).

    The linearisation is :func:`jaxrecon.loss.residual_linearization`: a closed form for dense
    random features, ``jax.linearize`` / ``jax.linear_transpose`` for any other map."""
    lin = residual_linearization(tgt.fmap, tgt.theta, x, cfg.jitter)
    r, g = lin.residual, lin.grad
    # Row scales: d r / d x_i is proportional to the coefficient c_i of row i in theta's
    # projection, so J^T J's diagonal blocks scale like c_i^2. Rows with small c_i (training
    # points with small alpha_i) make plain CG crawl; Marquardt scaling D = c_i^2 (damping
    # mu * D) with D as Jacobi preconditioner makes the step scale-free across rows.
    c2 = _row_weights(lin.coef, x.shape[0])
    D = (c2 / jnp.maximum(jnp.mean(c2), jnp.finfo(x.dtype).tiny) + 1e-6)[:, None].astype(x.dtype)
    u = g / D
    scale = jnp.sum(u * lin.gram_matvec(u)) / jnp.maximum(jnp.sum(g * u), jnp.finfo(x.dtype).tiny)
    return LMSystem(jnp.sum(r * r), g, damping * scale, D, lin.gram_matvec)


def lm_direction(cfg: MethodConfig, tgt: Target, x: jax.Array, damping):
    """Solve the LM system by preconditioned CG (``cg_iters`` iterations): ``(delta, loss, grad)``."""
    sys_ = lm_system(cfg, tgt, x, damping)
    matvec = lambda u: sys_.matvec(u) + sys_.mu * sys_.D * u
    delta, _ = jax.scipy.sparse.linalg.cg(matvec, -sys_.grad, maxiter=cfg.cg_iters, M=lambda u: u / sys_.D)
    return delta, sys_.loss, sys_.grad


def make_lm_step(cfg: MethodConfig, radius: Optional[float]):
    """One Levenberg-Marquardt step on the residual ``r(x_hat) = P_perp theta / |theta|``.

    The residual lives in ``R^p`` but the unknowns are only ``n * d``: the normal equations
    ``(J^T J + mu I) delta = -J^T r`` are solved matrix-free by conjugate gradients, each
    iteration one product ``J^T J u`` (:func:`jaxrecon.loss.residual_linearization`: closed form
    for dense random features, else a JVP and a VJP of the linearised residual), so ``J`` is
    never formed. Damping and preconditioner use Marquardt's
    row scaling ``D_i = c_i^2`` (see the code); ``mu = damping * s`` where ``s`` is the Rayleigh
    quotient of ``D^{-1/2} J^T J D^{-1/2}`` along the gradient (a scale-free damping). A step is accepted
    when it lowers the loss (``damping /= 3``), otherwise rejected (``damping *= 4``).
    """

    def lm_step(tgt, x, damping):
        tgt = full_precision(tgt)
        r_fn = lambda xx: projector_residual(tgt.fmap, tgt.theta, xx, cfg.jitter)
        delta, loss, g = lm_direction(cfg, tgt, x, damping)
        x_new = _project(x + delta, radius)
        r_new = r_fn(x_new)
        loss_new = jnp.sum(r_new * r_new)
        accept = jnp.isfinite(loss_new) & (loss_new < loss)
        damping_next = jnp.clip(jnp.where(accept, damping / 3.0, damping * 4.0), 1e-12, 1e6)
        ok = jnp.isfinite(loss) & jnp.all(jnp.isfinite(g))
        return jnp.where(accept, x_new, x), damping_next.astype(damping.dtype), loss, ok

    return lm_step


def redraw_weakest_row(cfg: MethodConfig, tgt: Target, x: jax.Array, key: jax.Array, radius) -> jax.Array:
    """Replace the row of ``x`` that explains least of ``theta`` by a matching-pursuit pick.

    With ``c = (A + shift)^{-1} Phi_hat theta``, the row with the smallest ``|c_i|`` is redrawn as
    the best of ``reset_candidates`` random sphere points, ranked by ``(phi(z)^T r)^2 / |phi(z)|^2``
    where ``r = P_perp theta`` is what the current rows leave unexplained (for ``k``-output
    models a row's weight is ``sum_k c_{ik}^2`` and the score sums over its ``k`` feature rows).
    Used when the polish phase stalls: in the runs we diagnosed, stalls were one or two rows stuck
    far from any training point (a correct row with a small ``c_i`` is re-found, since ``r`` points
    to it).
    """
    fmap, theta = full_precision(tgt)
    r, c = _residual_of_rows(cfg, fmap, theta, x, jnp.ones(x.shape[0], bool))
    weight = _row_weights(c, x.shape[0])
    return x.at[jnp.argmin(weight)].set(_pursuit(cfg, fmap, r, key, x.shape[1], x.dtype, radius))


def _residual_of_rows(cfg: MethodConfig, fmap, theta, x: jax.Array, keep: jax.Array):
    """``(r, c)``: ``r = P_perp theta`` for the span of the feature rows of the rows of ``x`` where
    ``keep``, and ``c`` the coefficients of those feature rows in theta's projection (0 elsewhere)."""
    A, v = fmap.gram_project(x, theta)
    keep = jnp.repeat(keep, A.shape[0] // x.shape[0])  # k feature rows per input (sample-major)
    both = keep[:, None] & keep[None, :]
    scale = jnp.trace(A) / A.shape[0]
    A = jnp.where(both, A, jnp.where(jnp.eye(A.shape[0], dtype=bool), scale, 0.0))
    c = jnp.where(keep, factor_kernel(A, cfg.jitter).solve(jnp.where(keep, v, 0.0)), 0.0)
    return theta.astype(x.dtype) - fmap.adjoint(x, c), c


def _pursuit(cfg: MethodConfig, fmap, r: jax.Array, key, d: int, dtype, radius) -> jax.Array:
    """The best of ``reset_candidates`` random sphere points by ``(phi(z)^T r)^2 / |phi(z)|^2``."""
    cands = _project(jax.random.normal(key, (cfg.reset_candidates, d), dtype), radius)
    corr = fmap.project(cands, r).reshape(cands.shape[0], -1)
    norms = jax.vmap(lambda z: jnp.diagonal(fmap.gram(z[None], z[None])))(cands)  # |phi(z)|^2, no cross terms
    score = jnp.sum(corr * corr, axis=1) / jnp.maximum(jnp.sum(norms, axis=1), jnp.finfo(dtype).tiny)
    return cands[jnp.argmax(score)]


def repair_antipodal_pair(cfg: MethodConfig, tgt: Target, x: jax.Array, key: jax.Array, radius,
                          pair_cos: float = 0.9):
    """Undo the sign-flip local minimum of ReLU features: ``(x_new, found)``.

    Since ``relu(z) = z/2 + |z|/2``, a row at ``-x_j`` has the right even part and the wrong linear
    part ``-V x_j / 2``; two rows ``z, -z`` span the linear feature ``V z``
    (``phi(z) - phi(-z) = V z``). So rows flipped to ``-x_j`` plus one antipodal pair along
    ``w = sum_flipped alpha_j x_j`` explain ``theta`` up to the two training points the pair
    displaced: a spurious minimum whose loss is the weight of those two points (diagnosed at
    d=100, n=20, p=10dn, where it made most of the failures). Here: find the most antipodal pair
    of rows (cosine below ``-pair_cos``), regress its direction on the other rows, flip the rows it
    compensates (``|gamma_j| > 0.1 max |gamma|``), and redraw both rows of the pair by matching
    pursuit (:func:`_pursuit`) on the residual of the others. ``found`` is False (and ``x``
    unchanged) when no row pair is that antipodal.
    """
    fmap, theta = full_precision(tgt)
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
        r, _ = _residual_of_rows(cfg, fmap, theta, x_new, keep)
        x_new = x_new.at[row].set(_pursuit(cfg, fmap, r, k, d, x.dtype, radius))
        keep = keep.at[row].set(True)
    return jnp.where(found, x_new, x), found


def flip_ranking(cfg: MethodConfig, tgt: Target, x: jax.Array) -> jax.Array:
    """Rows of ``x`` ordered by the loss after flipping that row's sign alone (lowest first).

    A row stuck at ``-x_j`` (a local minimum of ReLU features, whose loss is small when ``x_j``
    explains little of ``theta``) is among the cheapest flips; one loss evaluation per row,
    sequential (``lax.map``) so memory stays that of one evaluation.
    """
    fmap, theta = full_precision(tgt)
    losses = jax.lax.map(lambda i: projector_loss(fmap, theta, x.at[i].multiply(-1), cfg.jitter, "residual"),
                         jnp.arange(x.shape[0]))
    return jnp.argsort(jnp.where(jnp.isfinite(losses), losses, jnp.inf))


def make_solver(target: Target, n: int, method: str | MethodConfig = DEFAULT_METHOD,
                total_steps: int = 10_000, radius: float | None | str = "sphere") -> Solver:
    """Bind a method to a target's shapes. ``radius="sphere"`` means ``sqrt(d)``."""
    cfg = method if isinstance(method, MethodConfig) else method_config(method)
    n = _validate.positive_int("n", n)
    d = target.fmap.input_dim
    radius = math.sqrt(d) if radius == "sphere" else radius
    opt = make_optimizer(cfg, cfg.first_steps or total_steps)

    def loss_fn(tgt, x):
        return projector_loss(tgt.fmap, tgt.theta, x, cfg.jitter, cfg.loss_form)

    def init(x0):
        return opt.init(x0)

    def step(tgt, x, opt_state):
        value, grad = jax.value_and_grad(loss_fn, argnums=1)(tgt, x)
        updates, new_state = opt.update(grad, opt_state, x, value=value, grad=grad,
                                        value_fn=lambda xx: loss_fn(tgt, xx))
        ok = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad))
        return _project(optax.apply_updates(x, updates), radius), new_state, value, ok

    polish = make_lm_step(cfg, radius) if cfg.polish == "lm" else None
    return Solver(cfg, n, radius, loss_fn, init, step, polish)


def _fresh_x(solver: Solver, key, d, dtype):
    x0 = jax.random.normal(key, (solver.n, d), dtype)
    return _project(x0, solver.radius) if solver.cfg.init == "sphere" else x0


def _start(solver: Solver, key: jax.Array, target: Target, dtype):
    """A starting iterate and optimiser state; multi-start selection when ``restarts > 1``."""
    cfg, d = solver.cfg, target.fmap.input_dim
    if cfg.restarts <= 1:
        x0 = _fresh_x(solver, key, d, dtype)
        return x0, solver.init(x0), jnp.asarray(jnp.inf, dtype), 0

    def candidate(k):
        x0 = _fresh_x(solver, k, d, dtype)

        def body(_, carry):
            x, s = carry
            x_next, s_next, _, ok = solver.step(target, x, s)
            return jnp.where(ok, x_next, x), s_next

        x, s = jax.lax.fori_loop(0, cfg.restart_steps, body, (x0, solver.init(x0)))
        return x, s, solver.loss_fn(target, x)

    xs, states, losses = jax.vmap(candidate)(jax.random.split(key, cfg.restarts))
    best = jnp.argmin(jnp.where(jnp.isfinite(losses), losses, jnp.inf))
    take = lambda tree: jax.tree_util.tree_map(lambda a: a[best], tree)
    return xs[best], take(states), losses[best].astype(dtype), cfg.restart_steps


def init_state(solver: Solver, key: jax.Array, target: Target) -> ReconState:
    """Initial iterate ``x_hat ~ N(0, I)`` (projected to the sphere when ``init="sphere"``).

    With ``restarts = R > 1``, ``R`` candidates start from ``split(key, R)``, each takes
    ``restart_steps`` first-order steps (vmapped, one program), and the one with the lowest loss
    is kept, with its optimiser state; those steps count in ``steps``. ``target`` must be
    prepared (:func:`attack_target`) when ``restarts > 1``.
    """
    dtype = jnp.result_type(target.theta.dtype, jnp.float32)
    x0, opt_state, loss, steps = _start(solver, key, target, dtype)
    i32 = lambda v: jnp.asarray(v, jnp.int32)
    return ReconState(x_hat=x0, opt_state=opt_state, damping=jnp.asarray(solver.cfg.damping, dtype), loss=loss,
                      steps=i32(steps), phase=i32(0), phase_start=i32(steps), restarts=i32(0), key=key,
                      status=i32(RUNNING), ref_loss=jnp.asarray(jnp.inf, dtype))


def _advance(solver: Solver, tgt: Target, state: ReconState, max_steps) -> ReconState:
    """Run until the seed stops or has taken ``max_steps`` steps in total (prepared target).

    First-order steps until the loss drops below ``polish_below`` (or ``first_steps`` steps in the
    phase are spent), then polish steps. A polish phase that has not converged after
    ``polish_steps`` steps has stalled: the seed starts afresh from ``fold_in(key, restart)``, or
    its weakest row is redrawn (``on_stall``), once per stall, and first-order steps resume. Each phase is a ``lax.while_loop`` inside an outer one; under ``vmap``
    seeds that have stopped do not change.
    """
    cfg = solver.cfg
    dtype = state.loss.dtype
    d = tgt.fmap.input_dim
    where = lambda c, new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(c, a, b), new, old)

    def make_loop(phase, step_fn, get_aux, set_aux):
        def cond(s):
            return (s.status == RUNNING) & (s.steps < max_steps) & (s.phase == phase)

        def body(s):
            x_next, aux_next, value, ok = step_fn(tgt, s.x_hat, get_aux(s))
            converged = ok & (value <= cfg.tol)
            move = ok & ~converged
            status = jnp.where(~ok, NONFINITE, jnp.where(converged, CONVERGED, RUNNING)).astype(jnp.int32)
            steps = s.steps + move.astype(jnp.int32)
            s = set_aux(s, where(move, aux_next, get_aux(s)))
            s = s._replace(x_hat=where(move, x_next, s.x_hat), loss=jnp.where(ok, value, s.loss).astype(dtype),
                           steps=steps, status=status)
            if solver.polish_step is None:
                return s
            in_phase = steps - s.phase_start
            if phase == 0:
                switch = move & ((value <= cfg.polish_below) | (in_phase >= (cfg.first_steps or 2**30)))
                return s._replace(phase=jnp.where(switch, 1, 0).astype(jnp.int32),
                                  phase_start=jnp.where(switch, steps, s.phase_start).astype(jnp.int32),
                                  damping=jnp.where(switch, jnp.asarray(cfg.damping, dtype), s.damping),
                                  ref_loss=jnp.where(switch, jnp.inf, s.ref_loss).astype(dtype))
            stalled = move & (in_phase >= cfg.polish_steps)
            if cfg.stall_window:
                check = move & (in_phase % cfg.stall_window == 0)
                stalled = stalled | (check & (value > cfg.stall_ratio * s.ref_loss))
                s = s._replace(ref_loss=jnp.where(check, value, s.ref_loss).astype(dtype))
            return s._replace(phase=jnp.where(stalled, _STALLED, 1).astype(jnp.int32))

        return lambda s: jax.lax.while_loop(cond, body, s)

    def recover(s):
        """Restart a stalled seed, redraw its weakest row (first-order steps resume) or flip a
        row's sign (LM resumes). Runs once per polish phase, outside the step loops (under vmap a
        per-step ``where`` would pay for it at every LM step)."""
        stalled = s.phase == _STALLED
        restarts = s.restarts + stalled.astype(jnp.int32)
        key = jax.random.fold_in(s.key, restarts)
        if cfg.on_stall == "redraw_row":
            x_new = redraw_weakest_row(cfg, tgt, s.x_hat, key, solver.radius)
        else:
            x_new = _fresh_x(solver, key, d, dtype)
        found = jnp.zeros((), bool)
        if cfg.repair_pairs:  # an antipodal pair of rows is repaired first (then first-order steps)
            x_fix, found = repair_antipodal_pair(cfg, tgt, s.x_hat, jax.random.fold_in(key, 1), solver.radius)
            x_new = jnp.where(found, x_fix, x_new)
        flip = jnp.zeros((), bool)
        if cfg.on_stall == "redraw_row" and cfg.flip_candidates:
            k = s.restarts % (cfg.flip_candidates + 1)  # this stall's place in its cycle
            flip = stalled & (k < cfg.flip_candidates) & ~found
            row = flip_ranking(cfg, tgt, s.x_hat)[jnp.minimum(k, s.x_hat.shape[0] - 1)]
            x_new = jnp.where(flip, s.x_hat.at[row].multiply(-1), x_new)
        fresh = stalled & ~flip
        return s._replace(x_hat=where(stalled, x_new, s.x_hat),
                          opt_state=where(fresh, solver.init(x_new), s.opt_state),
                          phase=jnp.where(fresh, 0, jnp.where(flip, 1, s.phase)).astype(jnp.int32),
                          phase_start=jnp.where(stalled, s.steps, s.phase_start).astype(jnp.int32),
                          damping=jnp.where(flip, jnp.asarray(cfg.damping, dtype), s.damping),
                          ref_loss=jnp.where(stalled, jnp.inf, s.ref_loss).astype(dtype),
                          restarts=restarts)

    first = make_loop(0, solver.step, lambda s: s.opt_state, lambda s, a: s._replace(opt_state=a))
    if solver.polish_step is None:
        return first(state)
    polish = make_loop(1, solver.polish_step, lambda s: s.damping, lambda s, a: s._replace(damping=a))
    running = lambda s: (s.status == RUNNING) & (s.steps < max_steps)
    # lax.cond skips the recovery work of seeds that have not stalled (under vmap it is a select)
    recover_if_stalled = lambda s: jax.lax.cond(s.phase == _STALLED, recover, lambda s: s, s)
    return jax.lax.while_loop(running, lambda s: recover_if_stalled(polish(first(s))), state)


def run_steps(solver: Solver, target: Target, state: ReconState, max_steps) -> ReconState:
    """Advance one seed until it stops or reaches ``max_steps`` total steps (pure; vmappable)."""
    return _advance(solver, attack_target(target, solver.cfg), state, max_steps)


def finalize(solver: Solver, target: Target, state: ReconState, max_steps) -> ReconResult:
    """Evaluate the loss at the final iterate and mark seeds that ran out of steps."""
    tgt = attack_target(target, solver.cfg)
    final = solver.loss_fn(tgt, state.x_hat)
    final = jnp.where(jnp.isfinite(final), final, state.loss)
    status = jnp.where((state.status == RUNNING) & (state.steps >= max_steps), BUDGET, state.status)
    status = jnp.where((status == BUDGET) & (final <= solver.cfg.tol), CONVERGED, status)
    return ReconResult(state.x_hat, final, state.steps, status.astype(jnp.int32), state.restarts)


def reconstruct(target: Target, key: jax.Array, n: int, *, method: str | MethodConfig = DEFAULT_METHOD,
                steps: int = 10_000, radius: float | None | str = "sphere", **method_options) -> ReconResult:
    """Reconstruct ``n`` training inputs from a target (pure; jit- and vmap-compatible).

    Args:
      target: :class:`~jaxrecon.Target` (feature map and ``theta``).
      key: PRNG key for the initial iterate.
      n: number of rows of ``x_hat`` (training samples to recover).
      method: a name from :data:`METHODS` or a :class:`MethodConfig`.
      steps: step budget.
      radius: row norm kept after each step (``"sphere"`` = ``sqrt(d)``; ``None`` = free rows).
      **method_options: overrides of the method's :class:`MethodConfig` fields (``lr=0.1``...).

    Returns:
      :class:`ReconResult` with ``x_hat`` (``n x d``), final loss, steps taken and status code.
    """
    steps = _validate.positive_int("steps", steps)
    cfg = method if isinstance(method, MethodConfig) else method_config(method, **method_options)
    solver = make_solver(target, n, cfg, steps, radius)
    tgt = attack_target(target, cfg)  # prepared once: a dense V is generated once per call
    state = init_state(solver, key, tgt)
    state = _advance(solver, tgt, state, steps)
    return finalize(solver, tgt, state, steps)


class SeedsResult(NamedTuple):
    """Results of :func:`reconstruct_seeds` (leading axis: seeds) with timing."""

    x_hat: np.ndarray  # (S, n, d)
    loss: np.ndarray  # (S,)
    steps: np.ndarray  # (S,)
    status: list  # status names
    seconds: np.ndarray  # (S,) wall-clock until each seed stopped (chunk resolution), compile included
    compile_seconds: float
    restarts: np.ndarray  # (S,)


def reconstruct_seeds(target: Target, key: jax.Array, n: int, seeds: int, *,
                      method: str | MethodConfig = DEFAULT_METHOD, steps: int = 10_000,
                      radius: float | None | str = "sphere", chunk: int = 250, progress: bool = True,
                      target_axis: Optional[int] = None, time_budget: Optional[float] = None,
                      callback: Optional[Callable] = None, seed_shards: int = 1,
                      **method_options) -> SeedsResult:
    """Run ``seeds`` attacks vmapped in one compiled program, in chunks of steps.

    Seed ``s`` starts from ``jax.random.split(key, seeds)[s]``, so results equal those of
    :func:`reconstruct` called with that key. ``target_axis=0`` vmaps over a batched target
    (one target per seed, as in sweeps); ``None`` shares one target.

    ``time_budget`` (seconds, compilation included) stops after the first chunk that ends past
    it; running seeds then report status ``"budget"``. ``callback(elapsed_seconds, state)`` is
    called after every chunk with the vmapped :class:`ReconState` (for traces of loss vs time).

    ``seed_shards=k`` splits the seeds over the first ``k`` devices (``seeds`` must be a multiple
    of ``k``): XLA partitions the vmapped program along the seed axis, same numbers as one device.
    """
    seeds = _validate.positive_int("seeds", seeds)
    seed_shards = _validate.positive_int("seed_shards", seed_shards)
    if seed_shards > 1:
        if seed_shards > len(jax.devices()):
            raise ValueError(f"seed_shards: {seed_shards} devices requested but only {len(jax.devices())} "
                             f"available; on CPU, simulate them with "
                             f"XLA_FLAGS=--xla_force_host_platform_device_count={seed_shards}")
        if seeds % seed_shards:
            raise ValueError(f"seed_shards: seeds={seeds} must be a multiple of seed_shards={seed_shards}")
    steps = _validate.positive_int("steps", steps)
    chunk = _validate.positive_int("chunk", chunk)
    cfg = method if isinstance(method, MethodConfig) else method_config(method, **method_options)
    one_target = target if target_axis is None else jax.tree_util.tree_map(lambda a: a[0], target)
    solver = make_solver(one_target, n, cfg, steps, radius)
    keys = jax.random.split(key, seeds)

    prep = lambda t: attack_target(t, cfg)
    tgt = jax.jit(prep if target_axis is None else jax.vmap(prep))(target)
    init = jax.jit(jax.vmap(lambda k, t: init_state(solver, k, t), in_axes=(0, target_axis)))
    advance_fn = jax.vmap(lambda t, s, m: _advance(solver, t, s, m), in_axes=(target_axis, 0, None))
    if seeds == 1 and target_axis is None:  # unbatched program: lax.cond then skips untaken branches
        tree = jax.tree_util.tree_map
        advance_fn = lambda t, s, m: tree(lambda a: a[None], _advance(solver, t, tree(lambda a: a[0], s), m))
    advance = jax.jit(advance_fn)
    fin = jax.jit(jax.vmap(lambda t, s: finalize(solver, t, s, steps), in_axes=(target_axis, 0)))

    t0 = time.perf_counter()
    if seed_shards > 1:  # seeds split over devices, the target replicated (or split, when batched)
        mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:seed_shards]), ("seeds",))
        by_seed = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("seeds"))
        whole = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        tgt = jax.device_put(tgt, whole if target_axis is None else by_seed)
        keys = jax.device_put(keys, by_seed)
        advance = jax.jit(advance_fn, in_shardings=(whole if target_axis is None else by_seed, by_seed, whole),
                          out_shardings=by_seed)
    state = init(keys, tgt)
    if seed_shards > 1:
        state = jax.device_put(state, by_seed)
    compiled = advance.lower(tgt, state, 0).compile()
    compile_seconds = time.perf_counter() - t0
    seconds = np.full(seeds, np.nan)
    bar = _progress_bar(steps, seeds, progress)
    done_steps = 0
    while done_steps < steps:
        done_steps = min(done_steps + chunk, steps)
        state = compiled(tgt, state, done_steps)
        status = np.asarray(state.status)
        now = time.perf_counter() - t0
        newly = (status != RUNNING) & np.isnan(seconds)
        seconds[newly] = now
        if bar is not None:
            loss = np.asarray(state.loss)
            bar.n = done_steps
            bar.set_postfix(stopped=f"{int((status != RUNNING).sum())}/{seeds}",
                            loss_median=f"{np.median(loss):.3g}", refresh=False)
            bar.refresh()
        if callback is not None:
            callback(now, state)
        if np.all(status != RUNNING) or (time_budget is not None and now >= time_budget):
            break
    if bar is not None:
        bar.close()
    res = fin(tgt, state)
    seconds[np.isnan(seconds)] = time.perf_counter() - t0
    if time_budget is not None:  # seeds cut by the wall-clock budget ran out of budget too
        res = res._replace(status=jnp.where(res.status == RUNNING, BUDGET, res.status))
    return SeedsResult(np.asarray(res.x_hat), np.asarray(res.loss), np.asarray(res.steps),
                       [STATUS_NAMES[int(s)] for s in np.asarray(res.status)], seconds, compile_seconds,
                       np.asarray(res.restarts))


def _progress_bar(total, seeds, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"reconstruct ({seeds} seeds)", unit="step", dynamic_ncols=True)
