"""Types shared by the image loaders and the registry: what a loader returns, what the registry
returns after preprocessing (see :mod:`jaxrecon.data.registry`)."""

from __future__ import annotations

import os
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
    mean: float  # a tuple, one per colour channel, when standardised per channel
    std: float
    row_norm: np.ndarray  # (n,) norm of each standardised row before sphere rescaling
    name: str
    normalize: str


def check_not_a_file(data_dir: str) -> None:
    """A one-line ``ValueError`` when ``data_dir`` exists but is not a directory (a file given by
    mistake); a missing directory is left to the loader's own message."""
    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise ValueError(f"data_dir: {data_dir!r} is not a directory; give the directory that holds the dataset")


def member(root: str, entry: str, *, listed_in=None) -> str:
    """``root/entry``, refused unless it stays inside ``root``.

    ``entry`` is a relative path: one of the loader's fixed names, or a name read from one of the
    dataset's own files (``listed_in``, named in the error), such as a Tiny-ImageNet wnid. An absolute
    path, a ``..`` that climbs out of ``root``, or a NUL byte is a one-line ``ValueError`` naming the
    file and the entry. The check is on the path's text: symbolic links inside the dataset tree
    are the user's own layout and are followed.
    """
    where = f" (listed in {listed_in!r})" if listed_in else ""
    entry = str(entry)
    if not entry or "\0" in entry:
        raise ValueError(f"data_dir: entry {entry!r}{where} is not a file name")
    base = os.path.normpath(os.path.abspath(root))
    path = os.path.normpath(os.path.join(base, entry))
    if os.path.isabs(entry) or os.path.commonpath([base, path]) != base or path == base:
        raise ValueError(f"data_dir: entry {entry!r}{where} points outside {root!r}; refused "
                         f"(entries must be names inside that folder)")
    return os.path.join(root, os.path.relpath(path, base))


def check_pixels(images: np.ndarray, source: str, field: str = "data_dir") -> None:
    """Pixels are uint8 (0..255) or finite values in [0, 1]; anything else is a one-line
    ``ValueError`` (``field: ...``) naming ``source`` (a file, or a dataset) and what was found."""
    images = np.asarray(images)
    if images.dtype == np.uint8 or images.size == 0:
        return
    if images.dtype.kind not in "biuf":
        raise ValueError(f"{field}: {source} holds pixels of type {images.dtype}; expected uint8 (0..255) or "
                         f"floats in [0, 1]")
    if images.dtype.kind == "f":
        finite = np.isfinite(images)
        if not finite.all():
            bad = images[~finite]
            kinds = [k for k, m in (("NaN", np.isnan(bad)), ("+inf", bad > 0), ("-inf", bad < 0)) if m.any()]
            raise ValueError(f"{field}: {source} has {bad.size} non-finite pixel{'s' if bad.size > 1 else ''} "
                             f"({', '.join(kinds)}); "
                             f"expected uint8 (0..255) or floats in [0, 1]")
    lo, hi = images.min(), images.max()
    if lo < 0 or hi > 1:
        raise ValueError(f"{field}: {source} has pixels in [{lo:g}, {hi:g}] ({images.dtype}); expected uint8 "
                         f"(0..255) or values in [0, 1] (divide by 255 first if these are 0..255 values)")
