"""The split start (jaxrecon/attack/split.py, features/even.py, attack/signs.py): even features, the sign
solve, the start end to end (over a streamed V: tests/test_split_streamed.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrecon as jr
from jaxrecon import loss as L
from jaxrecon.attack import split as S
from jaxrecon.features import even as EV
from jaxrecon.features.base import FeatureMapBase
from jaxrecon.metrics import match


def _problem(d, n, activation="relu", seed=1):
    with jr.config.x64():
        data = jr.synthetic(jax.random.key(seed), n, d)
        fmap = jr.RandomFeatures(jax.random.key(seed + 1), d, 10 * d * n, activation=activation,
                                 dtype="float64").prepare()
        theta = jr.fit(fmap, data.x, data.y)
        return data, fmap, theta, S.split_problem(jr.Target(fmap, theta))


def _rel(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_even_features_products_and_the_even_part_of_theta(activation):
    """Every product equals the explicit ``P_perp(V) e(x)``; ``theta_e`` is explained exactly by
    the training rows, with any signs, and the full ``theta`` is not once a row is flipped."""
    with jr.config.x64():
        data, fmap, theta, prob = _problem(6, 9, activation)
        ev, te = prob.even.fmap, prob.even.theta
        V = fmap.weights()
        Z = data.x @ V.T
        sigma = fmap.sigma
        E = (sigma(Z) + sigma(-Z)) / 2
        F = E - jnp.linalg.solve(V.T @ V, V.T @ E.T).T @ V.T  # rows P_perp(V) e(x_i)
        assert _rel(ev.features(data.x), F) < 1e-12
        assert _rel(ev.gram(data.x, data.x), F @ F.T) < 1e-12
        a = jax.random.normal(jax.random.key(5), (9,), jnp.float64)
        assert _rel(ev.project(data.x, theta), F @ theta) < 1e-12
        assert _rel(ev.adjoint(data.x, a), F.T @ a) < 1e-12
        assert float(jnp.abs(V.T @ te).max()) < 1e-10 * float(jnp.abs(V.T @ theta).max())
        flipped = data.x.at[::2].multiply(-1)
        for x in (data.x, flipped):
            assert float(L.projector_loss(ev, te, x, form="residual")) < 1e-20
        assert float(L.projector_loss(fmap, theta, flipped, form="residual")) > 1e-3


@pytest.mark.parametrize("block_bytes", [None, 3 * 7 * 8])  # one block; blocks of 3 rows and a remainder of 1
def test_even_closed_form_gauss_newton_equals_autodiff(monkeypatch, block_bytes):
    if block_bytes is not None:
        monkeypatch.setattr(EV, "EVEN_BLOCK_BYTES", block_bytes)
    with jr.config.x64():
        data, fmap, theta, prob = _problem(7, 10)
        ev, te = prob.even.fmap, prob.even.theta
        assert EV._block_rows(ev.V) == (3 if block_bytes else ev.p) and ev.p % 3 == 1
        x = data.x + 0.2 * jax.random.normal(jax.random.key(3), data.x.shape, jnp.float64)
        u = jax.random.normal(jax.random.key(4), x.shape, jnp.float64)
        closed = L.residual_linearization(ev, te, x)
        auto = L.residual_linearization(_NoClosedForm(ev.V, ev.chol, ev.activation, None, ev.odd), te, x)
        assert _rel(closed.residual, auto.residual) < 1e-10
        assert _rel(closed.grad, auto.grad) < 1e-10
        assert _rel(jax.jit(closed.gram_matvec)(u), auto.gram_matvec(u)) < 1e-10


@jax.tree_util.register_dataclass
class _NoClosedForm(S.EvenFeatures):
    def residual_linearization(self, theta, x, jitter=None):
        return FeatureMapBase.residual_linearization(self, theta, x, jitter)


@pytest.mark.parametrize("d,n", [(10, 6), (10, 15), (10, 19)])
def test_signs_recovered_from_the_linear_part(d, n):
    """Rows right up to sign get their signs back: ``n <= d`` by the relaxation alone,
    ``d < n < 2d`` too (unique with high probability), and near ``2d`` with the flip polish."""
    with jr.config.x64():
        data, _, _, prob = _problem(d, n)
        flips = jax.random.bernoulli(jax.random.key(3), 0.5, (n,))
        y = jnp.where(flips[:, None], -data.x, data.x)
        x, relaxed = S.choose_signs(prob, y)
        assert bool(jnp.any(flips))
        np.testing.assert_allclose(np.asarray(x), np.asarray(data.x), atol=1e-12)
        assert float(jnp.max(jnp.abs(relaxed))) <= 1.0 + 1e-12


def test_box_least_squares_matches_the_unconstrained_solution_inside_the_box():
    with jr.config.x64():
        A = jax.random.normal(jax.random.key(0), (12, 5), jnp.float64)
        s_true = jnp.asarray([0.3, -0.5, 0.1, 0.9, -0.2])
        s = S.box_least_squares(A, A @ s_true, iters=3000)
        np.testing.assert_allclose(np.asarray(s), np.asarray(s_true), atol=1e-8)
        clipped = S.box_least_squares(A, A @ (3 * s_true), iters=3000)
        assert float(jnp.max(jnp.abs(clipped))) <= 1.0


def test_odd_slope_and_where_the_split_does_not_apply():
    assert S.odd_slope("relu") == pytest.approx(0.5)
    assert S.odd_slope("gelu") == pytest.approx(0.5)
    with pytest.raises(ValueError, match="start: 'split' needs an activation whose odd part is linear"):
        S.odd_slope("tanh")
    streamed = jr.RandomFeatures(jax.random.key(0), 5, 200, block_size=50)
    assert S.check_split(streamed) == pytest.approx(0.5)  # V streamed: the split runs over its blocks
    with pytest.raises(ValueError, match="^start: 'split' needs random features .a RandomFeatures map"):
        S.check_split(_problem(3, 2)[3].even.fmap)  # not a RandomFeatures map
    data = jr.synthetic(jax.random.key(1), 3, 5)
    with pytest.raises(ValueError, match="odd part is linear"):
        fm = jr.RandomFeatures(jax.random.key(0), 5, 200, activation="tanh")
        jr.reconstruct(jr.Target(fm, jr.fit(fm, data.x, data.y)), jax.random.key(0), 3, steps=5, start="split")


def test_split_start_end_to_end_is_exact_and_no_worse_than_random():
    """n > d (the regime of the sign-flip minima): the split start reaches the training set; its
    steps include the first stage's."""
    d, n = 8, 12
    data = jr.synthetic(jax.random.key(1), n, d)
    fmap = jr.RandomFeatures(jax.random.key(2), d, 10 * d * n)
    target = jr.Target(fmap, jr.fit(fmap, data.x, data.y))
    split = jr.reconstruct(target, jax.random.key(7), n, steps=1500, start="split")
    random = jr.reconstruct(target, jax.random.key(7), n, steps=1500)
    err_split = match(data.x, split.x_hat).row_error.max()
    err_random = match(data.x, random.x_hat).row_error.max()
    assert err_split <= 1e-3
    assert err_split <= max(err_random, 1e-3)
    assert int(split.steps) > 1


def test_split_start_in_the_chunked_driver(capsys):
    """The seeds driver runs the first stage as its own chunked program (progress shown) and
    hands over: the seed converges and its steps include the first stage's."""
    d, n = 8, 12
    data = jr.synthetic(jax.random.key(1), n, d)
    fmap = jr.RandomFeatures(jax.random.key(2), d, 10 * d * n)
    target = jr.Target(fmap, jr.fit(fmap, data.x, data.y))
    res = jr.reconstruct_seeds(target, jax.random.key(7), n, 1, method="adam-lm-split", steps=1500, chunk=50)
    assert res.status[0] == "converged"
    assert match(data.x, res.x_hat[0]).row_error.max() <= 1e-3
    assert "split start: rows up to sign first (the even part of theta, on the first 480 of 960 features)" \
        in capsys.readouterr().err  # adam-lm-split: split_features = 5, p = 10 d n
    assert res.steps[0] > 100  # the first stage alone takes 300 Adam steps before its LM phase


def test_lattice_signs_solve_the_integer_problem_the_relaxation_leaves():
    """n = 2d (d = 12): from a sign vector with half its entries wrong, LLL on the subset-sum
    embedding returns the planted signs; a vector that already solves the system is kept."""
    rng = np.random.default_rng(0)
    d, n = 12, 24
    A = rng.standard_normal((d, n)) * rng.lognormal(0, 1, n)[None, :]
    s_true = rng.choice([-1.0, 1.0], n)
    b = A @ s_true
    wrong = s_true * np.where(rng.random(n) < 0.5, -1, 1)
    np.testing.assert_array_equal(S.lattice_signs(A, b, wrong), s_true)
    np.testing.assert_array_equal(S.lattice_signs(A, b, s_true), s_true)


def test_lll_reduce_keeps_the_lattice_and_shortens_it():
    rng = np.random.default_rng(1)
    B = rng.integers(-50, 50, (6, 6)).astype(float)
    R = S.lll_reduce(B)
    assert abs(abs(np.linalg.det(R)) - abs(np.linalg.det(B))) < 1e-6 * abs(np.linalg.det(B))
    U = np.linalg.solve(B.T, R.T).T  # R = U B with U unimodular
    np.testing.assert_allclose(U, np.round(U), atol=1e-8)
    assert np.linalg.norm(R[0]) <= np.linalg.norm(B, axis=1).min()


def test_no_copy_of_V(monkeypatch):
    """The split target prepared by the driver holds the map's own V, and neither the even
    features' products with a vector nor the pursuit score's gradient copy V (XLA memory analysis)."""
    from jaxrecon.attack.loop import attack_target, with_split
    from jaxrecon.attack.methods import method_config
    from jaxrecon.attack.stall import pursuit_score

    d, n, p = 64, 4, 16_384
    data = jr.synthetic(jax.random.key(1), n, d)
    fmap = jr.RandomFeatures(jax.random.key(2), d, p)
    target = jr.Target(fmap, jr.fit(fmap, data.x, data.y))
    m = method_config("adam-lm-split", split_features=0)  # all features: the even features share V
    tgt = with_split(jax.jit(lambda t: attack_target(t, m, split=False))(target))
    assert tgt.split.even.fmap.V is tgt.fmap.V
    rows = S.split_rows(p, d, n, 5.0)  # the default: a copy of the first 5 d n rows only
    pre = with_split(tgt._replace(split=None), rows=rows).split.even.fmap.V
    assert pre.shape == (rows, d) and pre is not tgt.fmap.V and bool(jnp.all(pre == tgt.fmap.V[:rows]))
    v_bytes = tgt.fmap.V.nbytes
    temp = lambda f, *a: jax.jit(f).lower(*a).compile().memory_analysis().temp_size_in_bytes
    r, z = tgt.split.even.theta, data.x[0]
    assert temp(lambda ev, t: ev.project(data.x, t), tgt.split.even.fmap, r) < v_bytes / 4
    ev = tgt.split.even.fmap
    monkeypatch.setattr(EV, "EVEN_BLOCK_BYTES", v_bytes // 64)  # the LM product holds one block of V
    u = jax.random.normal(jax.random.key(3), data.x.shape)
    assert temp(lambda ev, t: L.residual_value_and_grad(ev, t, data.x), ev, r) < v_bytes / 4
    # the LM product keeps several n x p arrays (each V / 16 at this size); a copy of V is all of it
    assert temp(lambda ev, t, u_: L.residual_linearization(ev, t, data.x).gram_matvec(u_), ev, r, u) < v_bytes / 2
    assert temp(lambda fm, z_, r_: jax.grad(pursuit_score, argnums=1)(fm, z_, r_), tgt.fmap, z, r) < v_bytes / 4
    assert float(pursuit_score(tgt.fmap, z, r)) == pytest.approx(
        float(jnp.sum(tgt.fmap.project(z[None], r) ** 2) / jnp.sum(tgt.fmap.gram(z[None], z[None]))), rel=1e-5)


def test_even_closed_form_value_and_gradient_equal_autodiff():
    """``EvenFeatures.residual_value_and_grad`` (the first-order step of the split start's first
    stage, without forming ``P_perp(V) E``) equals autodiff of the residual form, far from and near
    the zero (float64)."""
    with jr.config.x64():
        data, fmap, theta, prob = _problem(7, 10)
        ev, te = prob.even.fmap, prob.even.theta
        for noise in (0.3, 1e-4):
            x = data.x + noise * jax.random.normal(jax.random.key(3), data.x.shape, jnp.float64)
            auto = jax.value_and_grad(lambda xx: L.projector_loss(ev, te, xx, form="residual"))(x)
            closed = jax.jit(L.residual_value_and_grad)(ev, te, x)
            assert abs(float(closed[0]) - float(auto[0])) < 1e-9 * float(auto[0])
            assert _rel(closed[1], auto[1]) < 1e-8


def test_split_cg_iters_bind_the_first_stage_lm_only():
    """``split_cg_iters`` sets the CG iterations of the first stage's LM steps; the second stage
    keeps the LM phase's own."""
    from jaxrecon.attack.loop import make_solver, split_solver
    from jaxrecon.attack.methods import method_config
    from jaxrecon.runner import ReconstructConfig

    d, n = 8, 4
    data = jr.synthetic(jax.random.key(1), n, d)
    fmap = jr.RandomFeatures(jax.random.key(2), d, 10 * d * n)
    target = jr.Target(fmap, jr.fit(fmap, data.x, data.y))
    solver = make_solver(target, n, method_config("adam-lm-split", split_cg_iters=7, cg_iters=25))
    assert solver.phases[1].config.cg_iters == 25
    assert split_solver(solver).phases[1].config.cg_iters == 7
    plain = make_solver(target, n, method_config("adam-lm-split", split_cg_iters=None, cg_iters=25))
    assert split_solver(plain).phases[1].config.cg_iters == 25
    with pytest.raises(ValueError, match="^start.split.lm.cg_iters"):
        method_config("adam-lm-split", split_cg_iters=0)
    with pytest.raises(ValueError, match="^start.split.lm.cg_tol"):
        method_config("adam-lm-split", split_cg_tol=-1.0)
    with pytest.raises(ValueError, match="^start.split.lm.cg_iters: the method has no LM phase"):
        method_config("adam", split_cg_iters=5)
    tol = split_solver(make_solver(target, n, method_config("adam-lm-split", split_cg_tol=0.1))).phases[1].config
    assert (tol.cg_iters, tol.cg_tol) == (30, 0.1)
    with pytest.raises(ValueError, match="^start.split.lm.cg_iters: only for the split start"):
        ReconstructConfig(n=4, p_over_dn=2, method="adam-lm", split_cg_iters=5).method_cfg()


def test_split_rows_and_the_prefix_target():
    """The first stage's features: ``ceil(features * d * n)`` clipped to ``[2 d, p]``, all ``p`` for
    0. The prefix target holds ``V[:rows]`` (the rows a map with ``p = rows`` and the same key
    generates) and ``theta[:rows]``, whose zero is the training set, with its even part's zero at any
    signs; batched targets alike."""
    assert S.split_rows(1000, 10, 5, 0) == 1000
    assert S.split_rows(1000, 10, 5, 5.0) == 250
    assert S.split_rows(1000, 10, 5, 2.01) == 101  # ceil
    assert S.split_rows(1000, 10, 1, 1.5) == 20  # at least 2 d
    assert S.split_rows(100, 10, 5, 5.0) == 100  # at most p
    with jr.config.x64():
        data, fmap, theta, _ = _problem(6, 5)
        tgt = jr.Target(fmap, theta)
        assert S.prefix_target(tgt, fmap.p) is tgt
        sub = S.prefix_target(tgt, 130)
        assert (sub.fmap.p, sub.fmap.V.shape, sub.theta.shape) == (130, (130, 6), (130,))
        again = jr.RandomFeatures(fmap.key, 6, 130, dtype="float64").prepare().V
        np.testing.assert_allclose(sub.fmap.V, again, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(sub.fmap.V, fmap.V[:130])
        assert float(L.projector_loss(sub.fmap, sub.theta, data.x, form="residual")) < 1e-20
        prob = S.split_problem(sub)
        flipped = data.x.at[::2].multiply(-1)
        assert float(L.projector_loss(prob.even.fmap, prob.even.theta, flipped, form="residual")) < 1e-20
        x, _ = S.choose_signs(prob, flipped)  # the signs from the prefix's linear part alone
        np.testing.assert_allclose(x, data.x, atol=1e-8)
        batched = jax.tree_util.tree_map(lambda a: jnp.stack([a, a]), tgt)
        bsub = S.prefix_target(batched, 130)
        assert bsub.fmap.V.shape == (2, 130, 6) and bsub.theta.shape == (2, 130)


def test_split_features_option_validation_and_flag():
    """``split_features``: 0 or a number above 1 (adam-lm-split: 5), the CLI flag only with the split
    start, and a first stage whose rows depend on ``n``."""
    from jaxrecon.attack.loop import attack_target
    from jaxrecon.attack.methods import SPLIT_FEATURES, method_config
    from jaxrecon.runner import ReconstructConfig

    assert method_config("adam-lm-split").start.split.features == SPLIT_FEATURES == 5.0
    assert method_config("adam-lm").start.split.features == 0
    with pytest.raises(ValueError, match="^start.split.features: must be 0 .all features. or > 1"):
        method_config("adam-lm-split", split_features=0.5)
    with pytest.raises(ValueError, match="^start.split.features: must be a finite number >= 0"):
        method_config("adam-lm-split", split_features=-1)
    assert ReconstructConfig(n=4, p_over_dn=10, method="adam-lm-split", split_features=0).method_cfg().start.split.features == 0
    assert ReconstructConfig(n=4, p_over_dn=10, method="adam-lm-split", split_features=3).method_cfg().start.split.features == 3
    with pytest.raises(ValueError, match="^start.split.features: only for the split start"):
        ReconstructConfig(n=4, p_over_dn=10, method="adam-lm", split_features=3).method_cfg()
    d, n = 6, 4
    data = jr.synthetic(jax.random.key(1), n, d)
    fmap = jr.RandomFeatures(jax.random.key(2), d, 10 * d * n)
    target = jr.Target(fmap, jr.fit(fmap, data.x, data.y))
    m = method_config("adam-lm-split", split_features=3)
    assert attack_target(target, m, n=n).split.even.theta.shape == (3 * d * n,)
    with pytest.raises(ValueError, match="^start.split.features: the first stage's features depend on n"):
        attack_target(target, m)


def test_split_variants_benchmark_resumes_and_tabulates(tmp_path, monkeypatch, capsys):
    """``benchmarks/split_variants.py``: ``NAME=FLAGS`` parsed (a clear error otherwise), one row per
    (variant, seed) appended to results.csv, finished runs skipped on a rerun, and the table's
    totals and exact counts (the runs themselves stubbed: each is a whole CLI attack)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "split_variants", Path(__file__).resolve().parents[1] / "benchmarks" / "split_variants.py")
    sv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sv)
    assert sv.parse_variant("full=--split-features 0 ") == ("full", "--split-features 0")
    assert sv.parse_variant("default=") == ("default", "")
    with pytest.raises(ValueError, match="^--variant: expected NAME=FLAGS"):
        sv.parse_variant("--split-features 0")
    calls = []

    def fake(args, name, flags, seed):
        calls.append((name, seed))
        secs = {"a": 10.0, "b": 4.0}[name] + seed
        return {"variant": name, "flags": flags, "seed": seed, "data": args.data, "n": args.n,
                "p_over_dn": args.p_over_dn, "seconds": secs, "wall_s": secs + 5, "steps": 100, "status": "converged",
                "error_sign_max": 1e-6, "identified": name == "a" or seed == 0, "loss": 1e-12}

    monkeypatch.setattr(sv, "run_one", fake)
    argv = ["--seeds", "0", "1", "--variant", "a=--x", "--variant", "b=", "--out", str(tmp_path)]
    assert sv.main(argv) == 0
    assert calls == [("a", 0), ("b", 0), ("a", 1), ("b", 1)]
    out = capsys.readouterr().out
    assert "21.0" in out and "9.0" in out and "2/2" in out and "1/2" in out  # totals; exact runs
    assert sv.main(argv + ["--seeds", "0", "1", "2"]) == 0  # resumed: only seed 2 runs
    assert calls[4:] == [("a", 2), ("b", 2)]
    assert len((tmp_path / "results.csv").read_text().strip().splitlines()) == 1 + 6
