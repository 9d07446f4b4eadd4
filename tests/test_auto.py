"""The default method ``auto``: its choice per map, its escalation, and what results record."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrecon as jr
from jaxrecon.attack import Status, make_solver, method_config
from jaxrecon.attack.auto import (ESCALATE, NEAR_THRESHOLD, NETWORK_KEEPS, SPLIT_TUNED, choice, may_split, method_run,
                                  reason, resolve)
from jaxrecon.attack.loop import _on_stall, attack_target, init_state
from jaxrecon.attack.methods import adam_lm, adam_lm_split, auto, global_
from jaxrecon.attack.state import Phase


def rf(d=6, n=3, ratio=10.0, activation="relu", block_size=None, dtype=None):
    return jr.RandomFeatures(jax.random.key(1), d, int(ratio * d * n), activation=activation, block_size=block_size,
                             dtype=dtype)


# the table of jaxrecon.attack.auto: (activation, layout, ratio) -> choice; "stored" is a dense V
CHOICES = [
    ("relu", "stored", 10, "adam-lm-split"),
    ("gelu", "stored", 10, "adam-lm-split"),
    ("gelu", "stored", 4, "adam-lm-split"),
    ("tanh", "stored", 10, "adam-lm"),
    ("erf", "stored", 10, "adam-lm"),
    ("relu_tanh", "stored", 10, "adam-lm"),
    ("relu", "stored", 1.5, "global"),
    ("tanh", "stored", 1.25, "global"),
    ("tanh", "streamed", 10, "adam-lm"),
]


@pytest.mark.parametrize("activation,layout,ratio,want", CHOICES)
def test_choice_follows_the_table(activation, layout, ratio, want):
    fmap = rf(activation=activation, ratio=ratio, block_size=None if layout == "stored" else 64)
    assert choice(fmap, 3) == want
    assert want in reason(fmap, 3)


def test_streamed_relu_follows_check_split():
    """A streamed ReLU map gets the split start exactly when the split start accepts streamed V."""
    from jaxrecon.attack.split import check_split

    fmap = rf(block_size=64)
    try:
        check_split(fmap)
        ok = True
    except ValueError:
        ok = False
    assert choice(fmap, 3) == ("adam-lm-split" if ok else "adam-lm")


def test_networks_take_the_random_start():
    from flax import nnx

    from jaxrecon.features.network import NetworkFeatures
    from jaxrecon.models.train import split_model
    from jaxrecon.models.two_layer import TwoLayer

    d, n = 5, 2
    apply, params = split_model(TwoLayer(d, 40, 1, rngs=nnx.Rngs(0)))
    fmap = NetworkFeatures(apply, params, d, 1, "head")
    assert fmap.p >= NEAR_THRESHOLD * d * n
    assert choice(fmap, n) == "adam-lm"
    assert choice(fmap, 10) == "global"
    # on a network map the split start's LM plateau stall and precision window stay (NETWORK_KEEPS);
    # the rest of its tuning reverts, and a user's value wins
    m = resolve(method_config("auto"), fmap, n)
    split, plain = adam_lm_split(), adam_lm()
    assert m.start.kind == "random" and m.lm.stall_plateau == split.lm.stall_plateau != plain.lm.stall_plateau
    assert m.stop.precision_window == split.stop.precision_window != plain.stop.precision_window
    assert m.first_order.switch_plateau == plain.first_order.switch_plateau
    assert resolve(method_config("auto", stall_plateau=20), fmap, n).lm.stall_plateau == 20
    assert set(NETWORK_KEEPS) <= set(SPLIT_TUNED)


def test_resolve_keeps_user_options_and_reverts_split_tuning():
    m = method_config("auto", cg_iters=41)
    split = resolve(m, rf(), 3)
    assert split.start.kind == "split" and split.lm.cg_iters == 41 and split.stall.escalate == ESCALATE
    assert split.start.split.features == adam_lm_split().start.split.features
    plain = resolve(m, rf(activation="tanh"), 3)
    assert plain.start.kind == "random" and plain.lm.cg_iters == 41
    assert plain.first_order.switch_plateau == adam_lm().first_order.switch_plateau
    assert plain.lm.stall_plateau == adam_lm().lm.stall_plateau
    assert plain.stop.precision_window == adam_lm().stop.precision_window
    # an option the user set on auto survives the random start
    user = resolve(method_config("auto", switch_plateau=33), rf(activation="tanh"), 3)
    assert user.first_order.switch_plateau == 33
    near = resolve(m, rf(ratio=1.5), 3)
    assert near.population == global_().population and near.start.kind == "random"
    # named methods are never changed
    for name in ("published", "adam", "adam-lm", "adam-lm-split", "global"):
        assert resolve(method_config(name), rf(), 3) == method_config(name)


def test_make_solver_resolves_and_results_record_what_ran():
    fmap = rf(d=5, n=2, ratio=10, activation="tanh")
    assert make_solver(jr.Target(fmap, jnp.ones(fmap.p)), 2, "auto").method.start.kind == "random"
    assert method_run("auto", fmap, 2) == "adam-lm"
    assert method_run(auto(), rf(), 3) == "adam-lm-split"
    assert method_run(method_config("adam-lm"), fmap, 2) == "adam-lm"
    assert method_run(method_config("adam-lm", cg_iters=7), fmap, 2) == "custom"
    assert method_run("published", fmap, 2) == "published"


def test_may_split_for_the_memory_policy():
    assert may_split("relu", 600, 10, 6) and not may_split("tanh", 600, 10, 6)
    assert not may_split("relu", int((NEAR_THRESHOLD - 0.1) * 60), 10, 6)


def test_escalation_gives_a_fresh_start_and_the_best_iterate_survives():
    """A seed forced to stall (its phase set to STALLED by hand, a scripted stall) gets a new start on
    every ESCALATE-th stall, not before; finalize returns the best iterate the watch kept."""
    d, n = 5, 2
    data = jr.synthetic(jax.random.key(0), n, d, dtype="float64")
    fmap = rf(d=d, n=n, ratio=10, activation="tanh", dtype="float64")
    target = jr.Target(fmap, jr.fit(fmap, data.x, data.y))
    solver = make_solver(target, n, "auto", 1000)
    assert solver.method.stall.escalate == ESCALATE and solver.stop is not None
    tgt = attack_target(target, solver.method, n=n)
    s = init_state(solver, jax.random.key(3), tgt, x0=data.x)  # start at the training set
    # the watch has seen the exact iterate
    s = s._replace(watch=s.watch._replace(best_loss=jnp.asarray(0.0, s.loss.dtype), best_x=data.x))
    seen = []
    for k in range(1, 2 * ESCALATE + 1):
        before = s.x_hat
        s = _on_stall(solver, tgt, s._replace(phase=jnp.asarray(Phase.STALLED, jnp.int32)))
        moved = float(jnp.max(jnp.abs(s.x_hat - before)))
        seen.append(moved)
        assert int(s.stalls) == k and int(s.phase) == Phase.FIRST_ORDER
        if k % ESCALATE == 0:  # a fresh random start: far from where it was
            assert moved > 0.1, (k, moved)
    # the best iterate is the one finalize gives back once the seed ends on its budget
    from jaxrecon.attack.loop import finalize

    res = finalize(solver, tgt, s._replace(steps=jnp.asarray(1000, jnp.int32)), 1000)
    np.testing.assert_allclose(np.asarray(res.x_hat), np.asarray(data.x), atol=1e-12)


def test_auto_reconstructs_relu_and_tanh_and_records_the_choice():
    for activation, want in (("relu", "adam-lm-split"), ("tanh", "adam-lm")):
        data = jr.synthetic(jax.random.key(2), 3, 6)
        fmap = rf(d=6, n=3, ratio=10, activation=activation)
        target = jr.Target(fmap, jr.fit(fmap, data.x, data.y))
        res = jr.reconstruct_seeds(target, jax.random.key(4), 3, 2, steps=3000, progress=False)
        assert res.method_run == want
        errors = [jr.match(data.x, xh).error_sign for xh in res.x_hat]
        assert max(errors) <= 1e-3, (activation, errors, res.status)


def test_the_split_start_runs_where_it_pays():
    """Below n = d/4 on a small V, adam-lm solves and compiles faster; large V or n > d/4: the split start."""
    from jaxrecon.attack.auto import SPLIT_MIN_ENTRIES, split_pays

    assert choice(rf(d=20, n=2, ratio=10), 2) == "adam-lm"
    assert "compiles faster" in reason(rf(d=20, n=2, ratio=10), 2)
    assert choice(rf(d=20, n=6, ratio=10), 6) == "adam-lm-split"
    assert not split_pays(20000, 100, 20) and split_pays(SPLIT_MIN_ENTRIES // 100, 100, 20)
    assert split_pays(76800, 768, 10)  # photos16, n = 10, p = 10 dn
    assert not may_split("relu", 800, 20, 4) and may_split("relu", 2400, 20, 12)


def test_a_sweep_records_what_auto_ran_and_takes_method_options(tmp_path):
    """results.csv's method_run says what auto chose per point; a dotted method option set in the
    sweep config reaches the solver (lm.cg_iters changes the program's key and the numbers)."""
    from jaxrecon.sweeps import SweepConfig, sweep
    from jaxrecon.sweeps.points import grid, program_key

    cfg = dict(d=[8], n=[3], p_over_dn=[1.5, 8], activation=["relu", "tanh"], seeds=1, steps=60)
    table = sweep(SweepConfig(**cfg), out=tmp_path / "a", progress=False, plots=False, log=None)
    ran = {(a, int(p)): m for a, p, m in zip(table["activation"], table["p"], table["method_run"])}
    assert ran == {("relu", 36): "global", ("relu", 192): "adam-lm-split", ("tanh", 36): "global",
                   ("tanh", 192): "adam-lm"}
    assert "method_run" in (tmp_path / "a" / "results.csv").read_text().splitlines()[0]
    r1 = SweepConfig(**cfg).resolved()
    r2 = SweepConfig(**cfg, attack={"lm": {"cg_iters": 7}}).resolved()
    assert r2.method_options() == {"lm.cg_iters": 7} and r1.method_options() == {}
    p = grid(r1)[0]
    assert program_key(p, r1, p.p) != program_key(p, r2, p.p)


def test_escalation_keeps_the_best_iterate_without_a_precision_stop_and_resets_the_marks():
    """Any method that escalates keeps the watch: adam-lm with stall.escalate=1 (no precision stop)
    started at the training set returns it after a fresh start; the plateau mark restarts there."""
    from jaxrecon.attack.loop import finalize

    d, n = 5, 2
    data = jr.synthetic(jax.random.key(0), n, d, dtype="float64")
    fmap = rf(d=d, n=n, ratio=10, activation="tanh", dtype="float64")
    target = jr.Target(fmap, jr.fit(fmap, data.x, data.y))
    solver = make_solver(target, n, method_config("adam-lm", stall={"escalate": 1}), 1000)
    assert solver.stop is not None and solver.stop.precision_tol is None
    tgt = attack_target(target, solver.method, n=n)
    s = init_state(solver, jax.random.key(3), tgt, x0=data.x)
    s = s._replace(watch=s.watch._replace(best_loss=jnp.asarray(0.0, s.loss.dtype), best_x=data.x,
                                          mark_loss=jnp.asarray(1e-3, s.loss.dtype)), steps=jnp.asarray(50, jnp.int32))
    s = _on_stall(solver, tgt, s._replace(phase=jnp.asarray(Phase.STALLED, jnp.int32)))
    assert float(jnp.max(jnp.abs(s.x_hat - data.x))) > 0.1  # a fresh start
    assert int(s.watch.mark_step) == 50 and np.isinf(float(s.watch.mark_loss))
    res = finalize(solver, tgt, s._replace(steps=jnp.asarray(1000, jnp.int32)), 1000)
    np.testing.assert_allclose(np.asarray(res.x_hat), np.asarray(data.x), atol=1e-12)


def test_method_options_do_not_depend_on_their_order():
    a = method_config("global", **{"population.size": 1, "population.cull": 0.25})
    b = method_config("global", **{"population.cull": 0.25, "population.size": 1})
    assert a == b and a.population is None
    c = method_config("adam-lm-split", **{"start.split.lm.cg_iters": 10, "lm.damping": 0.5})
    e = method_config("adam-lm-split", **{"lm.damping": 0.5, "start.split.lm.cg_iters": 10})
    assert c == e and c.start.split.lm.damping == 0.5
    off = method_config("adam-lm-split", first_order={"switch_plateau": 0}, lm={"stall_plateau": 0})
    assert off.first_order.switch_plateau is None and off.lm.stall_plateau is None


def test_a_given_start_is_not_escalated_away():
    """reconstruct(x0=...) under auto (which escalates) keeps the given start: with LM phases forced
    to stall after one step (so escalation would have moved it many times), the run equals the same
    run with escalation off, bit for bit."""
    d, n = 5, 2
    data = jr.synthetic(jax.random.key(0), n, d, dtype="float64")
    fmap = rf(d=d, n=n, ratio=10, activation="tanh", dtype="float64")
    target = jr.Target(fmap, jr.fit(fmap, data.x, data.y))
    x0 = data.x + 1e-2 * jax.random.normal(jax.random.key(5), data.x.shape, data.x.dtype)
    run = lambda **o: jr.reconstruct(target, jax.random.key(1), n, x0=x0, steps=300, **{"lm.stall_after": 1, **o})
    a, b = run(), run(**{"stall.escalate": 0})
    np.testing.assert_array_equal(np.asarray(a.x_hat), np.asarray(b.x_hat))
    assert int(a.steps) == int(b.steps) and int(a.stalls) == int(b.stalls) >= 2 * ESCALATE


def test_near_the_threshold_the_population_is_the_escalation():
    """auto's global keeps its population and does not also restart members every few stalls
    (unless the user set stall.escalate); above the threshold the seed escalates."""
    fmap = rf(d=10, n=4, ratio=2)
    near = resolve(method_config("auto"), fmap, 4)
    assert near.population is not None and near.stall.escalate == 0
    mine = resolve(method_config("auto", stall={"escalate": 5}), fmap, 4)
    assert mine.population is not None and mine.stall.escalate == 5
    far = resolve(method_config("auto"), rf(d=10, n=4, ratio=10), 4)
    assert far.population is None and far.stall.escalate == ESCALATE
