"""Random-features regression: min-norm least squares through the ``n x n`` kernel."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

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


#: Rows of a training set closer than this many ``eps`` of their dtype (relative to their norm) are
#: one point counted twice (:func:`duplicate_rows`).
DUPLICATE_EPS = 8
_PAIR_BLOCK = 1024


def duplicate_rows(x) -> list[tuple[int, int]]:
    """Pairs ``(i, j)``, ``j < i``: row ``i`` of ``x`` repeats row ``j`` (its first copy).

    Rows repeat when they are numerically identical: ``|x_i - x_j| <= DUPLICATE_EPS * eps *
    max(|x_i|, |x_j|)`` in the dtype of ``x`` (so ``1.0`` and ``0.99999994`` are one point in
    float32). Candidates come from the float64 Gram matrix, block by block; each is confirmed by
    the difference itself."""
    x = np.asarray(x)
    eps = float(np.finfo(x.dtype if x.dtype.kind == "f" else np.float64).eps)
    x = x.astype(np.float64).reshape(x.shape[0], -1)
    n = x.shape[0]
    sq = np.einsum("ij,ij->i", x, x)
    rel = DUPLICATE_EPS * eps
    first: dict = {}
    for i0 in range(0, n, _PAIR_BLOCK):
        i1 = min(n, i0 + _PAIR_BLOCK)
        d2 = sq[i0:i1, None] + sq[None, :] - 2.0 * (x[i0:i1] @ x.T)
        big = np.maximum(sq[i0:i1, None], sq[None, :])
        cand = np.argwhere(d2 <= np.maximum(rel * rel, 1e-12) * big)
        for a, j in cand:
            i = i0 + int(a)
            j = int(j)
            if j < i and i not in first and np.linalg.norm(x[i] - x[j]) <= rel * np.sqrt(max(sq[i], sq[j])):
                first[i] = j  # candidates come by increasing j: the first copy
    # a row repeating a repeat counts against the first copy
    root = lambda j: root(first[j]) if j in first else j
    return sorted((i, root(j)) for i, j in first.items())


def describe_duplicates(pairs, shown: int = 5) -> str:
    """``"row 3 = row 1, row 7 = row 1"`` (the first ``shown`` pairs, then ``...``)."""
    text = ", ".join(f"row {i} = row {j}" for i, j in pairs[:shown])
    return text + (", ..." if len(pairs) > shown else "")


def check_distinct(x, name: str = "x") -> None:
    """Refuse a training set with repeated rows (:func:`duplicate_rows`) with a one-line
    ``ValueError``: the law and the attack count distinct points, and a repeated row makes the
    kernel singular (the published kernel form returns ``nan``). A no-op for traced ``x``."""
    if not _validate.is_concrete(x):
        return
    pairs = duplicate_rows(x)
    if pairs:
        raise ValueError(f"{name}: the {np.shape(x)[0]} training rows hold {len(pairs)} duplicate(s) "
                         f"({describe_duplicates(pairs)}); the law counts distinct points: remove the repeated "
                         f"rows (e.g. np.unique(x, axis=0)) and set n to the number left")


def fit_with_info(fmap, x, y, ridge: float = 0.0) -> FitResult:
    """Fit ``f(x) = phi(x)^T theta`` by (ridge) least squares through the kernel ``K = Phi Phi^T``.

    ``alpha = (K + ridge I)^{-1} y`` and ``theta = Phi^T alpha`` (via ``fmap.adjoint``; no
    pseudo-inverse of the ``n x p`` feature matrix). With ``ridge = 0`` this is the minimum-norm
    interpolator ``Phi^+ y`` for any ``p``: ``K^+`` is applied by an eigendecomposition, so the
    under-parameterised regime ``p < n`` (the left part of the paper's Figs. 1 and 3) is exact too.

    A concrete ``x`` with repeated rows is refused (:func:`check_distinct`: the law counts distinct
    points); under ``jit`` the caller checks (``jaxrecon reconstruct`` does, before fitting).
    """
    _validate.matrix("x", x, width=fmap.input_dim)
    check_distinct(x)
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
