"""One name for every option of the attack: the dotted schema that Python, the CLI and sweep configs share.

Every option of every part of a method has one dotted name, ``part.option``::

    first_order.<field>     the first-order phase (:class:`~jaxrecon.attack.FirstOrder`): lr, optimizer, ...
    lm.<field>              the Levenberg-Marquardt phase (:class:`~jaxrecon.attack.LevenbergMarquardt`);
                            setting one on a method without an LM phase adds one
    start.kind              random | pursuit | split | auto
    start.init              gaussian | sphere
    start.candidates        candidate starts per seed (the best after start.candidate_steps steps is kept)
    start.candidate_steps
    start.split.steps       the split start's first stage: step cap ...
    start.split.features    ... features it runs on (multiples of d n; 0: all)
    start.split.lm.cg_iters, start.split.lm.cg_tol   its LM phase
    stop.tol, stop.floor_factor, stop.plateau_window, stop.plateau_rtol, stop.precision_tol, stop.precision_window
    stall.actions           what a stall does: "restart", "redraw_row", or a tuple of actions
    stall.repair_pairs, stall.candidates, stall.escalate (a fresh start every that many stalls)
    population.size, population.round_steps, population.cull
    loss.form, loss.jitter, loss.surrogate_slope

The same option is spelled ``--attack.lm.cg_iters 40`` on the command line, ``{"attack": {"lm":
{"cg_iters": 40}}}`` in a config file and ``jr.reconstruct(..., lm={"cg_iters": 40})`` (or
``**{"lm.cg_iters": 40}``) in Python. :func:`dotted` turns any of these into ``{"lm.cg_iters": 40}``.
The flat names of earlier versions (``cg_iters=40``, ``tol=...``) map through :data:`LEGACY`, with a
``DeprecationWarning`` naming the dotted name.
"""

from __future__ import annotations

import dataclasses
import difflib
import warnings

from .first_order import FirstOrder
from .lm import LevenbergMarquardt

#: Dotted name -> the flat field name :func:`~jaxrecon.attack.method_config` applies.
_INTERNAL = {
    **{f"first_order.{f.name}": f.name for f in dataclasses.fields(FirstOrder)},
    **{f"lm.{f.name}": f.name for f in dataclasses.fields(LevenbergMarquardt)},
    "start.kind": "start", "start.init": "init", "start.candidates": "starts",
    "start.candidate_steps": "start_steps", "start.split.steps": "split_steps",
    "start.split.features": "split_features", "start.split.lm.cg_iters": "split_cg_iters",
    "start.split.lm.cg_tol": "split_cg_tol",
    **{f"stop.{k}": k for k in ("tol", "floor_factor", "plateau_window", "plateau_rtol", "precision_tol",
                                "precision_window")},
    "stall.actions": "on_stall", "stall.repair_pairs": "repair_pairs", "stall.candidates": "reset_candidates",
    "stall.escalate": "escalate",
    "population.size": "population", "population.round_steps": "round_steps", "population.cull": "cull",
    "loss.form": "loss_form", "loss.jitter": "jitter", "loss.surrogate_slope": "surrogate_slope",
}

#: The parts (the first component of a dotted name).
PARTS = tuple(dict.fromkeys(k.split(".")[0] for k in _INTERNAL))

#: Flat names of earlier versions -> dotted name (the one table of legacy spellings).
LEGACY = {flat: name for name, flat in _INTERNAL.items()}
LEGACY.update({"first_steps": "first_order.switch_after", "polish_below": "first_order.switch_below",
               "polish_steps": "lm.stall_after"})
#: Legacy flat options with no dotted name of their own: ``polish="lm"`` adds an LM phase that starts
#: once the loss is below 1e-3 (set ``lm.*`` and ``first_order.switch_below`` instead).
LEGACY_ONLY = ("polish",)


def names() -> list:
    """Every dotted option name, sorted."""
    return sorted(_INTERNAL)


def _flatten(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"method options: option names are strings, got {k!r} in {prefix or 'the options'}")
            _flatten(f"{prefix}.{k}" if prefix else k, v, out)
    else:
        out[prefix] = value


def dotted(options: dict, warn: bool = True, stacklevel: int = 3) -> dict:
    """``{dotted name: value}`` from options given as dotted names, nested dicts
    (``{"lm": {"cg_iters": 40}}``) or legacy flat names (a ``DeprecationWarning`` each, when ``warn``);
    ``None`` values are dropped. An unknown name is a ``ValueError`` listing the allowed ones."""
    flat = {}
    for k, v in options.items():
        _flatten(k, v, flat)
    out, old = {}, []
    for k, v in flat.items():
        if v is None:
            continue
        if k in _INTERNAL or k in LEGACY_ONLY:
            name = k
        elif k in LEGACY:
            name = LEGACY[k]
            old.append((k, name))
        else:
            close = difflib.get_close_matches(k, names(), n=3) or [n for n in names() if n.endswith("." + k)]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueError(f"method options: unknown option {k!r}{hint}; allowed: {', '.join(names())}")
        if name in out and out[name] != v:
            raise ValueError(f"method options: {name} given twice ({out[name]!r} and {v!r})")
        out[name] = v
    if warn and old:
        spelled = ", ".join(f"{k} -> {n}" for k, n in old)
        warnings.warn(f"method options: flat names are deprecated, use the dotted ones ({spelled}; in Python "
                      f"also as sections, e.g. lm={{'cg_iters': 40}})", DeprecationWarning, stacklevel=stacklevel)
    return out


def flat_name(name: str) -> str:
    """The short spelling (flat name) of a dotted option name: ``lm.cg_iters`` -> ``cg_iters``."""
    return _INTERNAL[name]


def flag(name: str) -> str:
    """The command-line flag of a dotted option name (``--attack.lm.cg_iters``)."""
    return f"--attack.{name}"


# -- the same schema as config sections (jaxrecon.config): --attack.lm.cg_iters and its short spelling --cg-iters

_ANY = None  # no fixed choices
#: ``dotted name -> (type, help, choices)``; every name of :func:`names` has one entry (tested).
SPEC = {
    "first_order.optimizer": (str, "any optax optimiser by name", _ANY),
    "first_order.lr": (float, "learning rate (peak of the schedule)", _ANY),
    "first_order.momentum": (float, "momentum for sgd", _ANY),
    "first_order.schedule": (str, "learning-rate schedule", ("constant", "cosine", "exponential")),
    "first_order.warmup": (int, "linear warm-up steps", _ANY),
    "first_order.decay_steps": (int, "steps of the decay (0: the step budget)", _ANY),
    "first_order.final_lr_ratio": (float, "learning rate at the end of the decay, relative to lr", _ANY),
    "first_order.switch_below": (float, "hand over to LM once the loss is at most this", _ANY),
    "first_order.switch_after": (int, "hand over to LM after this many first-order steps", _ANY),
    "first_order.switch_plateau": (int, "hand over to LM once the loss has not fallen by switch_rtol in this "
                                        "many steps (0: never)", _ANY),
    "first_order.switch_rtol": (float, "relative fall that resets switch_plateau's count", _ANY),
    "lm.cg_iters": (int, "most CG iterations per LM step", _ANY),
    "lm.damping": (float, "initial relative LM damping", _ANY),
    "lm.stall_after": (int, "LM steps after which an unconverged phase has stalled", _ANY),
    "lm.cg_tol": (float, "relative CG tolerance, min(CG_TOL, |r|) (0: always cg_iters)", _ANY),
    "lm.stall_plateau": (int, "stall once the loss (above 1e-8) has not fallen by stall_rtol in this many "
                              "steps (0: never)", _ANY),
    "lm.stall_rtol": (float, "relative fall that resets stall_plateau's count", _ANY),
    "start.kind": (str, "starting point: random, pursuit (rows greedily against theta), split (rows up to sign "
                        "first, then their signs: ReLU/GELU random features), auto (split where it applies)",
                   ("random", "pursuit", "split", "auto")),
    "start.init": (str, "random rows: N(0, I) or projected to the sphere", ("gaussian", "sphere")),
    "start.candidates": (int, "candidate starts per seed; the best after candidate_steps steps is kept", _ANY),
    "start.candidate_steps": (int, "first-order steps of each candidate start", _ANY),
    "start.split.steps": (int, "step cap of the split start's first stage", _ANY),
    "start.split.features": (float, "the first stage runs on the first FEATURES * d * n features (0: all p)", _ANY),
    "start.split.lm.cg_iters": (int, "CG iterations per LM step in the split start's first stage", _ANY),
    "start.split.lm.cg_tol": (float, "relative CG tolerance in the split start's first stage", _ANY),
    "stop.tol": (float, "a seed stops once its loss is at most this", _ANY),
    "stop.floor_factor": (float, "with a noise floor: stop at loss <= FACTOR * floor", _ANY),
    "stop.plateau_window": (int, "stop when the best loss has not improved by plateau_rtol over this many steps "
                                 "(0: off)", _ANY),
    "stop.plateau_rtol": (float, "relative improvement that resets plateau_window's count", _ANY),
    "stop.precision_tol": (float, "stop a seed whose loss is at most this and no longer halves (the float "
                                  "floor)", _ANY),
    "stop.precision_window": (int, "steps without halving before the precision stop", _ANY),
    "stall.actions": (str, "what a stall does after the repairs", ("restart", "redraw_row")),
    "stall.repair_pairs": (bool, "repair an antipodal pair of rows at a stall", _ANY),
    "stall.candidates": (int, "candidate rows of a stall's redraw", _ANY),
    "stall.escalate": (int, "a fresh start every this many stalls of a seed (0: never)", _ANY),
    "population.size": (int, "whole attacks per seed, advanced in rounds (1: none)", _ANY),
    "population.round_steps": (int, "steps per round of the population", _ANY),
    "population.cull": (float, "fraction of the worst members restarted after each round", _ANY),
    "loss.form": (str, "projector loss form", ("kernel", "residual")),
    "loss.jitter": (float, "relative Cholesky jitter", _ANY),
    "loss.surrogate_slope": (float, "leaky ReLU derivative used by the attack", _ANY),
}

_PART_DOCS = {
    "first_order": "the first-order phase (any optax optimiser)",
    "lm": "the Levenberg-Marquardt phase",
    "start": "the starting point",
    "start.split": "the split start's first stage",
    "start.split.lm": "the split start's first-stage LM",
    "stop": "when a seed stops",
    "stall": "what a stalled seed does",
    "population": "several whole attacks per seed",
    "loss": "the loss",
}


def config_sections(exclude=()) -> dict:
    """``{part: config section class}``: the schema as :mod:`jaxrecon.config` sections, every leaf
    ``Optional`` with default ``None`` (the method's value) and its legacy flat name as the short
    spelling. ``exclude``: dotted names left out (a config that holds them elsewhere)."""
    import typing

    from ..config import option

    tree: dict = {}
    for name, (tp, help_, choices) in SPEC.items():
        if name in exclude:
            continue
        node = tree
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = (name, tp, help_, choices)

    def build(path: str, node: dict):
        fields = []
        for key, value in node.items():
            if isinstance(value, dict):
                sub = build(f"{path}.{key}" if path else key, value)
                fields.append((key, sub, dataclasses.field(default_factory=sub)))
            else:
                name, tp, help_, choices = value
                fields.append((key, typing.Optional[tp], option(None, help_, flat=_INTERNAL[name], choices=choices)))
        cls = dataclasses.make_dataclass("".join(p.title() for p in path.replace("_", ".").split(".")) + "Options",
                                         fields, frozen=True)
        cls.__doc__ = _PART_DOCS.get(path, path)
        cls.__module__ = __name__
        cls.__name__ = cls.__qualname__ = f"attack.{path}"  # as config errors name it: "unknown attack.lm key"
        return cls

    return {part: build(part, node) for part, node in tree.items()}


def from_sections(attack) -> dict:
    """``{dotted name: value}`` of the options set (not ``None``) in a config section holding the
    :func:`config_sections` (e.g. ``ReconstructConfig.attack``)."""
    out = {}

    def walk(prefix: str, obj):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            name = f"{prefix}.{f.name}" if prefix else f.name
            if dataclasses.is_dataclass(value):
                walk(name, value)
            elif name in _INTERNAL and value is not None:
                out[name] = value

    for part in PARTS:
        sec = getattr(attack, part, None)
        if sec is not None and dataclasses.is_dataclass(sec):
            walk(part, sec)
    return out
