"""Image figures of the paper: ground truth over matched reconstructions (Fig. 1 right, Fig. 4, Fig. 5).

``recon.png`` puts the training images in odd rows and the reconstructions matched to them (the
Hungarian matching of :func:`jaxrecon.match`) in the even rows below, de-standardised for display
(:func:`jaxrecon.data.registry.to_pixels`). Each training image is captioned ``training i``, and
the reconstruction below it ``reconstruction i`` over its error ``min_s ||x_i - s x_hat|| / sqrt(d)``.
A reconstruction closer to ``-x_i`` than to ``x_i`` (ReLU's sign ambiguity, paper Remark 1 and
Fig. 4) gets a red frame and a ``-`` mark; with ``unflip=True`` it is shown multiplied by ``-1``
(what the attack recovers up to sign), with ``unflip=False`` as returned (a photographic negative,
as in the paper's Fig. 4).

Each figure comes with per-image PSNR and SSIM of the matched pairs
(:func:`jaxrecon.metrics.image_metrics`).
"""

from __future__ import annotations

import math
import textwrap
from typing import Optional, Sequence

import numpy as np

from .metrics import image_metrics, psnr, ssim  # noqa: F401  (psnr, ssim: re-exported)

FLIP_COLOR = (1.0, 0.0, 0.0)  # frame of a sign-flipped match (pure red, so tests can find it)
TITLE_PT = 9  # title font size


def matched_pixels(data, x_hat, m, unflip: bool = True):
    """Training images and their matched reconstructions as pixels, in training order.

    ``data`` is an :class:`~jaxrecon.data.registry.ImageData`, ``m`` the :class:`~jaxrecon.Match`
    of ``data.x`` and ``x_hat``. Reconstruction ``i`` is ``x_hat[m.perm[i]]`` (times ``-1`` when
    ``unflip`` and the match is flipped), shown with the norm of training image ``i`` (the row scale
    the attack cannot identify for a positively homogeneous activation; see the registry docs).
    """
    from .data.registry import to_pixels

    x_hat = np.asarray(x_hat, np.float64)[np.asarray(m.perm)]
    if unflip:
        x_hat = np.where(np.asarray(m.flipped)[:, None], -x_hat, x_hat)
    return to_pixels(data, data.x), to_pixels(data, x_hat)


def recon_figure(truth: np.ndarray, recon: np.ndarray, path=None, *, errors: Optional[Sequence] = None,
                 flipped: Optional[Sequence] = None, captions: Optional[Sequence[str]] = None,
                 ncols: int = 10, cell: float = 1.0, dpi: int = 100, title: Optional[str] = None):
    """Ground truth in odd rows, reconstructions in even rows (paper Fig. 1 right); pair ``i`` is
    captioned ``training i`` over ``reconstruction i`` (then the reconstruction's error and captions).

    Args:
      truth, recon: ``(m, H, W, C)`` pixels in [0, 1] (``C`` = 1 or 3), pair ``i`` = column
        ``i % ncols`` of row pair ``i // ncols``.
      path: where to save the PNG (``None``: only return the figure).
      errors: per-pair error written under each reconstruction.
      flipped: per-pair bool; flipped matches get a red frame and a ``-`` mark.
      captions: extra per-pair text (e.g. PSNR) appended to the error.
      ncols, cell, dpi: columns, inches per image cell and resolution; the PNG is exactly
        ``ncols*cell*dpi`` by ``2*ceil(m/ncols)*cell*dpi`` pixels (plus ``0.4*dpi`` for a title,
        and ``0.16*dpi`` for each line more when it wraps to the figure's width).

    Returns the matplotlib figure.
    """
    from matplotlib.figure import Figure  # no pyplot: no backend or global state involved

    truth, recon = np.asarray(truth), np.asarray(recon)
    if truth.shape != recon.shape or truth.ndim != 4:
        raise ValueError(f"recon: must match truth's shape (m, H, W, C); got {truth.shape} and {recon.shape}")
    m = truth.shape[0]
    ncols = max(1, min(int(ncols), m))
    blocks = math.ceil(m / ncols)
    # the title wraps to the figure's width (about 0.6 em per character at 9 pt), 0.16 inch a line
    lines = textwrap.wrap(title, width=max(12, int(ncols * cell * 72 / (0.6 * TITLE_PT)))) if title else []
    top = 0.4 + 0.16 * (len(lines) - 1) if lines else 0.0
    fig_h = 2 * blocks * cell + top
    fig = Figure(figsize=(ncols * cell, fig_h), dpi=dpi)
    if lines:
        fig.text(0.5, 1 - 0.5 * top / fig_h, "\n".join(lines), ha="center", va="center", fontsize=TITLE_PT,
                 linespacing=1.2)
    pad = 0.06  # fraction of a cell left blank on each side (room for captions)
    label_h = 0.16

    def show(img, row, col, color=None):
        x0 = (col + pad) / ncols
        ax_h = (cell * (1 - 2 * pad - label_h)) / fig_h
        y0 = 1 - (top + (row + 1) * cell) / fig_h + (label_h * cell) / fig_h + pad * cell / fig_h
        ax = fig.add_axes([x0, y0, (1 - 2 * pad) / ncols, ax_h])
        if img.shape[-1] == 1:
            ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        else:
            ax.imshow(img, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for sp in ax.spines.values():
            sp.set_color(color or (0.6, 0.6, 0.6))
            sp.set_linewidth(3.0 if color else 0.5)
        return ax

    for i in range(m):
        b, c = divmod(i, ncols)
        ax = show(truth[i], 2 * b, c)
        ax.set_xlabel(f"training {i}", fontsize=6, color="0.25", labelpad=1)
        flip = bool(flipped[i]) if flipped is not None else False
        ax = show(recon[i], 2 * b + 1, c, FLIP_COLOR if flip else None)
        text = []
        if errors is not None:
            text.append(f"{float(errors[i]):.3f}")
        if captions is not None:
            text.append(str(captions[i]))
        if flip:
            text.append("(-)")
        ax.set_xlabel("\n".join([f"reconstruction {i}", *([" ".join(text)] if text else [])]), fontsize=6,
                      color="red" if flip else "black", labelpad=1, linespacing=1.0)
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig


def save_recon(data, x_hat, m, path, *, unflip: bool = True, ncols: int = 10, title: Optional[str] = None,
               cell: float = 1.0, dpi: int = 100) -> list:
    """Write ``recon.png`` for one reconstruction and return per-image metrics.

    Returns one dict per training image: ``index, label, class, error, flipped, psnr, ssim``
    (pixels of the matched, unflipped reconstruction against the training image).
    """
    truth, recon = matched_pixels(data, x_hat, m, unflip=True)
    metrics = image_metrics(truth, recon)
    shown = recon if unflip else matched_pixels(data, x_hat, m, unflip=False)[1]
    captions = [f"{p:.0f}dB" if np.isfinite(p) else "inf dB" for p in metrics["psnr"]]
    recon_figure(truth, shown, path, errors=m.row_error, flipped=m.flipped, captions=captions,
                 ncols=ncols, cell=cell, dpi=dpi, title=title)
    return [{"index": i, "label": int(data.labels[i]), "class": data.class_names[int(data.labels[i])],
             "error": float(m.row_error[i]), "flipped": bool(m.flipped[i]),
             "psnr": float(metrics["psnr"][i]), "ssim": float(metrics["ssim"][i])}
            for i in range(len(truth))]
