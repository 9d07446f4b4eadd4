"""IDX files (MNIST, Fashion-MNIST), plain or gzip-compressed.

Format (http://yann.lecun.com/exdb/mnist/): a 4-byte magic ``0x00 0x00 TYPE NDIM``, then ``NDIM``
big-endian uint32 sizes, then the data, big-endian. ``TYPE``: 0x08 uint8, 0x09 int8, 0x0B int16,
0x0C int32, 0x0D float32, 0x0E float64. Expected files in ``DIR`` (or ``DIR/<name>/``)::

    train-images-idx3-ubyte[.gz]  train-labels-idx1-ubyte[.gz]
    t10k-images-idx3-ubyte[.gz]   t10k-labels-idx1-ubyte[.gz]
"""

from __future__ import annotations

import gzip
import math
import os
import zlib

import numpy as np

from .base import RawImages, check_not_a_file, check_pixels, member

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IMAGE_SHAPE = (28, 28)
CLASS_NAMES = {
    "mnist": tuple(str(i) for i in range(10)),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                      "Bag", "Ankle boot"),
}


#: Deflate never expands data by more than about 1032x: a gzip file cannot hold more than this many
#: bytes per byte of its own size, so a header that claims more is refused before anything is read.
GZIP_MAX_RATIO = 1032


def _idx_error(path: str, what: str) -> ValueError:
    return ValueError(f"data_dir: IDX file {path!r} {what}")


def read_idx(path: str) -> np.ndarray:
    """Read one IDX file (gzip detected from its first bytes, not its name).

    The header is checked against the file before any data is read: the dimensions' product is
    taken in Python integers (it cannot overflow), and a header that describes more data than the
    file holds, or less, is a one-line error naming the file and the dimensions.
    """
    if not os.path.isfile(path):
        raise ValueError(f"data_dir: IDX file {path!r} is missing")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            return _read_idx_stream(f, path, size, gz)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise _idx_error(path, f"is a truncated or corrupt gzip file ({type(e).__name__}: {e})") from None


def _read_idx_stream(f, path: str, size: int, gz: bool) -> np.ndarray:
    magic = f.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in IDX_TYPES or magic[3] == 0:
        raise ValueError(f"data_dir: {path!r} is not an IDX file (wrong magic number {magic.hex() or 'empty'}; "
                         f"expected 0000TTNN with type TT in {[f'{t:02x}' for t in IDX_TYPES]})")
    ndim = magic[3]
    raw_dims = f.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise _idx_error(path, f"is truncated (its header announces {ndim} dimensions)")
    dims = tuple(int.from_bytes(raw_dims[4 * i: 4 * i + 4], "big") for i in range(ndim))
    dtype = np.dtype(IDX_TYPES[magic[2]])
    need = math.prod(dims) * dtype.itemsize  # Python integers: no overflow
    room = size - 4 - 4 * ndim if not gz else GZIP_MAX_RATIO * size
    if need > room:
        held = f"the file holds {room} data bytes" if not gz else f"a {size}-byte gzip file cannot hold that much"
        raise _idx_error(path, f"has a header with dimensions {dims} ({dtype.name}): {need} data bytes, but {held}; "
                               f"truncated, or a corrupt header")
    data = f.read(need)
    if len(data) < need:
        raise _idx_error(path, f"is truncated: dimensions {dims} ({dtype.name}) need {need} data bytes, found "
                               f"{len(data)}")
    if f.read(1):
        extra = f" ({size - 4 - 4 * ndim - need} bytes too many)" if not gz else ""
        raise _idx_error(path, f"holds more data than its header's dimensions {dims} ({dtype.name}) describe{extra}; "
                               f"a corrupt header, or not an IDX file")
    return np.frombuffer(data, dtype, math.prod(dims)).reshape(dims).astype(dtype.newbyteorder("="))


def _find(data_dir: str, stem: str, kind: str) -> str:
    for folder in ("", kind, kind.upper(), os.path.join(kind, "raw")):
        for name in (stem, stem + ".gz"):
            path = member(data_dir, os.path.join(folder, name))
            if os.path.isfile(path):
                return path
    raise ValueError(f"data_dir: {stem}[.gz] not found in {data_dir!r} (or {kind}/ inside it). Expected the "
                     f"IDX files {[f for pair in FILES.values() for f in pair]}, plain or .gz; nothing is downloaded")


def load_idx_dataset(data_dir: str, split: str = "train", kind: str = "mnist") -> RawImages:
    """Images ``(N, H, W)`` and labels of an IDX dataset (``kind``: ``mnist`` or ``fashion_mnist``).

    Images are uint8 (or values in [0, 1] of another IDX type: finite, in range, else refused),
    ``H x W`` as the dataset's (28 x 28); labels integers ``0..9``.
    """
    check_not_a_file(data_dir)
    if not os.path.isdir(data_dir):
        raise ValueError(f"data_dir: directory {data_dir!r} does not exist. Put the {kind} IDX files "
                         f"({', '.join(FILES['train'] + FILES['test'])}, plain or .gz) there; nothing is downloaded")
    img_stem, lab_stem = FILES["test" if split == "test" else "train"]
    img_path, lab_path = _find(data_dir, img_stem, kind), _find(data_dir, lab_stem, kind)
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"data_dir: IDX file {img_path!r} holds an array of shape {images.shape}; {kind} images "
                         f"are (N, {IMAGE_SHAPE[0]}, {IMAGE_SHAPE[1]})")
    if len(images) == 0:
        raise ValueError(f"data_dir: IDX file {img_path!r} holds no images")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"data_dir: IDX file {lab_path!r} holds {labels.dtype} labels of shape {labels.shape}; "
                         f"expected integer labels (N,)")
    if len(images) != len(labels):
        raise ValueError(f"data_dir: {len(images)} images in {img_path!r} but {len(labels)} labels in {lab_path!r}")
    names = CLASS_NAMES.get(kind, tuple(str(i) for i in range(10)))
    bad = np.flatnonzero((labels < 0) | (labels >= len(names)))
    if bad.size:
        raise ValueError(f"data_dir: IDX file {lab_path!r} has label {labels[bad[0]]} (record {bad[0]}); {kind} "
                         f"labels are 0..{len(names) - 1}")
    check_pixels(images, f"IDX file {img_path!r}")
    return RawImages(images, labels.astype(np.int64), names)
