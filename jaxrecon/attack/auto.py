"""The default method ``auto``: the best named recipe for the problem, chosen from the map's abilities.

``auto`` is one :class:`~jaxrecon.attack.Method` whose start is ``"auto"``; :func:`resolve` turns it
into the method that runs once the problem is known (``make_solver`` calls it with the target's
feature map and ``n``), by this table:

=========================================================  ===========================================
problem                                                     what runs (:func:`choice` names it)
=========================================================  ===========================================
``p < NEAR_THRESHOLD * d * n`` (near the threshold)         ``global``: a population of
                                                            :data:`POPULATION` starts per seed
random features whose activation's odd part is linear      ``adam-lm-split``: the split start
(ReLU, GELU, leaky ReLU), ``V`` stored or streamed          (:mod:`jaxrecon.attack.split`)
anything else (tanh, erf, relu_tanh, networks)              ``adam-lm``: the random start
=========================================================  ===========================================

Every choice escalates per seed (``Method.escalate``): every :data:`ESCALATE`-th stall of a seed
(its last phase ended above the tolerance, after the stall actions had their turns) starts it
afresh (a new split start, or new random rows) instead of waiting out the budget; the best
iterate seen survives (the precision stop's watch), and a seed at the float floor stops
(the precision stop, :data:`~jaxrecon.attack.methods.PRECISION_TOL`). The options the user set on
``auto`` (``cg_iters=40`` ...) carry over to what runs; the options ``adam-lm-split`` tunes for its
split start (:data:`SPLIT_TUNED`) fall back to ``adam-lm``'s values when the random start runs,
unless the user set them.

Results record both: ``method`` (what was asked, ``auto``) and ``method_run`` (:func:`choice`).
"""

from __future__ import annotations

import dataclasses

from .methods import Method, adam_lm, adam_lm_split, global_

#: Below ``NEAR_THRESHOLD * d * n`` parameters a single start reaches the zero only with some
#: probability (``benchmarks/RESULTS.md``, solve rates near the threshold: ``global`` solved 1/6,
#: 5/6, 6/6 seeds at 1, 1.25, 1.5 dn where ``adam-lm`` solved 0/6, 1/6, 5/6 and ``adam-lm-split``
#: 0/20 and 4/20 at 1.25 and 1.5 dn), so ``auto`` runs a population there.
NEAR_THRESHOLD = 2.0
#: A fresh start every this many stalls of a seed.
ESCALATE = 3

AUTO = "auto"


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


def near_threshold(fmap, n: int) -> bool:
    """``p < NEAR_THRESHOLD * d * n``."""
    return fmap.p < NEAR_THRESHOLD * fmap.input_dim * n


def choice(fmap, n: int) -> str:
    """The named recipe ``auto`` runs on ``fmap`` with ``n`` rows (the module's table)."""
    if near_threshold(fmap, n):
        return "global"
    return "adam-lm-split" if split_applies(fmap) else "adam-lm"


def _tuned() -> dict:
    """``field path -> (adam-lm-split's value, adam-lm's value)`` for the options the split recipe tunes."""
    split, plain = adam_lm_split(), adam_lm()
    out = {}
    for name in ("precision_window", "split_features"):
        out[(name,)] = (getattr(split, name), getattr(plain, name))
    out[("first_order", "switch_plateau")] = (split.first_order.switch_plateau, plain.first_order.switch_plateau)
    out[("lm", "stall_plateau")] = (split.lm.stall_plateau, plain.lm.stall_plateau)
    return out


#: The options ``adam-lm-split`` tunes for the split start (reverted to ``adam-lm``'s when the
#: random start runs, unless set by the user).
SPLIT_TUNED = tuple(".".join(k) for k in _tuned())


def _set(m: Method, path: tuple, value) -> Method:
    if len(path) == 1:
        return dataclasses.replace(m, **{path[0]: value})
    section = getattr(m, path[0])
    if section is None:
        return m
    return dataclasses.replace(m, **{path[0]: dataclasses.replace(section, **{path[1]: value})})


def _get(m: Method, path: tuple):
    obj = m
    for part in path:
        obj = getattr(obj, part, None)
    return obj


def resolve(method: Method, fmap, n: int) -> Method:
    """The method that runs: ``method`` itself unless its start is ``"auto"`` (module docstring)."""
    if method.start != AUTO:
        return method
    which = choice(fmap, n)
    if which == "adam-lm-split":
        return dataclasses.replace(method, start="split")
    m = dataclasses.replace(method, start="random")
    for path, (split_value, plain_value) in _tuned().items():
        if _get(m, path) == split_value:  # not set by the user: the random start's value
            m = _set(m, path, plain_value)
    if which == "global" and m.population is None:
        m = dataclasses.replace(m, population=global_().population)
    return m


def method_run(method, fmap, n: int) -> str:
    """The name to record for what ran: :func:`choice` for ``auto`` (by name or a method whose start
    is ``"auto"``), the name of a named method, the name whose factory gives ``method`` exactly, or
    ``"custom"``."""
    from .methods import METHODS

    if isinstance(method, str):
        return choice(fmap, n) if method == AUTO else method
    if method.start == AUTO:
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
    else:
        why = "the split start does not apply to this map: the random start"
    return f"method auto: {which} ({why}; a fresh start every {ESCALATE} stalls)"


def may_split(activation, p: int, d: int, n: int) -> bool:
    """Whether ``auto`` runs the split start on random features with this activation and size, when
    ``V`` is available (for the memory policy, before the map exists)."""
    from .split import odd_slope

    if p < NEAR_THRESHOLD * d * n:
        return False
    try:
        odd_slope(activation)
    except ValueError:
        return False
    return True
