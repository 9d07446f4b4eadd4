"""Tests run with float64 enabled; float32 cases ask for it explicitly (dtype="float32").

One persistent compilation cache serves the whole session and the commands it starts (through
``JAXRECON_CACHE_DIR``): ``.pytest_cache/jax`` in the repository, so a repeated local run finds
its programs compiled; a clean clone (CI) starts with an empty one.
"""

import os
from pathlib import Path

import jax
import pytest

os.environ.setdefault("JAXRECON_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".pytest_cache" / "jax"))

from jaxrecon.cache import enable_compilation_cache  # noqa: E402

enable_compilation_cache()
jax.config.update("jax_enable_x64", True)


@pytest.fixture
def key():
    return jax.random.key(0)
