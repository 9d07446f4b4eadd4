"""recon.png and its per-image metrics; image datasets through the runner and the CLI."""

import json

import jax
import matplotlib.image as mpimg
import numpy as np
import pytest

import jaxrecon as jr
from jaxrecon.cli import main
from jaxrecon.data.registry import load_dataset
from jaxrecon.image_plots import matched_pixels, recon_figure, save_recon
from jaxrecon.runner import ReconstructConfig, run_reconstruction


def _red_pixels(path):
    img = mpimg.imread(path)[..., :3]
    return int(np.sum((img[..., 0] > 0.9) & (img[..., 1] < 0.1) & (img[..., 2] < 0.1)))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", jax.random.key(0), 6)


def test_recon_png_size_and_planted_sign_flip(tmp_path, digits):
    """A reconstruction equal to the data with one row negated: that match is flipped, framed in red."""
    x_hat = np.array(digits.x[::-1])  # permuted ...
    x_hat[2] *= -1  # ... and one row sign-flipped (it matches training image n-1-2 = 3)
    m = jr.match(digits.x, x_hat)
    assert m.error_sign < 1e-6 and m.flipped.tolist() == [False, False, False, True, False, False]
    rows = save_recon(digits, x_hat, m, tmp_path / "recon.png", ncols=4)
    img = mpimg.imread(tmp_path / "recon.png")
    assert img.shape[:2] == (2 * 2 * 100, 4 * 100)  # 2 row pairs of 4 columns, 1 inch at 100 dpi
    assert _red_pixels(tmp_path / "recon.png") > 50  # the frame (grey images have no pure red)
    assert [r["flipped"] for r in rows] == m.flipped.tolist()
    assert all(np.isinf(r["psnr"]) and r["ssim"] == pytest.approx(1.0) for r in rows)  # unflipped = exact
    # same figure without the flip: no red at all
    m2 = jr.match(digits.x, digits.x)
    save_recon(digits, digits.x, m2, tmp_path / "plain.png", ncols=4, title="t")
    assert _red_pixels(tmp_path / "plain.png") == 0
    assert mpimg.imread(tmp_path / "plain.png").shape[:2] == (440, 400)  # + 0.4 inch title
    # shown as returned (a negative): the flipped pair's pixels differ from the truth
    truth, shown = matched_pixels(digits, x_hat, m, unflip=False)
    assert np.abs(truth[3] - shown[3]).max() > 0.5 and np.abs(truth[0] - shown[0]).max() < 1e-6


def test_recon_figure_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"^recon: "):
        recon_figure(np.zeros((2, 8, 8, 1)), np.zeros((3, 8, 8, 1)))


def test_runner_writes_recon_png_for_images(tmp_path):
    cfg = ReconstructConfig(data="digits", n=4, p_over_dn=8, seeds=2, steps=40, method="adam", chunk=20).resolve()
    summary = run_reconstruction(cfg, out=tmp_path, progress=False, log=None)
    assert cfg.d == 64 and cfg.p == 8 * 64 * 4
    assert (tmp_path / "recon.png").is_file()
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["images"]["dataset"] == "digits" and saved["images"]["shape"] == [8, 8, 1]
    assert len(saved["images"]["figure"]) == 4 and len(saved["images"]["per_seed"]) == 2
    assert {"psnr_median", "ssim_mean"} <= set(summary["results"][0])
    arrays = np.load(tmp_path / "arrays.npz")
    assert arrays["x"].shape == (4, 64) and arrays["x_hat"].shape == (2, 4, 64)


def test_cli_data_flags(tmp_path, capsys, monkeypatch):
    assert main(["reconstruct", "--data", "digits", "--d", "100", "--n", "4", "--p", "100"]) == 2
    assert "d: --data digits has d = H*W*C = 64" in capsys.readouterr().err
    monkeypatch.delenv("JAXRECON_DATA", raising=False)
    assert main(["reconstruct", "--data", "cifar10", "--n", "4", "--p-over-dn", "2"]) == 2
    assert "--data-dir:" in capsys.readouterr().err
    assert main(["reconstruct", "--data", "cifar10", "--data-dir", str(tmp_path / "none"), "--n", "4",
                 "--p-over-dn", "2"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["reconstruct", "--data", "nope", "--n", "4", "--p", "10"]) == 2
    assert "data: unknown value 'nope'" in capsys.readouterr().err


def test_long_title_fits_a_narrow_figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    title = ("digits: n=4, d=64, p=2048 (p/dn=8), seed 0, error_sign=0.0123 and a little more text to "
             "make it long")
    fig = recon_figure(np.zeros((4, 8, 8, 1)), np.zeros((4, 8, 8, 1)), ncols=10, title=title)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    box = fig.texts[0].get_window_extent(canvas.get_renderer())
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height
    assert " ".join(fig.texts[0].get_text().split()) == title  # wrapped, nothing dropped
    lines = fig.texts[0].get_text().count("\n") + 1
    top = (0.4 + 0.16 * (lines - 1)) * fig.dpi  # the band above the first row of images
    assert box.y0 >= fig.bbox.height - top - 1
