import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrecon as jr
from jaxrecon.attack import METHODS, Status, method_config

D, N = 10, 4


def problem(dtype="float64", p_over_dn=20, block_size=None, activation="relu"):
    data = jr.synthetic(jax.random.key(1), N, D, dtype=dtype)
    fmap = jr.RandomFeatures(jax.random.key(2), D, p_over_dn * D * N, activation, block_size, dtype=dtype)
    return data, jr.Target(fmap, jr.fit(fmap, data.x, data.y))


def test_published_method_is_the_papers_recipe():
    cfg = METHODS["published"]()
    fo = cfg.first_order
    assert (fo.optimizer, fo.lr, fo.momentum, cfg.loss.surrogate_slope, cfg.start.init, cfg.stop.tol) == (
        "sgd", 20.0, 0.9, 0.02, "gaussian", 1e-7)
    assert cfg.loss.form == "kernel" and fo.schedule == "constant" and cfg.lm is None and cfg.stall.actions == ()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_reconstruction_above_threshold(dtype):
    data, target = problem(dtype)
    res = jr.reconstruct_seeds(target, jax.random.key(3), N, 3, steps=3000, progress=False)  # default method
    for s in range(3):
        assert res.loss[s] < 1e-6
        m = jr.match(data.x, res.x_hat[s])
        assert m.error_sign < 1e-2, (s, m)
        np.testing.assert_allclose(np.linalg.norm(res.x_hat[s], axis=1), np.sqrt(D), rtol=1e-5)


def test_vmapped_seeds_equal_looped_seeds():
    _, target = problem()
    key = jax.random.key(11)
    res = jr.reconstruct_seeds(target, key, N, 3, method="adam", steps=150, chunk=40, progress=False)
    single = jax.jit(lambda k: jr.reconstruct(target, k, N, method="adam", steps=150))
    for s, k in enumerate(jax.random.split(key, 3)):
        r = single(k)
        np.testing.assert_allclose(res.x_hat[s], r.x_hat, rtol=1e-9, atol=1e-9)
        assert int(r.steps) == res.steps[s]
    # and jax.vmap over keys of the pure function gives the same numbers
    batched = jax.jit(jax.vmap(lambda k: jr.reconstruct(target, k, N, method="adam", steps=150)))(
        jax.random.split(key, 3))
    np.testing.assert_allclose(batched.x_hat, res.x_hat, rtol=1e-9, atol=1e-9)


def test_stopped_seed_no_longer_changes():
    # Two seeds with different stopping times: running in many short chunks (a stopped seed sits
    # through the later chunks of the other) must give exactly the result of one long chunk.
    _, target = problem()
    r2 = jr.reconstruct_seeds(target, jax.random.key(4), N, 2, steps=3000, tol=1e-8, chunk=3000, progress=False)
    assert r2.status == ["converged", "converged"] and max(r2.loss) <= 1e-8
    assert r2.steps[0] != r2.steps[1]
    r1 = jr.reconstruct_seeds(target, jax.random.key(4), N, 2, steps=3000, tol=1e-8,
                              chunk=max(1, int(min(r2.steps)) // 3), progress=False)
    np.testing.assert_array_equal(r1.x_hat, r2.x_hat)
    np.testing.assert_array_equal(r1.steps, r2.steps)
    single = jr.reconstruct(target, jax.random.split(jax.random.key(4), 2)[0], N, steps=3000, tol=1e-8)
    assert int(single.status) == Status.CONVERGED and int(single.steps) == r2.steps[0]


def test_published_method_decreases_loss_with_surrogate():
    _, target = problem()
    res = jr.reconstruct(target, jax.random.key(0), N, method="published", steps=200)
    x0 = jax.random.normal(jax.random.key(0), (N, D))
    start = jr.projector_loss(target.fmap, target.theta, x0)
    assert float(res.loss) < 0.5 * float(start)


def test_any_optax_optimizer_by_name():
    _, target = problem()
    res = jr.reconstruct(target, jax.random.key(0), N, method="adam", optimizer="rmsprop", lr=0.01, steps=50)
    assert np.isfinite(float(res.loss))
    with pytest.raises(ValueError, match="optimizer: unknown optax optimiser 'nope'"):
        method_config("published", optimizer="nope")


def test_nonfinite_is_reported_not_silent():
    _, target = problem()
    bad = jr.Target(target.fmap, target.theta.at[0].set(jnp.nan))
    # theta enters as a traced argument, so the up-front finiteness check cannot see the NaN
    res = jax.jit(lambda t, k: jr.reconstruct(t, k, N, method="adam", steps=20))(bad, jax.random.key(0))
    assert int(res.status) == Status.NONFINITE
    assert int(res.steps) == 0 and np.all(np.isfinite(np.asarray(res.x_hat)))
