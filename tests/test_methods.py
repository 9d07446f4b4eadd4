"""The fast default method (Adam then Levenberg-Marquardt) and its pieces."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrecon as jr
from jaxrecon.loss import projector_residual, residual_linearization
from jaxrecon.data import project_to_sphere, sphere
from jaxrecon.attack import METHODS, Phase, Status, attack_target, make_solver, method_config
from jaxrecon.attack.lm import lm_direction, lm_system
from jaxrecon.attack.loop import advance, init_state
from jaxrecon.attack.stall import (PairRepair, Restart, RowRedraw, RowRepair, drop_costs, redraw_weakest_row,
                                   repair_antipodal_pair, repair_rows)


def problem(d, n, p_over_dn, dtype="float64", seed=1):
    data = jr.synthetic(jax.random.key(seed), n, d, dtype=dtype)
    fmap = jr.RandomFeatures(jax.random.key(seed + 1), d, int(p_over_dn * d * n), dtype=dtype)
    return data, jr.Target(fmap, jr.fit(fmap, data.x, data.y))


def test_default_is_auto_and_published_unchanged():
    assert jr.DEFAULT_METHOD == "auto"
    assert METHODS["adam-lm"]().lm is not None
    assert METHODS["adam-lm"]().stall.actions == (PairRepair(), RowRedraw())
    assert METHODS["published"]().lm is None and METHODS["published"]().first_order.lr == 20.0


def test_default_method_reaches_exact_reconstruction():
    data, target = problem(8, 3, 30)
    res = jr.reconstruct_seeds(target, jax.random.key(5), 3, 4, steps=3000, progress=False)
    errors = [jr.match(data.x, xh).error_sign for xh in res.x_hat]
    assert max(errors) <= 1e-4, errors
    assert all(s == "converged" for s in res.status)


def test_lm_step_equals_dense_numpy_gauss_newton():
    _, target = problem(3, 2, 8)
    cfg = method_config("adam-lm", cg_iters=40)
    tgt = attack_target(target, cfg)
    x = project_to_sphere(jax.random.normal(jax.random.key(3), (2, 3)))
    damping = jnp.asarray(1e-2)
    delta, loss, grad, _ = lm_direction(tgt, x, damping, cfg.lm.cg_iters)
    system = lm_system(tgt, x, damping)
    # dense reference: the full Jacobian of the residual, materialised
    r_fn = lambda xx: projector_residual(tgt.fmap, tgt.theta, xx)
    J = np.asarray(jax.jacfwd(r_fn)(x)).reshape(-1, 6)
    r = np.asarray(r_fn(x))
    D = np.repeat(np.asarray(system.D)[:, 0], 3)
    expected = np.linalg.solve(J.T @ J + float(system.mu) * np.diag(D), -J.T @ r)
    np.testing.assert_allclose(np.asarray(grad).ravel(), J.T @ r, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(np.asarray(delta).ravel(), expected, rtol=1e-6, atol=1e-12)
    assert float(loss) == pytest.approx(r @ r, rel=1e-12)


def test_multi_start_keeps_the_best_candidate():
    _, target = problem(6, 3, 10)
    cfg = method_config("adam", starts=4, start_steps=15)
    solver = make_solver(target, 3, cfg, 100)
    tgt = attack_target(target, cfg)
    key = jax.random.key(9)
    x_best, _, loss_best, steps = jax.jit(lambda k: solver.start.init(solver, k, tgt, jnp.float64))(key)
    # looped reference: run each candidate alone and keep the lowest loss
    losses, xs = [], []
    for k in jax.random.split(key, 4):
        x = project_to_sphere(jax.random.normal(k, (3, 6)))
        s = solver.phases[0].init(x)
        for _ in range(15):
            x, s, _, _ = solver.phases[0].step(tgt, x, s)
        xs.append(np.asarray(x))
        losses.append(float(solver.loss_fn(tgt, x)))
    i = int(np.argmin(losses))
    assert sorted(losses)[1] > 1.01 * losses[i]  # the winner is unambiguous
    np.testing.assert_allclose(np.asarray(x_best), xs[i], rtol=1e-6, atol=1e-8)  # jit vs eager rounding
    assert float(loss_best) == pytest.approx(losses[i], rel=1e-6) and int(steps) == 15


def test_redraw_replaces_only_the_weakest_row():
    data, target = problem(6, 3, 10)
    cfg = METHODS["adam-lm"]()
    tgt = attack_target(target, cfg)
    x = np.asarray(data.x).copy()
    x[1] = np.asarray(sphere(jax.random.key(4), 1, 6))[0]  # a wrong row; the others are exact
    new = np.asarray(redraw_weakest_row(tgt, jnp.asarray(x), jax.random.key(0), np.sqrt(6)))
    changed = np.flatnonzero(np.any(new != x, axis=1))
    assert changed.tolist() == [1]
    assert np.linalg.norm(new[1]) == pytest.approx(np.sqrt(6))


def test_below_threshold_the_default_does_not_pretend():
    # p = dn/4 gives p = 10 equations for dn = 40 unknowns: many x_hat explain theta exactly, so
    # the loss may well reach zero, but the matched error must stay large (nothing is identified).
    data, target = problem(10, 4, 0.25)
    res = jr.reconstruct_seeds(target, jax.random.key(5), 4, 2, steps=400, progress=False)
    for s in range(2):
        assert jr.match(data.x, res.x_hat[s]).error_sign > 0.1


@pytest.mark.parametrize("activation,slope", [("relu", None), ("relu_tanh", None),
                                              pytest.param("relu", 0.02, marks=pytest.mark.slow),
                                              pytest.param("erf", None, marks=pytest.mark.slow)])
def test_closed_form_gauss_newton_equals_autodiff(activation, slope, monkeypatch):
    # dense random features use the closed form; with it switched off, a streamed map (same V, row
    # by row) falls back to jax.linearize / linear_transpose of the residual
    data = jr.synthetic(jax.random.key(1), 5, 7, dtype="float64")
    dense = jr.RandomFeatures(jax.random.key(2), 7, 400, activation=activation, surrogate_slope=slope,
                              dtype="float64")
    streamed = dense.replace(block_size=100)
    theta = jr.fit(dense, data.x, data.y)
    x = data.x + 0.3 * jax.random.normal(jax.random.key(3), data.x.shape, jnp.float64)
    u, v = jax.random.normal(jax.random.key(4), (2,) + x.shape, jnp.float64)
    assert dense.prepare().residual_linearization(theta, x) is not None
    assert streamed.residual_linearization(theta, x) is not None  # the blocked closed form

    def pieces(fmap):
        lin = residual_linearization(fmap, theta, x)
        return lin.residual, lin.coef, lin.grad, lin.gram_matvec(u), lin.gram_matvec(v)

    fast = jax.jit(pieces)(dense)
    monkeypatch.setattr(jr.RandomFeatures, "residual_linearization", lambda self, *a, **k: None)
    slow = jax.jit(lambda f: pieces(f))(streamed)
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-12 * float(jnp.max(jnp.abs(b))))
    # J^T J is symmetric positive semi-definite
    Ju, Jv = fast[3], fast[4]
    assert float(jnp.sum(v * Ju)) == pytest.approx(float(jnp.sum(u * Jv)), rel=1e-10)
    assert float(jnp.sum(u * Ju)) > 0


def test_a_stall_takes_the_first_action_that_applies_and_restarts_the_first_phase():
    # a seed stalled next to the truth with two rows sign-flipped and compensated by an antipodal
    # pair: the pair repair applies (the row redraw after it does not run), Adam resumes
    data, target = problem(12, 6, 10)
    truth = np.asarray(data.x)
    z = truth[1] - 0.5 * truth[2]
    z = z / np.linalg.norm(z) * np.sqrt(12)
    x = truth.copy()
    x[[1, 2]] *= -1
    x[4], x[5] = z, -z
    cfg = method_config("adam-lm")
    solver = make_solver(target, 6, cfg, 100)
    tgt = attack_target(target, cfg)
    state = init_state(solver, jax.random.key(0), tgt)
    state = state._replace(x_hat=jnp.asarray(x), phase=jnp.asarray(Phase.STALLED, jnp.int32))
    from jaxrecon.attack.loop import _on_stall

    out = jax.jit(lambda s: _on_stall(solver, tgt, s))(state)
    assert int(out.stalls) == 1 and int(out.phase) == Phase.FIRST_ORDER
    new = np.asarray(out.x_hat)
    np.testing.assert_allclose(new[[0, 1, 2, 3]], truth[[0, 1, 2, 3]], rtol=1e-12)  # flips undone
    # not stalled: nothing changes
    same = jax.jit(lambda s: _on_stall(solver, tgt, s))(state._replace(phase=jnp.asarray(Phase.LM, jnp.int32)))
    assert int(same.stalls) == 0 and np.array_equal(np.asarray(same.x_hat), x)


def test_method_options_map_to_parts_and_removed_options_say_so():
    m = method_config("adam-lm", on_stall="restart", repair_pairs=False, cg_iters=12, first_steps=7, lr=0.1)
    assert m.stall.actions == (Restart(),) and m.lm.cg_iters == 12
    assert m.first_order.switch_after == 7 and m.first_order.lr == 0.1
    assert method_config("adam", polish="lm").lm is not None
    assert method_config("adam", polish="lm").first_order.switch_below == 1e-3
    assert method_config("adam-lm", reset_candidates=8).stall.actions == (PairRepair(candidates=8), RowRedraw(candidates=8))
    with pytest.raises(ValueError, match="stall_window: this option was removed"):
        method_config("adam-lm", stall_window=2)
    with pytest.raises(ValueError, match="restarts: this option was removed .renamed to 'start.candidates'"):
        method_config("adam", restarts=2)
    with pytest.raises(ValueError, match="unknown option"):
        method_config("adam", nope=1)
    with pytest.raises(ValueError, match="stall.actions"):
        method_config("adam-lm", on_stall="flip")


def test_an_lm_method_without_stall_actions_does_not_loop_forever():
    data, target = problem(6, 3, 0.5)  # below the threshold: LM stalls
    m = method_config("adam-lm")
    import dataclasses
    m = dataclasses.replace(m, stall=dataclasses.replace(m.stall, actions=()))
    m = m.with_phase(dataclasses.replace(m.lm, stall_after=3))
    res = jr.reconstruct(target, jax.random.key(0), 3, method=m, steps=40)
    assert int(res.steps) <= 40


def test_repair_undoes_flipped_rows_compensated_by_an_antipodal_pair():
    data, target = problem(12, 6, 10)
    cfg = method_config("adam-lm")
    tgt = attack_target(target, cfg)
    truth = np.asarray(data.x)
    z = truth[1] - 0.5 * truth[2]
    z = z / np.linalg.norm(z) * np.sqrt(12)
    x = truth.copy()
    x[[1, 2]] *= -1  # two rows at -x_j ...
    x[4], x[5] = z, -z  # ... and a pair spanning the linear feature V z (displacing x_4, x_5)
    repair = jax.jit(lambda xx: repair_antipodal_pair(tgt, xx, jax.random.key(0), np.sqrt(12)))
    new, found = repair(jnp.asarray(x))
    new = np.asarray(new)
    assert bool(found)
    np.testing.assert_allclose(new[[0, 1, 2, 3]], truth[[0, 1, 2, 3]], rtol=1e-12)  # flips undone, rest kept
    assert not np.allclose(new[4], z) and not np.allclose(new[5], -z)  # the pair redrawn
    np.testing.assert_allclose(np.linalg.norm(new[4:], axis=1), np.sqrt(12), rtol=1e-12)
    # without an antipodal pair nothing changes
    same, found = repair(jnp.asarray(truth))
    assert not bool(found) and np.array_equal(np.asarray(same), truth)


def test_row_repair_fixes_several_wrong_rows_at_once():
    data, target = problem(6, 5, 10)
    tgt = attack_target(target, METHODS["adam-lm-repair"]())
    truth = np.asarray(data.x)
    x = truth.copy()
    x[0] *= -1  # a row at -x_0 (the sign-flip minimum of ReLU features)
    x[1] = np.asarray(sphere(jax.random.key(4), 1, 6))[0]  # a random row
    x[2] = truth[3]  # a duplicate of another row
    loss = lambda xx: float(drop_costs(tgt.fmap, tgt.theta, jnp.asarray(xx))[0])
    repair = jax.jit(lambda xx: repair_rows(tgt, xx, jax.random.key(0), np.sqrt(6)))
    new, found = repair(jnp.asarray(x))
    new = np.asarray(new)
    assert bool(found)
    np.testing.assert_allclose(new[[0, 4]], truth[[0, 4]], rtol=1e-12)  # the sign restored, a right row kept
    assert loss(new) < loss(x) / 10
    np.testing.assert_allclose(np.linalg.norm(new, axis=1), np.sqrt(6), rtol=1e-12)
    same, found = repair(jnp.asarray(truth))  # at the training set nothing changes
    assert not bool(found) and np.array_equal(np.asarray(same), truth)
    assert METHODS["adam-lm-repair"]().stall.actions == (RowRepair(), RowRedraw())


def test_first_order_phase_hands_over_on_a_plateau_after_the_warmup():
    """``switch_plateau``: the phase ends once its loss has not fallen by ``switch_rtol`` over that
    many steps, never during the warm-up, and never while the loss keeps falling fast enough."""
    from jaxrecon.attack.first_order import FirstOrder, FirstOrderPhase

    def ends_at(values, **kw):
        cfg = FirstOrder(optimizer="sgd", lr=1e-3, momentum=None, **kw).validate()
        # the "target" is the loss value itself: a fixed sequence of losses, zero gradients
        ph = FirstOrderPhase(cfg, cfg.optimizer_fn(100), None, lambda x: x,
                             value_and_grad=lambda v, x: (v, jnp.zeros_like(x)))
        x = jnp.zeros((2, 3), jnp.float32)
        state = ph.init(x, jnp.float32)
        for k, v in enumerate(values, 1):
            x, state, value, _ = ph.step(jnp.float32(v), x, state)
            if bool(ph.done(value, k, state)):
                return k
        return None

    flat, falling = [1.0] * 12, [0.4 ** k for k in range(12)]
    assert ends_at(flat, switch_plateau=3, switch_rtol=0.5) == 4  # marked at step 1, 3 steps without a fall
    assert ends_at(flat, switch_plateau=3, switch_rtol=0.5, warmup=6) == 9  # the window lies after the warm-up
    assert ends_at(falling, switch_plateau=3, switch_rtol=0.5) is None
    # marks at 1.0 (step 1), 0.65 (4) and 0.44 (7); three steps without a 30 % fall after that
    assert ends_at([1.0, 0.9, 0.8, 0.65, 0.6, 0.5, 0.44, 0.43, 0.42, 0.41], switch_plateau=3, switch_rtol=0.3) == 10
    assert ends_at(flat) is None  # no plateau rule: no hand-over
    with pytest.raises(ValueError, match="switch_plateau"):
        FirstOrder(switch_plateau=0).validate()
    with pytest.raises(ValueError, match="switch_rtol"):
        FirstOrder(switch_rtol=1.5).validate()


def test_a_plateau_hands_the_attack_over_to_lm_before_switch_after():
    """In the attack loop: with a learning rate too small to move the loss, ``switch_plateau = 20``
    hands over to LM 20 steps after the warm-up (100), long before ``switch_after = 300``."""
    _, target = problem(6, 3, 10, dtype="float32")

    def phase_after(steps, **kw):
        m = method_config("adam-lm", lr=1e-9, **kw)
        solver = make_solver(target, 3, m)
        tgt = attack_target(target, m)
        state = init_state(solver, jax.random.key(0), tgt)
        return jax.jit(lambda s: advance(solver, tgt, s, steps))(state)

    early = phase_after(130, switch_plateau=20)
    assert int(early.phase) == Phase.LM and int(early.phase_start) == 120  # warm-up 100 + the window 20
    assert int(phase_after(130).phase) == Phase.FIRST_ORDER


def test_lm_phase_stalls_on_a_plateau_above_the_floor(monkeypatch):
    """``stall_plateau``: the LM phase stalls once its loss has not fallen by ``stall_rtol`` over
    that many steps, never while it falls fast enough, and never at losses at or below
    ``STALL_FLOOR`` (a zero's float floor is the precision stop's); without it, only
    ``stall_after`` ends the phase (scripted losses: each step reports the "target" as its loss)."""
    from jaxrecon.attack.lm import STALL_FLOOR, LevenbergMarquardt, LMPhase, LMWatch

    monkeypatch.setattr(LMPhase, "_step", lambda self, tgt, x, damping: (x, damping * 4.0, tgt, jnp.bool_(True), 0))

    def ends_at(values, **kw):
        ph = LMPhase(LevenbergMarquardt(**kw).validate(), None, lambda x: x)
        x = jnp.zeros((2, 3), jnp.float32)
        state = ph.init(x, jnp.float32)
        for k, v in enumerate(values, 1):
            x, state, value, _ = ph.step(jnp.float32(v), x, state)
            if bool(ph.done(value, k, state)):
                return k, state
        return None, state

    flat = [3e-3] * 12
    k, state = ends_at(flat, stall_plateau=4)
    assert k == 5 and isinstance(state, LMWatch)  # marked at step 1, then 4 steps without a 1 % fall
    assert float(state.damping) == pytest.approx(1e-3 * 4.0 ** 5)  # the damping is carried in the watch
    assert ends_at([3e-3 * 0.98 ** k for k in range(12)], stall_plateau=4)[0] is None  # 2 % per step
    assert ends_at([3e-3 * 0.998 ** k for k in range(12)], stall_plateau=4)[0] == 5  # 0.2 % per step: a creep
    assert ends_at([STALL_FLOOR / 2] * 12, stall_plateau=4)[0] is None  # at a zero's floor: not a plateau
    assert ends_at(flat)[0] is None and ends_at(flat, stall_after=6)[0] == 6  # no rule: stall_after only
    assert not isinstance(ends_at(flat)[1], LMWatch)
    with pytest.raises(ValueError, match="stall_plateau"):
        LevenbergMarquardt(stall_plateau=0).validate()
    with pytest.raises(ValueError, match="stall_rtol"):
        LevenbergMarquardt(stall_rtol=1.0).validate()


def test_lm_plateau_stall_in_the_attack_loop():
    """In the attack loop the LM phase's watch is carried and a plateau stalls the seed (the stall
    action runs and the first phase starts again), long before ``stall_after``."""
    _, target = problem(6, 3, 10, dtype="float32")

    def after(steps, **kw):
        m = method_config("adam-lm", switch_after=5, **kw)
        solver = make_solver(target, 3, m)
        tgt = attack_target(target, m)
        return jax.jit(lambda s: advance(solver, tgt, s, steps))(init_state(solver, jax.random.key(0), tgt))

    # a fall of 99.9999 % per step is needed to count as progress: the phase stalls after 3 LM steps
    early = after(20, stall_plateau=2, stall_rtol=0.999999)
    assert int(early.stalls) >= 1 and int(early.status) == Status.RUNNING
    assert int(after(20).stalls) == 0
