"""Image loaders on small files written here in the exact on-disk formats, and the embedded sets."""

import gzip
import os
import pickle

import jax
import numpy as np
import pytest

from jaxrecon.data import registry
from jaxrecon.data.cifar import load_cifar10
from jaxrecon.data.idx import load_idx_dataset, read_idx
from jaxrecon.data.registry import load_dataset, to_pixels
from jaxrecon.data.tinyimagenet import load_tinyimagenet


# --- CIFAR-10 -----------------------------------------------------------------------------------

def _cifar_images(rng, count):
    return rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


def _write_cifar(root, per_batch=20, seed=0):
    """Five training batches and a test batch of ``per_batch`` images; labels cycle 0..9."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        imgs = _cifar_images(rng, per_batch)
        labels = [int(v) for v in rng.permutation(np.arange(per_batch) % 10)]
        rows = imgs.transpose(0, 3, 1, 2).reshape(per_batch, 3072)  # channel-major, as distributed
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": rows,
                         b"filenames": [b"x.png"] * per_batch}, f, protocol=2)
        written[name] = (imgs, np.array(labels))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump({b"label_names": names, b"num_cases_per_batch": per_batch, b"num_vis": 3072}, f)
    return folder, written


def test_cifar_reads_batches_channel_major(tmp_path):
    folder, written = _write_cifar(str(tmp_path))
    raw = load_cifar10(str(tmp_path), "train")
    assert raw.images.shape == (100, 32, 32, 3) and raw.images.dtype == np.uint8
    np.testing.assert_array_equal(raw.images[:20], written["data_batch_1"][0])
    np.testing.assert_array_equal(raw.labels[20:40], written["data_batch_2"][1])
    assert raw.class_names[6] == "frog" and raw.class_names[9] == "truck"
    test = load_cifar10(folder, "test")  # the batches folder itself works too
    np.testing.assert_array_equal(test.images, written["test_batch"][0])


def test_cifar_frog_truck_selection_and_standardisation(tmp_path):
    _write_cifar(str(tmp_path))
    data = load_dataset("cifar10", jax.random.key(0), 8, str(tmp_path), normalize="standard")
    assert data.x.shape == (8, 3072) and data.shape == (32, 32, 3)
    np.testing.assert_array_equal(np.sort(data.labels), [6, 6, 6, 6, 9, 9, 9, 9])
    np.testing.assert_array_equal(data.y, np.where(data.labels == 9, 1.0, -1.0))  # frog -1, truck +1
    assert abs(data.x.mean()) < 1e-5 and abs(data.x.std() - 1) < 1e-5  # global standardisation
    # the standardisation undone gives the stored pixels back
    raw = load_cifar10(str(tmp_path))
    pix = to_pixels(data, data.x)
    for img, lab in zip(pix, data.labels):
        cands = raw.images[raw.labels == lab].astype(np.float32) / 255
        assert np.min(np.abs(cands - img).reshape(len(cands), -1).max(axis=1)) < 1e-5
    # default: rows rescaled to the sphere of radius sqrt(d); to_pixels undoes that as well
    sph = load_dataset("cifar10", jax.random.key(0), 8, str(tmp_path))
    np.testing.assert_allclose(np.linalg.norm(sph.x, axis=1), np.sqrt(3072), rtol=1e-5)
    np.testing.assert_allclose(to_pixels(sph, sph.x), pix, atol=1e-5)
    # another key, another selection; first-k classes and explicit classes
    other = load_dataset("cifar10", jax.random.key(1), 8, str(tmp_path), normalize="standard")
    assert not np.allclose(other.x, data.x)
    three = load_dataset("cifar10", jax.random.key(0), 7, str(tmp_path), classes=3)
    np.testing.assert_array_equal(np.bincount(three.labels, minlength=3), [3, 2, 2])
    np.testing.assert_array_equal(three.y, np.where(three.labels == 1, 1.0, -1.0))


def test_cifar_errors(tmp_path, monkeypatch):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"^data_dir: .*does not exist.*data_batch_1.*batches.meta"):
        load_cifar10(missing)
    monkeypatch.delenv(registry.DATA_ENV, raising=False)
    with pytest.raises(ValueError, match=r"^data_dir: .*--data-dir.*JAXRECON_DATA"):
        load_dataset("cifar10", jax.random.key(0), 4)
    monkeypatch.setenv(registry.DATA_ENV, missing)
    with pytest.raises(ValueError, match=r"^data_dir: .*nowhere"):
        load_dataset("cifar10", jax.random.key(0), 4)
    folder, _ = _write_cifar(str(tmp_path / "c"))
    path = os.path.join(folder, "data_batch_3")
    with open(path, "rb") as f:
        blob = f.read()
    with open(path, "wb") as f:
        f.write(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match=r"^data_dir: .*data_batch_3.*truncated"):
        load_cifar10(str(tmp_path / "c"))
    with pytest.raises(ValueError, match=r"^n: asked for 10 images of class 6"):
        load_dataset("cifar10", jax.random.key(0), 20, folder, split="test")
    with pytest.raises(ValueError, match=r"^classes: \[12\] out of range"):
        load_dataset("cifar10", jax.random.key(0), 4, folder, split="test", classes=(6, 12))


# --- IDX ----------------------------------------------------------------------------------------

def _idx_bytes(arr, type_code):
    header = bytes([0, 0, type_code, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def _write_mnist(folder, gz, seed=0, count=30):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    imgs = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
    labels = (np.arange(count) % 10).astype(np.uint8)
    for stem, blob in (("train-images-idx3-ubyte", _idx_bytes(imgs, 0x08)),
                       ("train-labels-idx1-ubyte", _idx_bytes(labels, 0x08))):
        if gz:
            with gzip.open(os.path.join(folder, stem + ".gz"), "wb") as f:
                f.write(blob)
        else:
            with open(os.path.join(folder, stem), "wb") as f:
                f.write(blob)
    return imgs, labels


@pytest.mark.parametrize("gz", [False, True])
def test_idx_plain_and_gzip(tmp_path, gz):
    imgs, labels = _write_mnist(str(tmp_path), gz)
    raw = load_idx_dataset(str(tmp_path), "train", "mnist")
    np.testing.assert_array_equal(raw.images, imgs)
    np.testing.assert_array_equal(raw.labels, labels)
    data = load_dataset("mnist", jax.random.key(0), 6, str(tmp_path), classes="3,5")
    assert data.x.shape == (6, 784) and data.shape == (28, 28, 1)
    np.testing.assert_array_equal(np.sort(data.labels), [3] * 3 + [5] * 3)
    fashion = load_dataset("fashion_mnist", jax.random.key(0), 4, str(tmp_path), classes=2)
    assert fashion.class_names[1] == "Trouser"


def test_idx_other_types_and_errors(tmp_path):
    arr = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7
    p = tmp_path / "f.idx"
    p.write_bytes(_idx_bytes(arr, 0x0D))
    np.testing.assert_array_equal(read_idx(str(p)), arr)
    blob = _idx_bytes(np.arange(10, dtype=np.int16) - 5, 0x0B)
    p.write_bytes(blob)
    np.testing.assert_array_equal(read_idx(str(p)), np.arange(10) - 5)
    p.write_bytes(b"\x08\x03" + blob[2:])
    with pytest.raises(ValueError, match=r"^data_dir: .*not an IDX file \(wrong magic number"):
        read_idx(str(p))
    p.write_bytes(blob[:-3])
    with pytest.raises(ValueError, match=r"^data_dir: .*truncated"):
        read_idx(str(p))
    p.write_bytes(gzip.compress(blob)[:-10])
    with pytest.raises(ValueError, match=r"^data_dir: .*(truncated|corrupt)"):
        read_idx(str(p))
    with pytest.raises(ValueError, match=r"^data_dir: .*train-images-idx3-ubyte"):
        load_idx_dataset(str(tmp_path), "train")
    with pytest.raises(ValueError, match=r"^data_dir: .*does not exist"):
        load_idx_dataset(str(tmp_path / "none"), "train")


# --- Tiny-ImageNet ------------------------------------------------------------------------------

def _write_tiny(root, wnids=("n01443537", "n01629819", "n01641577"), per_class=4, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = os.path.join(root, "tiny-imagenet-200")
    os.makedirs(os.path.join(base, "val", "images"))
    with open(os.path.join(base, "wnids.txt"), "w") as f:
        f.write("\n".join(wnids) + "\n")
    with open(os.path.join(base, "words.txt"), "w") as f:
        f.write("n01443537\tgoldfish, Carassius auratus\nn01629819\tEuropean fire salamander\n")
    ann = []
    for c, w in enumerate(wnids):
        folder = os.path.join(base, "train", w, "images")
        os.makedirs(folder)
        for k in range(per_class):
            # smooth images survive JPEG compression well enough to check the pixel layout
            yy, xx = np.mgrid[0:64, 0:64]
            img = np.stack([(xx * 4 + 40 * c) % 256, (yy * 4) % 256, np.full_like(xx, 60 * k)], -1)
            Image.fromarray(img.astype(np.uint8)).save(os.path.join(folder, f"{w}_{k}.JPEG"), quality=95)
        name = f"val_{c}.JPEG"
        Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(os.path.join(base, "val", "images", name))
        ann.append(f"{name}\t{w}\t0\t0\t63\t63")
    with open(os.path.join(base, "val", "val_annotations.txt"), "w") as f:
        f.write("\n".join(ann) + "\n")
    return base


def test_tinyimagenet_tree(tmp_path):
    _write_tiny(str(tmp_path))
    raw = load_tinyimagenet(str(tmp_path), "train", classes=2)
    assert raw.images.shape == (8, 64, 64, 3) and raw.images.dtype == np.uint8
    np.testing.assert_array_equal(raw.labels, [0] * 4 + [1] * 4)
    assert raw.class_names[:2] == ("goldfish", "European fire salamander") and raw.class_names[2] == "n01641577"
    assert abs(int(raw.images[5, 10, 20, 0]) - (20 * 4 + 40) % 256) <= 6  # channels last, rows = y
    val = load_tinyimagenet(str(tmp_path), "val", classes=(0, 2))
    np.testing.assert_array_equal(val.labels, [0, 2])  # greyscale JPEGs are converted to RGB
    assert val.images.shape == (2, 64, 64, 3)
    data = load_dataset("tinyimagenet", jax.random.key(0), 4, str(tmp_path), size=32)
    assert data.x.shape == (4, 32 * 32 * 3) and data.shape == (32, 32, 3)
    np.testing.assert_array_equal(np.sort(data.labels), [0, 0, 1, 1])
    assert registry.input_dim("tinyimagenet", 32) == 3072 and registry.input_dim("tinyimagenet") == 12288


def test_tinyimagenet_errors(tmp_path):
    with pytest.raises(ValueError, match=r"^data_dir: .*does not exist.*wnids.txt"):
        load_tinyimagenet(str(tmp_path / "none"))
    with pytest.raises(ValueError, match=r"^data_dir: no wnids.txt"):
        load_tinyimagenet(str(tmp_path))
    base = _write_tiny(str(tmp_path))
    bad = os.path.join(base, "train", "n01443537", "images", "n01443537_1.JPEG")
    with open(bad, "rb") as f:
        blob = f.read()
    with open(bad, "wb") as f:
        f.write(blob[:40])
    with pytest.raises(ValueError, match=r"^data_dir: image .*truncated"):
        load_tinyimagenet(str(tmp_path), classes=1)


# --- embedded -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name,shape", [("digits", (8, 8, 1)), ("photos16", (16, 16, 3)),
                                        ("photos32", (32, 32, 3)), ("photos64", (64, 64, 3))])
def test_embedded_offline(name, shape, monkeypatch):
    monkeypatch.delenv(registry.DATA_ENV, raising=False)
    data = load_dataset(name, jax.random.key(3), 12)
    assert data.shape == shape and data.x.shape == (12, int(np.prod(shape))) and data.x.dtype == np.float32
    assert registry.input_dim(name) == data.x.shape[1]
    np.testing.assert_allclose(np.linalg.norm(data.x, axis=1), np.sqrt(data.x.shape[1]), rtol=1e-5)
    assert set(np.unique(data.y)) == {-1.0, 1.0} and np.all(np.isfinite(data.x))
    assert len(np.unique(data.x, axis=0)) == 12  # no image drawn twice
    pix = to_pixels(data, data.x)
    assert pix.shape == (12,) + shape and pix.min() >= 0 and pix.max() <= 1
    assert len(data.class_names) == (10 if name == "digits" else 6)
    np.testing.assert_array_equal(np.bincount(data.labels, minlength=len(data.class_names)),
                                  registry.per_class_counts(12, len(data.class_names)))


def test_registry_validation():
    with pytest.raises(ValueError, match=r"^data: unknown value 'cifar100'"):
        load_dataset("cifar100", jax.random.key(0), 4)
    with pytest.raises(ValueError, match=r"^classes: expected"):
        load_dataset("digits", jax.random.key(0), 4, classes="a,b")
    with pytest.raises(ValueError, match=r"^normalize: "):
        load_dataset("digits", jax.random.key(0), 4, normalize="minmax")
    assert registry.parse_classes("6,9") == (6, 9) and registry.parse_classes("3") == 3
    assert registry.per_class_counts(10, 6) == [2, 2, 2, 2, 1, 1]
