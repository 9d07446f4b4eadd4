"""Matching reconstructions to training points, and the paper's errors.

Both errors match rows of ``x_hat`` to rows of ``x`` with the Hungarian algorithm
(``scipy.optimize.linear_sum_assignment``) on the same cost they report:

* ``error_abs`` (paper Eq. 7): ``1/(n sqrt(d)) sum_i || |x_i| - |x_hat_pi(i)| ||`` with elementwise
  absolute values, which hides ReLU's sign ambiguity (its odd Hermite coefficients of order >= 3
  vanish, so ``x`` and ``-x`` can be indistinguishable; paper Remark 1, Fig. 4).
* ``error_sign``: ``1/(n sqrt(d)) sum_i min_{s=+-1} || x_i - s x_hat_pi(i) ||``: each matched row may
  take its best global sign, but entries keep their signs.

A row counts as *recovered* when its ``error_sign`` cost is ``<= 1e-2 sqrt(d)``.

Image metrics of matched pairs of pixel arrays in [0, 1] (:func:`image_metrics`): PSNR
(``10 log10(1 / mse)``; ``inf`` for identical images) and SSIM (scikit-image, ``data_range=1``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from . import _validate

RECOVERED_TOL = 1e-2


class Match(NamedTuple):
    error_abs: float
    error_sign: float
    recovered: float  # fraction of training rows recovered
    perm: np.ndarray  # (n,) index of the x_hat row matched to x_i (error_sign matching)
    flipped: np.ndarray  # (n,) bool: matched x_hat row is closer to -x_i
    row_error: np.ndarray  # (n,) per-row error_sign cost / sqrt(d)
    perm_abs: np.ndarray  # (n,) matching under the error_abs cost


def _pairwise(a, b):
    """Euclidean distances between rows of ``a`` (n, d) and ``b`` (m, d), in float64.

    Differences are formed explicitly (not |a|^2 + |b|^2 - 2ab, which loses all digits below
    ~1e-8 relative): exact recoveries must score 0, not sqrt(rounding)."""
    return np.stack([np.linalg.norm(b - row, axis=1) for row in a])


def match(x, x_hat) -> Match:
    """Match ``x_hat`` to ``x`` and compute errors (see module docstring).

    ``x`` is ``(n, d)``; ``x_hat`` is ``(m, d)`` with ``m >= n`` (every training row is matched).
    Works on any array-like; computed in float64 with NumPy/SciPy.
    """
    x = np.asarray(x, np.float64)
    x_hat = np.asarray(x_hat, np.float64)
    _validate.matrix("x", x)
    _validate.matrix("x_hat", x_hat, width=x.shape[1])
    n, d = x.shape
    if x_hat.shape[0] < n:
        raise ValueError(f"x_hat: needs at least n={n} rows to match every training row, got {x_hat.shape[0]}")
    scale = 1.0 / np.sqrt(d)

    cost_abs = _pairwise(np.abs(x), np.abs(x_hat))
    rows, perm_abs = linear_sum_assignment(cost_abs)
    error_abs = cost_abs[rows, perm_abs].sum() * scale / n

    plus, minus = _pairwise(x, x_hat), _pairwise(x, -x_hat)
    cost_sign = np.minimum(plus, minus)
    rows, perm = linear_sum_assignment(cost_sign)
    row_err = cost_sign[rows, perm] * scale
    flipped = minus[rows, perm] < plus[rows, perm]
    return Match(float(error_abs), float(row_err.mean()), float(np.mean(row_err <= RECOVERED_TOL)),
                 perm, flipped, row_err, perm_abs)


def error_abs(x, x_hat) -> float:
    return match(x, x_hat).error_abs


def error_sign(x, x_hat) -> float:
    return match(x, x_hat).error_sign


def psnr(truth: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB of ``(m, H, W, C)`` images in [0, 1]; ``inf`` where identical."""
    mse = np.mean((np.asarray(truth, np.float64) - np.asarray(recon, np.float64)) ** 2,
                  axis=tuple(range(1, np.ndim(truth))))
    with np.errstate(divide="ignore"):
        return np.where(mse > 0, 10.0 * np.log10(1.0 / np.maximum(mse, 1e-300)), np.inf)


def ssim(truth: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """Per-image SSIM (scikit-image) of ``(m, H, W, C)`` images in [0, 1]."""
    from skimage.metrics import structural_similarity

    truth, recon = np.asarray(truth, np.float64), np.asarray(recon, np.float64)
    h, w = truth.shape[1:3]
    win = min(7, h, w)
    win -= 1 - win % 2  # odd window no larger than the image
    return np.array([structural_similarity(a, b, data_range=1.0, channel_axis=-1, win_size=win)
                     for a, b in zip(truth, recon)])


def image_metrics(truth: np.ndarray, recon: np.ndarray) -> dict:
    """``{"psnr": (m,), "ssim": (m,)}`` for matched ``(m, H, W, C)`` pixel arrays in [0, 1]."""
    return {"psnr": psnr(truth, recon), "ssim": ssim(truth, recon)}
