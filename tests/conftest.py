"""Tests run with float64 enabled; float32 cases ask for it explicitly (dtype="float32")."""

import jax
import pytest

jax.config.update("jax_enable_x64", True)


@pytest.fixture
def key():
    return jax.random.key(0)
