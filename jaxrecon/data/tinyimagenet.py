"""Tiny-ImageNet-200 (http://cs231n.stanford.edu/tiny-imagenet-200.zip), read from its JPEG tree.

Expected layout (the extracted ``tiny-imagenet-200`` folder, or its parent)::

    wnids.txt                                  200 WordNet ids, one per line (class order)
    words.txt                                  optional: "wnid<TAB>names" (class names)
    train/<wnid>/images/<wnid>_<k>.JPEG        64x64 RGB (some are greyscale: converted)
    val/val_annotations.txt                    "file<TAB>wnid<TAB>..." per line
    val/images/val_<k>.JPEG

Only the selected classes are read (100k JPEGs would take minutes). Nothing is downloaded. The names
listed in ``wnids.txt`` and ``val_annotations.txt`` are names inside the dataset folder: an entry
that is an absolute path or climbs out with ``..`` is refused with one line naming the file and the
entry (:func:`jaxrecon.data.base.member`).
"""

from __future__ import annotations

import os

import numpy as np

from .base import RawImages, check_not_a_file, member

SUBDIR = "tiny-imagenet-200"
SIZE = (64, 64)
URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


def _root(data_dir: str) -> str:
    check_not_a_file(data_dir)
    if not os.path.isdir(data_dir):
        raise ValueError(f"data_dir: directory {data_dir!r} does not exist. Put the extracted {SUBDIR}/ ({URL}: "
                         f"wnids.txt, train/<wnid>/images/*.JPEG, val/val_annotations.txt) there; nothing is downloaded")
    for cand in (os.path.join(data_dir, SUBDIR), data_dir):
        if os.path.isfile(os.path.join(cand, "wnids.txt")):
            return cand
    raise ValueError(f"data_dir: no wnids.txt in {data_dir!r} or {SUBDIR}/ inside it. Expected the extracted "
                     f"{SUBDIR}/ ({URL}): wnids.txt, train/<wnid>/images/*.JPEG, val/val_annotations.txt")


def _read_jpeg(path: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.size != SIZE:
                raise ValueError(f"data_dir: image {path!r} is {im.size[0]}x{im.size[1]}; Tiny-ImageNet images are "
                                 f"{SIZE[0]}x{SIZE[1]}")
            return np.asarray(im.convert("RGB"), np.uint8)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise ValueError(f"data_dir: image {path!r} is truncated or not an image ({e})") from None


def _lines(path: str) -> list:
    """The lines of a text file of the dataset, as one-line errors when it is not text."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"data_dir: {path!r} is not a text file (UTF-8 lines expected)") from None


def load_tinyimagenet(data_dir: str, split: str = "train", classes=None) -> RawImages:
    """Images ``(N, 64, 64, 3)`` uint8 of the selected classes (indices into ``wnids.txt``).

    ``classes``: tuple of indices, an int ``k`` (first ``k``), or ``None`` (all 200: slow).
    ``split``: ``train`` or ``val`` (``test`` is read as ``val``: the test set has no labels).
    """
    root = _root(data_dir)
    wnids_file = member(root, "wnids.txt")
    wnids = [w.strip() for w in _lines(wnids_file) if w.strip()]
    if not wnids:
        raise ValueError(f"data_dir: {wnids_file!r} is empty")
    train_dir = os.path.join(root, "train")
    seen = set()
    for w in wnids:  # each names a folder of train/: refused when it is a path out of it
        member(train_dir, w, listed_in=wnids_file)
        if w in seen:
            raise ValueError(f"data_dir: {wnids_file!r} lists the class {w!r} twice")
        seen.add(w)
    names = dict.fromkeys(wnids)
    words = member(root, "words.txt")
    if os.path.isfile(words):
        for line in _lines(words):
            parts = line.split("\t")
            if len(parts) >= 2 and parts[0] in names:
                names[parts[0]] = parts[1].split(",")[0].strip()
    class_names = tuple(names[w] or w for w in wnids)
    if classes is None:
        sel = range(len(wnids))
    elif isinstance(classes, int):
        sel = range(min(classes, len(wnids)))
    else:
        sel = [c for c in classes if 0 <= c < len(wnids)]  # out-of-range ones are reported by the registry
    files = []
    if split == "train":
        for c in sel:
            folder = os.path.join(member(train_dir, wnids[c], listed_in=wnids_file), "images")
            if not os.path.isdir(folder):
                raise ValueError(f"data_dir: Tiny-ImageNet class folder {folder!r} is missing")
            files += [(member(folder, f), c) for f in sorted(os.listdir(folder))
                      if f.lower().endswith((".jpeg", ".jpg", ".png"))]
    else:
        ann = member(root, os.path.join("val", "val_annotations.txt"))
        if not os.path.isfile(ann):
            raise ValueError(f"data_dir: {ann!r} is missing (Tiny-ImageNet validation labels)")
        index = {w: i for i, w in enumerate(wnids)}
        wanted = set(sel)
        images_dir = os.path.join(root, "val", "images")
        for line in _lines(ann):
            parts = line.split("\t")
            if len(parts) < 2:
                continue
            path = member(images_dir, parts[0], listed_in=ann)  # every entry, whichever class it has
            if index.get(parts[1].strip()) in wanted:
                files.append((path, index[parts[1].strip()]))
        files.sort()
    if not files:
        raise ValueError(f"data_dir: no Tiny-ImageNet {split} images found for classes {list(sel)} in {root!r}")
    images = [_read_jpeg(p) for p, _ in files]
    return RawImages(np.stack(images), np.array([c for _, c in files], np.int64), class_names)
