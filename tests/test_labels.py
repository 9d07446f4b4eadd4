"""Labels never contradict the numbers: the float64 residual-form loss of every run
(outcomes.final_loss), the one rule deciding status / solved / identified / recovered
(outcomes.final_verdict), degenerate runs, duplicate training points, non-finite training loss."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxrecon as jr
from jaxrecon import outcomes
from jaxrecon.cli import main
from jaxrecon.features.base import Target
from jaxrecon.features.network import network_target
from jaxrecon.models.rf import duplicate_rows
from jaxrecon.models.train import split_model
from jaxrecon.models.two_layer import TwoLayer
from jaxrecon.outcomes import FINAL_TOL, STOPPED, final_loss, final_verdict
from jaxrecon.sweeps import SweepConfig, grid, point_rows, read_results, run_point, sweep
from jaxrecon.sweeps.store import COLUMNS, DEFENCE_COLUMNS, prepare_out, rows_text


def _lstsq_loss(Phi, theta):
    """|P_perp theta|^2 / |theta|^2 by NumPy least squares (SVD), independent of the library."""
    t = np.asarray(theta, np.float64)
    t = t / np.linalg.norm(t)
    r = t - Phi.T @ np.linalg.lstsq(Phi.T, t, rcond=None)[0]
    return float(r @ r)


def _rf_problem(d=6, n=3, p=60, dtype="float32", block_size=None, activation="relu"):
    data = jr.synthetic(jax.random.key(1), n, d, dtype=dtype)
    fmap = jr.RandomFeatures(jax.random.key(2), d, p, activation, block_size, dtype=dtype)
    return data, fmap, jr.fit(fmap, data.x, data.y)


@pytest.mark.parametrize("block_size,activation", [(None, "relu"), (16, "gelu"), (None, "tanh")])
def test_final_loss_is_the_float64_residual_of_the_runs_features(block_size, activation, monkeypatch):
    data, fmap, theta = _rf_problem(block_size=block_size, activation=activation)
    x_hat = data.x + 0.05 * jax.random.normal(jax.random.key(3), data.x.shape)
    # the run's V in its own dtype (float32), the features in float64
    V = np.asarray(jax.jit(lambda fm: fm.weights())(fmap), np.float64)
    with jax.enable_x64(True):
        Phi = np.asarray(fmap.sigma(jnp.asarray(np.asarray(x_hat, np.float64) @ V.T)))
    want = _lstsq_loss(Phi, theta)
    got = final_loss(Target(fmap, theta), x_hat)
    assert 1e-6 < want < 1 and got == pytest.approx(want, rel=1e-9)
    # V stored (as the compiled attack prepares it) or drawn block by block: the same rows, the same number
    stored = jax.jit(lambda fm: fm.prepare())(fmap)
    assert stored.V is not None or block_size is not None
    assert final_loss(Target(stored, theta), x_hat) == pytest.approx(got, rel=1e-12)
    # features too large to hold: passes over blocks through the kernel, refined
    monkeypatch.setattr(outcomes, "_KEEP_BYTES", 0)
    monkeypatch.setattr(outcomes, "_ROW_BLOCK", 16)
    assert final_loss(Target(fmap, theta), x_hat) == pytest.approx(want, rel=1e-9)
    # at the training set: a zero, far below the tolerance, though theta and V are float32
    assert final_loss(Target(fmap, theta), data.x) < 1e-12


def test_final_loss_of_a_network_and_of_nothing():
    model = TwoLayer(4, 9, 1, rngs=nnx.Rngs(0), param_dtype=jnp.float32)
    apply, before = split_model(model)
    after = jax.tree_util.tree_map(lambda a: a + 0.1, before)
    target = network_target(apply, before, after, 4, 1, "head")
    x = jax.random.normal(jax.random.key(1), (3, 4), jnp.float32)
    with jax.enable_x64(True):
        fm64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), target.fmap)
        Phi = np.asarray(fm64.features(jnp.asarray(x, jnp.float64)))
    assert final_loss(target, x) == pytest.approx(_lstsq_loss(Phi, target.theta), rel=1e-9)
    fmap = jr.RandomFeatures(jax.random.key(2), 4, 30)
    assert math.isnan(final_loss(Target(fmap, jnp.zeros(30)), x))  # theta = 0: no loss
    assert math.isnan(final_loss(Target(fmap, jnp.ones(30)), x.at[0, 0].set(jnp.nan)))


def test_final_verdict_one_rule():
    # the method's own loss met its tolerance, the float64 residual form did not: not "converged"
    v = final_verdict("converged", 1.9e-7, 0.8, 0.0)
    assert (v["status"], v["solved"], v["identified"]) == (STOPPED, False, False)
    assert final_verdict("converged", FINAL_TOL, 1e-4, 1.0) == {"status": "converged", "solved": True,
                                                                "identified": True, "recovered": 1.0}
    assert final_verdict("budget", 1e-12, 0.5, 0.0)["solved"]  # a zero not the training set
    assert not final_verdict("plateau", float("nan"), 0.5, 0.0)["solved"]
    # degenerate: nothing solved, identified or recovered; at d = 1 no error is measured
    v = final_verdict("degenerate", 0.0, 0.0, 1.0, d=1)
    assert (v["solved"], v["identified"], v["recovered"]) == (False, False, 0.0)
    assert math.isnan(v["error_sign"]) and math.isnan(v["error_abs"])
    assert "error_sign" not in final_verdict("degenerate", 0.0, 0.3, 0.0, d=5)
    # rows without a float64 loss (written before it existed): the method's loss and tolerance
    assert final_verdict("converged", None, 0.5, 0.0, loss=5e-7, method_tol=9.5e-7)["status"] == "converged"
    assert final_verdict("converged", None, 0.5, 0.0, loss=5e-7, method_tol=1e-10)["status"] == STOPPED


def _labels_agree(row, tol):
    assert row["solved"] == (row["loss_f64"] <= tol)
    assert row["status"] != "converged" or row["solved"]
    assert row["identified"] == (row["error_sign"] <= 1e-3)


def test_published_float32_stops_at_a_point_that_is_not_a_zero():
    # p = dn/2: zeros of the loss besides X; the published method stops on its float32 kernel
    # form (6e-8 <= 1e-7), where the residual form is ~1e-7: reported as stopped, not solved
    cfg = jr.ReconstructConfig(d=10, n=4, p_over_dn=0.5, seeds=2, steps=2000, method="published")
    with jr.x64(False):  # the tests run with float64 enabled
        s = jr.run_reconstruction(cfg, progress=False, log=None)
    assert s["solved_tolerance"] == FINAL_TOL
    for row in s["results"]:
        _labels_agree(row, s["solved_tolerance"])
        assert row["method_status"] == "converged" and row["loss"] <= 1e-7
        assert row["status"] == STOPPED and row["loss_f64"] > 1e-8 and not row["solved"]


def test_solved_runs_stay_solved_and_the_table_shows_loss_f64(tmp_path, capsys):
    rc = main(["reconstruct", "--d", "8", "--n", "3", "--p-over-dn", "30", "--seeds", "2", "--steps", "2000",
               "--method", "adam", "--out", str(tmp_path / "r"), "--quiet"])
    assert rc == 0 and "loss_f64" in capsys.readouterr().out
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    for row in s["results"]:
        _labels_agree(row, s["solved_tolerance"])
        assert row["solved"] and row["identified"] and row["status"] == "converged"


def test_degenerate_d1_shows_no_recovery():
    cfg = jr.ReconstructConfig(d=1, n=2, p=8, seeds=2, steps=5)  # seed 0: the two points -1 and 1
    with pytest.warns(jr.attack.degenerate.DegenerateProblemWarning, match="d=1"):
        s = jr.run_reconstruction(cfg, progress=False, log=None)
    for row in s["results"]:
        assert (row["status"], row["solved"], row["identified"], row["recovered"]) == ("degenerate", False, False,
                                                                                       0.0)
        assert math.isnan(row["error_sign"]) and math.isnan(row["error_abs"])


def test_duplicate_rows_found_and_refused():
    x = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    x[3], x[5] = x[1], x[1]
    assert duplicate_rows(x) == [(3, 1), (5, 1)]
    # numerically identical: one ulp apart in float32 on the sphere of R^1
    assert duplicate_rows(np.array([[-1.0], [1.0], [0.99999994]], np.float32)) == [(2, 1)]
    assert duplicate_rows(np.array([[-1.0], [1.0], [0.999]], np.float32)) == []
    fmap = jr.RandomFeatures(jax.random.key(0), 5, 40)
    with pytest.raises(ValueError, match=r"^x: the 6 training rows hold 2 duplicate\(s\) \(row 3 = row 1, "
                                         r"row 5 = row 1\); the law counts distinct points"):
        jr.fit(fmap, x, np.arange(6.0))
    with pytest.raises(ValueError, match=r"^d: with --d 1 every point .* n=3 training points hold [12] duplicate"):
        jr.run_reconstruction(jr.ReconstructConfig(d=1, n=3, p=8, seeds=1, steps=5), progress=False, log=None)


@pytest.mark.parametrize("argv,flag", [
    (["--d", "1", "--n", "3", "--p", "8"], "with --d 1 every point"),
    (["--d", "4", "--n", "2", "--p", "64", "--noise", "1e38"],
     "the least-squares fit gave a training MSE inf with --noise 1e+38"),
    (["--model", "two_layer", "--d", "4", "--n", "2", "--width", "16", "--train-lr", "1e30"],
     "gradient descent on the two_layer diverged"),
    (["--d", "4", "--n", "2", "--p", "64", "--noise", "1e300", "--x64"], "labels of that size overflow float64"),
])
def test_refused_before_the_attack_with_one_line(tmp_path, capsys, argv, flag):
    out = tmp_path / "r"
    with jr.x64("--x64" in argv):  # as on the command line (the tests run with float64 enabled)
        rc = main(["reconstruct", *argv, "--seeds", "1", "--steps", "5", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("jaxrecon: error: ") and flag in err[-1] and "Traceback" not in "".join(err)
    assert not out.exists()


def test_sweep_rows_carry_loss_f64_and_old_files_resume(tmp_path):
    cfg = SweepConfig(name="lab", d=[4], n=[2], p_over_dn=[0.5, 8], method=["published"], seeds=2, steps=300)
    r = cfg.resolved()
    pt = grid(r)[0]
    po = run_point(pt, r)
    assert po.loss_f64.shape == (2,) and np.all(np.isfinite(po.loss_f64))
    for row in point_rows(pt, po):
        _labels_agree(row, FINAL_TOL)
    # a results file written before loss_f64 (the defence columns last) reads and resumes
    out = tmp_path / "s"
    pts = grid(r)
    prepare_out(out, r, pts)
    rows = point_rows(pt, po)
    text = rows_text(rows).splitlines()
    old = ",".join(DEFENCE_COLUMNS) + "\n" + "".join(",".join(line.split(",")[:len(DEFENCE_COLUMNS)]) + "\n"
                                                     for line in text)
    (out / "results.csv").write_text(old)
    assert np.isnan(read_results(out)["loss_f64"]).all()
    done = prepare_out(out, r, pts)
    assert pt.key() in done and (out / "results.csv").read_text().startswith(",".join(COLUMNS) + "\n")
    t = sweep(cfg, out=str(out), progress=False, plots=False)
    assert np.isfinite(t["loss_f64"][t["p"] == pts[1].p]).all()
