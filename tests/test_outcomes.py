"""Solved vs identified: tolerances, the results.csv columns, old files read and resumed."""

import importlib.util
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from jaxrecon.metrics import match
from jaxrecon.outcomes import (IDENTIFIED_TOL, identified, method_tolerance, row_outcomes, solved,
                               solved_tolerance)
from jaxrecon.sweeps import COLUMNS, SweepConfig, append_rows, grid, prepare_out, read_results, rows_text, to_table
from jaxrecon.sweeps.store import OLD_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(name="tiny", d=[4], n=[2], p_over_dn=[0.5, 2, 8], method=["adam"], seeds=2, steps=2000,
            pad_p="max", x64=True)


def test_solved_tolerance_by_form_and_dtype():
    # 1e-10 wherever the loss resolves it; only the kernel form in float32 has a higher floor (8 eps)
    assert solved_tolerance("float32", "residual") == 1e-10
    assert solved_tolerance("float64", "residual") == 1e-10
    assert solved_tolerance("float64", "kernel") == 1e-10
    assert solved_tolerance(np.float32, "kernel") == pytest.approx(8 * np.finfo(np.float32).eps)
    assert 4.8e-7 < solved_tolerance("float32", "kernel") < 1e-6  # above the measured |L(X)| <= 4.8e-7
    assert method_tolerance("published") == solved_tolerance("float32", "kernel")
    assert method_tolerance("adam-lm", "float64") == method_tolerance("adam", "float32") == 1e-10
    assert method_tolerance("no-longer-a-method") == solved_tolerance("float32", "kernel")
    with pytest.raises(ValueError, match="loss_form: must be one of"):
        solved_tolerance("float32", "dense")
    with pytest.raises(ValueError, match="dtype: must be a floating dtype"):
        solved_tolerance("int32")


def test_solved_and_identified_elementwise():
    assert solved([0.0, 1e-10, 2e-10, np.nan, np.inf], 1e-10).tolist() == [True, True, False, False, False]
    assert identified([0.0, IDENTIFIED_TOL, 2e-3, np.nan]).tolist() == [True, True, False, False]


def _rows(pt, seeds=2, loss=(1e-12, 1e-4), err=(1e-6, 0.5)):
    return [{"d": pt.d, "n": pt.n, "p": pt.p, "p_over_dn": pt.p_over_dn, "activation": pt.activation,
             "method": pt.method, "seed": s, "train_loss": 0.0, "loss": loss[s], "error_abs": err[s],
             "error_sign": err[s], "residual": 0.1, "recovered": 0.0, "steps": 10, "status": "budget",
             "seconds": 1.0, "compile_seconds": 0.0} for s in range(seeds)]


def _old_text(rows):
    """``rows`` as a results.csv written before the solved/identified columns."""
    new = rows_text(rows).splitlines()
    k = len(OLD_COLUMNS)
    return ",".join(OLD_COLUMNS) + "\n" + "".join(",".join(line.split(",")[:k]) + "\n" for line in new)


def test_columns_written_and_derived():
    k = len(OLD_COLUMNS)  # the outcome columns follow the old ones (the defence columns come last)
    assert COLUMNS[:k] == OLD_COLUMNS and COLUMNS[k:k + 2] == ("solved", "identified")
    assert COLUMNS[k + 2:] == ("defence", "defence_strength", "floor", "loss_f64", "method_run", "loss_at_truth",
                               "params_total", "train_steps")
    pt = grid(SweepConfig(**TINY).resolved())[0]
    t = to_table(_rows(pt))  # rows without the columns get them derived
    assert t["solved"].tolist() == [True, False] and t["identified"].tolist() == [True, False]
    assert t["solved"].dtype == bool
    assert rows_text(_rows(pt)).splitlines()[0].endswith(",1,1,none,0.0,nan,nan,,nan,-1,-1")


def test_old_results_file_reads_and_resumes_in_the_new_format(tmp_path):
    r = SweepConfig(**TINY).resolved()
    pts = grid(r)
    out = tmp_path / "o"
    prepare_out(out, r, pts)
    meta = json.loads((out / "sweep.json").read_text())
    assert meta["solved_tolerance"] == {"adam": 1e-10} and meta["identified_tolerance"] == IDENTIFIED_TOL
    # an old directory: no tolerances in sweep.json, results.csv without the two columns
    del meta["solved_tolerance"], meta["identified_tolerance"]
    (out / "sweep.json").write_text(json.dumps(meta))
    old_rows = _rows(pts[0]) + _rows(pts[1], loss=(1e-4, 1e-11), err=(2e-3, 1e-4))
    (out / "results.csv").write_text(_old_text(old_rows))
    t = read_results(out)  # reads, deriving the columns
    assert t["solved"].tolist() == [True, False, False, True]
    assert t["identified"].tolist() == [True, False, False, True]
    # resuming: the config hash still matches; the file is rewritten in the new format first
    done = prepare_out(out, r, pts)
    assert set(done) == {pts[0].key(), pts[1].key()}
    text = (out / "results.csv").read_text()
    assert text == ",".join(COLUMNS) + "\n" + rows_text(old_rows)
    assert "solved_tolerance" in json.loads((out / "sweep.json").read_text())
    append_rows(out / "results.csv", _rows(pts[2]))  # appended rows match the header
    t = read_results(out)
    assert len(t["p"]) == 6 and t["solved"].tolist()[4:] == [True, False]


def test_old_file_without_sweep_json_reads_with_float32_tolerances(tmp_path):
    r = SweepConfig(**{**TINY, "method": ["published"]}).resolved()
    pt = grid(r)[0]
    # 5e-7 is a zero of the published (kernel-form) loss in float32, 2e-6 is not
    (tmp_path / "results.csv").write_text(_old_text(_rows(pt, loss=(5e-7, 2e-6))))
    assert read_results(tmp_path)["solved"].tolist() == [True, False]
    (tmp_path / "results.csv").write_text(",".join(COLUMNS) + "\n" + "4,2,4,0.5,relu,adam,0" + ",0" * 11 + ",2,none,0,nan,nan,,nan,4,0\n")
    with pytest.raises(ValueError, match="line 2 is corrupted .*not a 0/1 value"):
        read_results(tmp_path)


def test_row_outcomes_permuted_flipped_and_perturbed_rows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 9))
    x_hat = x[[2, 0, 3, 1]].copy()
    x_hat[0] *= -1  # x_2 recovered up to sign
    x_hat[1] += 0.03  # x_0 off by 0.03 per coordinate
    r = row_outcomes(x_hat, x)
    np.testing.assert_allclose(r.error, [0.03, 0, 0, 0], atol=1e-12)
    assert r.recovered.tolist() == [False, True, True, True]
    assert r.flipped.tolist() == [False, False, True, False]
    assert r.perm.tolist() == [1, 3, 0, 2]
    np.testing.assert_allclose(r.error_plain[2], 2 * np.linalg.norm(x[2]) / 3, rtol=1e-12)
    assert row_outcomes(x_hat, x, tol=0.05).recovered.all()
    # the mean of the rows' errors is the library's error_sign; extra rows of x_hat are unmatched
    assert r.error.mean() == pytest.approx(match(x, x_hat).error_sign, abs=1e-15)
    extra = row_outcomes(np.vstack([x_hat, 5 + x]), x)
    assert extra.recovered.tolist() == r.recovered.tolist()
    with pytest.raises(ValueError, match="^tol:"):
        row_outcomes(x_hat, x, tol=-1)


def _recount(x, x_hat, tol):
    """Rows recovered per seed by brute force over permutations and signs (NumPy only)."""
    n, d = x.shape
    best = None
    for perm in itertools.permutations(range(n)):
        cost = [min(np.linalg.norm(x[i] - x_hat[j]), np.linalg.norm(x[i] + x_hat[j])) for i, j in enumerate(perm)]
        if best is None or sum(cost) < sum(best):
            best = cost
    return int(np.sum(np.array(best) / np.sqrt(d) <= tol))


def test_partial_recovery_counts_recomputed_from_saved_arrays(tmp_path):
    spec = importlib.util.spec_from_file_location("partial_recovery", ROOT / "experiments" / "partial_recovery.py")
    pr = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pr)
    table = pr.run(tmp_path, d=5, n=3, ratios=[0.4, 4], seeds=2, steps=400, progress=False)
    assert (tmp_path / "partial_recovery.png").stat().st_size > 0
    for p in (6, 60):
        saved = np.load(tmp_path / f"point_p{p}.npz")
        assert saved["x_hat"].shape == saved["x"].shape == (2, 3, 5) and saved["alpha"].shape == (2, 3)
        for s in range(2):
            m = (table["p"] == p) & (table["seed"] == s)
            assert m.sum() == 3
            assert table["recovered"][m].sum() == _recount(saved["x"][s], saved["x_hat"][s], pr.RECOVERED)
            assert table["recovered"][m].sum() == saved["recovered"][s].sum()
            np.testing.assert_allclose(np.sort(table["abs_alpha"][m]), np.sort(np.abs(saved["alpha"][s])), rtol=1e-6)
    # p = 4 d n identifies the training set: the count is not trivially zero
    assert table["recovered"][table["p"] == 60].mean() == 1.0
