"""Attack methods: a method is a list of phases, an ordered list of stall actions and a loss.

Named methods are short factories, in the manner of optax's ``alias.py``::

    published()   SGD with momentum on the kernel form, the paper's recipe
    adam()        Adam, warm-up and cosine decay, on the residual form
    adam_lm()     Adam, then Levenberg-Marquardt, with stall actions (the default)
    adam_lm_repair()  adam_lm with every suspect row repaired at a stall (many rows)
    adam_lm_split()   adam_lm from the split start: rows up to sign first, then their signs

:func:`method_config` looks a method up by name and applies overrides by field name (the
sections' fields, e.g. ``lr=0.1``, ``cg_iters=40``, ``repair_pairs=False``).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from .. import _validate
from ..activations import PUBLISHED_SURROGATE_SLOPE
from ..loss import LOSS_FORMS
from .first_order import FirstOrder
from .lm import LevenbergMarquardt
from .population import Population
from .stall import PairRepair, Restart, RowRedraw, RowRepair
from .start import STARTS


@dataclasses.dataclass(frozen=True)
class Method:
    """Everything that defines an attack; hashable, so it can be a static jit argument.

    Attributes:
      first_order: the first phase (:class:`FirstOrder`).
      lm: an optional second phase (:class:`LevenbergMarquardt`), entered when the first-order
        phase ends (its ``switch_below`` / ``switch_after``).
      on_stall: stall actions, in order (:mod:`jaxrecon.attack.stall`); the first that applies runs
        when the last phase stalls, then the first phase starts again. Empty: no stall handling.
      loss_form: ``"kernel"`` or ``"residual"`` (see :mod:`jaxrecon.loss`).
      surrogate_slope: leaky ReLU derivative used by the attack (``None``: exact derivative).
      init: ``"gaussian"`` (``x_hat ~ N(0, I)``, as published) or ``"sphere"`` (projected).
      start: ``"random"`` (rows drawn as ``init`` says), ``"pursuit"`` (rows chosen greedily
        against ``theta``: :mod:`jaxrecon.attack.start`) or ``"split"`` (the method first run on
        the sign-free even part of ``theta``, then the signs chosen in one solve:
        :mod:`jaxrecon.attack.split`; dense random features with ReLU or GELU).
      split_steps: the step cap of the split start's first stage (counted in the seed's steps).
      split_features: the split start's first stage runs on the first ``split_features * d * n``
        features only (rows of ``V``, at least ``2 d``, at most ``p``; 0: all ``p``): the even part
        of ``theta`` restricted to them has the same zero while ``split_features`` is well above
        1, and each pass over that prefix of ``V`` costs ``split_features * d * n / p`` of a whole
        one (:func:`~jaxrecon.attack.split.prefix_target`; the prefix is copied, so the stage
        holds it next to ``V``). The second stage uses every feature.
      split_lm: the LM phase of the split start's first stage (``None``: the method's ``lm``); set
        by the options ``split_cg_iters`` and ``split_cg_tol``. That stage's LM steps far from the
        zero move rows between basins, where an exact Gauss-Newton step gains no more than a rough
        one.
      tol: a seed stops when its loss is ``<= tol``.
      jitter: relative Cholesky jitter (``None``: the dtype's default).
      starts: candidates started per seed; the best after ``start_steps`` first-order steps is kept.
      population: ``None``, or a :class:`~jaxrecon.attack.population.Population`: that many whole
        attacks per seed, advanced together until one converges.
      floor_factor: with a target that carries a noise floor (a defended ``theta``), a seed stops
        with status ``floor`` once its loss is ``<= floor_factor * floor``.
      plateau_window, plateau_rtol: a seed stops with status ``plateau`` when its best loss has not
        improved by a relative ``plateau_rtol`` over ``plateau_window`` steps; ``None`` means
        :data:`DEFAULT_PLATEAU_WINDOW` for a target with a floor and off otherwise, ``0`` off.
        Without a floor, a window and ``precision_tol`` the attack is exactly the one without
        these options.
      escalate: every ``escalate``-th stall of a seed starts it afresh (the method's own start
        again: a new split start, or new random rows) instead of the stall action; 0: never.
        The method ``auto`` sets it (:mod:`jaxrecon.attack.auto`); with the precision stop on, the
        best iterate seen survives the new start.
      precision_tol, precision_window: the precision stop (``None``: off). A seed whose loss is
        ``<= precision_tol`` and has not halved over ``precision_window`` steps, or whose last phase
        stalls at such a loss, has reached the floating-point floor of the loss (above ``tol``
        when ``n * d`` is large or the inputs are correlated: float32 resolves the residual form to
        ~1e-12 at d = 50, n = 100 and ~3e-10 at d = 768, n = 40 photographs): it stops with status
        ``precision`` and returns its best iterate, instead of a stall action discarding it. With
        the stop on, a seed that ends on its budget also returns its best iterate.
    """

    first_order: FirstOrder = FirstOrder()
    lm: Optional[LevenbergMarquardt] = None
    on_stall: tuple = ()
    loss_form: str = "kernel"
    surrogate_slope: Optional[float] = None
    init: str = "gaussian"
    start: str = "random"
    tol: float = 1e-7
    jitter: Optional[float] = None
    starts: int = 1
    start_steps: int = 0
    population: Optional[Population] = None
    floor_factor: float = 1.2
    plateau_window: Optional[int] = None
    plateau_rtol: float = 1e-3
    split_steps: int = 2000
    split_features: float = 0.0
    split_lm: Optional[LevenbergMarquardt] = None
    precision_tol: Optional[float] = None
    precision_window: int = 8
    escalate: int = 0

    def validate(self) -> "Method":
        self.first_order.validate()
        if self.lm is not None:
            self.lm.validate()
        for action in self.on_stall:
            action.validate()
        _validate.choice("loss_form", self.loss_form, LOSS_FORMS)
        _validate.choice("init", self.init, ("gaussian", "sphere"))
        _validate.choice("start", self.start, STARTS)
        _validate.positive_float("tol", self.tol, allow_zero=True)
        _validate.positive_int("starts", self.starts)
        _validate.positive_int("split_steps", self.split_steps)
        if _validate.positive_float("split_features", self.split_features, allow_zero=True) and self.split_features <= 1:
            raise ValueError(f"split_features: must be 0 (all features) or > 1 (below d * n features the first "
                             f"stage's zero is not unique), got {self.split_features!r}")
        if self.split_lm is not None:
            if self.lm is None:
                raise ValueError("split_cg_iters/split_cg_tol: the method has no LM phase")
            self.split_lm.validate()
        if self.starts > 1:
            _validate.positive_int("start_steps", self.start_steps)
        if self.population is not None:
            self.population.validate()
        if not self.floor_factor >= 1.0:
            raise ValueError(f"floor_factor: must be >= 1, got {self.floor_factor!r}")
        if self.plateau_window is not None:
            if self.plateau_window != 0:
                _validate.positive_int("plateau_window", self.plateau_window)
        if self.precision_tol is not None:
            _validate.positive_float("precision_tol", self.precision_tol)
        _validate.positive_int("precision_window", self.precision_window)
        if self.escalate != 0:
            _validate.positive_int("escalate", self.escalate)
        if not 0.0 < self.plateau_rtol < 1.0:
            raise ValueError(f"plateau_rtol: must be in (0, 1), got {self.plateau_rtol!r}")
        return self

    def plateau_steps(self, has_floor: bool) -> int:
        """The plateau window in force (0: off); see ``plateau_window``."""
        if self.plateau_window is None:
            return DEFAULT_PLATEAU_WINDOW if has_floor else 0
        return self.plateau_window

    @property
    def phases(self) -> tuple:
        """The phase configs, in order."""
        return (self.first_order,) if self.lm is None else (self.first_order, self.lm)


#: The precision stop of the large-``n`` methods: a loss at or below it that no longer halves is
#: taken as the float32 floor (spurious minima measured so far sit at ``>= 1e-5``).
PRECISION_TOL = 1e-9
#: ``adam-lm-split``'s first-order phase hands over to LM once its loss has not fallen by 20 %
#: (``FirstOrder.switch_rtol``) in 20 steps after the warm-up: its loss plateaus near 1e-2 with a row
#: between training points, and the steps to its 300th only creep (``benchmarks/RESULTS.md``, "The
#: plateau hand-over").
SPLIT_PLATEAU = 20
#: ``adam-lm-split``'s precision window: at photos16, n = 40 its second stage sat at the float floor
#: (3.5e-10) for 8 LM steps (90 s) before the default window of 8 stopped it; with 4 it stops 9 steps
#: sooner with the same rows (error_sign 4.7e-6; ``benchmarks/RESULTS.md``, "The plateau hand-over").
SPLIT_PRECISION_WINDOW = 4
#: ``adam-lm-split``'s first stage runs on the first ``5 d n`` features (half of them at the paper's
#: ``p = 10 d n``): its passes over ``V`` cost half, and it reaches the zero in about as many steps
#: (``benchmarks/RESULTS.md``, "The first stage on a prefix of the features").
SPLIT_FEATURES = 5.0
#: ``adam-lm-split``'s LM phases stall once their loss (above ``lm.STALL_FLOOR``) has not fallen by 1 %
#: in 8 steps: from a spurious minimum the remaining steps to ``stall_after`` (40) are rejected or
#: gain nothing (``benchmarks/RESULTS.md``, "The first stage on a prefix of the features").
SPLIT_STALL_PLATEAU = 8


def published() -> Method:
    """The paper's recipe, kept exactly: ``x_hat ~ N(0, I)``, SGD (lr 20, momentum 0.9) on the
    kernel form, leaky ReLU derivative (slope 0.02) in the backward pass, stop at ``L <= 1e-7``.
    Measured (``benchmarks/RESULTS.md``, d=100, n=20): 0/8 seeds exact within 60 s at 2, 5, 10 dn."""
    return Method(first_order=FirstOrder(optimizer="sgd", lr=20.0, momentum=0.9), loss_form="kernel",
                  surrogate_slope=PUBLISHED_SURROGATE_SLOPE, init="gaussian", tol=1e-7)


def _adam_phase(**kw) -> FirstOrder:
    return FirstOrder(optimizer="adam", lr=0.05, momentum=None, schedule="cosine", warmup=100, **kw)


def adam() -> Method:
    """Adam (lr 0.05, 100 warm-up steps, cosine decay) on the residual form, rows on the sphere,
    stop at ``L <= 1e-12``: first order only."""
    return Method(first_order=_adam_phase(), loss_form="residual", init="sphere", tol=1e-12)


def adam_lm() -> Method:
    """The default: Adam until the loss is ``<= 1e-3`` or for 300 steps, then row-scaled
    Levenberg-Marquardt (30 CG iterations per step); after 40 LM steps without converging, an
    antipodal pair of rows is repaired (the sign-flip minimum of ReLU features) if there is one,
    else the weakest row is redrawn by matching pursuit, and Adam resumes.
    Measured (``benchmarks/RESULTS.md``, d=100, n=20, 8 seeds, 60 s each with compilation): exact
    (error_sign <= 1e-3) in 8/8, 7/8, 8/8 seeds at p = 10, 5, 2 dn."""
    return Method(first_order=_adam_phase(switch_below=1e-3, switch_after=300),
                  lm=LevenbergMarquardt(cg_iters=30, stall_after=40),
                  on_stall=(PairRepair(), RowRedraw()), loss_form="residual", init="sphere", tol=1e-12)


def adam_lm_repair() -> Method:
    """``adam-lm`` for many rows: a stall repairs every suspect row at once
    (:class:`~jaxrecon.attack.stall.RowRepair`: the signs of the rows, antipodal pairs and weak
    rows redrawn with deflation) before the weakest row is redrawn. Above ``n ~ d`` the sign-flip
    minimum of ReLU features holds tens of rows at ``-x_j`` that the one-pair repair cannot undo
    (``benchmarks/RESULTS.md``, Scaling). Stops at ``L <= 1e-11``: the float32 floor of the
    residual form grows with ``n`` (``1.2e-12`` at ``n = 80``, above ``adam-lm``'s ``1e-12``),
    and with the precision stop at :data:`PRECISION_TOL` for larger or correlated problems."""
    return dataclasses.replace(adam_lm(), on_stall=(RowRepair(), RowRedraw()), tol=1e-11, precision_tol=PRECISION_TOL)


def adam_lm_split() -> Method:
    """``adam-lm`` from the split start (:mod:`jaxrecon.attack.split`): the method first runs on the
    part of ``theta`` that does not depend on the rows' signs, then the signs are chosen in one
    box-constrained least-squares solve and the method runs on ``theta`` from there. For ReLU/GELU
    random features with ``V`` stored; it removes the sign-flip minima that hold ``adam-lm`` once
    ``n`` nears ``d`` (measured: ``benchmarks/RESULTS.md``, "The split start"). With the
    precision stop at :data:`PRECISION_TOL` (window :data:`SPLIT_PRECISION_WINDOW`): at these sizes
    the float32 floor of the loss can lie above the tolerance ``1e-12``; and with the plateau
    hand-over (:data:`SPLIT_PLATEAU`): Adam hands over to LM when its loss stops falling, not only
    after its 300th step; with the first stage on the first :data:`SPLIT_FEATURES` ``* d * n``
    features (``split_features``); and with the LM plateau stall (:data:`SPLIT_STALL_PLATEAU`)."""
    m = adam_lm()
    return dataclasses.replace(m, start="split", precision_tol=PRECISION_TOL,
                               precision_window=SPLIT_PRECISION_WINDOW, split_features=SPLIT_FEATURES,
                               lm=dataclasses.replace(m.lm, stall_plateau=SPLIT_STALL_PLATEAU),
                               first_order=dataclasses.replace(m.first_order, switch_plateau=SPLIT_PLATEAU))


def global_() -> Method:
    """``adam-lm`` with a population of 8 starts per seed, advanced in rounds of 200 steps until
    one reaches the zero of the loss (:mod:`jaxrecon.attack.population`): for sweeps near the
    threshold, where a single start reaches a zero only with some probability. Costs up to 8
    times ``adam-lm`` per step budget."""
    return dataclasses.replace(adam_lm(), population=Population(size=8, round_steps=200))


def auto() -> Method:
    """The default: chooses per problem from the feature map's abilities (:mod:`jaxrecon.attack.auto`):
    ``adam-lm-split`` where the split start applies (random features with a ReLU-like activation),
    ``adam-lm`` elsewhere, ``global`` near the threshold (``p < 2 d n``); every choice escalates per
    seed (a fresh start every :data:`~jaxrecon.attack.auto.ESCALATE` stalls) and stops at the float
    floor (the precision stop). Results record what ran (``method_run``)."""
    from .auto import ESCALATE

    return dataclasses.replace(adam_lm_split(), start="auto", escalate=ESCALATE)


#: Plateau window (steps) for a target with a noise floor when the method sets none: long enough
#: for the stall actions (every 40 LM steps) to try a few rows before the seed stops.
DEFAULT_PLATEAU_WINDOW = 500

#: Named methods: name -> factory. ``published`` is the paper's recipe and must stay exactly so.
METHODS = {"published": published, "adam": adam, "adam-lm": adam_lm, "adam-lm-repair": adam_lm_repair,
           "adam-lm-split": adam_lm_split, "global": global_, "auto": auto}
DEFAULT_METHOD = "auto"

_SECTION_OF = {f.name: "first_order" for f in dataclasses.fields(FirstOrder)}
_SECTION_OF.update({f.name: "lm" for f in dataclasses.fields(LevenbergMarquardt)})
# older flat option names -> (section, field)
_LEGACY = {"first_steps": ("first_order", "switch_after"), "polish_below": ("first_order", "switch_below"),
           "polish_steps": ("lm", "stall_after")}
_DROPPED = {"stall_window": "measured not to pay off", "stall_ratio": "measured not to pay off",
            "flip_candidates": "measured not to pay off", "restarts": "renamed to 'starts'",
            "restart_steps": "renamed to 'start_steps'"}
_ACTION_OPTIONS = ("on_stall", "repair_pairs", "reset_candidates", "polish")
_POPULATION_OPTIONS = {"population": "size", "round_steps": "round_steps", "cull": "cull"}
_SPLIT_LM_OPTIONS = {"split_cg_iters": "cg_iters", "split_cg_tol": "cg_tol"}


def option_names() -> list:
    """Every option :func:`method_config` accepts."""
    top = [f.name for f in dataclasses.fields(Method) if f.name not in ("first_order", "lm", "on_stall")]
    return sorted(set(top) | set(_SECTION_OF) | set(_LEGACY) | set(_ACTION_OPTIONS) | set(_POPULATION_OPTIONS)
                  | set(_SPLIT_LM_OPTIONS))


def _apply_population(m: Method, opts: dict) -> Method:
    """``population`` (an int ``K``: ``K`` starts per seed; 1: none), ``round_steps``, ``cull``."""
    given = {_POPULATION_OPTIONS[k]: v for k, v in opts.items() if k in _POPULATION_OPTIONS}
    if not given:
        return m
    if isinstance(given.get("size"), Population):
        pop = given.pop("size")
    else:
        pop = m.population or Population()
    pop = dataclasses.replace(pop, **given)
    return dataclasses.replace(m, population=None if pop.size == 1 else pop.validate())


def _apply_actions(m: Method, opts: dict) -> Method:
    """The action-like options: ``polish`` (``"lm"``: add an LM phase), ``on_stall`` (``"restart"``,
    ``"redraw_row"`` or a tuple of actions), ``repair_pairs`` (bool), ``reset_candidates`` (int)."""
    if "polish" in opts:
        _validate.choice("polish", opts["polish"], ("lm",))
        m = dataclasses.replace(m, lm=m.lm or LevenbergMarquardt())
        if m.first_order.switch_below is None:  # the LM phase starts once the loss is small
            m = dataclasses.replace(m, first_order=dataclasses.replace(m.first_order, switch_below=1e-3))
    actions = list(m.on_stall)
    if "on_stall" in opts:
        v = opts["on_stall"]
        if isinstance(v, str):
            _validate.choice("on_stall", v, ("restart", "redraw_row"))
            last = Restart() if v == "restart" else RowRedraw()
            actions = [a for a in actions if isinstance(a, PairRepair)] + [last]
        else:
            actions = list(v)
    if "repair_pairs" in opts:
        actions = [a for a in actions if not isinstance(a, PairRepair)]
        if opts["repair_pairs"]:
            actions.insert(0, PairRepair())
    if "reset_candidates" in opts:
        actions = [dataclasses.replace(a, candidates=opts["reset_candidates"]) if hasattr(a, "candidates") else a
                   for a in actions]
    if m.lm is not None and not actions:
        actions = [Restart()]  # an LM phase that stalls needs an action
    return dataclasses.replace(m, on_stall=tuple(actions))


def method_config(method=DEFAULT_METHOD, **overrides) -> Method:
    """A named method (or a :class:`Method`) with options overridden by their dotted names
    (:mod:`jaxrecon.attack.options`): ``method_config("adam-lm", lm={"cg_iters": 40})`` or
    ``method_config("adam-lm", **{"lm.cg_iters": 40})``; the flat names of earlier versions
    (``cg_iters=40``) still work, with a ``DeprecationWarning``.

    ``None`` values are ignored. An explicitly chosen optimiser other than SGD has no momentum.
    Unknown options are a ``ValueError`` listing the allowed ones.
    """
    from .options import dotted, internal

    overrides = internal(dotted(overrides))
    if isinstance(method, Method):
        m = method
    elif method in METHODS:
        m = METHODS[method]()
    else:
        raise ValueError(f"method: unknown method {method!r}; allowed: {sorted(METHODS)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    for k in overrides:
        if k in _DROPPED:
            raise ValueError(f"{k}: this option was removed ({_DROPPED[k]})")
    unknown = set(overrides) - set(option_names())
    if unknown:
        raise ValueError(f"method options: unknown option(s) {sorted(unknown)}; allowed: {option_names()}")
    sections = {"first_order": {}, "lm": {}}
    top = {}
    for k, v in overrides.items():
        if k in _ACTION_OPTIONS or k in _POPULATION_OPTIONS or k in _SPLIT_LM_OPTIONS:
            continue
        if k in _LEGACY:
            sections[_LEGACY[k][0]][_LEGACY[k][1]] = v
        elif k in _SECTION_OF:
            sections[_SECTION_OF[k]][k] = v
        else:
            top[k] = v
    m = _apply_population(_apply_actions(m, overrides), overrides)
    fo = dataclasses.replace(m.first_order, **sections["first_order"])
    if fo.optimizer != "sgd" and "momentum" not in overrides:
        fo = dataclasses.replace(fo, momentum=None)
    lm = m.lm
    if sections["lm"]:
        lm = dataclasses.replace(lm or LevenbergMarquardt(), **sections["lm"])
    split_lm = m.split_lm
    given = {_SPLIT_LM_OPTIONS[k]: v for k, v in overrides.items() if k in _SPLIT_LM_OPTIONS}
    if given:
        names = "/".join(sorted(k for k in overrides if k in _SPLIT_LM_OPTIONS))
        if lm is None:
            raise ValueError(f"{names}: the method has no LM phase")
        if "split_cg_iters" in overrides:
            _validate.positive_int("split_cg_iters", overrides["split_cg_iters"])
        if "split_cg_tol" in overrides:
            _validate.positive_float("split_cg_tol", overrides["split_cg_tol"], allow_zero=True)
        split_lm = dataclasses.replace(split_lm or lm, **given)
    return dataclasses.replace(m, first_order=fo, lm=lm, split_lm=split_lm, **top).validate()
