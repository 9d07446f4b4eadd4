"""Attack methods: a method is its phases and parts (start, stop, stall, loss, population).

Named methods are short factories, in the manner of optax's ``alias.py``::

    published()   SGD with momentum on the kernel form, the paper's recipe
    adam()        Adam, warm-up and cosine decay, on the residual form
    adam_lm()     Adam, then Levenberg-Marquardt, with stall actions
    auto()        the default: one of the above per problem (jaxrecon.attack.auto), escalating
    adam_lm_repair()  adam_lm with every suspect row repaired at a stall (many rows)
    adam_lm_split()   adam_lm from the split start: rows up to sign first, then their signs

:func:`method_config` looks a method up by name and applies options by their dotted names
(:mod:`jaxrecon.attack.options`: ``lm={"cg_iters": 40}``, ``**{"stop.tol": 1e-10}``).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from .. import _validate
from ..activations import PUBLISHED_SURROGATE_SLOPE
from .first_order import FirstOrder
from .lm import LevenbergMarquardt
from .parts import DEFAULT_PLATEAU_WINDOW, Loss, Split, Stall, Start, Stop  # noqa: F401  (re-exported)
from .population import Population
from .stall import PairRepair, Restart, RowRedraw, RowRepair


@dataclasses.dataclass(frozen=True)
class Method:
    """Everything that defines an attack, as parts; hashable, so it can be a static jit argument.

    Attributes:
      phases: the phases, in order and held by position: a first-order phase
        (:class:`FirstOrder`), then optionally a Levenberg-Marquardt phase
        (:class:`LevenbergMarquardt`), entered when the first-order phase ends (its
        ``switch_below`` / ``switch_after`` / ``switch_plateau``).
      start: where a seed starts (:class:`~jaxrecon.attack.parts.Start`: random rows, pursuit, the
        split start, or ``auto``).
      stop: when a seed stops (:class:`~jaxrecon.attack.parts.Stop`: tolerance, floor, plateau,
        precision).
      stall: what a stalled seed does (:class:`~jaxrecon.attack.parts.Stall`: actions, escalation).
      loss: the loss (:class:`~jaxrecon.attack.parts.Loss`: form, jitter, surrogate slope).
      population: ``None``, or a :class:`~jaxrecon.attack.population.Population`: that many whole
        attacks per seed, advanced together until one converges.

    Every option has a dotted name (:mod:`jaxrecon.attack.options`): the path through these parts
    (``start.split.features``, ``stop.tol``), with ``first_order.*`` and ``lm.*`` for the phases.
    """

    phases: tuple = (FirstOrder(),)
    start: Start = Start()
    stop: Stop = Stop()
    stall: Stall = Stall()
    loss: Loss = Loss()
    population: Optional[Population] = None

    def validate(self) -> "Method":
        if not self.phases or not isinstance(self.phases[0], FirstOrder):
            raise ValueError(f"phases: the first phase must be a FirstOrder phase, got {self.phases!r}")
        if len(self.phases) > 2 or (len(self.phases) == 2 and not isinstance(self.phases[1], LevenbergMarquardt)):
            raise ValueError(f"phases: a FirstOrder phase, then at most one LevenbergMarquardt phase; got "
                             f"{[type(p).__name__ for p in self.phases]}")
        for phase in self.phases:
            phase.validate()
        self.start.validate()
        if self.start.split.lm is not None and self.lm is None:
            raise ValueError("start.split.lm: the method has no LM phase")
        self.stop.validate()
        self.stall.validate()
        self.loss.validate()
        if self.population is not None:
            self.population.validate()
        return self

    @property
    def first_order(self) -> FirstOrder:
        """The first phase."""
        return self.phases[0]

    @property
    def lm(self) -> Optional[LevenbergMarquardt]:
        """The Levenberg-Marquardt phase, if the method has one."""
        return next((p for p in self.phases[1:] if isinstance(p, LevenbergMarquardt)), None)

    def with_phase(self, phase) -> "Method":
        """A copy with ``phase`` in place of the phase of its type (appended if the method has none)."""
        kinds = [type(p) for p in self.phases]
        if type(phase) in kinds:
            i = kinds.index(type(phase))
            return dataclasses.replace(self, phases=self.phases[:i] + (phase,) + self.phases[i + 1:])
        return dataclasses.replace(self, phases=self.phases + (phase,))


#: The precision stop of the large-``n`` methods: a loss at or below it that no longer halves is
#: taken as the float32 floor (spurious minima measured so far sit at ``>= 1e-5``).
PRECISION_TOL = 1e-9
#: ``adam-lm-split``'s first-order phase hands over to LM once its loss has not fallen by 20 %
#: (``FirstOrder.switch_rtol``) in 20 steps after the warm-up: its loss plateaus near 1e-2 with a row
#: between training points, and the steps to its 300th only creep (``benchmarks/HISTORY.md``, "The
#: plateau hand-over").
SPLIT_PLATEAU = 20
#: ``adam-lm-split``'s precision window: at photos16, n = 40 its second stage sat at the float floor
#: (3.5e-10) for 8 LM steps (90 s) before the default window of 8 stopped it; with 4 it stops 9 steps
#: sooner with the same rows (error_sign 4.7e-6; ``benchmarks/HISTORY.md``, "The plateau hand-over").
SPLIT_PRECISION_WINDOW = 4
#: ``adam-lm-split``'s first stage runs on the first ``5 d n`` features (half of them at the paper's
#: ``p = 10 d n``): its passes over ``V`` cost half, and it reaches the zero in about as many steps
#: (``benchmarks/HISTORY.md``, "The first stage on a prefix of the features").
SPLIT_FEATURES = 5.0
#: ``adam-lm-split``'s LM phases stall once their loss (above ``lm.STALL_FLOOR``) has not fallen by 1 %
#: in 8 steps: from a spurious minimum the remaining steps to ``stall_after`` (40) are rejected or
#: gain nothing (``benchmarks/HISTORY.md``, "The first stage on a prefix of the features").
SPLIT_STALL_PLATEAU = 8


#: ``published``'s learning rate on images and networks (the paper's released code; 20 on synthetic data).
PUBLISHED_IMAGE_LR = 2000.0


def paper_lr(m: Method, name: str, options, images_or_network: bool) -> Method:
    """``m`` (the method named ``name``, built with ``options`` by dotted name) at the paper's
    learning rate for its data: ``published`` on images or a network runs at
    :data:`PUBLISHED_IMAGE_LR`, unless ``first_order.lr`` was given."""
    if name != "published" or not images_or_network or "first_order.lr" in options:
        return m
    return m.with_phase(dataclasses.replace(m.first_order, lr=PUBLISHED_IMAGE_LR))


def published() -> Method:
    """The paper's recipe, kept exactly: ``x_hat ~ N(0, I)``, SGD (lr 20, momentum 0.9) on the
    kernel form, leaky ReLU derivative (slope 0.02) in the backward pass, stop at ``L <= 1e-7``.
    Measured (``benchmarks/RESULTS.md``, d=100, n=20): 0/8 seeds exact within 60 s at 2, 5, 10 dn."""
    return Method(phases=(FirstOrder(optimizer="sgd", lr=20.0, momentum=0.9),), start=Start(init="gaussian"),
                  stop=Stop(tol=1e-7), loss=Loss(form="kernel", surrogate_slope=PUBLISHED_SURROGATE_SLOPE))


def _adam_phase(**kw) -> FirstOrder:
    return FirstOrder(optimizer="adam", lr=0.05, momentum=None, schedule="cosine", warmup=100, **kw)


def adam() -> Method:
    """Adam (lr 0.05, 100 warm-up steps, cosine decay) on the residual form, rows on the sphere,
    stop at ``L <= 1e-12``: first order only."""
    return Method(phases=(_adam_phase(),), start=Start(init="sphere"), stop=Stop(tol=1e-12),
                  loss=Loss(form="residual"))


def adam_lm() -> Method:
    """Adam until the loss is ``<= 1e-3`` or for 300 steps, then row-scaled
    Levenberg-Marquardt (30 CG iterations per step); after 40 LM steps without converging, an
    antipodal pair of rows is repaired (the sign-flip minimum of ReLU features) if there is one,
    else the weakest row is redrawn by matching pursuit, and Adam resumes.
    Measured (``benchmarks/RESULTS.md``, d=100, n=20, 8 seeds, 60 s each with compilation): exact
    (error_sign <= 1e-3) in 8/8, 7/8, 8/8 seeds at p = 10, 5, 2 dn."""
    return Method(phases=(_adam_phase(switch_below=1e-3, switch_after=300),
                          LevenbergMarquardt(cg_iters=30, stall_after=40)),
                  start=Start(init="sphere"), stop=Stop(tol=1e-12), stall=Stall(actions=(PairRepair(), RowRedraw())),
                  loss=Loss(form="residual"))


def adam_lm_repair() -> Method:
    """``adam-lm`` for many rows: a stall repairs every suspect row at once
    (:class:`~jaxrecon.attack.stall.RowRepair`: the signs of the rows, antipodal pairs and weak
    rows redrawn with deflation) before the weakest row is redrawn. Above ``n ~ d`` the sign-flip
    minimum of ReLU features holds tens of rows at ``-x_j`` that the one-pair repair cannot undo
    (``benchmarks/RESULTS.md``, "Many rows"). Stops at ``L <= 1e-11``: the float32 floor of the
    residual form grows with ``n`` (``1.2e-12`` at ``n = 80``, above ``adam-lm``'s ``1e-12``),
    and with the precision stop at :data:`PRECISION_TOL` for larger or correlated problems."""
    return dataclasses.replace(adam_lm(), stall=Stall(actions=(RowRepair(), RowRedraw())),
                               stop=Stop(tol=1e-11, precision_tol=PRECISION_TOL))


def adam_lm_split() -> Method:
    """``adam-lm`` from the split start (:mod:`jaxrecon.attack.split`): the method first runs on the
    part of ``theta`` that does not depend on the rows' signs, then the signs are chosen in one
    box-constrained least-squares solve and the method runs on ``theta`` from there. For ReLU/GELU
    random features with ``V`` stored; it removes the sign-flip minima that hold ``adam-lm`` once
    ``n`` nears ``d`` (measured: ``benchmarks/HISTORY.md``, "The split start"). With the
    precision stop at :data:`PRECISION_TOL` (window :data:`SPLIT_PRECISION_WINDOW`): at these sizes
    the float32 floor of the loss can lie above the tolerance ``1e-12``; and with the plateau
    hand-over (:data:`SPLIT_PLATEAU`): Adam hands over to LM when its loss stops falling, not only
    after its 300th step; with the first stage on the first :data:`SPLIT_FEATURES` ``* d * n``
    features (``split_features``); and with the LM plateau stall (:data:`SPLIT_STALL_PLATEAU`)."""
    m = adam_lm()
    return dataclasses.replace(
        m, phases=(dataclasses.replace(m.first_order, switch_plateau=SPLIT_PLATEAU),
                   dataclasses.replace(m.lm, stall_plateau=SPLIT_STALL_PLATEAU)),
        start=dataclasses.replace(m.start, kind="split", split=Split(features=SPLIT_FEATURES)),
        stop=dataclasses.replace(m.stop, precision_tol=PRECISION_TOL, precision_window=SPLIT_PRECISION_WINDOW))


def global_() -> Method:
    """``adam-lm`` with a population of 8 starts per seed, advanced in rounds of 200 steps until
    one reaches the zero of the loss (:mod:`jaxrecon.attack.population`): for sweeps near the
    threshold, where a single start reaches a zero only with some probability. Costs up to 8
    times ``adam-lm`` per step budget."""
    return dataclasses.replace(adam_lm(), population=Population(size=8, round_steps=200))


def auto() -> Method:
    """The default: chooses per problem from the feature map's abilities (:mod:`jaxrecon.attack.auto`):
    ``adam-lm-split`` where the split start applies (random features with a ReLU-like activation),
    ``adam-lm`` elsewhere, ``global`` near the threshold (``p < 3 d n``, the population its escalation);
    the others escalate per seed (a fresh start every :data:`~jaxrecon.attack.auto.ESCALATE` stalls); all stop at the float
    floor (the precision stop). Results record what ran (``method_run``)."""
    from .auto import ESCALATE

    m = adam_lm_split()
    return dataclasses.replace(m, start=dataclasses.replace(m.start, kind="auto"),
                               stall=dataclasses.replace(m.stall, escalate=ESCALATE))



#: Named methods: name -> factory. ``published`` is the paper's recipe and must stay exactly so.
METHODS = {"published": published, "adam": adam, "adam-lm": adam_lm, "adam-lm-repair": adam_lm_repair,
           "adam-lm-split": adam_lm_split, "global": global_, "auto": auto}
DEFAULT_METHOD = "auto"

_DROPPED = {"stall_window": "measured not to pay off", "stall_ratio": "measured not to pay off",
            "flip_candidates": "measured not to pay off", "restarts": "renamed to 'start.candidates'",
            "restart_steps": "renamed to 'start.candidate_steps'"}


def option_names() -> list:
    """Every option :func:`method_config` accepts, by its dotted name (:mod:`jaxrecon.attack.options`)."""
    from .options import names

    return names()


def _replace(obj, field: str, value):
    try:
        return dataclasses.replace(obj, **{field: value})
    except TypeError:
        raise ValueError(f"method options: {field!r} is not an option of {type(obj).__name__}") from None


def _apply_stall(m: Method, opts: dict) -> Method:
    """``stall.actions`` (``"restart"``, ``"redraw_row"`` or a tuple of actions), ``stall.repair_pairs``
    (bool), ``stall.candidates`` (int), and the legacy ``polish="lm"`` (an LM phase from a loss of 1e-3)."""
    if "polish" in opts:
        _validate.choice("polish", opts["polish"], ("lm",))
        m = m.with_phase(m.lm or LevenbergMarquardt())
        if m.first_order.switch_below is None:  # the LM phase starts once the loss is small
            m = m.with_phase(dataclasses.replace(m.first_order, switch_below=1e-3))
    keys = ("stall.actions", "stall.repair_pairs", "stall.candidates", "polish")
    if not any(k in opts for k in keys):
        return m
    actions = list(m.stall.actions)
    if "stall.actions" in opts:
        v = opts["stall.actions"]
        if isinstance(v, str):
            _validate.choice("stall.actions", v, ("restart", "redraw_row"))
            last = Restart() if v == "restart" else RowRedraw()
            actions = [a for a in actions if isinstance(a, PairRepair)] + [last]
        else:
            actions = list(v)
    if "stall.repair_pairs" in opts:
        actions = [a for a in actions if not isinstance(a, PairRepair)]
        if opts["stall.repair_pairs"]:
            actions.insert(0, PairRepair())
    if "stall.candidates" in opts:
        actions = [dataclasses.replace(a, candidates=opts["stall.candidates"]) if hasattr(a, "candidates") else a
                   for a in actions]
    if m.lm is not None and not actions:
        actions = [Restart()]  # an LM phase that stalls needs an action
    return dataclasses.replace(m, stall=dataclasses.replace(m.stall, actions=tuple(actions)))


def _apply_population(m: Method, opts: dict) -> Method:
    """``population.size`` (an int ``K``, 1: none, or a :class:`Population`), ``round_steps``, ``cull``,
    applied together (so ``size=1`` with another of them still means no population)."""
    given = {k.split(".", 1)[1]: v for k, v in opts.items() if k.startswith("population.")}
    if not given:
        return m
    if isinstance(given.get("size"), Population):
        pop = given.pop("size")
    else:
        pop = m.population or Population()
    pop = _replace_all(pop, given)
    return dataclasses.replace(m, population=None if pop.size == 1 else pop.validate())


def _replace_all(obj, fields: dict):
    for k, v in fields.items():
        obj = _replace(obj, k, v)
    return obj


#: Options whose 0 means "never" (their field's ``None``).
ZERO_IS_NEVER = ("first_order.switch_plateau", "lm.stall_plateau")


def _apply(m: Method, name: str, value) -> Method:
    """``m`` with the option ``name`` (dotted; not a stall action option) set to ``value``."""
    part, _, rest = name.partition(".")
    if part == "first_order":
        return m.with_phase(_replace(m.first_order, rest, value))
    if part == "lm":
        return m.with_phase(_replace(m.lm or LevenbergMarquardt(), rest, value))
    if part == "start":
        start = m.start
        if rest.startswith("split.lm."):
            if m.lm is None:
                raise ValueError(f"{name}: the method has no LM phase")
            lm = _replace(start.split.lm or m.lm, rest[len("split.lm."):], value)
            return dataclasses.replace(m, start=_replace(start, "split", _replace(start.split, "lm", lm)))
        if rest.startswith("split."):
            return dataclasses.replace(m, start=_replace(start, "split", _replace(start.split, rest[6:], value)))
        return dataclasses.replace(m, start=_replace(start, rest, value))
    if part == "population":  # all of them at once: _apply_population
        raise ValueError(f"method options: {name!r} is applied by _apply_population")
    if part in ("stop", "stall", "loss"):
        return dataclasses.replace(m, **{part: _replace(getattr(m, part), rest, value)})
    raise ValueError(f"method options: unknown option {name!r}")


def method_config(method=DEFAULT_METHOD, **overrides) -> Method:
    """A named method (or a :class:`Method`) with options overridden by their dotted names
    (:mod:`jaxrecon.attack.options`): ``method_config("adam-lm", lm={"cg_iters": 40})`` or
    ``method_config("adam-lm", **{"lm.cg_iters": 40})``; the flat names of earlier versions
    (``cg_iters=40``) still work, with a ``DeprecationWarning``.

    ``None`` values are ignored. An explicitly chosen optimiser other than SGD has no momentum.
    Unknown options are a ``ValueError`` listing the allowed ones.
    """
    from .options import dotted

    if isinstance(method, Method):
        m = method
    elif method in METHODS:
        m = METHODS[method]()
    else:
        raise ValueError(f"method: unknown method {method!r}; allowed: {sorted(METHODS)}")
    for k in overrides:
        if k in _DROPPED:
            raise ValueError(f"{k}: this option was removed ({_DROPPED[k]})")
    opts = dotted(overrides)
    m = _apply_stall(m, opts)
    # the phases first, so that start.split.lm starts from the final LM phase; the population at once
    order = sorted(opts, key=lambda k: (k.startswith("start.split.lm."), k.startswith("population.")))
    for name in order:
        value = opts[name]
        if name.startswith("stall.") and name != "stall.escalate" or name == "polish" or name.startswith("population."):
            continue
        if name in ZERO_IS_NEVER and value == 0 and not isinstance(value, bool):
            value = None
        m = _apply(m, name, value)
    m = _apply_population(m, opts)
    fo = m.first_order
    if "first_order.optimizer" in opts and fo.optimizer != "sgd" and "first_order.momentum" not in opts:
        m = m.with_phase(dataclasses.replace(fo, momentum=None))
    return m.validate()
