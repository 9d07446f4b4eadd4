"""Synthetic data of the paper's Fig. 3: rows uniform on the sphere of radius sqrt(d), noisy linear labels."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .. import _validate


class Dataset(NamedTuple):
    """Training inputs ``x`` (``n x d``) and labels ``y`` (``n,``)."""

    x: jax.Array
    y: jax.Array


def sphere(key: jax.Array, n: int, d: int, dtype=None) -> jax.Array:
    """``n`` points uniform on the sphere of radius ``sqrt(d)`` in ``R^d``."""
    _validate.positive_int("n", n)
    _validate.positive_int("d", d)
    dtype = dtype or jnp.result_type(float)
    g = jax.random.normal(key, (n, d), dtype)
    return project_to_sphere(g)


def project_to_sphere(x: jax.Array, radius=None) -> jax.Array:
    """Rescale each row of ``x`` to norm ``radius`` (default ``sqrt(d)``)."""
    radius = jnp.sqrt(x.shape[-1]) if radius is None else radius
    norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
    return x * (radius / jnp.maximum(norm, jnp.finfo(x.dtype).tiny))


def synthetic(key: jax.Array, n: int, d: int, noise: float = 0.5, dtype=None) -> Dataset:
    """The paper's synthetic task, all from one key.

    ``x_i`` uniform on the sphere of radius ``sqrt(d)``; ``y = x beta + eps`` with
    ``beta ~ N(0, I/d)`` and ``eps ~ N(0, noise^2)`` (paper: ``noise = 0.5``).
    """
    _validate.positive_float("noise", noise, allow_zero=True)
    kx, kb, ke = jax.random.split(key, 3)
    x = sphere(kx, n, d, dtype)
    beta = jax.random.normal(kb, (d,), x.dtype) / jnp.sqrt(d).astype(x.dtype)
    y = x @ beta + noise * jax.random.normal(ke, (n,), x.dtype)
    return Dataset(x, y)
