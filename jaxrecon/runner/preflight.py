"""Checks of a reconstruction's sizes before any work or file: int32 indexing and memory.

XLA indexes arrays with 32-bit integers on the paths the attack takes, so ``d``, ``p`` and the
products ``n d``, ``n p``, ``p d`` must stay below ``2**31``. A dense random-features map holds
``V`` (``p x d``) and every vmapped seed holds its features (``n x p``); when that exceeds the
memory of the device (or the host, on CPU) the run would die inside XLA, so it is refused with a
hint to stream ``V`` (``--memory-budget``). Streamed maps are sized by :mod:`jaxrecon.scale`.
"""

from __future__ import annotations

from typing import Optional

from ..scale import INT32_MAX, Layout, format_bytes, int32_overflow, physical_memory


def available_memory() -> Optional[int]:
    """Bytes a program may still use: the first device's free memory (limit minus in use) where
    JAX reports it (GPUs), else the host's available (``MemAvailable``) or physical memory;
    ``None`` where neither is known."""
    import jax

    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # backends without memory statistics
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return physical_memory()


def check_int32(d: int, n: int, p: int) -> None:
    """One-line ``ValueError`` when a size the attack indexes overflows int32."""
    over = int32_overflow((("d", d), ("p", p), ("n*d", n * d), ("p*n", p * n), ("p*d", p * d)))
    if over is not None:
        label, size = over
        name = "d" if label in ("d", "n*d") else "p"
        raise ValueError(f"{name}: {label} = {size} is over the int32 limit {INT32_MAX} "
                         f"(d={d}, n={n}, p={p}); use smaller sizes")


def dense_bytes(d: int, n: int, p: int, seeds: int, itemsize: int) -> int:
    """A lower bound on a dense random-features attack's memory: ``V`` once, the features of the
    ``n`` rows for every seed."""
    return itemsize * (p * d + seeds * n * p)


def check_sizes(cfg, memory: Optional[int] = None) -> Optional[Layout]:
    """Refuse a resolved :class:`~jaxrecon.runner.ReconstructConfig` whose sizes overflow int32
    indexing, or whose dense feature map cannot fit ``memory`` bytes (default
    :func:`available_memory`); one-line ``ValueError`` naming the field and what to change.
    Returns the random features' :class:`~jaxrecon.scale.Layout` (``None`` for networks)."""
    d, n, p = cfg.data.d, cfg.data.n, cfg.model.p
    check_int32(d, n, p)
    if cfg.model.name != "rf":
        return None
    memory = available_memory() if memory is None else memory
    layout = cfg.layout(memory)
    if not layout.dense:
        return layout  # streamed maps are sized by their memory budget or block size
    seeds = -(-cfg.attack.seeds // cfg.scale.seed_shards)
    need = dense_bytes(d, n, p, seeds, 8 if cfg.scale.x64 else 4)
    if memory is not None and need > memory:
        raise ValueError(f"p: a dense feature map with d={d}, n={n}, p={p} and {seeds} seeds needs at least "
                         f"{format_bytes(need)}, more than the {format_bytes(memory)} of memory available; stream "
                         f"it with --memory-budget (e.g. --memory-budget {format_bytes(memory // 2, up=False)}) "
                         f"or use smaller p or seeds")
    return layout
