"""Sweep configs: :class:`SweepConfig` (what a user writes) and :class:`ResolvedSweep` (validated).

An experiment file's ``get_config()`` returns a :class:`SweepConfig` or a dict of its fields;
:func:`load_config` reads it. :meth:`SweepConfig.resolved` validates every value, turns grids into
tuples and fills in the default method, giving the :class:`ResolvedSweep` the rest of the sweep
reads. Both configs are flat (18 fields, one per command-line flag): grouping them into sections
would break ``SweepConfig(d=..., steps=...)`` and the flat dicts the experiment files return.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Optional, Sequence

from .. import _validate
from ..activations import ACTIVATIONS
from ..attack import METHODS, method_config

#: Config keys that are grids (lists); every other key is a scalar.
GRID_KEYS = ("d", "n", "p", "p_over_n", "p_over_dn", "activation", "method")
P_KEYS = ("p", "p_over_n", "p_over_dn")
# Keys that do not change a single number of the results (left out of the config hash).
NON_IDENTITY = ("name", "block_size")


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """A sweep: the grid ``d x n x p x activation x method`` and ``seeds`` seeds per point.

    ``p`` is given by exactly one of ``p`` (feature counts), ``p_over_n`` (multiples of ``n``) or
    ``p_over_dn`` (multiples of ``d * n``; ``p = max(1, round(r * d * n))``). ``method=None`` means
    :data:`jaxrecon.attack.DEFAULT_METHOD` at run time; ``optimizer`` and ``lr`` override
    every method's. ``block_size`` streams ``V`` (same numbers as dense, less memory).
    ``pad_p`` (``"auto"``, ``"max"``, ``"none"``): run every ``p`` of a ``(d, n)`` curve in one
    program compiled for the curve's largest ``p`` (see :func:`jaxrecon.sweeps.pad_width`).
    """

    name: str = "sweep"
    d: Sequence[int] = (20,)
    n: Sequence[int] = (5,)
    p: Optional[Sequence[int]] = None
    p_over_n: Optional[Sequence[float]] = None
    p_over_dn: Optional[Sequence[float]] = None
    activation: Sequence[str] = ("relu",)
    method: Optional[Sequence[str]] = None
    seeds: int = 4
    seed: int = 0
    steps: int = 4000
    optimizer: Optional[str] = None
    lr: Optional[float] = None
    x64: bool = False
    block_size: Optional[int] = None
    noise: float = 0.5
    ridge: float = 0.0
    pad_p: str = "auto"

    @classmethod
    def from_dict(cls, values: dict) -> "SweepConfig":
        """Build from plain data, refusing unknown keys (``ValueError`` naming them)."""
        if not isinstance(values, dict):
            raise ValueError(f"config: get_config() must return a dict, got {type(values).__name__}")
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ValueError(f"config: unknown key(s) {unknown}; allowed: {fields}")
        return cls(**values)

    def replace(self, **overrides) -> "SweepConfig":
        """A copy with overrides applied (``None`` values are ignored). Giving any of ``p``,
        ``p_over_n``, ``p_over_dn`` replaces the config's way of giving ``p``."""
        overrides = {k: v for k, v in overrides.items() if v is not None}
        SweepConfig.from_dict(overrides)  # unknown keys
        if any(k in overrides for k in P_KEYS):
            for k in P_KEYS:
                overrides.setdefault(k, None)
        return dataclasses.replace(self, **overrides)

    def resolved(self) -> "ResolvedSweep":
        """The validated config: grids as tuples, the method names filled in."""
        from ..attack import DEFAULT_METHOD  # read at run time: the default may change

        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in GRID_KEYS and v is not None:
                v = _as_list(f.name, v)
            out[f.name] = v
        if out["method"] is None:
            out["method"] = [DEFAULT_METHOD]
        for name in ("d", "n"):
            out[name] = [_validate.positive_int(name, v) for v in out[name]]
        _resolve_p(out)
        for a in out["activation"]:
            _validate.choice("activation", a, ACTIVATIONS)
        for m in out["method"]:
            _validate.choice("method", m, METHODS)
            method_config(m, optimizer=self.optimizer, lr=self.lr)  # validates optimizer / lr
        _check_scalars(out)
        return ResolvedSweep(**{k: tuple(v) if k in GRID_KEYS and v is not None else v
                                for k, v in out.items()})


@dataclasses.dataclass(frozen=True)
class ResolvedSweep:
    """A validated :class:`SweepConfig`: the same fields, grids as tuples, ``method`` filled in."""

    name: str
    d: tuple
    n: tuple
    p: Optional[tuple]
    p_over_n: Optional[tuple]
    p_over_dn: Optional[tuple]
    activation: tuple
    method: tuple
    seeds: int
    seed: int
    steps: int
    optimizer: Optional[str]
    lr: Optional[float]
    x64: bool
    block_size: Optional[int]
    noise: float
    ridge: float
    pad_p: str

    def to_dict(self) -> dict:
        """Plain data for ``sweep.json`` (grids as lists), in field order."""
        return {f.name: list(v) if isinstance(v, tuple) else v
                for f in dataclasses.fields(self) for v in [getattr(self, f.name)]}

    def config_hash(self) -> str:
        """SHA-256 (first 16 hex digits) of the values that determine the results."""
        return config_hash(self)


def config_hash(resolved) -> str:
    """SHA-256 (first 16 hex digits) of the config values that determine the results.

    ``resolved``: a :class:`ResolvedSweep` or its :meth:`~ResolvedSweep.to_dict` (the hash of
    ``sweep.json``'s config, which resuming compares)."""
    values = resolved.to_dict() if isinstance(resolved, ResolvedSweep) else resolved
    ident = {k: v for k, v in values.items() if k not in NON_IDENTITY}
    blob = json.dumps(ident, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


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
    if not isinstance(out["name"], str) or not out["name"]:
        raise ValueError(f"name: must be a non-empty string, got {out['name']!r}")
    _validate.positive_int("seeds", out["seeds"])
    if isinstance(out["seed"], bool) or not isinstance(out["seed"], int) or out["seed"] < 0:
        raise ValueError(f"seed: must be a non-negative integer, got {out['seed']!r}")
    _validate.positive_int("steps", out["steps"])
    if out["block_size"] is not None:
        _validate.positive_int("block_size", out["block_size"])
    if not isinstance(out["x64"], bool):
        raise ValueError(f"x64: must be true or false, got {out['x64']!r}")
    out["noise"] = _validate.positive_float("noise", out["noise"], allow_zero=True)
    out["ridge"] = _validate.positive_float("ridge", out["ridge"], allow_zero=True)
    _validate.choice("pad_p", out["pad_p"], ("auto", "max", "none"))
    if out["lr"] is not None:
        out["lr"] = _validate.positive_float("lr", out["lr"])


def load_config(path) -> SweepConfig:
    """Load ``get_config()`` (a :class:`SweepConfig` or a dict of its fields) from a Python file
    (``experiments/*.py``); ``ValueError`` if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config: no such file {str(path)!r}")
    try:
        spec = importlib.util.spec_from_file_location(f"_jaxrecon_config_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except Exception as e:  # syntax errors, import errors: one clear line
        raise ValueError(f"config: cannot read {str(path)!r}: {type(e).__name__}: {e}") from None
    get = getattr(module, "get_config", None)
    if not callable(get):
        raise ValueError(f"config: {str(path)!r} has no get_config() function")
    try:
        values = get()
    except Exception as e:
        raise ValueError(f"config: get_config() in {str(path)!r} failed: {type(e).__name__}: {e}") from None
    if isinstance(values, SweepConfig):
        return values
    if not isinstance(values, dict):
        raise ValueError(f"config: get_config() must return a dict or a SweepConfig, got {type(values).__name__}")
    return SweepConfig.from_dict(values)
