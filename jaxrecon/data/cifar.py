"""CIFAR-10 (https://www.cs.toronto.edu/~kriz/cifar.html), the "binary version" or the "python version".

Expected layout (the extracted folder, or its parent, or ``DIR/cifar10/``)::

    DIR/cifar-10-batches-bin/data_batch_1.bin ... data_batch_5.bin, test_batch.bin, batches.meta.txt
    DIR/cifar-10-batches-py/data_batch_1 ... data_batch_5, test_batch, batches.meta

When both are there the binary version is read: it holds no code at all. A binary batch is a
sequence of 3073-byte records, one label byte (0..9) then 3072 pixel bytes; a python batch is a
pickle of ``{b"data": uint8 (10000, 3072), b"labels": [int]}``. In both, a row is stored
channel-major (1024 red, 1024 green, 1024 blue values, each a 32x32 row-major image). The class
names are the lines of ``batches.meta.txt`` or ``b"label_names"`` of ``batches.meta``.

The python batches are read as data, never as code: the unpickler resolves only the NumPy array
reconstruction globals that the official files (and NumPy's own pickles of arrays) use,
:data:`PICKLE_GLOBALS`; a file that names anything else (``os.system``, ``builtins.eval``, a module
that does not exist) is refused with one line naming the file and the global, before anything in it
is called. Nothing is downloaded.
"""

from __future__ import annotations

import os
import pickle

import numpy as np

from .base import RawImages, check_not_a_file, member

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
META = "batches.meta"
META_TXT = "batches.meta.txt"
SUBDIR = "cifar-10-batches-py"
BIN_SUBDIR = "cifar-10-batches-bin"
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
BIN_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
RECORD = 1 + 3072  # one label byte, then 3 x 32 x 32 pixel bytes


class _Call:
    """A callable with no state a pickle could change (``BUILD`` on a plain function would set its
    ``__dict__`` / ``__defaults__``): the allowed globals that are Python functions are wrapped."""

    __slots__ = ()

    def __setattr__(self, name, value):
        raise AttributeError(name)


class _Latin1(_Call):
    """``_codecs.encode`` as Python 3 pickles ``bytes`` at protocols 0-2: ``str`` to latin-1 only."""

    __slots__ = ()

    def __call__(self, obj, encoding="utf-8", errors="strict"):
        if not isinstance(obj, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
            raise ValueError(f"_codecs.encode is allowed only for latin-1 strings, got encoding {encoding!r}")
        return obj.encode("latin1")


class _FromBuffer(_Call):
    """NumPy's ``_frombuffer(buf, dtype, shape, order)``, how it pickles arrays at protocol 5."""

    __slots__ = ()

    def __call__(self, buf, dtype, shape, order):
        return np.empty(1).__reduce_ex__(5)[0](buf, dtype, shape, order)


_RECONSTRUCT = np.empty(0).__reduce__()[0]  # numpy(._)core.multiarray._reconstruct (a C function)

#: ``(module, name) -> object``: every global a CIFAR-10 python batch may name. The official files
#: (Python 2 pickles) use the first three; ``numpy._core.*`` are the same under NumPy 2, ``_frombuffer``
#: is how NumPy pickles arrays at protocol 5, ``_codecs.encode`` how Python 3 pickles ``bytes`` at
#: protocols 0-2 (restricted to latin-1 strings). None of them can run code or touch a file.
PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FromBuffer(),
    ("numpy._core.numeric", "_frombuffer"): _FromBuffer(),
    ("_codecs", "encode"): _Latin1(),
}


class _Refused(pickle.UnpicklingError):
    """A pickle named a global outside :data:`PICKLE_GLOBALS`."""


class DataUnpickler(pickle.Unpickler):
    """An unpickler that builds NumPy arrays and plain containers and nothing else (module doc)."""

    def find_class(self, module, name):
        obj = PICKLE_GLOBALS.get((module, name))
        if obj is None:  # nothing is imported or looked up: a missing module is refused the same way
            raise _Refused(f"{module}.{name}")
        return obj

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not data")


def _short(e: Exception) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:160]}" if text else type(e).__name__


def load_pickle(path: str, what: str = "batch"):
    """The object pickled in ``path``, through :class:`DataUnpickler`; every failure is one
    ``ValueError`` naming the file (a refused global by its ``module.name``)."""
    try:
        with open(path, "rb") as f:
            return DataUnpickler(f, encoding="bytes").load()
    except _Refused as e:
        raise ValueError(
            f"data_dir: CIFAR-10 file {path!r} names the Python global {e}, which a CIFAR-10 {what} does not use; "
            f"refused without running anything (CIFAR-10 pickles hold only NumPy arrays, lists, numbers and strings)"
        ) from None
    except OSError:  # unreadable: the command line names the path and the reason
        raise
    except Exception as e:  # noqa: BLE001  anything a corrupt pickle raises, as one line
        raise ValueError(f"data_dir: CIFAR-10 file {path!r} is truncated or not a CIFAR-10 {what} "
                         f"({_short(e)})") from None


def _check_labels(labels, path: str) -> np.ndarray:
    """Labels as int64, each an integer in 0..9 (a str, a float, a huge int is refused by record)."""
    top = len(CLASS_NAMES) - 1
    if not isinstance(labels, np.ndarray):
        for i, v in enumerate(labels):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
                raise ValueError(f"data_dir: CIFAR-10 file {path!r} has label {str(v)[:40]!r} of type "
                                 f"{type(v).__name__} (record {i}); expected class indices 0..{top}")
            if not 0 <= v <= top:
                raise ValueError(f"data_dir: CIFAR-10 file {path!r} has label {v} (record {i}); CIFAR-10 labels "
                                 f"are 0..{top}")
        return np.array([int(v) for v in labels], np.int64).reshape(len(labels))
    if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
        raise ValueError(f"data_dir: CIFAR-10 file {path!r} has labels of type {labels.dtype} and shape "
                         f"{labels.shape}; expected a list of class indices 0..{top}")
    bad = np.flatnonzero((labels < 0) | (labels > top))
    if bad.size:
        raise ValueError(f"data_dir: CIFAR-10 file {path!r} has label {labels[bad[0]]} (record {bad[0]}); "
                         f"CIFAR-10 labels are 0..{top}")
    return labels.astype(np.int64)


def _to_images(rows: np.ndarray) -> np.ndarray:
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def read_batch(path: str):
    """One python batch -> ``(images uint8 (N, 32, 32, 3), labels int64 (N,))``, with clear errors."""
    if not os.path.isfile(path):
        raise ValueError(f"data_dir: CIFAR-10 file {path!r} is missing")
    batch = load_pickle(path)
    if not isinstance(batch, dict):
        raise ValueError(f"data_dir: CIFAR-10 file {path!r} is not a CIFAR-10 batch (a pickled dict; found "
                         f"{type(batch).__name__})")
    get = lambda k: batch.get(k, batch.get(k.decode()))
    data, labels = get(b"data"), get(b"labels")
    if data is None or labels is None:
        raise ValueError(f"data_dir: CIFAR-10 file {path!r} has no 'data'/'labels' entries")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        kind = (f"of shape {data.shape} ({data.dtype})" if isinstance(data, np.ndarray)
                else f"of type {type(data).__name__}")
        raise ValueError(f"data_dir: CIFAR-10 file {path!r} has data {kind}; expected a uint8 array "
                         f"(N, 3072): N images of 3 x 32 x 32 bytes")
    if not isinstance(labels, (list, tuple, np.ndarray)):
        raise ValueError(f"data_dir: CIFAR-10 file {path!r} has labels of type {type(labels).__name__}; "
                         f"expected a list of class indices 0..9")
    labels = _check_labels(labels, path)
    if len(labels) != len(data):
        raise ValueError(f"data_dir: CIFAR-10 file {path!r} has {len(data)} images and {len(labels)} labels")
    return _to_images(data), labels


def read_bin_batch(path: str):
    """One binary batch -> ``(images uint8 (N, 32, 32, 3), labels int64 (N,))``: no pickle involved."""
    if not os.path.isfile(path):
        raise ValueError(f"data_dir: CIFAR-10 file {path!r} is missing")
    size = os.path.getsize(path)
    if size == 0 or size % RECORD:
        hint = ("; its size fits 3074-byte records, the CIFAR-100 binary version (two label bytes)"
                if size and size % (RECORD + 1) == 0 else "")
        raise ValueError(f"data_dir: CIFAR-10 file {path!r} has {size} bytes, not a whole number of {RECORD}-byte "
                         f"records (1 label byte + 3072 pixel bytes){hint}; truncated or not the CIFAR-10 "
                         f"binary version")
    with open(path, "rb") as f:
        raw = f.read(size + 1)
    if len(raw) != size:
        raise ValueError(f"data_dir: CIFAR-10 file {path!r} changed size while it was read")
    rec = np.frombuffer(raw, np.uint8).reshape(-1, RECORD)
    return _to_images(rec[:, 1:]), _check_labels(rec[:, 0], path)


def _class_names(root: str, fmt: str) -> tuple:
    """The ten class names from the meta file (the standard ones when it is absent)."""
    if fmt == "bin":
        meta = member(root, META_TXT)
        if not os.path.isfile(meta):
            return CLASS_NAMES
        try:
            with open(meta, "rb") as f:
                text = f.read(1 << 16).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"data_dir: CIFAR-10 file {meta!r} is not text (one class name per line)") from None
        raw = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        meta = member(root, META)
        if not os.path.isfile(meta):
            return CLASS_NAMES
        m = load_pickle(meta, "meta file")
        raw = m.get(b"label_names", m.get("label_names")) if isinstance(m, dict) else None
        if not isinstance(raw, (list, tuple)) or not all(isinstance(v, (bytes, str)) for v in raw):
            raise ValueError(f"data_dir: CIFAR-10 file {meta!r} has no list 'label_names' of class names")
        try:
            raw = [v.decode() if isinstance(v, bytes) else v for v in raw]
        except UnicodeDecodeError:
            raise ValueError(f"data_dir: CIFAR-10 file {meta!r} has class names that are not text") from None
    if len(raw) != len(CLASS_NAMES):
        raise ValueError(f"data_dir: CIFAR-10 file {meta!r} lists {len(raw)} class names; CIFAR-10 has "
                         f"{len(CLASS_NAMES)}")
    return tuple(raw)


def _layout(data_dir: str) -> tuple:
    """``(folder, "bin" | "py")``: where the batches are, the binary version first."""
    for fmt, sub, probes in (("bin", BIN_SUBDIR, ("test_batch.bin", "data_batch_1.bin")),
                             ("py", SUBDIR, ("test_batch", "data_batch_1"))):
        for cand in (os.path.join(data_dir, sub), os.path.join(data_dir, "cifar10", sub), data_dir):
            if any(os.path.isfile(os.path.join(cand, p)) for p in probes):
                return cand, fmt
    raise ValueError(
        f"data_dir: no CIFAR-10 batches in {data_dir!r}. Expected {BIN_SUBDIR}/ with data_batch_1.bin .. "
        f"data_batch_5.bin, test_batch.bin ({BIN_URL}), or {SUBDIR}/ with {', '.join(TRAIN_FILES)}, test_batch, "
        f"batches.meta ({URL}), extracted there with `tar xzf FILE -C {data_dir}`; nothing is downloaded"
    )


def _root(data_dir: str) -> str:
    """The folder that holds the batches (either version); a one-line error when there is none."""
    return _layout(data_dir)[0]


def load_cifar10(data_dir: str, split: str = "train") -> RawImages:
    """All images of a split: ``train`` (the 5 data batches, 50000) or ``test`` (10000)."""
    check_not_a_file(data_dir)
    if not os.path.isdir(data_dir):
        raise ValueError(
            f"data_dir: directory {data_dir!r} does not exist. Put the extracted CIFAR-10 batches there: "
            f"{BIN_SUBDIR}/ ({BIN_URL}) or {SUBDIR}/ with {', '.join(TRAIN_FILES)}, test_batch, batches.meta "
            f"({URL}); nothing is downloaded"
        )
    root, fmt = _layout(data_dir)
    names = _class_names(root, fmt)
    files = TEST_FILES if split == "test" else TRAIN_FILES
    if fmt == "bin":
        parts = [read_bin_batch(member(root, f + ".bin")) for f in files]
    else:
        parts = [read_batch(member(root, f)) for f in files]
    return RawImages(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), names)
