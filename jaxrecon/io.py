"""Results files: atomic writes, run directories and version stamps."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
from pathlib import Path
from typing import Iterator

import numpy as np


def versions() -> dict:
    """Versions of the library and its stack, plus the device JAX computes on."""
    import jax
    import jaxlib
    import optax

    from ._version import __version__

    try:  # the networks extra
        import flax
    except ImportError:
        flax = None
    dev = jax.devices()[0]
    return {
        "jaxrecon": __version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
        "optax": optax.__version__, "flax": flax.__version__ if flax else None, "numpy": np.__version__,
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


def _write_temp(path: Path, write, mode: str) -> Path:
    """``write(f)`` into a new temporary file beside ``path`` (fsync-ed); returns its path. An
    ``OSError`` names ``path`` and leaves no temporary file."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
        except OSError as e:
            raise _naming(e, path) from e
    else:
        raise FileExistsError(f"no free temporary name beside {str(path)!r}")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise _naming(e, path) from e
        raise
    return tmp


def _naming(e: OSError, path) -> OSError:
    """``e`` with ``path`` as its file name (a write error of a temporary file names the target)."""
    return type(e)(e.errno, e.strerror or str(e), str(path)) if e.errno is not None else e


def atomic_write(path, write, mode: str = "w") -> None:
    """Write ``path`` as a unit: ``write(f)`` fills a temporary file in the same directory, which is
    fsync-ed and renamed over ``path``. The file gets the mode the umask gives a new file (as
    ``open`` would), not a private temporary file's 0600. An ``OSError`` (full disk, read-only
    directory) names ``path``, and ``path`` is left as it was."""
    commit_files(Path(path).parent, [(Path(path).name, write, mode)])


def commit_files(directory, files) -> None:
    """Write several files of ``directory`` as one unit: ``files`` is a list of ``(name, write,
    mode)``; every file is written to a temporary file first, and only when all are complete are
    they renamed into place, in order (put the file that marks a complete result last). On a
    failure nothing is renamed and no temporary file is left."""
    directory = Path(directory)
    done = []
    try:
        for name, write, mode in files:
            done.append((_write_temp(directory / name, write, mode), directory / name))
        for tmp, path in done:
            try:
                os.replace(tmp, path)
            except OSError as e:
                raise _naming(e, path) from e
    finally:
        for tmp, _ in done:
            if os.path.exists(tmp):
                os.unlink(tmp)
    fsync_dir(directory)


@contextlib.contextmanager
def made_dir(path) -> Iterator[Path]:
    """Create the directory ``path`` (and its missing parents) for a block; if the block fails,
    the directories it created that are still empty are removed again. A path that is a file is
    a one-line ``ValueError``; a directory that cannot be made an ``OSError`` naming it."""
    path = Path(path)
    missing, p = [], path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    out_dir(path)
    try:
        yield path
    except BaseException:
        for d in missing:  # deepest first
            try:
                d.rmdir()
            except OSError:
                break
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


def json_writer(obj):
    """A ``write(f)`` for :func:`commit_files`: ``obj`` as indented JSON (NaN/inf as strings)."""
    return lambda f: json.dump(_jsonable(obj), f, indent=2, sort_keys=False)


def npz_writer(**arrays):
    """A ``write(f)`` for :func:`commit_files` (binary mode): compressed ``.npz`` of ``arrays``."""
    return lambda f: np.savez_compressed(f, **arrays)


def write_json(path, obj) -> None:
    atomic_write(path, json_writer(obj))


def write_npz(path, **arrays) -> None:
    atomic_write(path, npz_writer(**arrays), mode="wb")
