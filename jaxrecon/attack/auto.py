"""The default method ``auto``: the best named recipe for the problem, chosen from the map's abilities.

``auto`` is one :class:`~jaxrecon.attack.Method` whose start is ``"auto"``; :func:`resolve` turns it
into the method that runs once the problem is known (``make_solver`` calls it with the target's
feature map and ``n``), by this table:

* near the threshold, ``p < NEAR_THRESHOLD * d * n``: ``global`` (a population of starts per seed);
* random features whose activation's odd part is linear (ReLU, GELU), ``V`` stored or streamed,
  where the split start pays (:func:`split_pays`: ``n > d / 4``, or ``V`` of at least
  :data:`SPLIT_MIN_ENTRIES` numbers): ``adam-lm-split``, the split start (:mod:`jaxrecon.attack.split`);
* anything else (tanh, erf, relu_tanh, networks, small ReLU problems): ``adam-lm``, the random start.

Near the threshold the population is the escalation: its culled members start afresh, and a
member does not also restart on its own (robustness suite, d = 12, n = 16 at 2 dn: ``global`` 3/3,
the same population with a fresh start every 3 stalls 0/3). Elsewhere each seed escalates
(``stall.escalate``): every :data:`ESCALATE`-th stall of a seed
(its last phase ended above the tolerance, after the stall actions had their turns) starts it
afresh (new random rows) instead of waiting out the budget; the best
iterate seen survives (the precision stop's watch), and a seed at the float floor stops
(the precision stop, :data:`~jaxrecon.attack.methods.PRECISION_TOL`). The options the user set on
``auto`` (``cg_iters=40`` ...) carry over to what runs; the options ``adam-lm-split`` tunes for its
split start (:data:`SPLIT_TUNED`) fall back to ``adam-lm``'s values when the random start runs,
unless the user set them, except on network maps (:data:`NETWORK_KEEPS`): there each LM step costs
about 30 passes through the network, and the split start's LM plateau stall and shorter precision
window stay.

Results record both: ``method`` (what was asked, ``auto``) and ``method_run`` (:func:`choice`).
"""

from __future__ import annotations

import dataclasses

from .methods import Method, adam_lm, adam_lm_split, global_

#: Below ``NEAR_THRESHOLD * d * n`` parameters a single start reaches the zero only with some
#: probability, so ``auto`` runs a population there. Near the threshold (``benchmarks/RESULTS.md``,
#: "Reaching a zero from random starts"): ``global`` solved 1/6, 5/6, 6/6 seeds at 1, 1.25, 1.5 dn where ``adam-lm`` solved
#: 0/6, 1/6, 5/6. At 2 dn the robustness suite (``benchmarks/results/robustness``) found single
#: starts failing where n is not small against d: d = 12, n = 16: ``adam-lm`` 1/3, ``adam-lm-split``
#: 0/3, ``global`` 3/3; d = 100, n = 20: ``adam-lm`` 2/3, ``adam-lm-split`` 0/3, ``global`` 3/3 (and
#: ``auto`` then, at a threshold of 2, 0/3 on both), hence 3: the population up to 3 dn.
NEAR_THRESHOLD = 3.0
#: The split start runs below ``n = d / 4`` only once ``V`` has this many numbers (:func:`split_pays`).
SPLIT_MIN_ENTRIES = 4_000_000
#: A fresh start every this many stalls of a seed.
ESCALATE = 3

AUTO = "auto"
#: The options of :data:`SPLIT_TUNED` that keep ``adam-lm-split``'s values on a network map
#: (:class:`~jaxrecon.features.network.NetworkFeatures`), where each LM step costs about 30 passes
#: through the network: an LM phase stalls after 8 steps without a 1 % fall instead of waiting out
#: its 40 steps, and a seed at the float floor stops after 4 steps without halving instead of 8.
#: Measured on the head-only 3x8x8 ResNet at ``n = 10``, ``p = 10 dn`` (``benchmarks/RESULTS.md``,
#: "The ResNet"): the same trajectory and result (exact, error 1.1e-6), LM steps 36 -> 14, the
#: attack 542 s (machine shared) -> 306 s (idle).
NETWORK_KEEPS = ("stop.precision_window", "lm.stall_plateau")


def split_applies(fmap) -> bool:
    """Whether the split start can run on ``fmap``: random features with ``V`` available (stored, or
    streamed where :func:`~jaxrecon.attack.split.check_split` accepts it) and an activation whose
    odd part is linear."""
    from .split import check_split

    try:
        check_split(fmap)
    except (ValueError, TypeError, AttributeError):
        return False
    return True


def _network(fmap) -> bool:
    """Whether ``fmap`` is a network's Jacobian map (its steps cost passes through the network)."""
    from ..features.network import NetworkFeatures

    return isinstance(fmap, NetworkFeatures)


def near_threshold(fmap, n: int) -> bool:
    """``p < NEAR_THRESHOLD * d * n``."""
    return fmap.p < NEAR_THRESHOLD * fmap.input_dim * n


def split_pays(p: int, d: int, n: int) -> bool:
    """Whether the split start is worth its cost: ``n > d / 4`` (``adam-lm`` stalls in sign-flip
    minima from ``n ~ 0.4 d``: ``benchmarks/RESULTS.md``, "Many rows") or ``V`` of at least
    :data:`SPLIT_MIN_ENTRIES` numbers (correlated inputs such as photographs hold ``adam-lm`` at
    smaller ``n``, and the split start's extra compilation is small against such a run). Below
    both, ``adam-lm`` solves (d = 100, n = 20: 8/8 seeds at 2-10 dn) and compiles in about half the
    time (6 s against 14 s of CPU here), which dominates a run of that size."""
    return 4 * n > d or p * d >= SPLIT_MIN_ENTRIES


def choice(fmap, n: int) -> str:
    """The named recipe ``auto`` runs on ``fmap`` with ``n`` rows (the module's table)."""
    if near_threshold(fmap, n):
        return "global"
    if split_applies(fmap) and split_pays(fmap.p, fmap.input_dim, n):
        return "adam-lm-split"
    return "adam-lm"


#: The options ``adam-lm-split`` tunes for the split start (reverted to ``adam-lm``'s when the
#: random start runs, unless set by the user), by dotted name.
SPLIT_TUNED = ("stop.precision_window", "start.split.features", "first_order.switch_plateau", "lm.stall_plateau")


def get(m: Method, name: str):
    """The value of the option ``name`` (dotted, a field path) of ``m``."""
    obj = m
    for part in name.split("."):
        obj = getattr(obj, part, None)
    return obj


def resolve(method: Method, fmap, n: int) -> Method:
    """The method that runs: ``method`` itself unless its start is ``"auto"`` (module docstring)."""
    from .methods import _apply

    if method.start.kind != AUTO:
        return method
    which = choice(fmap, n)
    if which == "adam-lm-split":
        return dataclasses.replace(method, start=dataclasses.replace(method.start, kind="split"))
    m = dataclasses.replace(method, start=dataclasses.replace(method.start, kind="random"))
    split, plain = adam_lm_split(), adam_lm()
    keep = NETWORK_KEEPS if _network(fmap) else ()
    for name in SPLIT_TUNED:
        if get(m, name) == get(split, name) and name not in keep:  # not set by the user
            m = _apply(m, name, get(plain, name))
    if which == "global" and m.population is None:
        m = dataclasses.replace(m, population=global_().population)
        if m.stall.escalate == ESCALATE:  # not set by the user: the population is the escalation
            m = dataclasses.replace(m, stall=dataclasses.replace(m.stall, escalate=0))
    return m


def method_run(method, fmap, n: int) -> str:
    """The name to record for what ran: :func:`choice` for ``auto`` (by name or a method whose start
    is ``"auto"``), the name of a named method, the name whose factory gives ``method`` exactly, or
    ``"custom"``."""
    from .methods import METHODS

    if isinstance(method, str):
        return choice(fmap, n) if method == AUTO else method
    if method.start.kind == AUTO:
        return choice(fmap, n)
    for name, factory in METHODS.items():
        if factory() == method:
            return name
    return "custom"


def reason(fmap, n: int) -> str:
    """One line saying what ``auto`` runs on ``fmap`` and why (printed by the drivers)."""
    which = choice(fmap, n)
    ratio = fmap.p / (fmap.input_dim * n)
    if which == "global":
        why = f"p = {ratio:.2g} dn is near the threshold (< {NEAR_THRESHOLD:g} dn): a population of starts per seed"
    elif which == "adam-lm-split":
        why = "the activation's odd part is linear and V is available: the split start"
    elif split_applies(fmap):
        why = "n <= d/4 on a small map: the random start solves and compiles faster"
    else:
        why = "the split start does not apply to this map: the random start"
    return f"method auto: {which} ({why}; a fresh start every {ESCALATE} stalls)"


def may_split(activation, p: int, d: int, n: int) -> bool:
    """Whether ``auto`` runs the split start on random features with this activation and size, when
    ``V`` is available (for the memory policy, before the map exists)."""
    from .split import odd_slope

    if p < NEAR_THRESHOLD * d * n or not split_pays(p, d, n):
        return False
    try:
        odd_slope(activation)
    except ValueError:
        return False
    return True
