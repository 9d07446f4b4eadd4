"""CIFAR-10, "python version" batches (https://www.cs.toronto.edu/~kriz/cifar.html).

Expected layout (either the extracted ``cifar-10-batches-py`` folder or its parent)::

    DIR/cifar-10-batches-py/data_batch_1 ... data_batch_5, test_batch, batches.meta

Each batch is a pickle of ``{b"data": uint8 (10000, 3072), b"labels": [int]}`` with rows stored
channel-major (1024 red, 1024 green, 1024 blue values, each a 32x32 row-major image);
``batches.meta`` holds ``b"label_names"``. Nothing is downloaded.
"""

from __future__ import annotations

import os
import pickle

import numpy as np

from .base import RawImages, check_not_a_file

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
META = "batches.meta"
SUBDIR = "cifar-10-batches-py"
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


def _root(data_dir: str) -> str:
    for cand in (os.path.join(data_dir, SUBDIR), os.path.join(data_dir, "cifar10", SUBDIR), data_dir):
        if os.path.isfile(os.path.join(cand, "test_batch")) or os.path.isfile(os.path.join(cand, "data_batch_1")):
            return cand
    raise ValueError(
        f"data_dir: no CIFAR-10 batches in {data_dir!r}. Expected {SUBDIR}/ with "
        f"{', '.join(TRAIN_FILES)}, test_batch and batches.meta (the 'CIFAR-10 python version', "
        f"{URL}, extracted there with `tar xzf cifar-10-python.tar.gz -C {data_dir}`); nothing is downloaded"
    )


def read_batch(path: str):
    """One batch file -> ``(images uint8 (N, 32, 32, 3), labels int64 (N,))``, with clear errors."""
    if not os.path.isfile(path):
        raise ValueError(f"data_dir: CIFAR-10 file {path!r} is missing")
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError) as e:
        raise ValueError(f"data_dir: CIFAR-10 file {path!r} is truncated or not a CIFAR-10 batch ({e})") from None
    if not isinstance(batch, dict):
        raise ValueError(f"data_dir: CIFAR-10 file {path!r} is not a CIFAR-10 batch (a pickled dict)")
    get = lambda k: batch.get(k, batch.get(k.decode()))
    data, labels = get(b"data"), get(b"labels")
    if data is None or labels is None:
        raise ValueError(f"data_dir: CIFAR-10 file {path!r} has no 'data'/'labels' entries")
    data = np.asarray(data)
    labels = np.asarray(labels, np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise ValueError(f"data_dir: CIFAR-10 file {path!r} has data of shape {data.shape} ({data.dtype}) and "
                         f"{len(labels)} labels; expected uint8 (N, 3072) and N labels")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels


def load_cifar10(data_dir: str, split: str = "train") -> RawImages:
    """All images of a split: ``train`` (the 5 data batches, 50000) or ``test`` (10000)."""
    check_not_a_file(data_dir)
    if not os.path.isdir(data_dir):
        raise ValueError(
            f"data_dir: directory {data_dir!r} does not exist. Put the extracted CIFAR-10 python batches "
            f"({SUBDIR}/ with {', '.join(TRAIN_FILES)}, test_batch, batches.meta; {URL}) there; nothing is downloaded"
        )
    root = _root(data_dir)
    files = TEST_FILES if split == "test" else TRAIN_FILES
    parts = [read_batch(os.path.join(root, f)) for f in files]
    names = CLASS_NAMES
    meta = os.path.join(root, META)
    if os.path.isfile(meta):
        try:
            with open(meta, "rb") as f:
                m = pickle.load(f, encoding="bytes")
            raw = m.get(b"label_names", m.get("label_names"))
            names = tuple(v.decode() if isinstance(v, bytes) else str(v) for v in raw)
        except Exception as e:  # a broken meta file is an error, not a silent fallback
            raise ValueError(f"data_dir: CIFAR-10 file {meta!r} is truncated or unreadable ({e})") from None
    return RawImages(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), names)
