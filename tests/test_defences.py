"""Defences (jaxrecon.defences) and the attack's floor / plateau stops: small, float64."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrecon
from jaxrecon.attack import Status, reconstruct
from jaxrecon.data.synthetic import synthetic
from jaxrecon.defences import (DEFENCES, Defence, defence_at, defence_levels, defend, early_stopped_alpha,
                               feature_bound, gaussian_sigma, prune, quantize, ridge_sensitivity)
from jaxrecon.features.random_features import RandomFeatures
from jaxrecon.loss import projector_loss


@pytest.fixture(scope="module")
def problem():
    with jaxrecon.x64():
        d, n, p = 5, 3, 200
        data = synthetic(jax.random.key(0), n, d, dtype="float64")
        fmap = RandomFeatures(jax.random.key(1), d, p, "relu", dtype="float64")
        yield fmap, data.x, data.y


def test_theta_noise_as_stated(problem):
    fmap, x, y = problem
    with jaxrecon.x64():
        clean = defend(fmap, x, y, Defence("none"), jax.random.key(2))
        eps = 1e-2
        m = defend(fmap, x, y, Defence("theta_noise", eps), jax.random.key(2))
        noise = m.target.theta - clean.target.theta
        assert float(jnp.linalg.norm(noise)) == pytest.approx(eps * float(jnp.linalg.norm(clean.target.theta)), rel=1e-12)
        at_truth = float(projector_loss(fmap, m.target.theta, x, form="residual"))
        expected = eps ** 2 * (fmap.p - x.shape[0]) / fmap.p
        assert expected / 3 < at_truth < 3 * expected
        assert float(m.info["loss_at_truth"]) == pytest.approx(at_truth, rel=1e-6)
        assert 0 < float(m.target.floor) <= at_truth * 1.5
        assert clean.target.floor is None  # no defence: the target is the undefended one


def test_dp_calibration_hand_computed():
    # B = 2, C = 1, lam = 0.5, n = 4: R = C/sqrt(lam) = sqrt(2), Delta = 2 B (B R + C) / (n lam)
    delta_2 = float(ridge_sensitivity(2.0, 1.0, 0.5, 4))
    assert delta_2 == pytest.approx(2 * 2 * (2 * math.sqrt(2) + 1) / 2, rel=1e-12)
    sigma = gaussian_sigma(delta_2, 0.5, 1e-5)
    assert sigma == pytest.approx(delta_2 * math.sqrt(2 * math.log(1.25e5)) / 0.5, rel=1e-12)
    # the analytic mechanism meets Balle & Wang's condition with equality, and beats the classic one
    from scipy.stats import norm

    for eps in (0.5, 1.0, 4.0):
        s = gaussian_sigma(1.0, eps, 1e-5, mechanism="analytic")
        lhs = norm.cdf(1 / (2 * s) - eps * s) - math.exp(eps) * norm.cdf(-1 / (2 * s) - eps * s)
        assert lhs == pytest.approx(1e-5, rel=1e-6)
        if eps < 1:
            assert s < gaussian_sigma(1.0, eps, 1e-5, mechanism="classic")
    with pytest.raises(ValueError, match="^epsilon:"):
        gaussian_sigma(1.0, 2.0, 1e-5, mechanism="classic")


def test_dp_defence_uses_the_bound(problem):
    fmap, x, y = problem
    with jaxrecon.x64():
        m = defend(fmap, x, y, Defence("dp", epsilon=0.5, delta=1e-5), jax.random.key(3))
        B = 1.0 * float(jnp.linalg.norm(fmap.weights(), 2)) * math.sqrt(5)
        assert float(m.info["feature_bound"]) == pytest.approx(B, rel=1e-10)
        # the bound holds for the training features
        assert float(jnp.max(jnp.linalg.norm(fmap.features(x), axis=1))) <= B
        lam = 1.0 / 3  # ridge 1 (the dp default) over n = 3
        assert float(m.info["sensitivity"]) == pytest.approx(2 * B * (B / math.sqrt(lam) + 1) / (3 * lam), rel=1e-10)


def test_quantize_is_rounding():
    with jaxrecon.x64():
        theta = jnp.asarray(np.random.default_rng(0).normal(size=50), jnp.float64)
        assert np.array_equal(quantize(theta, "bfloat16"), np.asarray(theta.astype(jnp.bfloat16), np.float64))
        s = np.max(np.abs(np.asarray(theta))) / 127
        assert np.allclose(quantize(theta, "int8"), np.round(np.asarray(theta) / s) * s, rtol=0, atol=1e-15)
        assert len(np.unique(np.asarray(quantize(theta, "int8")))) <= 255


def test_prune_keeps_largest():
    theta = jnp.asarray([0.5, -3.0, 0.1, 2.0, -0.2, 1.0])
    out = np.asarray(prune(theta, 0.5))
    assert np.array_equal(out, [0.5, -3.0, 0.0, 2.0, 0.0, 1.0]) is False  # 3 smallest zeroed: 0.1, -0.2, 0.5
    assert np.array_equal(out, [0.0, -3.0, 0.0, 2.0, 0.0, 1.0])
    active = jnp.asarray([True] * 4 + [False] * 2)
    assert np.array_equal(prune(theta, 0.5, active), [0.0, -3.0, 0.0, 2.0, -0.2, 1.0])


def test_early_stop_matches_numpy(problem):
    fmap, x, y = problem
    with jaxrecon.x64():
        T = 7
        m = defend(fmap, x, y, Defence("early_stop", T), jax.random.key(0))
        Phi, yy = np.asarray(fmap.features(x)), np.asarray(y)
        n = Phi.shape[0]
        L = np.linalg.eigvalsh(Phi @ Phi.T)[-1] / n
        theta = np.zeros(Phi.shape[1])
        for _ in range(T):
            theta -= (Phi.T @ (Phi @ theta - yy) / n) / L
        assert np.allclose(m.target.theta, theta, rtol=1e-10, atol=1e-13)
        assert m.target.floor is None  # in the span: the attack is the undefended one
        K = Phi @ Phi.T
        assert np.allclose(Phi.T @ np.asarray(early_stopped_alpha(jnp.asarray(K), jnp.asarray(yy), T)), theta)


def test_noisy_attack_stops_at_floor_or_plateau(problem):
    fmap, x, y = problem
    with jaxrecon.x64():
        m = defend(fmap, x, y, Defence("theta_noise", 0.05), jax.random.key(4))
        res = reconstruct(m.target, jax.random.key(5), x.shape[0], steps=3000, plateau_window=200)
        assert int(res.status) in (Status.FLOOR, Status.PLATEAU)
        assert float(res.floor) == pytest.approx(float(m.target.floor))
        assert int(res.steps) < 3000


@pytest.mark.parametrize("kwargs, name", [
    (dict(kind="nope"), "kind"), (dict(kind="theta_noise"), "strength"),
    (dict(kind="theta_noise", strength=-1.0), "strength"), (dict(kind="prune", strength=1.5), "strength"),
    (dict(kind="early_stop", strength=2.5), "strength"), (dict(kind="quantize", dtype="int4"), "dtype"),
    (dict(kind="dp", epsilon=1.0), "epsilon"), (dict(kind="dp", epsilon=1.0, delta=2.0), "delta"),
    (dict(kind="dp", epsilon=-1.0, delta=1e-5), "epsilon"),
])
def test_bad_inputs(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}:") as e:
        Defence(**kwargs)
    assert "\n" not in str(e.value)


def test_defence_at_levels():
    assert defence_at("quantize", 8).dtype == "int8" and defence_at("quantize", 16).dtype == "bfloat16"
    assert defence_at("dp", 2.0).epsilon == 2.0 and defence_at("dp", 2.0).level == 2.0
    assert set(DEFENCES) >= {"none", "theta_noise", "dp", "ridge", "label_noise", "early_stop", "quantize", "prune"}
    with pytest.raises(ValueError, match="^defence_strength:"):
        defence_at("quantize", 4)
    with pytest.raises(ValueError, match="^fmap:"):
        feature_bound(object())


@pytest.mark.parametrize("kind, a, b", [("theta_noise", 1e-3, 1e-1), ("dp", 0.5, 4.0), ("ridge", 1e-2, 1e2),
                                        ("label_noise", 1e-3, 1e-1), ("early_stop", 3, 40), ("prune", 0.1, 0.9)])
def test_traced_levels_match_static(problem, kind, a, b):
    # one compiled program (the levels traced) gives what the static defence gives, at both strengths
    fmap, x, y = problem
    with jaxrecon.x64():
        key = jax.random.key(6)
        program = jax.jit(lambda lv: defend(fmap, x, y, defence_at(kind, a), key, levels=lv))
        for level in (a, b):
            spec = defence_at(kind, level)
            traced, static = program(defence_levels(spec)), defend(fmap, x, y, spec, key)
            assert np.allclose(traced.target.theta, static.target.theta, rtol=1e-10, atol=1e-14)
            for name in ("floor", "sigma", "train_loss"):
                assert np.allclose(traced.info[name], static.info[name], rtol=1e-8, equal_nan=True)
        assert program._cache_size() == 1


def test_released_train_loss(problem):
    fmap, x, y = problem
    with jaxrecon.x64():
        clean = defend(fmap, x, y, Defence("none"), jax.random.key(2))
        assert float(clean.info["train_loss"]) < 1e-20  # p > n: the min-norm fit interpolates
        m = defend(fmap, x, y, Defence("theta_noise", 0.1), jax.random.key(2))
        expected = np.mean((np.asarray(fmap.features(x)) @ np.asarray(m.target.theta) - np.asarray(y)) ** 2)
        assert float(m.info["train_loss"]) == pytest.approx(expected, rel=1e-8)


def test_one_program_per_kind():
    from jaxrecon.sweeps import SweepConfig, grid, program_key

    def keys(kind, strengths):
        r = SweepConfig(name="k", grid=dict(d=[5], n=[2], p=[40]), attack=dict(seeds=1, steps=10),
                        privacy=dict(defence=kind, defence_strength=strengths)).resolved()
        return {program_key(pt, r, pt.p) for pt in grid(r)}

    assert len(keys("theta_noise", [1e-3, 1e-1])) == 1 and len(keys("dp", [0.5, 8.0])) == 1
    assert len(keys("quantize", [16, 8])) == 2  # the dtype is static


def test_strength_needed_direction():
    from jaxrecon.privacy_plots import strength_needed

    def table(kind, strengths, errors):
        return {"defence": np.array([kind] * len(strengths)), "defence_strength": np.array(strengths, float),
                "p_over_dn": np.ones(len(strengths)), "error_sign": np.array(errors, float)}

    # noise: error grows with the strength; 0.1 is crossed halfway (in log) between 1e-2 and 1e-1
    needed = strength_needed(table("theta_noise", [1e-3, 1e-2, 1e-1], [1e-3, 1e-2, 1.0]))
    assert needed[1.0] == pytest.approx(10 ** -1.5)
    # dp: error grows as epsilon falls; the largest epsilon that keeps it at 0.1 or above
    assert strength_needed(table("dp", [0.5, 2.0, 8.0], [0.5, 0.2, 1e-3]))[1.0] == pytest.approx(
        2.0 * 4 ** (np.log(0.1 / 0.2) / np.log(1e-3 / 0.2)))
    assert math.isnan(strength_needed(table("dp", [0.5, 8.0], [1e-3, 1e-3]))[1.0])


def test_reconstruct_summary_records_the_release():
    from jaxrecon.runner import ReconstructConfig, run_reconstruction

    cfg = ReconstructConfig(d=5, n=2, p=60, seeds=1, steps=20, theta_noise=0.05)
    s = run_reconstruction(cfg, out=None, progress=False, log=None)
    assert s["defence"]["kind"] == "theta_noise" and s["defence"]["level"] == 0.05
    # the clean fit interpolates; the released theta does not
    assert s["fit"]["train_loss_released"] == s["defence"]["train_loss"] > 100 * s["fit"]["train_loss"]
    assert s["results"][0]["floor"] == s["defence"]["floor"] > 0
