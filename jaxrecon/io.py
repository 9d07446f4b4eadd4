"""Results files: atomic writes, run directories and version stamps."""

from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path

import numpy as np


def versions() -> dict:
    """Versions of the library and its stack, plus the device JAX computes on."""
    import flax
    import jax
    import jaxlib
    import optax

    from ._version import __version__

    dev = jax.devices()[0]
    return {
        "jaxrecon": __version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
        "optax": optax.__version__, "flax": flax.__version__, "numpy": np.__version__,
        "python": platform.python_version(), "device": f"{dev.platform}:{dev.device_kind}",
        "x64": bool(jax.config.jax_enable_x64),
    }


def out_dir(path) -> Path:
    """Create (if needed) and return an output directory; refuse a path that is a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"out: {str(path)!r} exists and is not a directory; give a directory path")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _atomic(path: Path, write, mode="w"):
    """Write to a temporary file in the same directory, fsync, then rename over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path, obj) -> None:
    _atomic(path, lambda f: json.dump(_jsonable(obj), f, indent=2, sort_keys=False))


def write_npz(path, **arrays) -> None:
    _atomic(path, lambda f: np.savez_compressed(f, **arrays), mode="wb")
