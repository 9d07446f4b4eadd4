"""Thresholds: the logistic fit of P(identified) (midpoint and width, bootstrap intervals)."""

import math

import numpy as np
import pytest

from jaxrecon.thresholds import THRESHOLD_COLUMNS, estimate_thresholds, fit_logistic, write_thresholds

GRID = np.array([0.5, 0.75, 1, 1.25, 1.5, 2, 3])


def _bernoulli_table(rng, m=math.log(1.3), s=0.2, seeds=20, d=10, n=5):
    rows = {c: [] for c in ("d", "n", "p", "activation", "method", "seed", "error_abs", "error_sign")}
    for seed in range(seeds):
        for r in GRID:
            ident = rng.random() < 1 / (1 + math.exp(-(math.log(r) - m) / s))
            err = 1e-6 if ident else 0.6
            for c, v in zip(rows, (d, n, round(r * d * n), "relu", "adam-lm", seed, err, err)):
                rows[c].append(v)
    return {c: np.asarray(v) for c, v in rows.items()}


def test_logistic_fit_recovers_midpoint_and_width():
    rng = np.random.default_rng(1)
    x = np.log(np.repeat(GRID, 400))
    m0, s0 = math.log(1.3), 0.2
    y = (rng.random(x.size) < 1 / (1 + np.exp(-(x - m0) / s0))).astype(float)
    m, s = fit_logistic(x, y)
    assert m == pytest.approx(m0, abs=0.03) and s == pytest.approx(s0, rel=0.15)
    # batched weights (bootstrap replicates) give the same fit as repeated rows
    mb, sb = fit_logistic(x, y, np.ones((3, x.size)))
    np.testing.assert_allclose(mb, m, rtol=1e-8)
    np.testing.assert_allclose(sb, s, rtol=1e-8)


def test_bootstrap_intervals_cover_the_truth_in_most_repetitions():
    rng = np.random.default_rng(0)
    covered_m = covered_s = 0
    reps = 30
    for _ in range(reps):
        (r,) = estimate_thresholds(_bernoulli_table(rng), n_boot=300, seed=int(rng.integers(1 << 30)))
        covered_m += r["logit_lo"] <= 1.3 <= r["logit_hi"]
        covered_s += r["logit_width_lo"] <= 0.2 <= r["logit_width_hi"]
        assert r["logit_found"] > 0.9 and r["logit_separated"] == 0
    assert covered_m >= 0.8 * reps and covered_s >= 0.6 * reps


def test_separated_and_degenerate_outcomes():
    x = np.log(np.repeat(GRID, 20))
    y = (x > np.log(1.1)).astype(float)  # every 0 below every 1: the ML slope is infinite
    m, s = fit_logistic(x, y)
    assert np.isfinite(m) and np.isfinite(s) and 0 < s < 0.05  # finite by the ridge
    assert math.exp(m) == pytest.approx(math.sqrt(1.0 * 1.25), rel=0.02)  # the middle of the gap in log p
    for same in (np.zeros_like(x), np.ones_like(x)):  # no crossing
        assert all(math.isnan(v) for v in fit_logistic(x, same))
    assert all(math.isnan(v) for v in fit_logistic(x, 1.0 - y))  # decreasing: no threshold
    assert all(math.isnan(v) for v in fit_logistic(np.zeros(5), np.array([0, 1, 0, 1, 1.0])))  # one x
    with pytest.raises(ValueError, match="y: must hold only 0 and 1"):
        fit_logistic(x, np.full_like(x, 0.5))
    with pytest.raises(ValueError, match="weights: must be non-negative"):
        fit_logistic(x, y, -np.ones_like(x))


def test_separated_study_is_flagged_and_written(tmp_path):
    rows = {c: [] for c in ("d", "n", "p", "activation", "method", "seed", "error_abs", "error_sign")}
    for seed in range(5):
        for r in GRID:
            err = 1e-6 if r >= 1.25 else 0.6
            for c, v in zip(rows, (10, 5, round(r * 50), "relu", "adam-lm", seed, err, err)):
                rows[c].append(v)
    (r,) = estimate_thresholds({c: np.asarray(v) for c, v in rows.items()}, n_boot=50)
    assert r["logit_separated"] == 1 and np.isfinite(r["logit_width"])
    assert 1.0 < r["logit_lo"] <= r["logit_p_over_dn"] <= r["logit_hi"] < 1.25
    write_thresholds(tmp_path / "t.csv", [r])
    head, line = (tmp_path / "t.csv").read_text().splitlines()
    assert tuple(head.split(",")) == THRESHOLD_COLUMNS and len(line.split(",")) == len(THRESHOLD_COLUMNS)
