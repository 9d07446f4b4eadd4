"""Shared helpers for the benchmarks: timing, machine description, result files."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import jax


def block(tree):
    return jax.tree_util.tree_map(lambda a: a.block_until_ready() if hasattr(a, "block_until_ready") else a, tree)


def timed(fn, *args, repeats=3):
    """Best-of-``repeats`` wall-clock seconds of ``fn(*args)`` (results blocked on)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        block(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def machine() -> dict:
    from jaxrecon.io import versions

    info = versions()
    info.update(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(),
                load_average=os.getloadavg()[0])
    return info


def load(name: str) -> dict:
    """The payload written by :func:`save` under ``name``."""
    return json.loads((Path(__file__).parent / "results" / f"{name}.json").read_text())


def save(name: str, payload: dict) -> Path:
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path
