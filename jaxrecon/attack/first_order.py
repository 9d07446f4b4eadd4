"""The first-order phase: steps of any optax transformation on the projector loss."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from .. import _validate
from .state import Phase, plateau_after, plateau_start

#: Optimisers accepted by name (any ``optax.<name>`` taking ``learning_rate`` also works).
COMMON_OPTIMIZERS = ("adabelief", "adagrad", "adam", "adamax", "adamw", "amsgrad", "lamb", "lbfgs",
                     "lion", "nadam", "novograd", "radam", "rmsprop", "sgd", "sm3", "yogi")


@dataclasses.dataclass(frozen=True)
class FirstOrder:
    """A first-order phase: an optax optimiser by name with a learning-rate schedule.

    Attributes:
      optimizer: name of an optax optimiser (see :data:`COMMON_OPTIMIZERS`).
      lr: learning rate (peak learning rate when a schedule is used).
      momentum: momentum for ``sgd`` (``None``: plain SGD).
      schedule: ``"constant"``, ``"cosine"`` or ``"exponential"`` (decay to ``lr * final_lr_ratio``
        over ``decay_steps``, default the phase's step budget), after ``warmup`` linear warm-up steps.
      switch_below: the phase ends once the loss is ``<= switch_below`` (``None``: never) ...
      switch_after: ... or after this many steps in the phase (``None``: never) ...
      switch_plateau: ... or once its loss has not fallen by a relative ``switch_rtol`` (default
        20 %) over this many steps, counted after the ``warmup`` (``None``: never): the phase has
        found its basin (or a spurious one) and more of its steps only creep. When it ends, the
        method's next phase starts; all three are ignored when this is the method's only phase.
    """

    optimizer: str = "sgd"
    lr: float = 20.0
    momentum: Optional[float] = 0.9
    schedule: str = "constant"
    warmup: int = 0
    decay_steps: int = 0
    final_lr_ratio: float = 1e-2
    switch_below: Optional[float] = None
    switch_after: Optional[int] = None
    switch_plateau: Optional[int] = None
    switch_rtol: float = 0.2

    def validate(self) -> "FirstOrder":
        opt = getattr(optax, self.optimizer, None) if isinstance(self.optimizer, str) else None
        if not callable(opt) or self.optimizer.startswith("_"):
            raise ValueError(f"optimizer: unknown optax optimiser {self.optimizer!r}; common choices: "
                             f"{list(COMMON_OPTIMIZERS)}")
        _validate.positive_float("lr", self.lr)
        _validate.choice("schedule", self.schedule, ("constant", "cosine", "exponential"))
        if self.momentum is not None:
            _validate.positive_float("momentum", self.momentum, allow_zero=True)
        if self.switch_after is not None:
            _validate.positive_int("first_steps", self.switch_after)
        if self.switch_below is not None:
            _validate.positive_float("polish_below", self.switch_below, allow_zero=True)
        if self.switch_plateau is not None:
            _validate.positive_int("switch_plateau", self.switch_plateau)
        _validate.positive_float("switch_rtol", self.switch_rtol)
        if self.switch_rtol >= 1:
            raise ValueError(f"switch_rtol: must be in (0, 1), got {self.switch_rtol!r}")
        return self

    def schedule_fn(self, total_steps: int):
        """The learning rate: a float or an optax schedule over ``total_steps`` steps."""
        if self.schedule == "constant" and self.warmup == 0:
            return self.lr
        decay = self.decay_steps or max(total_steps - self.warmup, 1)
        end = self.lr * self.final_lr_ratio
        if self.schedule == "cosine":
            return optax.warmup_cosine_decay_schedule(0.0, self.lr, max(self.warmup, 1), self.warmup + decay, end)
        if self.schedule == "exponential":
            return optax.warmup_exponential_decay_schedule(0.0, self.lr, max(self.warmup, 1), decay,
                                                           self.final_lr_ratio, end_value=end)
        return optax.linear_schedule(0.0, self.lr, self.warmup) if self.warmup else self.lr

    def optimizer_fn(self, total_steps: int) -> optax.GradientTransformationExtraArgs:
        """The optax transformation (``value``/``value_fn`` extra arguments always accepted)."""
        factory = getattr(optax, self.optimizer)
        lr = self.schedule_fn(self.switch_after or total_steps)
        try:
            opt = factory(learning_rate=lr, momentum=self.momentum) if self.optimizer == "sgd" else factory(
                learning_rate=lr)
        except TypeError as e:
            raise ValueError(f"optimizer: optax.{self.optimizer} cannot be built with a learning rate ({e})") from None
        if not isinstance(opt, optax.GradientTransformation):
            raise ValueError(f"optimizer: optax.{self.optimizer} is not an optimiser")
        return optax.with_extra_args_support(opt)


class PlateauWatch(NamedTuple):
    """The phase state of a first-order phase with ``switch_plateau``: the optimiser's state, the
    loss when it last fell by ``switch_rtol``, and the steps since then."""

    opt: Any
    mark_loss: jax.Array
    since: jax.Array


class FirstOrderPhase(NamedTuple):
    """:class:`FirstOrder` bound to a loss and a row radius: ``init(x, dtype) -> state`` (the optax
    state, wrapped in a :class:`PlateauWatch` with ``switch_plateau``); ``step(tgt, x, state) ->
    (x_next, state_next, loss_at_x, ok)``; ``done(loss, steps_in_phase, state) -> bool``."""

    config: FirstOrder
    opt: optax.GradientTransformationExtraArgs
    loss_fn: Callable  # (tgt, x) -> loss
    project: Callable  # x -> x with rows back on the sphere
    kind: Phase = Phase.FIRST_ORDER
    value_and_grad: Optional[Callable] = None  # (tgt, x) -> (loss, gradient); None: autodiff of loss_fn

    def init(self, x, dtype=None):
        if self.config.switch_plateau is None:
            return self.opt.init(x)
        return PlateauWatch(self.opt.init(x), *plateau_start(x.dtype if dtype is None else dtype))

    def step(self, tgt, x, state):
        if self.config.switch_plateau is None:
            return self._step(tgt, x, state)
        x_next, opt_next, value, ok = self._step(tgt, x, state.opt)
        fell = ok & (value < state.mark_loss * (1 - self.config.switch_rtol))
        return x_next, PlateauWatch(opt_next, *plateau_after(state.mark_loss, state.since, value, fell)), value, ok

    def _step(self, tgt, x, opt_state):
        if self.value_and_grad is not None:
            value, grad = self.value_and_grad(tgt, x)
        else:
            value, grad = jax.value_and_grad(self.loss_fn, argnums=1)(tgt, x)
        updates, new_state = self.opt.update(grad, opt_state, x, value=value, grad=grad,
                                             value_fn=lambda xx: self.loss_fn(tgt, xx))
        ok = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad))
        return self.project(optax.apply_updates(x, updates)), new_state, value, ok

    def done(self, value, in_phase, state=None):
        cfg = self.config
        below = value <= cfg.switch_below if cfg.switch_below is not None else False
        after = in_phase >= cfg.switch_after if cfg.switch_after is not None else False
        flat = False
        if cfg.switch_plateau is not None:  # a window of steps after the warm-up (whose slow start is no plateau)
            flat = (state.since >= cfg.switch_plateau) & (in_phase >= cfg.warmup + cfg.switch_plateau)
        return below | after | flat
