"""JAX's persistent compilation cache, switched on by the command-line entry points.

A repeated command loads its compiled programs from disk instead of compiling them again. The
cache lives in ``$JAXRECON_CACHE_DIR``, else ``$XDG_CACHE_HOME/jaxrecon/jax``, else
``~/.cache/jaxrecon/jax``; ``JAXRECON_CACHE_DIR=off`` switches it off. Every program is cached,
however fast it compiled or small it is. Library users call :func:`enable_compilation_cache`
themselves (before their first compilation) if they want it.

The cache is trusted: a program read from it runs as is, so keep it where only you can write.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import jax

#: The environment variable naming the cache directory (``off``: no cache).
ENV = "JAXRECON_CACHE_DIR"


def cache_dir() -> Optional[Path]:
    """The cache directory from the environment (``None`` when ``JAXRECON_CACHE_DIR=off``)."""
    given = os.environ.get(ENV, "").strip()
    if given.lower() in ("off", "none", "0", "false"):
        return None
    if given:
        return Path(given).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    root = Path(base).expanduser() if base else Path.home() / ".cache"
    return root / "jaxrecon" / "jax"


def enable_compilation_cache(path=None) -> Optional[Path]:
    """Point JAX's persistent compilation cache at ``path`` (default :func:`cache_dir`) and cache
    every program; returns the directory (``None``: left off). A directory that cannot be created
    leaves the cache off (compiling still works)."""
    path = cache_dir() if path is None else Path(path)
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return path
