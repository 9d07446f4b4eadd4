"""IDX files (MNIST, Fashion-MNIST), plain or gzip-compressed.

Format (http://yann.lecun.com/exdb/mnist/): a 4-byte magic ``0x00 0x00 TYPE NDIM``, then ``NDIM``
big-endian uint32 sizes, then the data, big-endian. ``TYPE``: 0x08 uint8, 0x09 int8, 0x0B int16,
0x0C int32, 0x0D float32, 0x0E float64. Expected files in ``DIR`` (or ``DIR/<name>/``)::

    train-images-idx3-ubyte[.gz]  train-labels-idx1-ubyte[.gz]
    t10k-images-idx3-ubyte[.gz]   t10k-labels-idx1-ubyte[.gz]
"""

from __future__ import annotations

import gzip
import os

import numpy as np

from .base import RawImages, check_not_a_file

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
CLASS_NAMES = {
    "mnist": tuple(str(i) for i in range(10)),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                      "Bag", "Ankle boot"),
}


def read_idx(path: str) -> np.ndarray:
    """Read one IDX file (gzip detected from its first bytes, not its name)."""
    if not os.path.isfile(path):
        raise ValueError(f"data_dir: IDX file {path!r} is missing")
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError) as e:
            raise ValueError(f"data_dir: IDX file {path!r} is a truncated or corrupt gzip file ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES or raw[3] == 0:
        raise ValueError(f"data_dir: {path!r} is not an IDX file (wrong magic number {raw[:4].hex() or 'empty'}; "
                         f"expected 0000TTNN with type TT in {[f'{t:02x}' for t in IDX_TYPES]})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"data_dir: IDX file {path!r} is truncated (header)")
    dims = tuple(int(v) for v in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = np.dtype(IDX_TYPES[raw[2]])
    count = int(np.prod(dims))
    if len(raw) - header < count * dtype.itemsize:
        raise ValueError(f"data_dir: IDX file {path!r} is truncated: shape {dims} needs "
                         f"{count * dtype.itemsize} data bytes, found {len(raw) - header}")
    data = np.frombuffer(raw, dtype, count, header).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


def _find(data_dir: str, stem: str, kind: str) -> str:
    for folder in (data_dir, os.path.join(data_dir, kind), os.path.join(data_dir, kind.upper()),
                   os.path.join(data_dir, kind, "raw")):
        for name in (stem, stem + ".gz"):
            if os.path.isfile(os.path.join(folder, name)):
                return os.path.join(folder, name)
    raise ValueError(f"data_dir: {stem}[.gz] not found in {data_dir!r} (or {kind}/ inside it). Expected the "
                     f"IDX files {[f for pair in FILES.values() for f in pair]}, plain or .gz; nothing is downloaded")


def load_idx_dataset(data_dir: str, split: str = "train", kind: str = "mnist") -> RawImages:
    """Images ``(N, H, W)`` and labels of an IDX dataset (``kind``: ``mnist`` or ``fashion_mnist``)."""
    check_not_a_file(data_dir)
    if not os.path.isdir(data_dir):
        raise ValueError(f"data_dir: directory {data_dir!r} does not exist. Put the {kind} IDX files "
                         f"({', '.join(FILES['train'] + FILES['test'])}, plain or .gz) there; nothing is downloaded")
    img_stem, lab_stem = FILES["test" if split == "test" else "train"]
    images = read_idx(_find(data_dir, img_stem, kind))
    labels = read_idx(_find(data_dir, lab_stem, kind))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"data_dir: {kind} images of shape {images.shape} do not match labels of shape "
                         f"{labels.shape}; expected (N, H, W) and (N,)")
    names = CLASS_NAMES.get(kind, tuple(str(i) for i in range(int(labels.max()) + 1)))
    return RawImages(images, labels.astype(np.int64), names)
