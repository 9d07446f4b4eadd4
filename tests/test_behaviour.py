"""Recorded behaviour cases (``tests/behaviour_cases.py``) still hold after refactors of the attack.

``published`` and ``adam`` are deterministic first-order programs: same numbers (within 1e-6).
``adam-lm`` has chaotic LM trajectories: the same outcome per seed (converged, exact), step counts
within a few percent.
"""

import json

import numpy as np
import pytest

import behaviour_cases as cases

RECORDED = json.loads(cases.DATA.read_text())


@pytest.mark.parametrize("storage", list(cases.STORAGE))
@pytest.mark.parametrize("method", ["published", "adam"])
def test_first_order_methods_give_the_recorded_numbers(method, storage):
    got, want = cases.attack_case(method, storage), RECORDED[f"{method}/{storage}"]
    assert got["status"] == want["status"] and got["steps"] == want["steps"]
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got["x_hat"], want["x_hat"], rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("storage", list(cases.STORAGE))
def test_adam_lm_gives_the_recorded_outcomes(storage):
    got, want = cases.attack_case("adam-lm", storage), RECORDED[f"adam-lm/{storage}"]
    assert got["status"] == want["status"]
    assert [e <= 1e-3 for e in got["error_sign"]] == [e <= 1e-3 for e in want["error_sign"]]
    np.testing.assert_allclose(got["steps"], want["steps"], rtol=0.05)


def test_sweep_gives_the_recorded_rows():
    got, want = cases.sweep_case(), RECORDED["sweep"]
    for c in ("d", "n", "p", "method", "seed", "status"):
        assert got[c] == want[c], c
    first_order = [m != "adam-lm" for m in want["method"]]
    np.testing.assert_allclose(np.asarray(got["loss"])[first_order], np.asarray(want["loss"])[first_order],
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got["steps"], want["steps"], rtol=0.05)
