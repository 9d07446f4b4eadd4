"""Reliability cases of the on-disk image loaders (``jaxrecon/data``), reached from the command line
``jaxrecon reconstruct --data NAME --data-dir DIR``: crafted pickles (which must never run), truncated
or mis-sized files, empty and missing directories, path escapes in Tiny-ImageNet's index files, IDX
headers that overflow, non-finite and out-of-range pixels.

Every error case fails while the data is read, before any model is fitted (a few seconds each); the
``ok`` cases run a 3-step attack on 4x4 images. A crafted pickle writes ``PWNED`` in the case's
directory if it is ever run (``bad_if_present``).
"""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np

from ._case import Case

AREA = "data"
MARK = "PWNED"
PY = "cifar-10-batches-py"
BIN = "cifar-10-batches-bin"
TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
# 4x4 images and 3 steps: a case whose bad file is (wrongly) accepted ends in seconds, with exit 0
RUN = ("--n", "4", "--p-over-dn", "2", "--image-size", "4", "--steps", "3", "--seeds", "1", "--no-save", "--quiet")


def _args(data, *extra, sub="d"):
    return ("reconstruct", "--data", data, "--data-dir", "{dir}/" + sub, *RUN, *extra)


# --- file writers ---------------------------------------------------------------------------------

def _images(count, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


def _py_batch(count=10, seed=0, **override):
    imgs = _images(count, seed)
    batch = {b"batch_label": b"training batch", b"labels": [i % 10 for i in range(count)],
             b"data": imgs.transpose(0, 3, 1, 2).reshape(count, 3072), b"filenames": [b"x.png"] * count}
    batch.update({k.encode(): v for k, v in override.items()})
    return pickle.dumps(batch, protocol=2)


def _write_py(d: Path, replace=None, skip=()):
    """A CIFAR-10 python-version folder (10 images per batch); ``replace``: file name -> bytes."""
    folder = d / "d" / PY
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: _py_batch(seed=i) for i, name in enumerate(TRAIN + ["test_batch"])}
    files["batches.meta"] = pickle.dumps({b"label_names": NAMES, b"num_cases_per_batch": 10, b"num_vis": 3072})
    files.update(replace or {})
    for name, blob in files.items():
        if name not in skip:
            (folder / name).write_bytes(blob)
    return folder


def _bin_batch(count=10, seed=0, labels=None):
    imgs = _images(count, seed)
    labels = np.arange(count) % 10 if labels is None else np.asarray(labels)
    rows = np.concatenate([labels.astype(np.uint8)[:, None], imgs.transpose(0, 3, 1, 2).reshape(count, 3072)], 1)
    return rows.tobytes()


def _write_bin(d: Path, replace=None, skip=()):
    folder = d / "d" / BIN
    folder.mkdir(parents=True, exist_ok=True)
    files = {name + ".bin": _bin_batch(seed=i) for i, name in enumerate(TRAIN + ["test_batch"])}
    files["batches.meta.txt"] = b"\n".join(NAMES) + b"\n\n"
    files.update(replace or {})
    for name, blob in files.items():
        if name not in skip:
            (folder / name).write_bytes(blob)
    return folder


def _call(module, name, *args):
    """A protocol-0 pickle that calls ``module.name(*args)`` (string arguments) when loaded."""
    strs = b"".join(b"V" + a.encode("raw_unicode_escape") + b"\n" for a in args)
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n(" + strs + b"tR."


class _System:
    """Pickles as ``posix.system(touch MARK)``: what a malicious batch would hold."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _crafted_dict(d: Path):
    """A batch-shaped dict whose ``data`` entry runs a shell command when unpickled."""
    return pickle.dumps({b"data": _System(d / MARK), b"labels": [0]}, protocol=2)


def _idx(arr, code):
    arr = np.asarray(arr)
    head = bytes([0, 0, code, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    return head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def _write_mnist(d: Path, images=None, labels=None, img_code=0x08, lab_code=0x08, raw_images=None,
                 raw_labels=None, gz=False, count=20):
    folder = d / "d"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8) if images is None else images
    labels = (np.arange(count) % 10).astype(np.uint8) if labels is None else labels
    blobs = {"train-images-idx3-ubyte": raw_images if raw_images is not None else _idx(images, img_code),
             "train-labels-idx1-ubyte": raw_labels if raw_labels is not None else _idx(labels, lab_code)}
    for stem, blob in blobs.items():
        if gz:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(blob))
        else:
            (folder / stem).write_bytes(blob)


def _write_tiny(d: Path, wnids=("n01443537", "n01629819"), folders=None, size=64, per_class=3, words=True,
                wnids_raw=None):
    from PIL import Image

    base = d / "d" / "tiny-imagenet-200"
    base.mkdir(parents=True, exist_ok=True)
    (base / "wnids.txt").write_bytes(wnids_raw if wnids_raw is not None else ("\n".join(wnids) + "\n").encode())
    if words:
        (base / "words.txt").write_text("n01443537\tgoldfish\nn01629819\tsalamander\n")
    yy, xx = np.mgrid[0:size, 0:size]
    for c, w in enumerate(folders if folders is not None else wnids):
        folder = base / "train" / w / "images"
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            img = np.stack([(xx * 4 + 40 * c) % 256, (yy * 4) % 256, np.full_like(xx, 60 * k)], -1)
            Image.fromarray(img.astype(np.uint8)).save(folder / f"{w}_{k}.JPEG", quality=90)
    return base


# --- setups ---------------------------------------------------------------------------------------

def _s(fn, *a, **k):
    return lambda d: fn(d, *a, **k)


def _py_with(name, blob_of):
    return lambda d: _write_py(d, {name: blob_of(d)})


def _bin_with(name, blob_of):
    return lambda d: _write_bin(d, {name: blob_of(d)})


def _truncated_py(d):
    _write_py(d, {"data_batch_1": _py_batch()[:5000]})


def _both_formats_crafted_py(d):
    _write_bin(d)
    _write_py(d, {"data_batch_1": _call("os", "system", f"touch {d / MARK}")})


def _float_idx_images(value):
    def setup(d):
        imgs = np.random.default_rng(0).random((20, 28, 28)).astype(np.float32)
        imgs[3, 4, 5] = value
        _write_mnist(d, images=imgs, img_code=0x0D)
    return setup


CASES = [
    # CIFAR-10 python batches: crafted pickles never run
    Case("cifar_pickle_os_system", AREA, _args("cifar10"), mention=("data_batch_1", "os.system"),
         setup=_py_with("data_batch_1", lambda d: _call("os", "system", f"touch {d / MARK}")), bad_if_present=(MARK,)),
    Case("cifar_pickle_posix_system_in_dict", AREA, _args("cifar10"), mention=("data_batch_1", "posix.system"),
         setup=_py_with("data_batch_1", _crafted_dict), bad_if_present=(MARK,)),
    Case("cifar_pickle_builtins_open", AREA, _args("cifar10"), mention=("data_batch_2", "builtins.open"),
         setup=_py_with("data_batch_2", lambda d: _call("builtins", "open", str(d / MARK), "w")),
         bad_if_present=(MARK,)),
    Case("cifar_pickle_py2_builtin_eval", AREA, _args("cifar10"), mention=("data_batch_1", "__builtin__.eval"),
         setup=_py_with("data_batch_1", lambda d: _call("__builtin__", "eval", f"open({str(d / MARK)!r}, 'w')")),
         bad_if_present=(MARK,)),
    Case("cifar_pickle_subprocess", AREA, _args("cifar10"), mention=("data_batch_5", "subprocess.getoutput"),
         setup=_py_with("data_batch_5", lambda d: _call("subprocess", "getoutput", f"touch {d / MARK}")),
         bad_if_present=(MARK,)),
    Case("cifar_pickle_numpy_gadget", AREA, _args("cifar10"),
         mention=("data_batch_1", "numpy.testing._private.utils.runstring"),
         setup=_py_with("data_batch_1", lambda d: _call("numpy.testing._private.utils", "runstring",
                                                        f"open({str(d / MARK)!r}, 'w')", "")),
         bad_if_present=(MARK,)),
    Case("cifar_pickle_codecs_other_encoding", AREA, _args("cifar10"), mention=("data_batch_1",),
         setup=_py_with("data_batch_1", lambda d: _call("_codecs", "encode", "abc", "rot13"))),
    Case("cifar_meta_os_system", AREA, _args("cifar10"), mention=("batches.meta", "os.system"),
         setup=_py_with("batches.meta", lambda d: _call("os", "system", f"touch {d / MARK}")), bad_if_present=(MARK,)),
    Case("cifar_pickle_missing_module", AREA, _args("cifar10"), mention=("data_batch_1", "no_such_module_jr.thing"),
         setup=_py_with("data_batch_1", lambda d: _call("no_such_module_jr", "thing"))),
    Case("cifar_pickle_missing_attribute", AREA, _args("cifar10"), mention=("data_batch_1", "numpy.no_such_attr"),
         setup=_py_with("data_batch_1", lambda d: _call("numpy", "no_such_attr"))),
    Case("cifar_pickle_extension_code", AREA, _args("cifar10"), mention=("data_batch_1",),
         setup=_py_with("data_batch_1", lambda d: b"\x80\x02\x82\x07.")),
    Case("cifar_pickle_crafted_with_out", AREA,
         ("reconstruct", "--data", "cifar10", "--data-dir", "{dir}/d", "--n", "4", "--p-over-dn", "2",
          "--image-size", "4", "--steps", "3", "--seeds", "1", "--quiet", "--out", "{dir}/out"),
         mention=("data_batch_1", "os.system"), forbid=("out",),
         setup=_py_with("data_batch_1", lambda d: _call("os", "system", f"touch {d / MARK}")), bad_if_present=(MARK,)),
    # CIFAR-10 python batches: broken files
    Case("cifar_py_truncated_batch", AREA, _args("cifar10"), mention=("data_batch_1", "truncated"),
         setup=_truncated_py),
    Case("cifar_py_empty_batch", AREA, _args("cifar10"), mention=("data_batch_3",),
         setup=_py_with("data_batch_3", lambda d: b"")),
    Case("cifar_py_not_a_dict", AREA, _args("cifar10"), mention=("data_batch_1",),
         setup=_py_with("data_batch_1", lambda d: pickle.dumps([1, 2, 3]))),
    Case("cifar_py_wrong_row_size", AREA, _args("cifar10"), mention=("data_batch_2", "3072"),
         setup=_py_with("data_batch_2", lambda d: _py_batch(data=np.zeros((10, 3000), np.uint8)))),
    Case("cifar_py_float_data", AREA, _args("cifar10"), mention=("data_batch_1", "uint8"),
         setup=_py_with("data_batch_1", lambda d: _py_batch(data=np.zeros((10, 3072), np.float32)))),
    Case("cifar_py_label_out_of_range", AREA, _args("cifar10"), mention=("data_batch_1", "12"),
         setup=_py_with("data_batch_1", lambda d: _py_batch(labels=[12] + [0] * 9))),
    Case("cifar_py_label_huge", AREA, _args("cifar10"), mention=("data_batch_1",),
         setup=_py_with("data_batch_1", lambda d: _py_batch(labels=[2 ** 70] + [0] * 9))),
    Case("cifar_py_labels_strings", AREA, _args("cifar10"), mention=("data_batch_1",),
         setup=_py_with("data_batch_1", lambda d: _py_batch(labels=["frog"] * 10))),
    Case("cifar_py_label_count_mismatch", AREA, _args("cifar10"), mention=("data_batch_4",),
         setup=_py_with("data_batch_4", lambda d: _py_batch(labels=[0] * 7))),
    Case("cifar_py_missing_batch", AREA, _args("cifar10"), mention=("data_batch_3",),
         setup=_s(_write_py, skip=("data_batch_3",))),
    Case("cifar_py_meta_truncated", AREA, _args("cifar10"), mention=("batches.meta",),
         setup=_py_with("batches.meta", lambda d: pickle.dumps({b"label_names": NAMES})[:20])),
    Case("cifar_py_meta_few_names", AREA, _args("cifar10"), mention=("batches.meta",),
         setup=_py_with("batches.meta", lambda d: pickle.dumps({b"label_names": NAMES[:3]}))),
    Case("cifar_empty_dir", AREA, _args("cifar10"), mention=("no CIFAR-10",),
         setup=lambda d: (d / "d").mkdir()),
    Case("cifar_missing_dir", AREA, _args("cifar10"), mention=("does not exist",)),
    Case("cifar_data_dir_is_file", AREA, _args("cifar10"), mention=("not a directory",),
         setup=lambda d: (d / "d").write_text("x")),
    Case("data_dir_empty_string", AREA, ("reconstruct", "--data", "cifar10", "--data-dir", "", *RUN),
         mention=("--data-dir",)),
    Case("data_env_missing_dir", AREA, ("reconstruct", "--data", "mnist", *RUN), mention=("does not exist",),
         env=(("JAXRECON_DATA", "/nonexistent-jr-data"),)),
    # CIFAR-10 binary version
    Case("cifar_bin_record_size", AREA, _args("cifar10"), mention=("data_batch_2.bin", "3073"),
         setup=_bin_with("data_batch_2.bin", lambda d: _bin_batch()[:-100])),
    Case("cifar_bin_cifar100_records", AREA, _args("cifar10"), mention=("data_batch_1.bin", "3073"),
         setup=_bin_with("data_batch_1.bin", lambda d: b"\x00" * 3074 * 3)),
    Case("cifar_bin_empty_file", AREA, _args("cifar10"), mention=("data_batch_5.bin",),
         setup=_bin_with("data_batch_5.bin", lambda d: b"")),
    Case("cifar_bin_label_out_of_range", AREA, _args("cifar10"), mention=("data_batch_1.bin", "200"),
         setup=_bin_with("data_batch_1.bin", lambda d: _bin_batch(labels=[200] + [1] * 9))),
    Case("cifar_bin_missing_batch", AREA, _args("cifar10"), mention=("data_batch_4.bin",),
         setup=_s(_write_bin, skip=("data_batch_4.bin",))),
    Case("cifar_bin_meta_not_text", AREA, _args("cifar10"), mention=("batches.meta.txt",),
         setup=_bin_with("batches.meta.txt", lambda d: b"\xff\xfe\x00garbage\x80\n")),
    Case("cifar_bin_pickle_given_as_bin", AREA, _args("cifar10"), mention=("data_batch_1.bin",),
         setup=_bin_with("data_batch_1.bin", lambda d: _call("os", "system", f"touch {d / MARK}")),
         bad_if_present=(MARK,)),
    Case("cifar_bin_reads", AREA, _args("cifar10"), expect="ok", setup=_write_bin, timeout=240),
    Case("cifar_bin_preferred_over_crafted_py", AREA, _args("cifar10"), expect="ok",
         setup=_both_formats_crafted_py, bad_if_present=(MARK,), timeout=240),
    Case("cifar_py_reads", AREA, _args("cifar10"), expect="ok", setup=_write_py, timeout=240),
    # Tiny-ImageNet: paths named in its index files stay inside the dataset
    Case("tiny_wnid_parent_escape", AREA, _args("tinyimagenet"), mention=("wnids.txt", "../../../etc"),
         setup=_s(_write_tiny, wnids=("../../../etc", "n01629819"), folders=("n01629819",))),
    Case("tiny_wnid_absolute", AREA, _args("tinyimagenet"), mention=("wnids.txt", "/etc"),
         setup=_s(_write_tiny, wnids=("/etc", "n01629819"), folders=("n01629819",))),
    Case("tiny_wnids_empty", AREA, _args("tinyimagenet"), mention=("wnids.txt", "empty"),
         setup=_s(_write_tiny, wnids=(), folders=())),
    Case("tiny_wnids_not_text", AREA, _args("tinyimagenet"), mention=("wnids.txt",),
         setup=_s(_write_tiny, wnids_raw=b"\xff\xfe\x80\x81\n", folders=())),
    Case("tiny_wnids_duplicate", AREA, _args("tinyimagenet"), mention=("wnids.txt", "n01443537"),
         setup=_s(_write_tiny, wnids=("n01443537", "n01443537"), folders=("n01443537",))),
    Case("tiny_missing_class_folder", AREA, _args("tinyimagenet"), mention=("n01629819",),
         setup=_s(_write_tiny, folders=("n01443537",))),
    Case("tiny_truncated_jpeg", AREA, _args("tinyimagenet"), mention=("n01443537_1.JPEG", "truncated"),
         setup=lambda d: (lambda base: (base / "train/n01443537/images/n01443537_1.JPEG").write_bytes(
             (base / "train/n01443537/images/n01443537_1.JPEG").read_bytes()[:40]))(_write_tiny(d))),
    Case("tiny_wrong_image_size", AREA, _args("tinyimagenet"), mention=("64x64",), setup=_s(_write_tiny, size=32)),
    # IDX (MNIST / Fashion-MNIST)
    Case("idx_header_overflow", AREA, _args("mnist"), mention=("train-images-idx3-ubyte", "4294967295"),
         setup=_s(_write_mnist, raw_images=bytes([0, 0, 8, 3]) + b"\xff\xff\xff\xff" * 3 + b"\x00" * 100)),
    Case("idx_header_overflow_gz", AREA, _args("mnist"), mention=("train-images-idx3-ubyte.gz", "4294967295"),
         setup=_s(_write_mnist, gz=True, raw_images=bytes([0, 0, 8, 3]) + b"\xff\xff\xff\xff" * 3 + b"\x00" * 100)),
    Case("idx_dims_exceed_file", AREA, _args("mnist"), mention=("train-images-idx3-ubyte", "60000"),
         setup=_s(_write_mnist, raw_images=bytes([0, 0, 8, 3]) + b"".join(
             v.to_bytes(4, "big") for v in (60000, 28, 28)) + b"\x00" * 784 * 3)),
    Case("idx_float_dims_overflow", AREA, _args("mnist"), mention=("train-labels-idx1-ubyte",),
         setup=_s(_write_mnist, raw_labels=bytes([0, 0, 0x0E, 1]) + b"\xff\xff\xff\xff" + b"\x00" * 64)),
    Case("idx_many_dims_overflow", AREA, _args("mnist"), mention=("train-images-idx3-ubyte",),
         setup=_s(_write_mnist, raw_images=bytes([0, 0, 8, 8]) + b"\x00\x01\x00\x00" * 8 + b"\x00" * 64)),
    Case("idx_bad_magic", AREA, _args("mnist"), mention=("train-images-idx3-ubyte", "magic"),
         setup=_s(_write_mnist, raw_images=b"PK\x03\x04not an idx file")),
    Case("idx_truncated_gz", AREA, _args("mnist"), mention=("train-images-idx3-ubyte.gz",),
         setup=lambda d: (_write_mnist(d, gz=True), (d / "d/train-images-idx3-ubyte.gz").write_bytes(
             (d / "d/train-images-idx3-ubyte.gz").read_bytes()[:-30]))),
    Case("idx_corrupt_deflate", AREA, _args("mnist"), mention=("train-images-idx3-ubyte.gz",),
         setup=lambda d: (_write_mnist(d, gz=True), (d / "d/train-images-idx3-ubyte.gz").write_bytes(
             (lambda b: b[:12] + bytes(x ^ 0x5A for x in b[12:40]) + b[40:])(
                 (d / "d/train-images-idx3-ubyte.gz").read_bytes())))),
    Case("idx_trailing_bytes", AREA, _args("mnist"), mention=("train-images-idx3-ubyte",),
         setup=_s(_write_mnist, raw_images=_idx(np.zeros((20, 28, 28), np.uint8), 8) + b"\x00" * 500)),
    Case("idx_nan_pixels", AREA, _args("mnist"), mention=("train-images-idx3-ubyte", "NaN"),
         setup=_float_idx_images(np.nan)),
    Case("idx_inf_pixels", AREA, _args("mnist"), mention=("train-images-idx3-ubyte", "inf"),
         setup=_float_idx_images(np.inf)),
    Case("idx_float_pixels_0_255", AREA, _args("mnist"), mention=("train-images-idx3-ubyte", "[0, 1]", "255"),
         setup=_s(_write_mnist, images=np.random.default_rng(0).integers(0, 256, (20, 28, 28)).astype(np.float32),
                  img_code=0x0D)),
    Case("idx_float_pixels_negative", AREA, _args("mnist"), mention=("train-images-idx3-ubyte", "-0.5"),
         setup=_float_idx_images(-0.5)),
    Case("idx_int16_pixels", AREA, _args("mnist"), mention=("train-images-idx3-ubyte", "1000"),
         setup=_s(_write_mnist, images=np.full((20, 28, 28), 1000, np.int16), img_code=0x0B)),
    Case("idx_label_count_mismatch", AREA, _args("mnist"), mention=("train-labels-idx1-ubyte",),
         setup=_s(_write_mnist, labels=np.zeros(7, np.uint8))),
    Case("idx_label_out_of_range", AREA, _args("mnist"), mention=("train-labels-idx1-ubyte", "42"),
         setup=_s(_write_mnist, labels=np.where(np.arange(20) == 3, 42, np.arange(20) % 10).astype(np.uint8))),
    Case("idx_float_labels", AREA, _args("mnist"), mention=("train-labels-idx1-ubyte",),
         setup=_s(_write_mnist, labels=np.full(20, 0.5, np.float32), lab_code=0x0D)),
    Case("idx_images_2d", AREA, _args("mnist"), mention=("train-images-idx3-ubyte",),
         setup=_s(_write_mnist, images=np.zeros((20, 784), np.uint8))),
    Case("idx_wrong_image_size", AREA, _args("fashion_mnist"), mention=("train-images-idx3-ubyte", "28"),
         setup=_s(_write_mnist, images=np.zeros((20, 10, 10), np.uint8))),
    Case("idx_zero_images", AREA, _args("mnist"), mention=("train-images-idx3-ubyte",),
         setup=_s(_write_mnist, images=np.zeros((0, 28, 28), np.uint8), labels=np.zeros(0, np.uint8))),
    Case("idx_missing_labels", AREA, _args("mnist"), mention=("train-labels-idx1-ubyte",),
         setup=lambda d: (_write_mnist(d), (d / "d/train-labels-idx1-ubyte").unlink())),
    Case("idx_empty_dir", AREA, _args("mnist"), mention=("train-images-idx3-ubyte",),
         setup=lambda d: (d / "d").mkdir()),
    Case("idx_float_images_read", AREA, _args("mnist"), expect="ok", setup=_float_idx_images(0.5), timeout=240),
]
