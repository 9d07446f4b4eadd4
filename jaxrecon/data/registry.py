"""Named image datasets: ``load_dataset(name, key, n, ...)`` -> :class:`ImageData`.

Each dataset is a *raw* source -- uint8 or [0, 1] images with integer labels and class names, read
by a format loader (:mod:`.cifar`, :mod:`.tinyimagenet`, :mod:`.idx`) or built from images bundled
with scikit-learn / scikit-image (:mod:`.embedded`) -- followed by the same preprocessing, as in the
paper's CIFAR-10 experiments:

1. *selection*: classes ``c_0, ..., c_{k-1}`` (the dataset's default, a tuple of class indices, or
   an int ``k`` for the first ``k`` classes); ``n`` images split evenly over them (the first
   ``n mod k`` classes get one more), drawn at random from ``key`` without replacement;
2. labels ``y = -1`` for classes at even positions of the selection, ``+1`` at odd positions
   (CIFAR-10 frog (class 6) ``-1``, truck (class 9) ``+1``, as in the paper);
3. pixels scaled to [0, 1], optionally resized, flattened (``H*W*C``, channels last);
4. standardised by the selected set's *global* mean and std (two scalars, as in the paper's
   random-features and two-layer code), or with ``standardize="channel"`` by each colour
   channel's mean and std (as the paper's ResNet code; ``mean`` / ``std`` are then tuples);
5. ``normalize="sphere"`` (default) then rescales each row to norm ``sqrt(d)``.

Why step 5. The random-features theory (and the attack, which keeps the rows of ``x_hat`` on the
sphere of radius ``sqrt(d)``) assumes ``||x_i|| = sqrt(d)``; standardised images only have that
norm on average (their mean squared norm is exactly ``d``). For ReLU features the row scale is not
identifiable at all (``relu(V c x) = c relu(V x)`` for ``c > 0``, so ``span Phi`` does not change),
and for other activations it would be a different problem from the one the attack solves. So the
model is fitted on the rescaled rows, the attack is run as published, and errors are measured
against what the model saw. ``row_norm`` keeps each image's norm after standardisation so that
figures can show images (and reconstructions, rescaled to the norm of the training image they are
matched to) with their original contrast. ``normalize="standard"`` skips step 5 (see README).
"""

from __future__ import annotations

import math
import os
from typing import Callable, NamedTuple, Optional, Union

import jax
import numpy as np

from .. import _validate
from .base import ImageData, RawImages, check_pixels  # noqa: F401  (RawImages: re-exported)
from .cifar import load_cifar10
from .embedded import load_embedded
from .idx import load_idx_dataset
from .tinyimagenet import load_tinyimagenet

#: Environment variable naming the directory that holds on-disk datasets.
DATA_ENV = "JAXRECON_DATA"
NORMALIZE = ("sphere", "standard")
STANDARDIZE = ("global", "channel")


class DatasetSpec(NamedTuple):
    loader: Callable  # (data_dir, split, classes, size) -> RawImages  (or (split, ...) if embedded)
    shape: tuple  # native (H, W, C)
    default_classes: Union[tuple, int, None]  # None: all classes
    needs_dir: bool
    description: str


def _cifar(data_dir, split, classes, size):
    return load_cifar10(data_dir, split)


def _tiny(data_dir, split, classes, size):
    return load_tinyimagenet(data_dir, split, classes=classes)


def _idx(kind):
    def load(data_dir, split, classes, size):
        return load_idx_dataset(data_dir, split, kind=kind)
    return load


def _embedded(name):
    def load(data_dir, split, classes, size):
        return load_embedded(name)
    return load


DATASETS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec(_cifar, (32, 32, 3), (6, 9), True,
                           "CIFAR-10 binary or python batches; default frog (6) vs truck (9)"),
    "tinyimagenet": DatasetSpec(_tiny, (64, 64, 3), 2, True,
                                "Tiny-ImageNet-200 JPEG tree; default the first 2 classes of wnids.txt"),
    "mnist": DatasetSpec(_idx("mnist"), (28, 28, 1), None, True, "MNIST IDX files (plain or .gz)"),
    "fashion_mnist": DatasetSpec(_idx("fashion_mnist"), (28, 28, 1), None, True,
                                 "Fashion-MNIST IDX files (plain or .gz)"),
    "digits": DatasetSpec(_embedded("digits"), (8, 8, 1), None, False,
                          "scikit-learn handwritten digits, 8x8 grey (bundled)"),
    "photos16": DatasetSpec(_embedded("photos16"), (16, 16, 3), None, False,
                            "16x16 patches of bundled colour photographs"),
    "photos32": DatasetSpec(_embedded("photos32"), (32, 32, 3), None, False,
                            "32x32 patches of bundled colour photographs"),
    "photos64": DatasetSpec(_embedded("photos64"), (64, 64, 3), None, False,
                            "64x64 patches of bundled colour photographs"),
}


def image_shape(name: str, size: Optional[int] = None) -> tuple:
    """``(H, W, C)`` of a dataset after optional resizing to ``size x size`` (no files read)."""
    _validate.choice("data", name, DATASETS)
    h, w, c = DATASETS[name].shape
    if size is not None:
        size = _validate.positive_int("image_size", size)
        return (size, size, c)
    return (h, w, c)


def input_dim(name: str, size: Optional[int] = None) -> int:
    """``d = H*W*C`` of a dataset (no files read)."""
    return int(np.prod(image_shape(name, size)))


def resolve_data_dir(data_dir=None, name: str = "") -> str:
    """``data_dir``, else ``$JAXRECON_DATA``; a clear error when neither is set."""
    if data_dir is not None and not str(data_dir).strip():
        raise ValueError(f"data_dir: --data-dir is empty; give the directory that holds the {name} files "
                         f"(or leave it out to use ${DATA_ENV})")
    data_dir = data_dir if data_dir is not None else os.environ.get(DATA_ENV)
    if not data_dir:
        raise ValueError(
            f"data_dir: dataset {name!r} is read from disk; give --data-dir DIR or set {DATA_ENV}=DIR "
            f"(nothing is downloaded). Datasets that need no files: "
            f"{sorted(k for k, s in DATASETS.items() if not s.needs_dir)}"
        )
    return str(data_dir)


def parse_classes(classes) -> Union[tuple, int, None]:
    """``"6,9"`` -> ``(6, 9)``; ``"3"`` -> ``3`` (first three classes); ints and tuples pass through."""
    if classes is None or isinstance(classes, (tuple, list)) or (isinstance(classes, int) and not isinstance(classes, bool)):
        return tuple(classes) if isinstance(classes, list) else classes
    if isinstance(classes, str):
        parts = [s.strip() for s in classes.split(",") if s.strip()]
        try:
            vals = [int(s) for s in parts]
        except ValueError:
            raise ValueError(f"classes: expected class indices like '6,9' or a count like '3', got {classes!r}") from None
        if len(vals) == 1 and "," not in classes:
            return vals[0]
        return tuple(vals)
    raise ValueError(f"classes: expected class indices or a count, got {classes!r}")


def select_classes(classes, n_classes: int) -> tuple:
    """Resolve a class selection against the number of classes available."""
    if classes is None:
        return tuple(range(n_classes))
    if isinstance(classes, int):
        k = _validate.positive_int("classes", classes)
        if k > n_classes:
            raise ValueError(f"classes: asked for the first {k} classes but the dataset has {n_classes}")
        return tuple(range(k))
    sel = tuple(int(c) for c in classes)
    if not sel:
        raise ValueError("classes: empty selection")
    if len(set(sel)) != len(sel):
        raise ValueError(f"classes: repeated class in {sel}")
    bad = [c for c in sel if not 0 <= c < n_classes]
    if bad:
        raise ValueError(f"classes: {bad} out of range; the dataset has classes 0..{n_classes - 1}")
    return sel


def per_class_counts(n: int, k: int) -> list:
    """``n`` split over ``k`` classes: ``n // k`` each, one more for the first ``n % k``."""
    return [n // k + (i < n % k) for i in range(k)]


def to_unit(images: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1]; floats are taken to be in [0, 1] already."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    return images.astype(np.float32)


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Resize ``(N, H, W, C)`` [0, 1] images to ``size x size`` (anti-aliased, scikit-image)."""
    from skimage.transform import resize

    n, h, w, c = images.shape
    if (h, w) == (size, size):
        return images
    return np.stack([resize(im, (size, size, c), anti_aliasing=size < min(h, w), preserve_range=True)
                     for im in images]).astype(np.float32)


def preprocess(images, labels, class_names, key, n, classes=None, size=None, normalize="sphere",
               name="", standardize="global") -> ImageData:
    """Select ``n`` images of ``classes`` (random, from ``key``), standardise, flatten (module doc)."""
    n = _validate.positive_int("n", n)
    _validate.choice("normalize", normalize, NORMALIZE)
    _validate.choice("standardize", standardize, STANDARDIZE)
    labels = np.asarray(labels).astype(np.int64)
    sel = select_classes(parse_classes(classes), len(class_names))
    counts = per_class_counts(n, len(sel))
    idx, ys = [], []
    for pos, (c, m) in enumerate(zip(sel, counts)):
        pool = np.flatnonzero(labels == c)
        if len(pool) < m:
            raise ValueError(f"n: asked for {m} images of class {c} ({class_names[c]!r}) but only {len(pool)} "
                             f"are available; lower n or select more classes")
        if m == 0:
            continue
        pick = np.asarray(jax.random.choice(jax.random.fold_in(key, c), len(pool), (m,), replace=False))
        idx.append(pool[np.sort(pick)])
        ys.append(np.full(m, 1.0 if pos % 2 else -1.0, np.float32))
    idx = np.concatenate(idx)
    imgs = np.asarray(images)[idx]
    check_pixels(imgs, f"dataset {name!r} (the selected images)", field="data")  # NaN/inf, floats outside [0, 1]
    imgs = to_unit(imgs)
    if imgs.ndim == 3:
        imgs = imgs[..., None]
    if size is not None:
        imgs = resize_images(imgs, _validate.positive_int("image_size", size))
    shape = tuple(int(s) for s in imgs.shape[1:])
    x = imgs.reshape(len(idx), -1).astype(np.float64)
    if standardize == "channel":  # channels last: (n, H*W, C)
        per = x.reshape(len(idx), -1, shape[-1])
        mean, std = tuple(float(v) for v in per.mean(axis=(0, 1))), tuple(float(v) for v in per.std(axis=(0, 1)))
        if not min(std) > 0:
            raise ValueError(f"data: a colour channel of the selected images of {name!r} is constant; cannot "
                             f"standardise it")
        x = ((per - np.asarray(mean)) / np.asarray(std)).reshape(len(idx), -1)
    else:
        mean, std = float(x.mean()), float(x.std())
        if not std > 0:
            raise ValueError(f"data: the selected images of {name!r} are constant; cannot standardise")
        x = (x - mean) / std
    row_norm = np.linalg.norm(x, axis=1)
    if normalize == "sphere":
        x = x * (math.sqrt(x.shape[1]) / np.maximum(row_norm, 1e-12))[:, None]
    return ImageData(x.astype(np.float32), np.concatenate(ys), labels[idx], tuple(class_names), shape,
                     mean, std, row_norm.astype(np.float32), name, normalize)


def load_dataset(name: str, key, n: int, data_dir=None, *, classes=None, split: str = "train",
                 size: Optional[int] = None, normalize: str = "sphere", standardize: str = "global") -> ImageData:
    """Load ``n`` preprocessed images of a named dataset (see the module docstring).

    Args:
      name: one of :data:`DATASETS` (``cifar10``, ``tinyimagenet``, ``mnist``, ``fashion_mnist``,
        ``digits``, ``photos16``, ``photos32``, ``photos64``).
      key: PRNG key of the random selection.
      n: number of images.
      data_dir: directory of the on-disk datasets (default ``$JAXRECON_DATA``); ignored by the
        embedded ones.
      classes: tuple of class indices, an int ``k`` (first ``k`` classes), a string ``"6,9"`` /
        ``"3"``, or ``None`` for the dataset's default.
      split: ``"train"`` or ``"test"`` (``"val"`` for Tiny-ImageNet's validation set).
      size: resize images to ``size x size`` (e.g. Tiny-ImageNet at 32).
      normalize: ``"sphere"`` (rows rescaled to norm ``sqrt(d)``) or ``"standard"``.
      standardize: ``"global"`` (one mean and std) or ``"channel"`` (per colour channel).
    """
    _validate.choice("data", name, DATASETS)
    _validate.choice("split", split, ("train", "test", "val"))
    spec = DATASETS[name]
    classes = parse_classes(classes)
    if classes is None:
        classes = spec.default_classes
    data_dir = resolve_data_dir(data_dir, name) if spec.needs_dir else None
    raw = spec.loader(data_dir, split, classes, size)
    native = tuple(np.shape(raw.images)[1:]) + ((1,) if np.ndim(raw.images) == 3 else ())
    if native != tuple(spec.shape):
        where = f" in {data_dir!r}" if data_dir else ""
        raise ValueError(f"data: the {name} images{where} are {'x'.join(map(str, native))} (H x W x C); {name} "
                         f"images are {'x'.join(map(str, spec.shape))}")
    return preprocess(raw.images, raw.labels, raw.class_names, key, n, classes, size, normalize, name, standardize)


def to_pixels(data: ImageData, rows, row_norm=None) -> np.ndarray:
    """Rows of ``x`` (or of a reconstruction) back to ``(m, H, W, C)`` pixels in [0, 1] (clipped).

    With ``normalize="sphere"`` each row is first rescaled to ``row_norm`` (default: the training
    images' own norms, i.e. reconstructions shown with the norm of the image they are matched to).
    """
    rows = np.asarray(rows, np.float64)
    if data.normalize == "sphere":
        norms = data.row_norm if row_norm is None else np.asarray(row_norm)
        rows = rows * (np.asarray(norms, np.float64) / math.sqrt(rows.shape[1]))[:, None]
    shape = (rows.shape[0],) + tuple(data.shape)
    pix = rows.reshape(shape) * np.asarray(data.std) + np.asarray(data.mean)  # scalars or per channel (last axis)
    return np.clip(pix, 0.0, 1.0)
