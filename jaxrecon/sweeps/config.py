"""Sweep configs: :class:`SweepConfig` (what a user writes) and :class:`ResolvedSweep` (validated).

A :class:`SweepConfig` is a frozen config in sections (see :mod:`jaxrecon.config`): ``grid`` (the
axes ``d x n x p x activation x method``), ``data``, ``model``, ``attack`` and ``scale``, plus the
sweep's ``name``. It is built from flat names (``SweepConfig(d=[10], n=[4], p_over_dn=[1, 2],
steps=300)``), sections (``attack={"steps": 300}``) or dotted names (``"attack.steps"``), and each
leaf is a ``jaxrecon sweep`` flag (``--attack.steps`` / ``--steps``). An experiment file's
``get_config()`` returns one (or a dict of its fields); :func:`load_config` reads it.
:meth:`SweepConfig.resolved` validates every value, turns grids into tuples and fills in the
default method, giving the :class:`ResolvedSweep` the rest of the sweep reads; its flat
:meth:`~ResolvedSweep.to_dict` is what ``sweep.json`` records and :func:`config_hash` hashes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

from .. import _validate
from ..activations import ACTIVATIONS
from ..attack import METHODS, method_config
from ..attack.options import SPEC, config_sections
from ..attack.options import flat_name as _option_flat
from ..config import Config, leaves, option, section
from ..config import to_dict as config_to_dict
from ..models import MODELS, TRAIN_SUBSETS

#: Config keys that are grids (lists); every other key is a scalar.
GRID_KEYS = ("d", "n", "p", "p_over_n", "p_over_dn", "activation", "method", "defence_strength")
P_KEYS = ("p", "p_over_n", "p_over_dn")
# Keys that do not change a single number of the results (left out of the config hash).
NON_IDENTITY = ("name", "block_size")
#: The flat keys in the order ``sweep.json`` lists them (and older sweep directories hold them).
FLAT_KEYS = ("name", "d", "n", "p", "p_over_n", "p_over_dn", "activation", "method", "seeds", "seed", "steps",
             "optimizer", "lr", "x64", "block_size", "noise", "ridge", "pad_p")
#: Keys recorded (and hashed) only when set, so configs from before they existed keep their hash.
OPTIONAL_KEYS = ("planted", "defence", "defence_strength", "dp_delta", "floor_factor", "plateau_window",
                 "model", "classes", "train", "train_tol", "train_steps", "train_lr")
#: The network fields of the model section and their defaults (None in a config: these, or rf).
NETWORK_DEFAULTS = {"classes": 1, "train": "all", "train_tol": 1e-7, "train_steps": 100_000, "train_lr": None}
#: The method's options (short spellings) other than optimizer and lr: recorded and hashed only when set.
METHOD_KEYS = tuple(_option_flat(k) for k in SPEC
                    if k not in ("first_order.optimizer", "first_order.lr", "stop.floor_factor", "stop.plateau_window"))
OPTIONAL_KEYS = OPTIONAL_KEYS + METHOD_KEYS
PAD_P = ("auto", "max", "none")


@dataclasses.dataclass(frozen=True)
class SweepGrid:
    """the grid d x n x p x activation x method; p by exactly one of p, p_over_n, p_over_dn"""

    d: tuple[int, ...] = option((20,), "input dimensions, e.g. 50,100")
    n: tuple[int, ...] = option((5,), "training set sizes, e.g. 10,20")
    p: Optional[tuple[int, ...]] = option(None, "feature counts")
    p_over_n: Optional[tuple[float, ...]] = option(None, "p as multiples of n")
    p_over_dn: Optional[tuple[float, ...]] = option(None, "p as multiples of d*n (p = max(1, round(r*d*n)))")
    activation: tuple[str, ...] = option(("relu",), "activations, e.g. relu,tanh")
    method: Optional[tuple[str, ...]] = option(None, "attack methods (default: the library default)")


@dataclasses.dataclass(frozen=True)
class SweepData:
    """the synthetic training data: n points of the sphere of radius sqrt(d), noisy linear labels"""

    noise: float = option(0.5, "label noise std")


@dataclasses.dataclass(frozen=True)
class SweepModel:
    """the model trained on the data: random features (least squares), or a network trained by GD, whose
    head's parameter count is the grid's p"""

    ridge: float = option(0.0, "ridge of the least-squares fit")
    name: Optional[str] = option(None, "rf (random features; the default), two_layer (W2 relu(W1 x)) or resnet "
                                       "(d = 3*s*s): p counts the head's parameters", flat="model", choices=MODELS)
    classes: Optional[int] = option(None, "networks: outputs k of the two-layer net (one-hot targets; default 1)")
    train: Optional[str] = option(None, "networks: layers trained by full-batch GD on the MSE: all (default, the "
                                        "paper's) or head", choices=TRAIN_SUBSETS)
    train_tol: Optional[float] = option(None, "networks: GD stops at training MSE <= this (default 1e-7, the paper's)")
    train_steps: Optional[int] = option(None, "networks: GD step budget (default 100000)")
    train_lr: Optional[float] = option(None, "networks: GD learning rate (default: from the largest eigenvalue of the "
                                             "Gauss-Newton Hessian at initialisation)")


#: The method's option sections (jaxrecon.attack.options), less the two the privacy section holds.
_IN_PRIVACY = {"stop.floor_factor": "floor_factor", "stop.plateau_window": "plateau_window"}
_PARTS = config_sections(exclude=tuple(_IN_PRIVACY))


@dataclasses.dataclass(frozen=True)
class SweepAttack:
    """the attack at every grid point: seeds (vmapped), step budget, optimiser overrides"""

    seeds: int = option(4, "seeds per grid point (vmapped)")
    seed: int = option(0, "base seed")
    steps: int = option(4000, "attack step budget per seed")
    planted: Optional[float] = option(None, "start at X + PLANTED * N(0, I) (rows back on the sphere) "
                                            "instead of at random: probes local identifiability")
    # every option of every part of the method by its dotted name, as in `jaxrecon reconstruct`
    # (jaxrecon.attack.options): {"attack": {"lm": {"cg_iters": 40}}}, --attack.lm.cg_iters, --cg-iters;
    # stop.floor_factor and stop.plateau_window are the privacy section's floor_factor / plateau_window
    first_order: _PARTS["first_order"] = section(_PARTS["first_order"])
    lm: _PARTS["lm"] = section(_PARTS["lm"])
    start: _PARTS["start"] = section(_PARTS["start"])
    stop: _PARTS["stop"] = section(_PARTS["stop"])
    stall: _PARTS["stall"] = section(_PARTS["stall"])
    population: _PARTS["population"] = section(_PARTS["population"])
    loss: _PARTS["loss"] = section(_PARTS["loss"])


@dataclasses.dataclass(frozen=True)
class SweepScale:
    """precision, memory and compiled programs"""

    x64: bool = option(False, "compute in float64")
    block_size: Optional[int] = option(None, "stream V in blocks of this many rows")
    pad_p: str = option("auto", "one compiled program per (d, n) curve, p padded to its largest value",
                        choices=PAD_P)


@dataclasses.dataclass(frozen=True)
class SweepDefence:
    """the defence of the released theta (jaxrecon.defences): a kind, and its strengths as a grid axis"""

    defence: Optional[str] = option(None, "defence kind: none, theta_noise, dp, ridge, label_noise, early_stop, "
                                          "quantize, prune")
    defence_strength: Optional[tuple[float, ...]] = option(
        None, "strengths (a grid axis): EPS (theta_noise), epsilon (dp), lambda (ridge), label std (label_noise), "
              "steps T (early_stop), bits 16 or 8 (quantize: bfloat16, int8), fraction (prune)")
    dp_delta: Optional[float] = option(None, "delta of the dp defence (default 1e-5)")
    floor_factor: Optional[float] = option(None, "stop at loss <= FACTOR * the defence's floor (default 1.2)")
    plateau_window: Optional[int] = option(None, "stop when the best loss has not improved by 1e-3 over this many "
                                                 "steps (default 500 under a defence with a floor; 0: off)")


@dataclasses.dataclass(frozen=True, init=False)
class _Sweep(Config):
    """The fields of a sweep config, resolved or not."""

    name: str = option("sweep", "sweep name; --out defaults to runs/NAME")
    grid: SweepGrid = section(SweepGrid)
    data: SweepData = section(SweepData)
    model: SweepModel = section(SweepModel)
    attack: SweepAttack = section(SweepAttack)
    scale: SweepScale = section(SweepScale)
    privacy: SweepDefence = section(SweepDefence)


@dataclasses.dataclass(frozen=True, init=False)
class SweepConfig(_Sweep):
    """A sweep: the grid ``d x n x p x activation x method`` and ``seeds`` seeds per point.

    ``p`` is given by exactly one of ``p`` (feature counts), ``p_over_n`` (multiples of ``n``) or
    ``p_over_dn`` (multiples of ``d * n``; ``p = max(1, round(r * d * n))``). ``method=None`` means
    :data:`jaxrecon.attack.DEFAULT_METHOD` at run time; the attack section's method options
    (``attack.lm.cg_iters``, ``attack.first_order.lr`` ...: :mod:`jaxrecon.attack.options`, as in
    ``jaxrecon reconstruct``) override every method's. ``block_size`` streams ``V`` (same numbers as dense, less memory).
    ``pad_p`` (``"auto"``, ``"max"``, ``"none"``): run every ``p`` of a ``(d, n)`` curve in one
    program compiled for the curve's largest ``p`` (see :func:`jaxrecon.sweeps.pad_width`).

    Flat, sectioned and dotted keys mix: ``SweepConfig(d=[10], n=[4], p_over_dn=[1, 2], steps=300)``
    is ``SweepConfig(grid={"d": [10], "n": [4], "p_over_dn": [1, 2]}, attack={"steps": 300})``.
    Lists become tuples; strings are parsed (``d="10,20"``).
    """

    @classmethod
    def from_dict(cls, values: dict) -> "SweepConfig":
        """Build from plain data (flat, dotted or sectioned keys), refusing unknown keys
        (``ValueError`` naming them)."""
        if not isinstance(values, dict):
            raise ValueError(f"config: get_config() must return a dict, got {type(values).__name__}")
        return cls(**_flat_values(values))

    def override(self, values: Mapping) -> "SweepConfig":
        """A copy with ``values`` set (flat, dotted or sectioned keys; strings parsed). Giving any of
        ``p``, ``p_over_n``, ``p_over_dn`` replaces the config's way of giving ``p``."""
        flat = _flat_values(values)
        if any(k in flat for k in P_KEYS):
            for k in P_KEYS:
                flat.setdefault(k, None)
        return Config.replace(self, **flat)

    def replace(self, **overrides) -> "SweepConfig":
        """:meth:`override` with keyword arguments, ignoring ``None`` values (so ``method=None``
        leaves the config's method alone)."""
        return self.override({k: v for k, v in overrides.items() if v is not None})

    def resolved(self) -> "ResolvedSweep":
        """The validated config: grids as tuples, the method names filled in."""
        from ..attack import DEFAULT_METHOD  # read at run time: the default may change

        flat = config_to_dict(self, flat=True)
        out = {}
        for k in FLAT_KEYS + OPTIONAL_KEYS:
            v = flat[k]
            if k in GRID_KEYS and v is not None:
                v = _as_list(k, v)
            out[k] = v
        if out["method"] is None:
            out["method"] = [DEFAULT_METHOD]
        for name in ("d", "n"):
            out[name] = [_validate.positive_int(name, v) for v in out[name]]
        _resolve_p(out)
        for a in out["activation"]:
            _validate.choice("activation", a, ACTIVATIONS)
        options = method_options(self)
        for m in out["method"]:
            _validate.choice("method", m, METHODS)
            method_config(m, **options)  # validates the method's options
        _check_scalars(out)
        _check_defence(out)
        _check_model(out)
        return ResolvedSweep(**{k: tuple(v) if k in GRID_KEYS and v is not None else v
                                for k, v in out.items()})


@dataclasses.dataclass(frozen=True, init=False)
class ResolvedSweep(_Sweep):
    """A validated :class:`SweepConfig`: the same sections, grids as tuples, ``method`` filled in.

    Flat names read through (``resolved.steps`` is ``resolved.attack.steps``)."""

    def to_dict(self) -> dict:
        """Plain flat data for ``sweep.json`` (grids as lists), keys in :data:`FLAT_KEYS` order."""
        flat = config_to_dict(self, flat=True)
        keys = FLAT_KEYS + tuple(k for k in OPTIONAL_KEYS if flat[k] is not None)
        return {k: list(v) if isinstance(v, tuple) else v for k in keys for v in [flat[k]]}

    def config_hash(self) -> str:
        """SHA-256 (first 16 hex digits) of the values that determine the results."""
        return config_hash(self)

    def method_options(self) -> dict:
        """``{dotted name: value}`` of the method's options the sweep sets (:mod:`jaxrecon.attack.options`)."""
        return method_options(self)


def method_options(cfg) -> dict:
    """The method options set in a sweep config's attack section, with the privacy section's
    ``floor_factor`` / ``plateau_window`` as ``stop.floor_factor`` / ``stop.plateau_window``."""
    from ..attack.options import from_sections

    out = from_sections(cfg.attack)
    for dotted, flat in _IN_PRIVACY.items():
        value = getattr(cfg.privacy, flat)
        if value is not None:
            out[dotted] = value
    return out


def config_hash(resolved) -> str:
    """SHA-256 (first 16 hex digits) of the config values that determine the results.

    ``resolved``: a :class:`ResolvedSweep` or its :meth:`~ResolvedSweep.to_dict` (the hash of
    ``sweep.json``'s config, which resuming compares)."""
    values = resolved.to_dict() if isinstance(resolved, ResolvedSweep) else resolved
    ident = {k: v for k, v in values.items() if k not in NON_IDENTITY}
    blob = json.dumps(ident, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _flat_values(values: Mapping) -> dict:
    """``values`` keyed by flat names: dotted keys renamed, sections (dicts or section objects)
    spread out; unknown keys raise one ``ValueError`` naming them all."""
    names = {}
    for leaf in leaves(SweepConfig):
        names[leaf.flat] = names[leaf.dotted] = leaf.flat
    sections = {f.name for f in dataclasses.fields(_Sweep)} - set(names)
    out, unknown = {}, []
    for key, value in values.items():
        if key in sections and dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        if key in sections and isinstance(value, Mapping):
            inner = {f"{key}.{k}": v for k, v in value.items()}
            unknown += [k for k in inner if k not in names]
            out.update({names[k]: v for k, v in inner.items() if k in names})
        elif key in names:
            out[names[key]] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"config: unknown key(s) {sorted(unknown)}; allowed: {list(FLAT_KEYS + OPTIONAL_KEYS)}")
    return out


def _as_list(name, v) -> list:
    if isinstance(v, (str, int, float)) and not isinstance(v, bool):
        v = [v]
    try:
        v = list(v)
    except TypeError:
        raise ValueError(f"{name}: must be a value or a list of values, got {v!r}") from None
    if not v:
        raise ValueError(f"{name}: empty list; the grid needs at least one value")
    return v


def _resolve_p(out: dict) -> None:
    given = [k for k in P_KEYS if out[k] is not None]
    if not given:
        raise ValueError("p: give one of p, p_over_n, p_over_dn")
    if len(given) > 1:
        raise ValueError(f"p: give only one of p, p_over_n, p_over_dn (got {given})")
    pk = given[0]
    if pk == "p":
        out["p"] = [_validate.positive_int("p", v) for v in out["p"]]
    else:
        out[pk] = [_validate.positive_float(pk, v) for v in out[pk]]


def _check_scalars(out: dict) -> None:
    """Validate the scalar fields of a resolving config in place (floats made floats)."""
    check_name(out["name"])
    _validate.positive_int("seeds", out["seeds"])
    if isinstance(out["seed"], bool) or not isinstance(out["seed"], int) or out["seed"] < 0:
        raise ValueError(f"seed: must be a non-negative integer, got {out['seed']!r}")
    _validate.positive_int("steps", out["steps"])
    if out["block_size"] is not None:
        _validate.positive_int("block_size", out["block_size"])
    if not isinstance(out["x64"], bool):
        raise ValueError(f"x64: must be true or false, got {out['x64']!r}")
    out["noise"] = _validate.positive_float("noise", out["noise"], allow_zero=True)
    if out["planted"] is not None:
        out["planted"] = _validate.positive_float("planted", out["planted"], allow_zero=True)
    out["ridge"] = _validate.positive_float("ridge", out["ridge"], allow_zero=True)
    _validate.choice("pad_p", out["pad_p"], PAD_P)
    if out["lr"] is not None:
        out["lr"] = _validate.positive_float("lr", out["lr"])


def _check_model(out: dict) -> None:
    """Validate the model fields in place: a network sweep's sizes, its training, what it cannot do."""
    model = out["model"]
    if model is None or model == "rf":
        out["model"] = None  # random features: recorded as before (old sweeps keep their hash)
        given = [k for k in NETWORK_DEFAULTS if out[k] is not None]
        if given:
            raise ValueError(f"{given[0]}: applies to network models; set model to one of {list(MODELS[1:])}")
        return
    _validate.choice("model", model, MODELS)
    from ..models.train import check_network

    classes = 1 if out["classes"] is None else _validate.positive_int("classes", out["classes"])
    for d in out["d"]:
        check_network(model, d, classes)
    if out["train"] is not None:
        _validate.choice("train", out["train"], TRAIN_SUBSETS)
    if out["train_tol"] is not None:
        out["train_tol"] = _validate.positive_float("train_tol", out["train_tol"], allow_zero=True)
    if out["train_steps"] is not None:
        _validate.positive_int("train_steps", out["train_steps"])
    if out["train_lr"] is not None:
        out["train_lr"] = _validate.positive_float("train_lr", out["train_lr"])
    for key, what in (("block_size", "streamed V"), ("defence", "a defence"), ("planted", "a planted start")):
        if out[key] is not None:
            raise ValueError(f"{key}: {what} applies to random features, not to model {model!r}")
    if model == "resnet" and tuple(out["activation"]) != ("relu",):
        raise ValueError(f"activation: the resnet is a ReLU network; got {list(out['activation'])}")


def check_name(name) -> str:
    """A sweep name names the directory ``runs/NAME``: a non-empty plain name, no path separator,
    no ``..``, so it never points outside ``runs/``; one-line ``ValueError`` otherwise."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name: must be a non-empty string, got {name!r}")
    seps = {"/", "\\", os.sep, os.altsep} - {None}
    if any(c in name for c in seps) or ".." in name or name == "." or "\0" in name:
        raise ValueError(f"name: must be a plain name without '/' or '..' (it names the directory runs/NAME), "
                         f"got {name!r}; give the directory with --out instead")
    return name


def _check_defence(out: dict) -> None:
    """Validate the defence fields in place: every strength must build a valid defence."""
    from ..defences import DEFENCES, defence_at

    if out["defence"] is None:
        if out["defence_strength"] is not None:
            raise ValueError("defence_strength: set defence (the kind) too")
        return
    _validate.choice("defence", out["defence"], DEFENCES)
    if out["defence"] == "none":
        out["defence_strength"] = None
    elif out["defence_strength"] is None:
        raise ValueError(f"defence_strength: the {out['defence']} defence needs a list of strengths")
    else:
        out["defence_strength"] = [float(v) for v in out["defence_strength"]]
    for v in out["defence_strength"] or [0.0]:
        defence_at(out["defence"], v, out["dp_delta"])
    if out["floor_factor"] is not None and not float(out["floor_factor"]) >= 1:
        raise ValueError(f"floor_factor: must be >= 1, got {out['floor_factor']!r}")
    if out["plateau_window"] not in (None, 0):
        _validate.positive_int("plateau_window", out["plateau_window"])


def load_config(path) -> SweepConfig:
    """Load a sweep config: ``get_config()`` (a :class:`SweepConfig` or a dict of its fields) from a
    Python file (``experiments/*.py``), or a JSON file holding the dict (or a ``sweep.json``, whose
    ``config`` is reused); a one-line ``ValueError`` if it cannot."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"config: {str(path)!r} is a directory; give a config file (a .py with get_config() "
                         f"or a .json)")
    if not path.is_file():
        raise ValueError(f"config: no such file {str(path)!r}")
    if path.suffix == ".json":
        return _load_json(path)
    if path.suffix != ".py":
        raise ValueError(f"config: {str(path)!r} must be a .py file with get_config() or a .json file")
    try:
        spec = importlib.util.spec_from_file_location(f"_jaxrecon_config_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except SystemExit as e:  # sys.exit() in the file: say so, never exit silently
        raise ValueError(f"config: {str(path)!r} called sys.exit({e.code!r}) while loading; a config file "
                         f"defines get_config() and does not exit") from None
    except Exception as e:  # syntax errors, import errors: one clear line
        raise ValueError(f"config: cannot read {str(path)!r}: {type(e).__name__}: {_one_line(e)}") from None
    get = getattr(module, "get_config", None)
    if not callable(get):
        raise ValueError(f"config: {str(path)!r} has no get_config() function")
    try:
        values = get()
    except SystemExit as e:
        raise ValueError(f"config: get_config() in {str(path)!r} called sys.exit({e.code!r}); it must return "
                         f"the config") from None
    except Exception as e:
        raise ValueError(f"config: get_config() in {str(path)!r} failed: {type(e).__name__}: {_one_line(e)}") \
            from None
    if isinstance(values, SweepConfig):
        return values
    if not isinstance(values, dict):
        raise ValueError(f"config: get_config() in {str(path)!r} must return a dict or a SweepConfig, "
                         f"got {type(values).__name__}")
    return SweepConfig.from_dict(values)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _load_json(path: Path) -> SweepConfig:
    try:
        values = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"config: cannot read {str(path)!r}: {e}") from None
    if isinstance(values, dict) and isinstance(values.get("config"), dict) and "config_hash" in values:
        values = {k: v for k, v in values["config"].items() if v is not None}  # a sweep.json
    if not isinstance(values, dict):
        raise ValueError(f"config: {str(path)!r} must hold a JSON object of config fields")
    return SweepConfig.from_dict(values)
