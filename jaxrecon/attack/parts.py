"""The parts a :class:`~jaxrecon.attack.Method` is made of, besides its phases and population.

Each part is a frozen dataclass whose fields are the options of one dotted prefix of
:mod:`jaxrecon.attack.options` (``start.kind``, ``stop.tol``, ``stall.escalate``, ``loss.form`` ...)::

    Start(kind, init, candidates, candidate_steps, split=Split(steps, features, lm))
    Stop(tol, floor_factor, plateau_window, plateau_rtol, precision_tol, precision_window)
    Stall(actions, escalate)
    Loss(form, jitter, surrogate_slope)

The phases (:class:`~jaxrecon.attack.FirstOrder`, :class:`~jaxrecon.attack.LevenbergMarquardt`) and
the :class:`~jaxrecon.attack.population.Population` are parts too, defined with their code.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from .. import _validate
from ..loss import LOSS_FORMS
from .lm import LevenbergMarquardt

#: Starting points (:attr:`Start.kind`): random rows, greedy matching pursuit against ``theta``, the
#: split start (rows up to sign first, then their signs), or ``auto`` (the split start where it
#: applies, chosen per problem by :mod:`jaxrecon.attack.auto`).
STARTS = ("random", "pursuit", "split", "auto")


@dataclasses.dataclass(frozen=True)
class Split:
    """The split start's first stage (:mod:`jaxrecon.attack.split`).

    Attributes:
      steps: its step cap (counted in the seed's steps).
      features: it runs on the first ``features * d * n`` features only (rows of ``V``, at least
        ``2 d``, at most ``p``; 0: all ``p``): the even part of ``theta`` restricted to them has the
        same zero while ``features`` is well above 1, and each pass over that prefix of ``V`` costs
        ``features * d * n / p`` of a whole one (a stored ``V``'s prefix is copied). The second
        stage uses every feature.
      lm: the LM phase of the first stage (``None``: the method's own). Its LM steps far from the
        zero move rows between basins, where an exact Gauss-Newton step gains no more than a rough one.
    """

    steps: int = 2000
    features: float = 0.0
    lm: Optional[LevenbergMarquardt] = None

    def validate(self) -> "Split":
        _validate.positive_int("start.split.steps", self.steps)
        if _validate.positive_float("start.split.features", self.features, allow_zero=True) and self.features <= 1:
            raise ValueError(f"start.split.features: must be 0 (all features) or > 1 (below d * n features the "
                             f"first stage's zero is not unique), got {self.features!r}")
        if self.lm is not None:
            try:
                self.lm.validate()
            except ValueError as e:  # "cg_iters: ..." of this stage's LM, by its dotted name
                raise ValueError(f"start.split.lm.{e}") from None
        return self


@dataclasses.dataclass(frozen=True)
class Start:
    """Where a seed starts.

    Attributes:
      kind: one of :data:`STARTS`.
      init: random rows ``N(0, I)`` (``"gaussian"``, as published) or projected to the sphere.
      candidates: candidate starts per seed; the best after ``candidate_steps`` first-order steps is kept.
      candidate_steps: first-order steps of each candidate (> 0 when ``candidates > 1``).
      split: the split start's first stage (:class:`Split`).
    """

    kind: str = "random"
    init: str = "gaussian"
    candidates: int = 1
    candidate_steps: int = 0
    split: Split = Split()

    def validate(self) -> "Start":
        _validate.choice("start.kind", self.kind, STARTS)
        _validate.choice("start.init", self.init, ("gaussian", "sphere"))
        _validate.positive_int("start.candidates", self.candidates)
        if self.candidates > 1:
            _validate.positive_int("start.candidate_steps", self.candidate_steps)
        self.split.validate()
        return self


#: Plateau window (steps) for a target with a noise floor when the method sets none: long enough
#: for the stall actions (every 40 LM steps) to try a few rows before the seed stops.
DEFAULT_PLATEAU_WINDOW = 500


@dataclasses.dataclass(frozen=True)
class Stop:
    """When a seed stops (besides its step budget).

    Attributes:
      tol: its loss is ``<= tol`` (status ``converged``).
      floor_factor: with a target that carries a noise floor (a defended ``theta``), its loss is
        ``<= floor_factor * floor`` (status ``floor``).
      plateau_window, plateau_rtol: its best loss has not improved by a relative ``plateau_rtol``
        over ``plateau_window`` steps (status ``plateau``); ``None``: :data:`DEFAULT_PLATEAU_WINDOW`
        for a target with a floor and off otherwise, ``0`` off.
      precision_tol, precision_window: the precision stop (``None``: off): its loss is
        ``<= precision_tol`` and has not halved over ``precision_window`` steps, or its last phase
        stalls at such a loss: it has reached the floating-point floor of the loss (above ``tol``
        when ``n * d`` is large or the inputs are correlated), and stops with status ``precision``
        returning its best iterate. With the stop on, a seed that ends on its budget also returns
        its best iterate.
    """

    tol: float = 1e-7
    floor_factor: float = 1.2
    plateau_window: Optional[int] = None
    plateau_rtol: float = 1e-3
    precision_tol: Optional[float] = None
    precision_window: int = 8

    def validate(self) -> "Stop":
        _validate.positive_float("stop.tol", self.tol, allow_zero=True)
        if not self.floor_factor >= 1.0:
            raise ValueError(f"stop.floor_factor: must be >= 1, got {self.floor_factor!r}")
        if self.plateau_window not in (None, 0):
            _validate.positive_int("stop.plateau_window", self.plateau_window)
        if not 0.0 < self.plateau_rtol < 1.0:
            raise ValueError(f"stop.plateau_rtol: must be in (0, 1), got {self.plateau_rtol!r}")
        if self.precision_tol is not None:
            _validate.positive_float("stop.precision_tol", self.precision_tol)
        _validate.positive_int("stop.precision_window", self.precision_window)
        return self

    def plateau_steps(self, has_floor: bool) -> int:
        """The plateau window in force (0: off); see ``plateau_window``."""
        if self.plateau_window is None:
            return DEFAULT_PLATEAU_WINDOW if has_floor else 0
        return self.plateau_window


@dataclasses.dataclass(frozen=True)
class Stall:
    """What a seed does when its last phase ends above the tolerance.

    Attributes:
      actions: stall actions, in order (:mod:`jaxrecon.attack.stall`); the first that applies
        runs, then the first phase starts again. Empty: no stall handling.
      escalate: every ``escalate``-th stall starts the seed afresh instead (new random rows, or a
        new pursuit start); 0: never. The best iterate seen survives the new start (a method that
        escalates keeps the watch of :mod:`jaxrecon.attack.stops`).
    """

    actions: tuple = ()
    escalate: int = 0

    def validate(self) -> "Stall":
        for action in self.actions:
            action.validate()
        if self.escalate != 0:
            _validate.positive_int("stall.escalate", self.escalate)
        return self


@dataclasses.dataclass(frozen=True)
class Loss:
    """The loss the attack minimises.

    Attributes:
      form: ``"kernel"`` or ``"residual"`` (:mod:`jaxrecon.loss`).
      jitter: relative Cholesky jitter (``None``: the dtype's default).
      surrogate_slope: leaky ReLU derivative used by the attack (``None``: the exact derivative).
    """

    form: str = "kernel"
    jitter: Optional[float] = None
    surrogate_slope: Optional[float] = None

    def validate(self) -> "Loss":
        _validate.choice("loss.form", self.form, LOSS_FORMS)
        if self.jitter is not None:
            _validate.positive_float("loss.jitter", self.jitter, allow_zero=True)
        if self.surrogate_slope is not None:
            _validate.positive_float("loss.surrogate_slope", self.surrogate_slope, allow_zero=True)
        return self
