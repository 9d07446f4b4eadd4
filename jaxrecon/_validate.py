"""Argument checks shared by the library: each raises ``ValueError`` naming the argument.

Shape checks are static and run under ``jit``; value checks (finiteness) run only on concrete
arrays, since a traced value has no value to inspect.
"""

from __future__ import annotations

import numbers

import jax
import numpy as np


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name}: must be a positive integer, got {value!r}")
    return int(value)


def positive_float(name: str, value, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: must be a number, got {value!r}") from None
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: must be a finite number {bound}, got {value!r}")
    return v


def is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def finite(name: str, x) -> None:
    """Reject NaN/inf in a concrete array; a no-op under tracing."""
    if is_concrete(x) and not bool(np.all(np.isfinite(np.asarray(x)))):
        raise ValueError(f"{name}: contains NaN or inf; all entries must be finite")


def matrix(name: str, x, width: int | None = None, width_name: str = "d", rows: int | None = None):
    """Check that ``x`` is a 2-D array ``(rows, width)``; return it unchanged."""
    shape = getattr(x, "shape", None)
    if shape is None:
        raise ValueError(f"{name}: must be an array, got {type(x).__name__}")
    if len(shape) != 2:
        raise ValueError(f"{name}: must be a 2-D array of shape (n, {width_name}), got shape {tuple(shape)}")
    if width is not None and shape[1] != width:
        raise ValueError(
            f"{name}: has {shape[1]} columns but the feature map expects {width_name}={width} "
            f"(shape {tuple(shape)})"
        )
    if rows is not None and shape[0] != rows:
        raise ValueError(f"{name}: must have {rows} rows, got shape {tuple(shape)}")
    if shape[0] == 0:
        raise ValueError(f"{name}: must have at least one row, got shape {tuple(shape)}")
    finite(name, x)
    return x


def vector(name: str, x, length: int, length_name: str = "p"):
    shape = getattr(x, "shape", None)
    if shape is None or tuple(shape) != (length,):
        raise ValueError(f"{name}: must be a vector of shape ({length_name}={length},), got shape {shape}")
    finite(name, x)
    return x


def choice(name: str, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name}: unknown value {value!r}; allowed: {sorted(allowed)}")
    return value
