"""Real images that ship with scikit-learn and scikit-image: no data directory, no download.

* ``digits``: scikit-learn's handwritten digits (1797 images, 8x8 grey, values 0..16, 10 classes;
  UCI "Optical Recognition of Handwritten Digits", CC BY 4.0).
* ``photos16`` / ``photos32`` / ``photos64``: non-overlapping ``s x s`` patches of six colour
  photographs, one class per photograph. Each photograph is first downscaled (anti-aliased) so that
  its short side is ``4 s`` pixels, so that a patch holds about a sixteenth of the scene (a face, a
  cup, a flower) rather than a few pixels of texture; patches whose pixel std is below
  ``MIN_PATCH_STD`` (flat sky, blank wall) are dropped.

  ========== ================ =================================================
  class      source           licence
  ========== ================ =================================================
  astronaut  scikit-image     public domain (NASA)
  chelsea    scikit-image     CC0 (Stefan van der Walt)
  coffee     scikit-image     CC0 (Rachel Michetti)
  rocket     scikit-image     public domain (SpaceX)
  china      scikit-learn     CC BY 2.0 (danielbuechele, Flickr)
  flower     scikit-learn     CC BY 2.0 (vultilion, Flickr)
  ========== ================ =================================================
"""

from __future__ import annotations

import functools

import numpy as np

from .base import RawImages

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "china", "flower")
PATCH_SIZES = {"photos16": 16, "photos32": 32, "photos64": 64}
MIN_PATCH_STD = 0.04
DIGIT_NAMES = tuple(str(i) for i in range(10))


def photographs() -> dict:
    """The six bundled photographs as ``(H, W, 3)`` uint8 arrays, by name (read from the packages)."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    out = {name: np.asarray(getattr(skimage.data, name)()) for name in PHOTOS[:4]}
    sample = load_sample_images()
    for path, im in zip(sample.filenames, sample.images):
        for name in PHOTOS[4:]:
            if path.endswith(f"{name}.jpg"):
                out[name] = np.asarray(im)
    missing = [p for p in PHOTOS if p not in out]
    if missing:
        raise ValueError(f"data: bundled photographs {missing} not found in scikit-image / scikit-learn")
    return {p: out[p][..., :3] for p in PHOTOS}


def patches(image: np.ndarray, size: int) -> np.ndarray:
    """Downscale ``image`` (short side -> ``4 size``) and cut it into ``size x size`` patches.

    Returns ``(m, size, size, 3)`` float32 in [0, 1], row-major over the patch grid.
    """
    from skimage.transform import resize

    h, w = image.shape[:2]
    scale = 4 * size / min(h, w)
    hh, ww = int(round(h * scale)), int(round(w * scale))
    small = resize(image.astype(np.float32) / 255.0, (hh, ww, image.shape[2]), anti_aliasing=True,
                   preserve_range=True).astype(np.float32)
    gh, gw = hh // size, ww // size
    small = small[: gh * size, : gw * size]
    return small.reshape(gh, size, gw, size, -1).swapaxes(1, 2).reshape(gh * gw, size, size, -1)


@functools.lru_cache(maxsize=4)
def _photo_patches(size: int) -> RawImages:
    imgs, labels = [], []
    for c, (name, im) in enumerate(photographs().items()):
        pt = patches(im, size)
        keep = pt.reshape(len(pt), -1).std(axis=1) >= MIN_PATCH_STD
        imgs.append(pt[keep])
        labels.append(np.full(int(keep.sum()), c))
    return RawImages(np.concatenate(imgs), np.concatenate(labels), PHOTOS)


def load_embedded(name: str) -> RawImages:
    """Raw images of an embedded dataset (``digits``, ``photos16``, ``photos32``, ``photos64``)."""
    if name == "digits":
        from sklearn.datasets import load_digits

        dg = load_digits()
        images = (dg.images / 16.0).astype(np.float32)[..., None]
        return RawImages(images, dg.target.astype(np.int64), DIGIT_NAMES)
    if name in PATCH_SIZES:
        raw = _photo_patches(PATCH_SIZES[name])
        return RawImages(raw.images.copy(), raw.labels.copy(), raw.class_names)
    raise ValueError(f"data: unknown embedded dataset {name!r}; allowed: {['digits', *PATCH_SIZES]}")
