"""The figures say what they show: recon.png's rows are captioned, finite_size.png's markers explained."""

import numpy as np

from jaxrecon.image_plots import recon_figure
from jaxrecon.plotting import finite_size_figure


def _texts(ax):
    return [ax.get_xlabel(), *(t.get_text() for t in (ax.get_legend().get_texts() if ax.get_legend() else []))]


def test_recon_figure_captions_training_and_reconstruction_rows():
    rng = np.random.default_rng(0)
    truth = rng.uniform(size=(3, 4, 4, 1))
    fig = recon_figure(truth, truth[::-1], ncols=2, errors=[0.1, 0.2, 0.3], flipped=[False, True, False])
    labels = [ax.get_xlabel() for ax in fig.axes]  # truth, reconstruction, truth, ... in pair order
    assert labels[0::2] == ["training 0", "training 1", "training 2"]
    assert [lab.splitlines()[0] for lab in labels[1::2]] == ["reconstruction 0", "reconstruction 1",
                                                              "reconstruction 2"]
    assert labels[3] == "reconstruction 1\n0.200 (-)"  # its error, and the sign-flip mark
    # the figure keeps its size: captions use the space under each image
    assert tuple(fig.get_size_inches()) == (2.0, 4.0)


def _thresholds(separated):
    rows = []
    for (d, n), mid, sep in zip(((10, 4), (20, 5)), (1.3, 1.2), separated):
        rows.append({"d": d, "n": n, "activation": "relu", "method": "auto", "logit_p_over_dn": mid,
                     "logit_lo": mid - 0.1, "logit_hi": mid + 0.1, "threshold_p_over_dn": mid + 0.05,
                     "logit_width": 0.1, "logit_width_lo": 0.05, "logit_width_hi": 0.2, "logit_separated": sep})
    return rows


def test_finite_size_figure_explains_its_markers():
    table = {"d": np.array([10, 20]), "n": np.array([4, 5]), "p": np.array([100, 400])}
    fig = finite_size_figure(table, thresholds=_thresholds((0, 1)))
    top, bottom = fig.axes
    top_text, bottom_text = " ".join(_texts(top)), " ".join(_texts(bottom))
    assert "95 % CI" in top_text and "error drops below" in top_text and "counting" in top_text
    assert "logistic scale s" in bottom_text and "perfectly separated" in bottom_text  # the triangle
    assert "(d, n)" in bottom.get_xlabel()  # the point labels
    fig = finite_size_figure(table, thresholds=_thresholds((0, 0)))  # no triangle drawn: none explained
    assert "perfectly separated" not in " ".join(_texts(fig.axes[1]))
