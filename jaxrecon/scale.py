"""Memory budgets for streamed random features: parse ``"4GB"`` and pick a block size.

A streamed :class:`~jaxrecon.RandomFeatures` never stores ``V``; a pass over the features holds one
block of ``B`` rows at a time. The compiled gradient step of the projector loss was measured (XLA's
compile-time memory analysis, CPU, float32; ``tests/test_scale.py`` re-checks it) to need about

    itemsize * [ B * (4 d + n s)  +  p * (2 + n s [cache_preactivations])  +  2 n_blocks s (n^2 + n) ]

bytes of temporaries for ``n`` inputs and ``s`` vmapped seeds: four ``B x d`` buffers for the
regenerated block (random bits, normals, the block and its cotangent), the block's features, the
blocked ``theta`` and the per-block carries the reverse scan keeps. :func:`block_size_for` inverts
this with a 25 % margin and rounds ``B`` down to a multiple of 128 (a friendly matmul size).

:func:`choose_layout` decides between a stored (dense) ``V`` and a streamed one: dense when
``V`` plus the dense working set (:func:`dense_bytes`) fits the budget (by default, ``auto``, half
the free memory of the device, or of the host on CPU), streamed with the largest block that fits
otherwise.

The split start (``adam-lm-split``) runs over a streamed map too: its even features' step and LM
product hold about what the plain streamed map's do (within 10 %, and within this model with its
margin: ``tests/test_split_streamed.py``), and its prefix is the map with fewer rows, not a copy, so
``copied_rows`` (:func:`dense_bytes`) counts against a stored ``V`` only.
"""

from __future__ import annotations

import math
import os
import re
from typing import Iterable, NamedTuple, Optional

import jax.numpy as jnp

from . import _validate

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}

#: Safety factor on the measured memory model.
MARGIN = 1.25

#: The largest size an int32 index reaches: XLA indexes with 32 bits on the attack's paths, so
#: ``d``, ``p`` and the products ``n d``, ``n p``, ``p d`` must stay below ``2**31``.
INT32_MAX = 2**31 - 1


def int32_overflow(sizes: Iterable[tuple]) -> Optional[tuple]:
    """The first ``(label, size)`` of ``sizes`` over :data:`INT32_MAX`, or ``None``."""
    return next(((label, size) for label, size in sizes if size > INT32_MAX), None)


def physical_memory() -> Optional[int]:
    """Physical memory of this machine in bytes (``None`` where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def parse_bytes(name: str, value) -> int:
    """``"4GB"``, ``"512MiB"``, ``"1.5e9"`` or an int -> bytes; ValueError naming ``name`` otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        out = value
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*", str(value))
        unit = m.group(2).lower() if m else None
        if m is None or unit not in _UNITS:
            raise ValueError(f"{name}: must be a size like '4GB', '512MiB' or a number of bytes, got {value!r}; "
                             f"units: {sorted(u for u in _UNITS if u)}")
        out = float(m.group(1)) * _UNITS[unit]
    if not math.isfinite(out) or out <= 0:
        raise ValueError(f"{name}: must be a positive size, got {value!r}")
    return int(out)


def format_bytes(size: float, up: bool = True) -> str:
    """``size`` bytes in the largest decimal unit that keeps it >= 1, to 3 significant digits,
    rounded up (``up``) so that the text, parsed back by :func:`parse_bytes`, is at least ``size``."""
    size = max(0.0, float(size))
    unit, scale = "B", 1
    for name in ("kB", "MB", "GB", "TB"):
        if size >= _UNITS[name.lower()]:
            unit, scale = name, _UNITS[name.lower()]
    value = size / scale
    digits = max(0, 2 - int(math.floor(math.log10(value)))) if value > 0 else 0
    step = 10.0 ** -digits
    value = (math.ceil(value / step - 1e-9) if up else math.floor(value / step + 1e-9)) * step
    if digits > 0 and value >= 10 ** (3 - digits):  # rounding reached the next decade: 9.999 -> 10.0
        digits -= 1
    if unit == "B":
        return f"{int(math.ceil(size) if up else size)} B"
    return f"{value:.{digits}f} {unit}"


def smallest_block(d: int, n: int, p: int, seeds: int = 1, dtype="float32",
                   cache_preactivations: bool = False) -> int:
    """The block size with the smallest modelled step (:func:`step_bytes`): ``a B + c ceil(p / B)``
    is smallest near ``B0 = sqrt(c p / a)``; the exact minimum is among the block sizes near
    ``B0`` and those that split ``p`` into a number of blocks near ``p / B0``."""
    a, c = 4 * d + n * seeds, 2 * seeds * (n * n + n)
    b0 = max(1, min(p, int(math.sqrt(c * p / a))))
    blocks = math.ceil(p / b0)
    candidates = {b0 + k for k in range(-2, 3)} | {math.ceil(p / max(1, blocks + k)) for k in range(-2, 3)}
    return min((B for B in candidates if 1 <= B <= p),
               key=lambda B: (step_bytes(d, n, p, B, seeds, dtype, cache_preactivations), -B))


def step_bytes(d: int, n: int, p: int, block_size: int, seeds: int = 1, dtype="float32",
               cache_preactivations: bool = False) -> int:
    """Modelled temporaries (bytes) of one streamed gradient step (see the module docstring)."""
    item = jnp.dtype(dtype).itemsize
    n_blocks = math.ceil(p / block_size)
    per_row = 4 * d + n * seeds
    fixed = p * (2 + (n * seeds if cache_preactivations else 0)) + 2 * n_blocks * seeds * (n * n + n)
    return int(item * (block_size * per_row + fixed))


def block_size_for(d: int, n: int, p: int, memory_budget, seeds: int = 1, dtype="float32",
                   cache_preactivations: bool = False, shards: int = 1) -> int:
    """Largest block size whose modelled step (times :data:`MARGIN`) fits ``memory_budget`` per device.

    ``memory_budget`` is per device (a string like ``"4GB"`` or bytes). With ``shards`` devices
    each one walks only ``p / shards`` features. Raises ``ValueError`` (naming ``memory_budget``,
    with the smallest budget that works) when even one row per block does not fit.
    """
    for name, v in (("d", d), ("n", n), ("p", p), ("seeds", seeds), ("shards", shards)):
        _validate.positive_int(name, v)
    budget = parse_bytes("memory_budget", memory_budget) / MARGIN
    p_local = math.ceil(p / shards)

    def fits(B):
        return step_bytes(d, n, p_local, B, seeds, dtype, cache_preactivations) <= budget

    # The model is a*B + c*ceil(p/B) + const, smallest at b0 (smallest_block); the largest
    # fitting B lies between b0 and p_local, where the model increases.
    b0 = smallest_block(d, n, p_local, seeds, dtype, cache_preactivations)
    if not fits(b0):
        need = MARGIN * step_bytes(d, n, p_local, b0, seeds, dtype, cache_preactivations)
        raise ValueError(f"memory_budget: {memory_budget!r} is too small for d={d}, n={n}, p={p}, "
                         f"seeds={seeds}; need at least {format_bytes(need)} per device")
    lo, hi = b0, p_local
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo - lo % 128 if 128 <= lo < p_local else lo


#: Share of the free memory an ``auto`` budget may use (the rest is left to XLA, the OS and others).
AUTO_SHARE = 0.5

#: What an explicit budget sets aside for the process itself before sizing ``V`` and the attack's
#: temporaries: the Python/JAX runtime, compiled programs, the data (a small JAX process peaks at
#: about 0.3 GB on CPU; ``--memory-budget 2GB`` at d = 3072, p = 307200 peaked at 2.69 GB total
#: before this allowance, 0.69 GB over the step's modelled temporaries).
RUNTIME_BYTES = 700 * 10**6

#: Feature-sized ``n x p`` arrays a dense step keeps per seed (pre-activations, features, the
#: activation's derivative and a cotangent or Gauss-Newton product), besides ``V`` itself.
DENSE_WORKING_ARRAYS = 4


class Layout(NamedTuple):
    """How ``V`` is held: stored (``dense``) or streamed in blocks of ``block_size`` rows; ``reason``
    says why, in words (printed by ``jaxrecon reconstruct`` and recorded in ``summary.json``)."""

    dense: bool
    block_size: Optional[int]
    reason: str


def dense_bytes(d: int, n: int, p: int, seeds: int, itemsize: int, copied_rows: int = 0) -> int:
    """Modelled memory of a dense random-features attack: ``V`` once plus, for every seed,
    :data:`DENSE_WORKING_ARRAYS` feature-sized arrays and a few ``p``-vectors; ``copied_rows``: rows
    of ``V`` the attack holds a copy of besides (the split start's first stage on a prefix of the
    features, ``Method.split_features``; a streamed map's prefix is no copy)."""
    return itemsize * ((p + copied_rows) * d + seeds * p * (DENSE_WORKING_ARRAYS * n + 4))


def choose_layout(p: int, d: int, n: int, seeds: int, itemsize: int, budget, free_bytes: Optional[int],
                  shards: int = 1, copied_rows: int = 0) -> Layout:
    """Dense or streamed ``V`` for an attack on ``n`` rows with ``seeds`` seeds (pure; see the module
    docstring).

    ``budget``: ``"auto"`` (or ``None``): :data:`AUTO_SHARE` of ``free_bytes`` (the device's free
    memory, or the host's; ``None`` when unknown, then ``V`` is stored); or an explicit size (``"2GB"``,
    bytes), honoured whatever is free: ``V`` is stored only if :func:`dense_bytes` fits it. A streamed
    block is :func:`block_size_for` the budget (per device); ``shards > 1`` always streams. Raises the
    ``ValueError`` of :func:`block_size_for` when even streaming does not fit. ``copied_rows``: see
    :func:`dense_bytes` (only a stored ``V`` is copied).
    """
    dtype = {4: "float32", 8: "float64", 2: "bfloat16"}[itemsize]
    auto = budget is None or budget == "auto"
    if auto and free_bytes is None:
        if shards > 1:
            raise ValueError("memory_budget: free memory is unknown here; give --memory-budget or --block-size "
                             "to shard the features")
        return Layout(True, None, "auto: free memory unknown, V stored")
    if auto:
        limit = int(AUTO_SHARE * free_bytes)
        what = f"auto: {format_bytes(limit)} = {AUTO_SHARE:.0%} of {format_bytes(free_bytes)} free"
    else:
        total = parse_bytes("memory_budget", budget)
        if total <= RUNTIME_BYTES:
            raise ValueError(f"memory_budget: {format_bytes(total)} is the whole process's budget and must exceed "
                             f"the {format_bytes(RUNTIME_BYTES)} set aside for the runtime")
        limit = total - RUNTIME_BYTES
        what = f"budget {format_bytes(total)} ({format_bytes(limit)} for V and the attack)"
    need = dense_bytes(d, n, p, seeds, itemsize, copied_rows)
    copy = f" and a copy of {copied_rows:,} rows" if copied_rows else ""
    if shards == 1 and need <= limit:
        return Layout(True, None, f"{what}; dense V{copy} and working set need {format_bytes(need)}")
    try:
        block = block_size_for(d, n, p, limit, seeds, dtype, shards=shards)
    except ValueError as e:
        if not auto:
            raise
        raise ValueError(f"{e} ({what}); give a larger --memory-budget explicitly, or use smaller p or seeds") from None
    why = "sharded" if shards > 1 else f"dense V{copy} and working set would need {format_bytes(need)}"
    return Layout(False, block, f"{what}; {why}, streamed in blocks of {block} rows")
