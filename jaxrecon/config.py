"""Frozen, typed, sectioned configs: built from dicts, overridden by dotted names, turned into flags.

A config is a frozen dataclass whose fields are *leaves* (``int``, ``float``, ``str``, ``bool``, a
tuple of one of them, ``tuple[int, ...]``, or ``Optional`` of any of these) or *sections* (nested
frozen dataclasses). Every leaf has two names:

* its dotted name, the path through the sections: ``attack.lr``;
* its flat name, unique in the whole config: the field name, or ``metadata["flat"]`` where the
  field name alone would be ambiguous (``data.dir`` is ``data_dir``).

Declare leaves with :func:`option` (default, help, flat name, choices) and sections with
:func:`section`. Then :func:`from_dict` accepts nested dicts, dotted keys and flat keys,
:func:`override` sets one leaf from a string (``override(cfg, "attack.lr", "0.1")``),
:func:`to_dict` gives nested or flat dicts, and :func:`add_arguments` / :func:`from_args` turn the
config into command-line flags, ``--attack.lr`` and its flat spelling ``--lr``. A top-level config
that subclasses :class:`Config` also takes those keys as keyword arguments and reads flat names as
attributes (``cfg.lr``).

:func:`x64` switches JAX's float64 mode for a block and restores it after.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, NamedTuple, Optional

import jax

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def option(default, help: str, *, flat: Optional[str] = None, choices=None):
    """A leaf field: its default, a one-line help, an optional flat name and allowed values."""
    return dataclasses.field(default=default, metadata={"help": help, "flat": flat, "choices": choices})


def section(cls):
    """A section field: a nested config, defaulting to ``cls()``."""
    return dataclasses.field(default_factory=cls)


class Leaf(NamedTuple):
    """One leaf of a config class: where it sits (``path``), its names, type and field."""

    path: tuple[str, ...]
    dotted: str
    flat: str
    type: Any  # the base type: int, float, str or bool (of the elements, for a tuple leaf)
    optional: bool
    field: dataclasses.Field
    sequence: bool = False  # a tuple leaf, ``tuple[type, ...]``


def _unwrap(tp) -> tuple[Any, bool]:
    """``(base, optional)`` of an annotation: ``Optional[int]`` -> ``(int, True)``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"config fields may be Optional of one type, got {tp}")
        return args[0], True
    return tp, False


def _element(tp) -> tuple[Any, bool]:
    """``(element type, True)`` of ``tuple[int, ...]``; ``(tp, False)`` of anything else."""
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"config fields may be tuples of one type, tuple[T, ...], got {tp}")
        return args[0], True
    return tp, False


def _is_section(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def leaves(cls, _prefix: tuple[str, ...] = ()) -> tuple[Leaf, ...]:
    """Every leaf of config class ``cls``, depth first, in field order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        path = (*_prefix, f.name)
        if _is_section(hints[f.name]):
            out.extend(leaves(hints[f.name], path))
            continue
        base, optional = _unwrap(hints[f.name])
        base, sequence = _element(base)
        if base not in (int, float, str, bool):
            raise TypeError(f"config field {'.'.join(path)}: type {base} is not int, float, str or bool")
        out.append(Leaf(path, ".".join(path), f.metadata.get("flat") or f.name, base, optional, f, sequence))
    if not _prefix:
        flats = [l.flat for l in out]
        if len(set(flats)) != len(flats):
            raise TypeError(f"{cls.__name__}: flat names are not unique: {sorted(flats)}")
    return tuple(out)


def _sections(cls) -> dict[str, type]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if _is_section(hints[f.name])}


def convert(name: str, value, leaf_type, optional: bool = False, sequence: bool = False):
    """``value`` as the leaf's type: strings are parsed (``"none"`` is ``None`` for Optional leaves,
    ``true/false/yes/no/1/0`` for booleans, comma-separated values for tuple leaves: ``"10,20"``);
    lists given to a tuple leaf become tuples; a boolean given to a number leaf (JSON ``true``) is a
    ``ValueError``; other values are kept as given (checking them is the config's job)."""
    if sequence and isinstance(value, (list, tuple)):
        for v in value:
            _refuse_bool(name, v, leaf_type)
        return tuple(value)
    if not isinstance(value, str):
        _refuse_bool(name, value, leaf_type)
        return value
    text = value.strip()
    if optional and text.lower() == "none":
        return None
    if sequence:
        items = [v for v in text.split(",") if v.strip()]
        try:
            return tuple(convert(name, v.strip(), leaf_type) for v in items)
        except ValueError:
            raise ValueError(f"{name}: must be a comma-separated list of {leaf_type.__name__}, "
                             f"got {value!r}") from None
    if leaf_type is str:
        return value
    if leaf_type is bool:
        if text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise ValueError(f"{name}: must be true or false, got {value!r}")
    try:
        return leaf_type(text)
    except ValueError:
        raise ValueError(f"{name}: must be {'an' if leaf_type is int else 'a'} {leaf_type.__name__}, "
                         f"got {value!r}") from None


def _refuse_bool(name: str, value, leaf_type) -> None:
    """A boolean (JSON ``true``) is not a number: ``True`` would pass as 1 or 1.0."""
    if isinstance(value, bool) and leaf_type in (int, float):
        raise ValueError(f"{name}: must be {'an' if leaf_type is int else 'a'} {leaf_type.__name__}, "
                         f"got the boolean {value!r}")


def _assign(cls, values: Mapping, current=None) -> dict[str, Any]:
    """Direct field values of ``cls`` from nested, dotted or flat keys (fields not given are left out).

    A key naming a section takes a mapping (merged into the section) or a section instance; a flat
    name that equals a section's name (``data``) is the flat leaf when its value is not a mapping.
    Leaves of a section are set on ``current``'s section (a config of ``cls``), or on the section's
    defaults when ``current`` is ``None``.
    """
    sections, by_flat = _sections(cls), {l.flat: l for l in leaves(cls)}
    by_dotted = {l.dotted: l for l in by_flat.values()}
    direct, nested = {}, {name: {} for name in sections}
    for key, value in values.items():
        if key in sections and (isinstance(value, Mapping) or isinstance(value, sections[key])):
            if isinstance(value, Mapping):
                nested[key].update(value)
            else:
                direct[key] = value
            continue
        leaf = by_dotted.get(key) or by_flat.get(key)
        head, _, rest = key.partition(".")
        if leaf is None and rest and head in sections:  # "attack.lr": a leaf of the section by its flat name
            nested[head][rest] = value
            continue
        if leaf is None:
            allowed = sorted({*by_flat, *(d for d in by_dotted if "." not in d), *sections})
            more = " (or section.field)" if sections else ""
            raise ValueError(f"{key}: unknown {cls.__name__} key; allowed: {', '.join(allowed)}{more}")
        value = convert(leaf.dotted, value, leaf.type, leaf.optional, leaf.sequence)
        if len(leaf.path) == 1:
            direct[leaf.path[0]] = value
        else:
            nested[leaf.path[0]][".".join(leaf.path[1:])] = value
    for name, sub in nested.items():
        if sub:
            base = direct.get(name, None if current is None else getattr(current, name))
            direct[name] = from_dict(sections[name], sub) if base is None else _update(base, sub)
    return direct


def _update(cfg, values: Mapping):
    return dataclasses.replace(cfg, **_assign(type(cfg), values, cfg)) if values else cfg


def from_dict(cls, values: Mapping):
    """A config of class ``cls`` from nested dicts, dotted keys (``"attack.lr"``) or flat keys (``"lr"``).

    Strings are converted to the field's type; unknown keys raise a one-line ``ValueError``.
    """
    if issubclass(cls, Config):
        return cls(**values)
    return cls(**_assign(cls, values))


def override(cfg, name: str, value):
    """A copy of ``cfg`` with the leaf ``name`` (dotted or flat) set; a string value is converted."""
    return _update(cfg, {name: value})


def to_dict(cfg, flat: bool = False) -> dict:
    """Nested plain dict of ``cfg`` (``{"attack": {"lr": ...}}``), or flat: ``{flat name: value}``."""
    if not flat:
        return dataclasses.asdict(cfg)
    out = {}
    for leaf in leaves(type(cfg)):
        value = cfg
        for part in leaf.path:
            value = getattr(value, part)
        out[leaf.flat] = value
    return out


class Config:
    """Base of a top-level config: keyword arguments may be section objects, dicts, or flat names.

    ``ReconstructConfig(d=10, n=4, p=800)`` is ``from_dict(ReconstructConfig, {"d": 10, ...})``.
    Subclasses are declared ``@dataclasses.dataclass(frozen=True, init=False)`` (keeping this
    ``__init__``). Flat leaf names read through as attributes (``cfg.p`` is ``cfg.model.p``) unless
    a field has that name (``cfg.data`` is the data section).
    """

    def __init__(self, **values):
        fields = _assign(type(self), values)
        sections = _sections(type(self))
        for f in dataclasses.fields(self):
            if f.name in fields:
                value = fields[f.name]
            elif f.name in sections:
                value = sections[f.name]()
            else:
                value = f.default
            object.__setattr__(self, f.name, value)

    def __getattr__(self, name):
        if name.startswith("_") or name in {f.name for f in dataclasses.fields(self)}:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        for leaf in leaves(type(self)):
            if leaf.flat == name:
                value = self
                for part in leaf.path:
                    value = getattr(value, part)
                return value
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def replace(self, **values):
        """A copy with some fields set: section objects, dicts, or flat names."""
        return _update(self, values)


# -- command-line flags ---------------------------------------------------------------------------

def _parser_type(leaf: Leaf):
    def parse(text):
        if not leaf.sequence:
            return convert(leaf.dotted, text, leaf.type, leaf.optional)
        try:
            return convert(leaf.dotted, text, leaf.type, leaf.optional, sequence=True)
        except ValueError as e:  # argparse prints this message after the flag: without the name
            raise argparse.ArgumentTypeError(str(e).removeprefix(f"{leaf.dotted}: ")) from None
    parse.__name__ = leaf.type.__name__  # argparse names it in "invalid int value"
    return parse


def _default_text(default) -> str:
    return ",".join(map(str, default)) if isinstance(default, tuple) else str(default)


def section_doc(cls, path) -> str:
    """The first line of the docstring of the section at ``path`` (``("attack", "lm")``) of ``cls``."""
    for name in path:
        cls = _sections(cls)[name]
    doc = (cls.__doc__ or "").strip().splitlines()
    return doc[0] if doc else ""


def add_arguments(parser: argparse.ArgumentParser, cls, details=None) -> None:
    """Add one flag per leaf of ``cls``: ``--section.field`` and its flat spelling (``--p-over-dn``).

    Flags are grouped by section (the section's docstring heads the group); help is the field's
    ``metadata["help"]`` and the default, shown once. Boolean leaves are switches with a negative
    (``--x64`` / ``--no-x64``); tuple leaves take comma-separated values (``--d 10,20``). Flags not
    given are absent from the parsed namespace, so :func:`from_args` keeps the base config's values
    for them (and :func:`given_args` lists only those given).

    ``details(leaf)`` true marks a leaf's flag as a detail: it parses as any other but is left out
    of ``--help``; ``parser.detail_actions`` lists ``(leaf, action)`` of those, their help text in
    ``action.detail_help``, for a help of their own. ``parser.config_groups`` maps each section
    to its argument group.
    """
    groups = {}
    for name, sec in _sections(cls).items():
        doc = (sec.__doc__ or "").strip().splitlines()
        groups[name] = parser.add_argument_group(name, doc[0] if doc else None)
    parser.config_groups = groups
    parser.detail_actions = []
    for leaf in leaves(cls):
        hidden = details is not None and details(leaf)
        target = groups.get(leaf.path[0], parser) if len(leaf.path) > 1 else parser
        names = [f"--{leaf.dotted}"]
        if leaf.flat.replace("_", "-") != leaf.dotted:
            names.append(f"--{leaf.flat.replace('_', '-')}")
        if len(leaf.path) > 2 and f"{leaf.path[0]}.{leaf.flat}" != leaf.dotted:  # --attack.lr of --attack.first_order.lr
            names.append(f"--{leaf.path[0]}.{leaf.flat}")
        text = leaf.field.metadata.get("help") or ""
        choices = leaf.field.metadata.get("choices")
        if choices is not None:
            text += f" ({', '.join(map(str, choices))})"
        default = leaf.field.default
        if default is not None and default is not dataclasses.MISSING and leaf.type is not bool:
            text += f" (default: {_default_text(default)})"
        kw = dict(dest=leaf.dotted, default=argparse.SUPPRESS, help=argparse.SUPPRESS if hidden else text)
        if leaf.type is bool and not leaf.sequence and isinstance(default, bool):
            action = target.add_argument(*names, action=argparse.BooleanOptionalAction, **kw)
        else:
            if leaf.sequence:  # the choices apply to each element: the config checks them
                choices = None
            action = target.add_argument(*names, type=_parser_type(leaf), metavar=leaf.path[-1].upper(),
                                         choices=None if choices is None else list(choices), **kw)
        if hidden:
            action.detail_help = text
            parser.detail_actions.append((leaf, action))


def given_args(cls, namespace: argparse.Namespace) -> dict[str, Any]:
    """``{dotted name: value}`` of the flags of ``cls`` given on the command line (see :func:`add_arguments`)."""
    given = vars(namespace)
    return {l.dotted: given[l.dotted] for l in leaves(cls) if l.dotted in given}


def from_args(cls, namespace: argparse.Namespace, base=None):
    """The config from parsed flags (see :func:`add_arguments`) over ``base`` (default ``cls()``)."""
    base = cls() if base is None else base
    return _update(base, given_args(cls, namespace))


@contextlib.contextmanager
def x64(enable: bool = True):
    """Run a block with ``jax_enable_x64`` set to ``enable``; the previous setting is restored after.

    The library never switches float64 itself: entry points (the CLI, scripts, notebooks) do, e.g.
    ``with jaxrecon.x64(): run_reconstruction(cfg)`` for a config with ``x64=True``.
    """
    before = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", bool(enable))
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)
