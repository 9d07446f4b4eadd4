"""The stop rules beyond the tolerance, as terminate parts around a best-iterate watch.

A method's :class:`~jaxrecon.attack.parts.Stop` (its options) becomes, for one problem, a
:class:`Stops`: the rules in force (each a small frozen part with ``halts(...)`` and the
:class:`~jaxrecon.attack.state.Status` it sets) and what the :class:`~jaxrecon.attack.state.Watch`
tracks for them (the best loss and iterate, the plateau mark, the precision mark). The loop asks
every rule after every step, in order, and the first that halts a running seed sets its status;
:func:`best_iterate` is the wrapper that hands back the best iterate of a seed that ended anywhere
but at its tolerance or floor. Without a rule in force (:func:`stops_for` returns ``None``) the
state has no watch and the compiled program is the one without these stops.

Rules, in the order the loop asks them:

* :class:`FloorStop` (before the step counts): a target with a noise floor (a defended ``theta``)
  and a loss ``<= factor * floor``: status ``floor``, the iterate kept as for ``converged``;
* :class:`PlateauStop`: the best loss has not improved by a relative ``rtol`` over ``window``
  steps: status ``plateau``;
* :class:`PrecisionStop`: the loss is ``<= tol`` (above the method's tolerance) and has not halved
  over ``window`` steps, or the last phase stalls at such a loss: the float floor, status
  ``precision``.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional

import jax.numpy as jnp

from .state import AttackState, Status, Watch


@dataclasses.dataclass(frozen=True)
class FloorStop:
    """A loss ``<= factor * floor`` of a target with a noise floor; decided before the step counts."""

    factor: float
    status = Status.FLOOR
    before_move = True

    def halts(self, s: AttackState, value, move, steps):
        return move & (s.watch.floor > 0) & (value <= self.factor * s.watch.floor)


@dataclasses.dataclass(frozen=True)
class PlateauStop:
    """The best loss has not improved by the watch's ``rtol`` over ``window`` steps."""

    window: int
    status = Status.PLATEAU
    before_move = False

    def halts(self, s: AttackState, value, move, steps):
        return move & (steps - s.watch.mark_step >= self.window)


@dataclasses.dataclass(frozen=True)
class PrecisionStop:
    """A loss ``<= tol`` that has not halved over ``window`` steps (the float floor of the loss)."""

    tol: float
    window: int
    status = Status.PRECISION
    before_move = False

    def halts(self, s: AttackState, value, move, steps):
        return move & (value <= self.tol) & (steps - s.watch.low_step >= self.window)

    def at_stall(self, s: AttackState):
        """A seed whose last phase stalled at a loss ``<= tol`` has reached the floor too."""
        return s.loss <= self.tol


class Stops(NamedTuple):
    """The rules in force for one problem, and the watch's parameters: ``rtol`` moves the plateau
    mark; ``precision_tol`` (``None``: no precision mark) the precision mark."""

    rules: tuple
    rtol: float
    precision_tol: Optional[float] = None

    @property
    def precision(self) -> Optional[PrecisionStop]:
        return next((r for r in self.rules if isinstance(r, PrecisionStop)), None)


def stops_for(stop, has_floor: bool, keep_best: bool = False) -> Optional[Stops]:
    """The rules of a method's :class:`~jaxrecon.attack.parts.Stop` for a target with
    (``has_floor``) or without a noise floor; ``None`` when none is in force and ``keep_best`` is
    off (a method that escalates keeps the watch, so a fresh start never loses the best iterate)."""
    window = stop.plateau_steps(has_floor)
    if not has_floor and window == 0 and stop.precision_tol is None and not keep_best:
        return None
    rules = [FloorStop(float(stop.floor_factor))]
    if window > 0:
        rules.append(PlateauStop(int(window)))
    ptol = None if stop.precision_tol is None else float(stop.precision_tol)
    if ptol is not None:
        rules.append(PrecisionStop(ptol, int(stop.precision_window)))
    return Stops(tuple(rules), float(stop.plateau_rtol), ptol)


def init_watch(stops: Stops, floor, x0, steps, dtype) -> Watch:
    """The watch of a seed starting at ``x0`` after ``steps`` steps (``floor``: the target's, or 0)."""
    inf = jnp.asarray(jnp.inf, dtype)
    i32 = jnp.asarray(steps, jnp.int32)
    low = (inf, i32) if stops.precision_tol is not None else (None, None)
    return Watch(jnp.asarray(floor, dtype), inf, x0, inf, i32, *low)


def watched(stops: Stops, s: AttackState, value, ok) -> Watch:
    """The watch after a step whose loss at ``s.x_hat`` was ``value``: best loss and iterate, and
    the mark the plateau counts from (moved when the best improves by more than ``rtol``)."""
    w = s.watch
    better = ok & (value < w.best_loss)
    marked = ok & (value < w.mark_loss * (1 - stops.rtol))
    dtype = w.best_loss.dtype
    w = w._replace(best_loss=jnp.where(better, value, w.best_loss).astype(dtype),
                   best_x=jnp.where(better, s.x_hat, w.best_x),
                   mark_loss=jnp.where(marked, value, w.mark_loss).astype(dtype),
                   mark_step=jnp.where(marked, s.steps + 1, w.mark_step).astype(jnp.int32))
    if stops.precision_tol is None:
        return w
    # the precision mark: the loss when it last halved while <= precision_tol (reset above it)
    tiny = value <= stops.precision_tol
    halved = ok & tiny & (value < 0.5 * w.low_loss)
    low_loss = jnp.where(ok & ~tiny, jnp.inf, jnp.where(halved, value, w.low_loss))
    return w._replace(low_loss=low_loss.astype(dtype),
                      low_step=jnp.where(halved, s.steps + 1, w.low_step).astype(jnp.int32))


def apply_before(stops: Stops, s: AttackState, value, ok, move, status):
    """``(state with its watch updated, move, status)``: the rules decided before the step counts."""
    for rule in stops.rules:
        if rule.before_move:
            hit = rule.halts(s, value, move, None)
            move = move & ~hit
            status = jnp.where(hit, rule.status, status)
    return s._replace(watch=watched(stops, s, value, ok)), move, status


def apply_after(stops: Stops, s: AttackState, value, move, steps, status):
    """The status after the rules decided once the step counted (the first that halts wins)."""
    for rule in stops.rules:
        if not rule.before_move:
            hit = rule.halts(s, value, move, steps) & (status == Status.RUNNING)
            status = jnp.where(hit, rule.status, status)
    return status


#: Statuses whose seed returns its best iterate rather than its last (with a watch).
ENDED_ELSEWHERE = (Status.PLATEAU, Status.BUDGET, Status.PRECISION, Status.RUNNING, Status.NONFINITE)


def best_iterate(s: AttackState, status):
    """The iterate a seed returns: its best one if it ended on a plateau, its budget, the
    precision stop, a non-finite step, or was cut while running (the driver's time budget or a
    signal), and that is better than its last; else its last."""
    w = s.watch
    ended = jnp.zeros_like(status, dtype=bool)
    for code in ENDED_ELSEWHERE:
        ended = ended | (status == code)
    take = ended & (w.best_loss < s.loss)
    return jnp.where(take, w.best_x, s.x_hat)
