"""Random-features regression: min-norm least squares through the ``n x n`` kernel."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .. import _validate


class FitResult(NamedTuple):
    """``theta = Phi^T alpha``; ``predictions = K alpha`` on the training inputs."""

    theta: jax.Array  # (p,)
    alpha: jax.Array  # (n,)
    predictions: jax.Array  # (n,)
    train_loss: jax.Array  # mean squared error on the training set


def _kernel_pinv_solve(K, y, rcond=None):
    """``K^+ y`` for a symmetric PSD ``K`` by eigendecomposition (exact min-norm when p < n)."""
    evals, evecs = jnp.linalg.eigh(K)
    rcond = K.shape[0] * jnp.finfo(K.dtype).eps if rcond is None else rcond
    keep = evals > rcond * jnp.max(evals)
    inv = jnp.where(keep, 1.0 / jnp.where(keep, evals, 1.0), 0.0)
    return evecs @ (inv * (evecs.T @ y))


def ridge_alpha(K: jax.Array, y: jax.Array, ridge) -> jax.Array:
    """``(K + ridge I)^{-1} y`` for ``ridge > 0`` (a number or a traced value)."""
    ridge = jnp.asarray(ridge, K.dtype)
    return jax.scipy.linalg.solve(K + ridge * jnp.eye(K.shape[0], dtype=K.dtype), y.astype(K.dtype), assume_a="pos")


def fit_with_info(fmap, x, y, ridge: float = 0.0) -> FitResult:
    """Fit ``f(x) = phi(x)^T theta`` by (ridge) least squares through the kernel ``K = Phi Phi^T``.

    ``alpha = (K + ridge I)^{-1} y`` and ``theta = Phi^T alpha`` (via ``fmap.adjoint``; no
    pseudo-inverse of the ``n x p`` feature matrix). With ``ridge = 0`` this is the minimum-norm
    interpolator ``Phi^+ y`` for any ``p``: ``K^+`` is applied by an eigendecomposition, so the
    under-parameterised regime ``p < n`` (the left part of the paper's Figs. 1 and 3) is exact too.
    """
    _validate.matrix("x", x, width=fmap.input_dim)
    n_rows = x.shape[0]
    y = jnp.asarray(y)
    if y.shape != (n_rows,):
        raise ValueError(f"y: must have shape (n,) with n={n_rows} (the rows of x), got shape {y.shape}")
    _validate.finite("y", y)
    ridge = _validate.positive_float("ridge", ridge, allow_zero=True)
    fmap = fmap.prepare()
    K = fmap.gram(x, x)
    y = y.astype(K.dtype)
    if ridge > 0:
        alpha = ridge_alpha(K, y, ridge)
    else:
        alpha = _kernel_pinv_solve(K, y)
    theta = fmap.adjoint(x, alpha)
    predictions = K @ alpha
    return FitResult(theta, alpha, predictions, jnp.mean((predictions - y) ** 2))


def fit(fmap, x, y, ridge: float = 0.0) -> jax.Array:
    """Min-norm (ridge) least-squares parameters ``theta`` (shape ``(p,)``); see :func:`fit_with_info`."""
    return fit_with_info(fmap, x, y, ridge).theta
