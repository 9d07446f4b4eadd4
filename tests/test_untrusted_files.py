"""Dataset files are untrusted input: read as data, never run; paths inside the dataset; pixels and
headers checked before they are used. Small files in the exact on-disk formats, written here."""

import gzip
import io
import os
import pickle
import struct

import jax
import numpy as np
import pytest

from jaxrecon.data import registry
from jaxrecon.data.base import RawImages, check_pixels, member
from jaxrecon.data.cifar import DataUnpickler, load_cifar10, read_batch
from jaxrecon.data.idx import load_idx_dataset, read_idx
from jaxrecon.data.tinyimagenet import load_tinyimagenet

TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


# --- writers --------------------------------------------------------------------------------------

class _Py2Pickler(pickle._Pickler):
    """Pickles as Python 2 did for the official CIFAR-10 files: strings as byte strings (``U``/``T``
    opcodes, read back as ``bytes`` with ``encoding="bytes"``), NumPy arrays by ``_reconstruct``."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _str(self, obj):
        obj = obj.encode("latin1") if isinstance(obj, str) else obj
        n = len(obj)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _str
    dispatch[str] = _str


def _py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")  # NumPy 1's name


def _cifar_batch(seed, count=10):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    labels = rng.permutation(np.arange(count) % 10)
    return images, labels


def _rows(images):
    return images.transpose(0, 3, 1, 2).reshape(len(images), 3072)  # channel-major, as distributed


def _write_py(root, pickler=_py2_pickle, replace=None):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    for i, name in enumerate(TRAIN + ["test_batch"]):
        images, labels = _cifar_batch(i)
        (folder / name).write_bytes(pickler({b"batch_label": name.encode(), b"labels": [int(v) for v in labels],
                                             b"data": _rows(images), b"filenames": [b"x.png"] * len(labels)}))
        written[name] = images, labels
    (folder / "batches.meta").write_bytes(pickler({b"label_names": NAMES, b"num_cases_per_batch": 10}))
    for name, blob in (replace or {}).items():
        (folder / name).write_bytes(blob)
    return folder, written


def _write_bin(root, names=NAMES, seed=100):
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    written = {}
    for i, name in enumerate(TRAIN + ["test_batch"]):
        images, labels = _cifar_batch(seed + i)
        rec = np.concatenate([labels.astype(np.uint8)[:, None], _rows(images)], axis=1)
        (folder / f"{name}.bin").write_bytes(rec.tobytes())
        written[name] = images, labels
    (folder / "batches.meta.txt").write_bytes(b"\n".join(names) + b"\n\n")
    return folder, written


def _call(module, name, *args) -> bytes:
    """A protocol-0 pickle whose loading calls ``module.name(*args)``."""
    strs = b"".join(b"V" + a.encode("raw_unicode_escape") + b"\n" for a in args)
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n(" + strs + b"tR."


class _System:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# --- crafted pickles are never run ----------------------------------------------------------------

@pytest.mark.parametrize("make,glob", [
    (lambda m: _call("os", "system", f"touch {m}"), "os.system"),
    (lambda m: _call("builtins", "open", str(m), "w"), "builtins.open"),
    (lambda m: _call("__builtin__", "eval", f"open({str(m)!r}, 'w')"), "__builtin__.eval"),
    (lambda m: _call("subprocess", "getoutput", f"touch {m}"), "subprocess.getoutput"),
    (lambda m: pickle.dumps({b"data": _System(m), b"labels": [0]}, protocol=2), "posix.system"),
    (lambda m: pickle.dumps({b"data": _System(m), b"labels": [0]}, protocol=5), "posix.system"),
])
def test_crafted_pickle_is_refused_and_not_run(tmp_path, make, glob):
    marker = tmp_path / "PWNED"
    folder, _ = _write_py(tmp_path / "d", replace={"data_batch_2": make(marker)})
    with pytest.raises(ValueError) as e:
        load_cifar10(str(tmp_path / "d"))
    msg = str(e.value)
    assert not marker.exists()
    assert msg.startswith("data_dir: ") and "\n" not in msg
    assert str(folder / "data_batch_2") in msg and f"global {glob}," in msg


def test_crafted_meta_file_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "PWNED"
    _write_py(tmp_path / "d", replace={"batches.meta": _call("os", "system", f"touch {marker}")})
    with pytest.raises(ValueError, match=r"^data_dir: CIFAR-10 file .*batches\.meta' names the Python "
                                         r"global os\.system"):
        load_cifar10(str(tmp_path / "d"))
    assert not marker.exists()


@pytest.mark.parametrize("module,name", [("no_such_module_jr", "thing"), ("numpy", "no_such_attr"),
                                         ("numpy", "load"), ("numpy.core.multiarray", "scalar")])
def test_missing_or_other_globals_are_one_line(tmp_path, module, name):
    _write_py(tmp_path / "d", replace={"data_batch_1": _call(module, name)})
    with pytest.raises(ValueError) as e:
        load_cifar10(str(tmp_path / "d"))
    assert type(e.value) is ValueError  # not ModuleNotFoundError / AttributeError
    assert "data_batch_1" in str(e.value) and f"global {module}.{name}," in str(e.value)


def test_codecs_encode_only_for_latin1(tmp_path):
    _write_py(tmp_path / "d", replace={"data_batch_1": _call("_codecs", "encode", "abc", "rot13")})
    with pytest.raises(ValueError, match=r"^data_dir: CIFAR-10 file .*data_batch_1' is truncated or not "
                                         r"a CIFAR-10 batch"):
        load_cifar10(str(tmp_path / "d"))


@pytest.mark.parametrize("module,name", [("_codecs", "encode"), ("numpy._core.numeric", "_frombuffer"),
                                         ("numpy.core.multiarray", "_reconstruct")])
def test_allowed_globals_cannot_be_changed_by_a_pickle(tmp_path, module, name):
    # BUILD with a state dict on an allowed global (a plain function's __dict__ / __defaults__ would take it)
    blob = f"c{module}\n{name}\n(dV__defaults__\n(I1\ntsb.".encode()
    _write_py(tmp_path / "d", replace={"data_batch_1": blob})
    with pytest.raises(ValueError, match=r"^data_dir: CIFAR-10 file .*data_batch_1' is truncated or not a CIFAR-10"):
        load_cifar10(str(tmp_path / "d"))
    test_python_batches_of_every_protocol_read(tmp_path / "again", lambda o: pickle.dumps(o, protocol=2))
    test_python_batches_of_every_protocol_read(tmp_path / "again5", lambda o: pickle.dumps(o, protocol=5))


@pytest.mark.parametrize("pickler", [_py2_pickle, lambda o: pickle.dumps(o, protocol=2),
                                     lambda o: pickle.dumps(o, protocol=4), lambda o: pickle.dumps(o, protocol=5)],
                         ids=["py2-official", "py3-protocol2", "protocol4", "protocol5"])
def test_python_batches_of_every_protocol_read(tmp_path, pickler):
    _, written = _write_py(tmp_path, pickler)
    raw = load_cifar10(str(tmp_path))
    np.testing.assert_array_equal(raw.images[10:20], written["data_batch_2"][0])
    np.testing.assert_array_equal(raw.labels[40:], written["data_batch_5"][1])
    assert raw.class_names[6] == "frog"


def test_py2_pickle_names_only_numpy_reconstruction_globals():
    import pickletools

    blob = _py2_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]})
    globs = {arg for op, arg, _ in pickletools.genops(blob) if op.name == "GLOBAL"}
    assert globs == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    assert DataUnpickler(io.BytesIO(blob), encoding="bytes").load()[b"labels"] == [1, 2]


@pytest.mark.parametrize("batch,match", [
    ({b"data": np.zeros((10, 3072), np.uint8), b"labels": [12] + [0] * 9}, r"has label 12 \(record 0\)"),
    ({b"data": np.zeros((10, 3072), np.uint8), b"labels": [2 ** 70] + [0] * 9}, r"has label 1180591620717411303424"),
    ({b"data": np.zeros((10, 3072), np.uint8), b"labels": ["frog"] * 10}, r"label 'frog' of type str"),
    ({b"data": np.zeros((10, 3072), np.uint8), b"labels": [0] * 7}, r"has 10 images and 7 labels"),
    ({b"data": np.zeros((10, 3000), np.uint8), b"labels": [0] * 10}, r"shape \(10, 3000\) \(uint8\).*\(N, 3072\)"),
    ({b"data": np.zeros((10, 3072), np.float32), b"labels": [0] * 10}, r"float32"),
    ({b"data": [[0] * 3072], b"labels": [0]}, r"data of type list"),
    ([1, 2, 3], r"not a CIFAR-10 batch \(a pickled dict; found list\)"),
])
def test_python_batch_contents_checked(tmp_path, batch, match):
    p = tmp_path / "data_batch_1"
    p.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(ValueError, match=r"^data_dir: CIFAR-10 file .*data_batch_1' " + ".*" + match):
        read_batch(str(p))


# --- the binary version ---------------------------------------------------------------------------

def test_binary_round_trip(tmp_path):
    _, written = _write_bin(tmp_path)
    raw = load_cifar10(str(tmp_path))
    assert raw.images.shape == (50, 32, 32, 3) and raw.images.dtype == np.uint8
    for i, name in enumerate(TRAIN):
        np.testing.assert_array_equal(raw.images[10 * i: 10 * i + 10], written[name][0])
        np.testing.assert_array_equal(raw.labels[10 * i: 10 * i + 10], written[name][1])
    test = load_cifar10(str(tmp_path / "cifar-10-batches-bin"), "test")  # the folder itself works too
    np.testing.assert_array_equal(test.images, written["test_batch"][0])
    np.testing.assert_array_equal(test.labels, written["test_batch"][1])
    assert test.class_names == tuple(n.decode() for n in NAMES)
    data = registry.load_dataset("cifar10", jax.random.key(0), 4, str(tmp_path), size=4)
    np.testing.assert_array_equal(np.sort(data.labels), [6, 6, 9, 9])


def test_binary_preferred_over_python(tmp_path):
    marker = tmp_path / "PWNED"
    crafted = _call("os", "system", f"touch {marker}")
    _write_py(tmp_path, replace={name: crafted for name in TRAIN + ["batches.meta"]})
    _, written = _write_bin(tmp_path, names=[n.upper() for n in NAMES])
    raw = load_cifar10(str(tmp_path))
    assert not marker.exists()
    np.testing.assert_array_equal(raw.images[:10], written["data_batch_1"][0])
    assert raw.class_names[0] == "AIRPLANE"  # batches.meta.txt, not batches.meta


@pytest.mark.parametrize("name,blob,match", [
    ("data_batch_2.bin", b"\x00" * (3073 * 3 - 100), r"data_batch_2\.bin' has 9119 bytes, not a whole number "
                                                 r"of 3073-byte"),
    ("data_batch_1.bin", b"\x00" * (3074 * 3), r"CIFAR-100 binary version"),
    ("data_batch_5.bin", b"", r"data_batch_5\.bin' has 0 bytes"),
    ("data_batch_1.bin", bytes([200]) + b"\x00" * 3072, r"data_batch_1\.bin' has label 200 \(record 0\)"),
    ("batches.meta.txt", b"\xff\xfe\x80\n", r"batches\.meta\.txt' is not text"),
    ("batches.meta.txt", b"cat\ndog\n", r"batches\.meta\.txt' lists 2 class names; CIFAR-10 has 10"),
])
def test_binary_errors(tmp_path, name, blob, match):
    folder, _ = _write_bin(tmp_path)
    (folder / name).write_bytes(blob)
    with pytest.raises(ValueError, match=r"^data_dir: CIFAR-10 file .*" + match):
        load_cifar10(str(tmp_path))


def test_binary_missing_batch_and_empty_dir(tmp_path):
    folder, _ = _write_bin(tmp_path / "a")
    (folder / "data_batch_4.bin").unlink()
    with pytest.raises(ValueError, match=r"^data_dir: CIFAR-10 file .*data_batch_4\.bin' is missing"):
        load_cifar10(str(tmp_path / "a"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"^data_dir: no CIFAR-10 batches in .*cifar-10-batches-bin"
                                         r".*cifar-10-batches-py"):
        load_cifar10(str(tmp_path / "empty"))


# --- paths stay inside the dataset ----------------------------------------------------------------

def test_member_refuses_escapes(tmp_path):
    root = str(tmp_path / "root")
    assert member(root, "a/b.JPEG") == os.path.join(root, "a", "b.JPEG")
    for entry in ("../x", "a/../../x", "/etc/passwd", "", ".", "a\0b"):
        with pytest.raises(ValueError, match=r"^data_dir: entry .*\(listed in 'list\.txt'\)"):
            member(root, entry, listed_in="list.txt")


def _write_tiny(root, wnids=("n01443537", "n01629819"), ann=None):
    from PIL import Image

    base = root / "tiny-imagenet-200"
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    img = np.zeros((64, 64, 3), np.uint8)
    for w in wnids:
        if "/" not in w:
            (base / "train" / w / "images").mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(base / "train" / w / "images" / f"{w}_0.JPEG")
    Image.fromarray(img).save(base / "val" / "images" / "val_0.JPEG")
    lines = ann if ann is not None else [f"val_0.JPEG\t{wnids[0]}\t0\t0\t63\t63"]
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return base


@pytest.mark.parametrize("entry", ["../../etc/x", "../../../../etc", "/etc/x", "/etc"])
def test_tinyimagenet_wnid_escape_refused(tmp_path, entry):
    base = _write_tiny(tmp_path, wnids=(entry, "n01629819"))
    for split in ("train", "val"):
        with pytest.raises(ValueError) as e:
            load_tinyimagenet(str(tmp_path), split, classes=2)
        assert str(e.value).startswith("data_dir: entry ") and repr(entry) in str(e.value)
        assert repr(str(base / "wnids.txt")) in str(e.value)


@pytest.mark.parametrize("entry", ["../../../etc/passwd", "../val_annotations.txt", "/etc/passwd"])
def test_tinyimagenet_val_annotation_escape_refused(tmp_path, entry):
    base = _write_tiny(tmp_path, ann=[f"val_0.JPEG\tn01443537\t0\t0\t63\t63", f"{entry}\tn01629819\t0\t0\t63\t63"])
    with pytest.raises(ValueError) as e:
        load_tinyimagenet(str(tmp_path), "val", classes=(0,))  # refused even for a class not selected
    assert repr(entry) in str(e.value) and repr(str(base / "val" / "val_annotations.txt")) in str(e.value)
    ok = _write_tiny(tmp_path / "ok")
    assert load_tinyimagenet(str(tmp_path / "ok"), "val", classes=(0,)).images.shape == (1, 64, 64, 3)
    assert ok.exists()


def test_tinyimagenet_index_files(tmp_path):
    base = _write_tiny(tmp_path, wnids=("n01443537", "n01443537"))
    with pytest.raises(ValueError, match=r"^data_dir: .*wnids\.txt' lists the class 'n01443537' twice"):
        load_tinyimagenet(str(tmp_path), classes=1)
    (base / "wnids.txt").write_bytes(b"\xff\xfe\x80\n")
    with pytest.raises(ValueError, match=r"^data_dir: .*wnids\.txt' is not a text file"):
        load_tinyimagenet(str(tmp_path), classes=1)


def test_tinyimagenet_image_size(tmp_path):
    from PIL import Image

    base = _write_tiny(tmp_path)
    bad = base / "train" / "n01443537" / "images" / "n01443537_0.JPEG"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(bad)
    with pytest.raises(ValueError, match=r"^data_dir: image .*n01443537_0\.JPEG' is 32x32; Tiny-ImageNet "
                                         r"images are 64x64"):
        load_tinyimagenet(str(tmp_path), classes=1)


# --- pixels ---------------------------------------------------------------------------------------

def _idx(arr, code):
    arr = np.asarray(arr)
    head = bytes([0, 0, code, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    return head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def _write_mnist(folder, images, img_code=0x0D, labels=None):
    folder.mkdir(parents=True, exist_ok=True)
    labels = (np.arange(len(images)) % 10).astype(np.uint8) if labels is None else labels
    (folder / "train-images-idx3-ubyte").write_bytes(_idx(images, img_code))
    (folder / "train-labels-idx1-ubyte").write_bytes(_idx(labels, 0x08))


@pytest.mark.parametrize("value,match", [(np.nan, r"1 non-finite pixel \(NaN\)"),
                                         (np.inf, r"1 non-finite pixel \(\+inf\)"),
                                         (-np.inf, r"1 non-finite pixel \(-inf\)")])
def test_non_finite_pixels_named(tmp_path, value, match):
    imgs = np.random.default_rng(0).random((20, 28, 28)).astype(np.float32)
    imgs[5, 3, 3] = value
    _write_mnist(tmp_path, imgs)
    with pytest.raises(ValueError, match=r"^data_dir: IDX file .*train-images-idx3-ubyte' has " + match):
        load_idx_dataset(str(tmp_path))


def test_out_of_range_float_pixels_named(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (20, 28, 28)).astype(np.float32)
    _write_mnist(tmp_path, imgs)
    with pytest.raises(ValueError, match=r"^data_dir: IDX file .*' has pixels in \[0, 255\] \(float32\); "
                                         r"expected uint8"):
        load_idx_dataset(str(tmp_path))
    _write_mnist(tmp_path, np.full((20, 28, 28), -0.25, np.float64), img_code=0x0E)
    with pytest.raises(ValueError, match=r"has pixels in \[-0\.25, -0\.25\] \(float64\)"):
        load_idx_dataset(str(tmp_path))
    _write_mnist(tmp_path, np.full((20, 28, 28), 1000, np.int16), img_code=0x0B)
    with pytest.raises(ValueError, match=r"has pixels in \[1000, 1000\] \(int16\)"):
        load_idx_dataset(str(tmp_path))
    ok = np.random.default_rng(1).random((20, 28, 28)).astype(np.float32)
    _write_mnist(tmp_path, ok)
    np.testing.assert_array_equal(load_idx_dataset(str(tmp_path)).images, ok)


def test_registry_names_non_finite_pixels_not_constant(monkeypatch):
    def load(data_dir, split, classes, size):
        images = np.full((8, 4, 4, 1), 0.5, np.float32)
        images[:, 0, 0, 0] = np.nan  # constant apart from NaN: once reported as "images are constant"
        return RawImages(images, np.arange(8) % 2, ("a", "b"))

    monkeypatch.setitem(registry.DATASETS, "nanset", registry.DatasetSpec(load, (4, 4, 1), 2, False, "test"))
    with pytest.raises(ValueError, match=r"^data: dataset 'nanset' \(the selected images\) has 4 non-finite pixels \(NaN\)"):
        registry.load_dataset("nanset", jax.random.key(0), 4)
    with pytest.raises(ValueError, match=r"^data: .* has pixels in \[-1, 1\]"):
        registry.preprocess(np.linspace(-1, 1, 8 * 16).reshape(8, 4, 4), np.arange(8) % 2, ("a", "b"),
                            jax.random.key(0), 8, name="x")
    with pytest.raises(ValueError, match=r"are constant"):
        registry.preprocess(np.full((8, 4, 4), 0.5), np.arange(8) % 2, ("a", "b"), jax.random.key(0), 4, name="x")
    check_pixels(np.array([0.0, 1.0]), "x")  # the ends of [0, 1] are in range


def test_registry_refuses_images_of_another_shape(monkeypatch):
    load = lambda *a: RawImages(np.zeros((8, 5, 5, 1), np.float32), np.arange(8) % 2, ("a", "b"))
    monkeypatch.setitem(registry.DATASETS, "odd", registry.DatasetSpec(load, (4, 4, 1), 2, False, "test"))
    with pytest.raises(ValueError, match=r"^data: the odd images are 5x5x1 \(H x W x C\); odd images are 4x4x1"):
        registry.load_dataset("odd", jax.random.key(0), 4)


# --- IDX headers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_idx_header_overflow(tmp_path, gz):
    blob = bytes([0, 0, 0x08, 3]) + b"\xff\xff\xff\xff" * 3 + b"\x00" * 100
    p = tmp_path / ("f.gz" if gz else "f")
    p.write_bytes(gzip.compress(blob) if gz else blob)
    with pytest.raises(ValueError) as e:
        read_idx(str(p))
    msg = str(e.value)
    assert msg.startswith(f"data_dir: IDX file {str(p)!r} has a header with dimensions "
                          f"(4294967295, 4294967295, 4294967295) (uint8): 79228162458924105385300197375 data bytes")
    assert "\n" not in msg


@pytest.mark.parametrize("blob,match", [
    (bytes([0, 0, 0x0E, 1]) + b"\xff\xff\xff\xff", r"dimensions \(4294967295,\) \(float64\): 34359738360 data bytes"),
    (bytes([0, 0, 0x08, 8]) + b"\x00\x01\x00\x00" * 8 + b"\x00" * 64, r"dimensions \((65536, ){7}65536\) \(uint8\): "
     r"340282366920938463463374607431768211456 data bytes"),
    (bytes([0, 0, 0x08, 3]) + b"".join(v.to_bytes(4, "big") for v in (60000, 28, 28)) + b"\x00" * 2352,
     r"\(60000, 28, 28\) \(uint8\): 47040000 data bytes, but the file holds 2352"),
    (bytes([0, 0, 0x08, 3]) + b"\x00\x00\x00\x02", r"is truncated \(its header announces 3 dimensions\)"),
    (_idx(np.zeros((2, 3), np.uint8), 0x08) + b"\x00" * 5,
     r"holds more data than its header's dimensions \(2, 3\) \(uint8\) describe \(5 bytes too many\)"),
])
def test_idx_header_checked_against_the_file(tmp_path, blob, match):
    p = tmp_path / "f"
    p.write_bytes(blob)
    with pytest.raises(ValueError, match=r"^data_dir: IDX file .*/f' .*" + match):
        read_idx(str(p))


def test_idx_corrupt_gzip_and_labels(tmp_path):
    good = gzip.compress(_idx(np.zeros((20, 28, 28), np.uint8), 0x08))
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(good[:12] + bytes(b ^ 0x5A for b in good[12:40]) + good[40:])
    with pytest.raises(ValueError, match=r"^data_dir: IDX file .*\.gz' is a truncated or corrupt gzip file"):
        read_idx(str(p))
    _write_mnist(tmp_path / "m", np.zeros((20, 28, 28), np.uint8), 0x08, labels=np.full(20, 42, np.uint8))
    with pytest.raises(ValueError, match=r"^data_dir: IDX file .*train-labels-idx1-ubyte' has label 42 \(record 0\)"):
        load_idx_dataset(str(tmp_path / "m"))
    _write_mnist(tmp_path / "s", np.zeros((20, 10, 10), np.uint8), 0x08)
    with pytest.raises(ValueError, match=r"holds an array of shape \(20, 10, 10\); mnist images are \(N, 28, 28\)"):
        load_idx_dataset(str(tmp_path / "s"))
    _write_mnist(tmp_path / "z", np.zeros((0, 28, 28), np.uint8), 0x08)
    with pytest.raises(ValueError, match=r"holds no images"):
        load_idx_dataset(str(tmp_path / "z"))
