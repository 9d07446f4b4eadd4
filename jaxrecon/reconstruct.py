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
from .loss import LOSS_FORMS, projector_loss

# Status codes stored in the state (int32) and their names.
RUNNING, CONVERGED, BUDGET, NONFINITE = 0, 1, 2, 3
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
}
DEFAULT_METHOD = "published"


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
    opt_state: Any
    loss: jax.Array  # loss at x_hat (inf before the first evaluation)
    steps: jax.Array  # int32: optimiser steps taken
    status: jax.Array  # int32: RUNNING / CONVERGED / BUDGET / NONFINITE


class ReconResult(NamedTuple):
    x_hat: jax.Array  # (n, d)
    loss: jax.Array  # final loss at x_hat (unclipped)
    steps: jax.Array
    status: jax.Array


class Solver(NamedTuple):
    """A method bound to a problem size: pure ``loss_fn``/``init``/``step`` functions.

    ``init(x0) -> opt_state`` and
    ``step(target, x_hat, opt_state) -> (x_next, opt_state_next, loss_at_x_hat, ok)``, where
    ``target`` is already prepared for the attack (see :func:`attack_target`).
    """

    cfg: MethodConfig
    n: int
    radius: Optional[float]
    loss_fn: Callable
    init: Callable
    step: Callable


def attack_target(target: Target, cfg: MethodConfig) -> Target:
    """The target the attack differentiates: surrogate derivative if the method asks, map prepared."""
    fmap = target.fmap
    if cfg.surrogate_slope is not None and hasattr(fmap, "with_surrogate"):
        fmap = fmap.with_surrogate(cfg.surrogate_slope)
    return Target(fmap.prepare(), target.theta)


def make_solver(target: Target, n: int, method: str | MethodConfig = DEFAULT_METHOD,
                total_steps: int = 10_000, radius: float | None | str = "sphere") -> Solver:
    """Bind a method to a target's shapes. ``radius="sphere"`` means ``sqrt(d)``."""
    cfg = method if isinstance(method, MethodConfig) else method_config(method)
    n = _validate.positive_int("n", n)
    d = target.fmap.input_dim
    radius = math.sqrt(d) if radius == "sphere" else radius
    opt = make_optimizer(cfg, total_steps)

    def loss_fn(tgt, x):
        return projector_loss(tgt.fmap, tgt.theta, x, cfg.jitter, cfg.loss_form)

    def init(x0):
        return opt.init(x0)

    def step(tgt, x, opt_state):
        value, grad = jax.value_and_grad(loss_fn, argnums=1)(tgt, x)
        updates, new_state = opt.update(grad, opt_state, x, value=value, grad=grad,
                                        value_fn=lambda xx: loss_fn(tgt, xx))
        ok = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad))
        return optax.apply_updates(x, updates), new_state, value, ok

    return Solver(cfg, n, radius, loss_fn, init, step)


def init_state(solver: Solver, key: jax.Array, target: Target) -> ReconState:
    """Initial iterate ``x_hat ~ N(0, I)`` (projected to the sphere when ``init="sphere"``)."""
    d = target.fmap.input_dim
    dtype = jnp.result_type(target.theta.dtype, jnp.float32)
    x0 = jax.random.normal(key, (solver.n, d), dtype)
    if solver.cfg.init == "sphere" and solver.radius is not None:
        x0 = project_to_sphere(x0, solver.radius)
    return ReconState(x0, solver.init(x0), jnp.asarray(jnp.inf, dtype),
                      jnp.asarray(0, jnp.int32), jnp.asarray(RUNNING, jnp.int32))


def _advance(solver: Solver, tgt: Target, state: ReconState, max_steps) -> ReconState:
    """Run until the seed stops or has taken ``max_steps`` steps in total (prepared target)."""
    tol = solver.cfg.tol

    def cond(s):
        return (s.status == RUNNING) & (s.steps < max_steps)

    def body(s):
        x_next, opt_next, value, ok = solver.step(tgt, s.x_hat, s.opt_state)
        if solver.radius is not None:
            x_next = project_to_sphere(x_next, solver.radius)
        converged = ok & (value <= tol)
        move = ok & ~converged
        pick = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(move, a, b), new, old)
        status = jnp.where(~ok, NONFINITE, jnp.where(converged, CONVERGED, RUNNING)).astype(jnp.int32)
        return ReconState(
            pick(x_next, s.x_hat), pick(opt_next, s.opt_state),
            jnp.where(ok, value, s.loss).astype(s.loss.dtype), s.steps + move.astype(jnp.int32), status,
        )

    return jax.lax.while_loop(cond, body, state)


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
    return ReconResult(state.x_hat, final, state.steps, status.astype(jnp.int32))


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


def reconstruct_seeds(target: Target, key: jax.Array, n: int, seeds: int, *,
                      method: str | MethodConfig = DEFAULT_METHOD, steps: int = 10_000,
                      radius: float | None | str = "sphere", chunk: int = 250, progress: bool = True,
                      target_axis: Optional[int] = None, **method_options) -> SeedsResult:
    """Run ``seeds`` attacks vmapped in one compiled program, in chunks of steps.

    Seed ``s`` starts from ``jax.random.split(key, seeds)[s]``, so results equal those of
    :func:`reconstruct` called with that key. ``target_axis=0`` vmaps over a batched target
    (one target per seed, as in sweeps); ``None`` shares one target.
    """
    seeds = _validate.positive_int("seeds", seeds)
    steps = _validate.positive_int("steps", steps)
    chunk = _validate.positive_int("chunk", chunk)
    cfg = method if isinstance(method, MethodConfig) else method_config(method, **method_options)
    one_target = target if target_axis is None else jax.tree_util.tree_map(lambda a: a[0], target)
    solver = make_solver(one_target, n, cfg, steps, radius)
    keys = jax.random.split(key, seeds)

    prep = lambda t: attack_target(t, cfg)
    tgt = jax.jit(prep if target_axis is None else jax.vmap(prep))(target)
    init = jax.jit(jax.vmap(lambda k, t: init_state(solver, k, t), in_axes=(0, target_axis)))
    advance = jax.jit(jax.vmap(lambda t, s, m: _advance(solver, t, s, m), in_axes=(target_axis, 0, None)))
    fin = jax.jit(jax.vmap(lambda t, s: finalize(solver, t, s, steps), in_axes=(target_axis, 0)))

    t0 = time.perf_counter()
    state = init(keys, tgt)
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
        if np.all(status != RUNNING):
            break
    if bar is not None:
        bar.close()
    res = fin(tgt, state)
    seconds[np.isnan(seconds)] = time.perf_counter() - t0
    return SeedsResult(np.asarray(res.x_hat), np.asarray(res.loss), np.asarray(res.steps),
                       [STATUS_NAMES[int(s)] for s in np.asarray(res.status)], seconds, compile_seconds)


def _progress_bar(total, seeds, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"reconstruct ({seeds} seeds)", unit="step", dynamic_ncols=True)
