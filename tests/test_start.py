"""The pursuit start (jaxrecon.attack.start): a single point is found, rows lie on the sphere, the
option is validated, the default start is unchanged, and on a small case it is no worse than random."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrecon as jr
from jaxrecon.attack import method_config
from jaxrecon.attack.loop import attack_target, init_state, make_solver
from jaxrecon.attack.start import pursuit_score, pursuit_start


def _target(n, d, ratio=10):
    data = jr.synthetic(jax.random.key(1), n, d)
    fmap = jr.RandomFeatures(jax.random.key(2), d, ratio * d * n)
    return data, jr.Target(fmap, jr.fit(fmap, data.x, data.y))


def test_pursuit_finds_a_single_training_point():
    data, t = _target(1, 6)
    tgt = attack_target(t, method_config("adam-lm"))
    x = pursuit_start(tgt, jax.random.key(0), 1, np.sqrt(6), jnp.float32)
    assert jr.match(data.x, x).row_error[0] < 0.05
    # the score is maximal at the training point (Cauchy-Schwarz)
    assert pursuit_score(tgt.fmap, data.x[0], tgt.theta) >= pursuit_score(tgt.fmap, x[0], tgt.theta) * (1 - 1e-5)


def test_pursuit_rows_on_sphere_and_deterministic():
    _, t = _target(3, 5)
    tgt = attack_target(t, method_config("adam-lm"))
    a = pursuit_start(tgt, jax.random.key(4), 3, np.sqrt(5), jnp.float32, candidates=16, refine_steps=2)
    b = pursuit_start(tgt, jax.random.key(4), 3, np.sqrt(5), jnp.float32, candidates=16, refine_steps=2)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), np.sqrt(5), rtol=1e-5)
    np.testing.assert_array_equal(a, b)


def test_start_option():
    assert method_config("adam-lm").start.kind == "random"
    assert method_config("adam-lm", start={"kind": "pursuit"}).start.kind == "pursuit"
    with pytest.raises(ValueError, match="start"):
        method_config("adam-lm", start="bogus")
    # the default start is the random one, as before the option existed
    _, t = _target(3, 5)
    solver = make_solver(t, 3, "adam-lm")
    tgt = attack_target(t, solver.method)
    x0 = init_state(solver, jax.random.key(5), tgt).x_hat
    dtype = jnp.result_type(tgt.theta.dtype, jnp.float32)
    np.testing.assert_array_equal(x0, solver.fresh_x(jax.random.key(5), 5, dtype))


def test_pursuit_start_no_worse_than_random_on_small_case():
    data, t = _target(4, 8)
    results = {s: jr.reconstruct(t, jax.random.key(3), 4, steps=400, start=s) for s in ("random", "pursuit")}
    rnd, pur = results["random"], results["pursuit"]
    assert float(pur.loss) <= max(float(rnd.loss), 1e-12)
    assert int(pur.steps) <= int(rnd.steps)
    assert jr.match(data.x, pur.x_hat).error_sign <= 1e-3
