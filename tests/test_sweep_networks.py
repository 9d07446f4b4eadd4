"""Network law sweeps (jaxrecon sweep --model two_layer|resnet): p counts the head, all-layer
targets carry their floor, the rows record loss_at_truth / params_total / train_steps, and a
network sweep resumes like a random-features one."""

import numpy as np
import pytest

from jaxrecon.sweeps import SweepConfig, sweep
from jaxrecon.sweeps.points import grid

NET = dict(d=[5], n=[2], p_over_dn=[0.5, 6], seeds=2, steps=1500, model="two_layer", train_steps=4000)


def _run(tmp_path, name, **over):
    lines = []
    table = sweep(SweepConfig(**{**NET, **over}), out=tmp_path / name, progress=False, plots=False, log=lines.append)
    return table, lines


def test_grid_counts_the_head_and_validates():
    r = SweepConfig(**{**NET, "classes": 3, "p_over_dn": [0.5, 2.1]}).resolved()
    assert [pt.p for pt in grid(r)] == [6, 21]  # whole widths: 2 and 7 hidden units x 3 outputs
    assert {pt.model for pt in grid(r)} == {"two_layer"}
    with pytest.raises(ValueError, match="^train: applies to network models"):
        SweepConfig(d=[5], n=[2], p_over_dn=[1], train="head").resolved()
    with pytest.raises(ValueError, match="^block_size: streamed V applies to random features"):
        SweepConfig(**NET, block_size=8).resolved()
    with pytest.raises(ValueError, match="^d: the resnet needs image-shaped inputs"):
        SweepConfig(**{**NET, "model": "resnet"}).resolved()


def test_head_only_sweep_is_in_the_span_and_recovers_above_the_threshold(tmp_path):
    t, _ = _run(tmp_path, "head", train="head")
    assert np.all(t["loss_at_truth"] <= 1e-10)  # theta exactly in the head's span at the training set
    assert np.all(np.isnan(t["floor"]))  # no floor: the attack runs to its tolerance
    high = t["p"] == t["p"].max()
    assert t["identified"][high].all() and not t["identified"][~high].any()
    assert np.all(t["params_total"] == 5 * t["p"] + t["p"])  # W1 (d x width) and the head (width x 1)
    assert np.all(t["train_steps"] > 0)


def test_all_layer_sweep_stops_at_its_floor_and_resumes(tmp_path):
    t, _ = _run(tmp_path, "all")
    assert np.all(t["train_loss"][t["train_steps"] < NET["train_steps"]] <= 1e-7)
    assert np.all(t["loss_at_truth"] > 1e-10)  # all layers trained: theta off the span
    np.testing.assert_allclose(t["floor"], t["loss_at_truth"], rtol=1e-3)  # float32 in the program vs float64
    high = t["p"] == t["p"].max()
    assert set(t["status"][high]) <= {"floor", "plateau", "converged"}
    # error within a small factor of sqrt(floor) above the threshold; far from it below
    assert np.all(t["error_sign"][high] <= 5 * np.sqrt(t["loss_at_truth"][high]) + 1e-3)
    t2, lines = _run(tmp_path, "all")
    assert any("2/2 grid points already done" in ln for ln in lines)
    for col in ("error_sign", "loss_at_truth", "train_steps", "status"):
        assert list(t2[col]) == list(t[col])
