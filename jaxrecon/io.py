"""Results files: atomic writes, run directories and version stamps."""

from __future__ import annotations

import json
import os
import platform
import secrets
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


def atomic_write(path, write, mode: str = "w") -> None:
    """Write ``path`` as a unit: ``write(f)`` fills a temporary file in the same directory, which is
    fsync-ed and renamed over ``path``. The file gets the mode the umask gives a new file (as
    ``open`` would), not a private temporary file's 0600."""
    path = Path(path)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"no free temporary name beside {str(path)!r}")
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


_atomic = atomic_write


def fsync_dir(path) -> None:
    """Make a directory's new entries (created or renamed files) durable; best effort."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
    atomic_write(path, lambda f: json.dump(_jsonable(obj), f, indent=2, sort_keys=False))


def write_npz(path, **arrays) -> None:
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays), mode="wb")
