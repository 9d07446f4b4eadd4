"""Types shared by the image loaders and the registry: what a loader returns, what the registry
returns after preprocessing (see :mod:`jaxrecon.data.registry`)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class RawImages(NamedTuple):
    """What a format loader returns: images ``(N, H, W, C)`` (uint8, or float in [0, 1])."""

    images: np.ndarray
    labels: np.ndarray  # (N,) int
    class_names: tuple


class ImageData(NamedTuple):
    """A preprocessed image training set; ``x``/``y`` first, so it can stand in for ``Dataset``.

    ``x`` is ``(n, d)`` float32 (standardised, rows of norm ``sqrt(d)`` if ``normalize="sphere"``);
    ``y`` is ``(n,)`` in ``{-1, +1}``; ``labels`` are the original class indices; ``shape`` is
    ``(H, W, C)``. Pixels in [0, 1] are recovered by :func:`jaxrecon.data.registry.to_pixels`.
    """

    x: np.ndarray
    y: np.ndarray
    labels: np.ndarray
    class_names: tuple
    shape: tuple
    mean: float
    std: float
    row_norm: np.ndarray  # (n,) norm of each standardised row before sphere rescaling
    name: str
    normalize: str


def check_not_a_file(data_dir: str) -> None:
    """A one-line ``ValueError`` when ``data_dir`` exists but is not a directory (a file given by
    mistake); a missing directory is left to the loader's own message."""
    import os

    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise ValueError(f"data_dir: {data_dir!r} is not a directory; give the directory that holds the dataset")
