"""The split start over a streamed V (jaxrecon/features/even_streamed.py): every product of the even
features, the split arrays, the prefix target and the sign solve equal the stored V's, and a short
adam-lm-split attack on a streamed map reaches the training set as on the stored one."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrecon as jr
from jaxrecon import loss as L
from jaxrecon.attack import split as S
from jaxrecon.metrics import match


def _maps(d, n, block, activation="relu", dtype="float64", seed=1):
    """``(data, stored map, streamed map, theta)``: one key, ``p = 10 d n``."""
    data = jr.synthetic(jax.random.key(seed), n, d)
    fmap = jr.RandomFeatures(jax.random.key(seed + 1), d, 10 * d * n, activation=activation, dtype=dtype).prepare()
    theta = jr.fit(fmap, jnp.asarray(data.x, dtype), jnp.asarray(data.y, dtype))
    return data, fmap, fmap.replace(V=None, block_size=block), theta


def _rel(a, b):
    return float(jnp.linalg.norm(jnp.asarray(a) - b) / jnp.linalg.norm(b))


def _pieces(ev, te, x, x2, alpha, u):
    """Every product of the even features the attack and the sign solve use, at ``x``."""
    lin = L.residual_linearization(ev, te, x)
    value, grad = L.residual_value_and_grad(ev, te, x)
    A, v, B = ev.gram_project_b(x, te)
    return {"gram": ev.gram(x, x2), "project": ev.project(x, te), "adjoint": ev.adjoint(x, alpha),
            "features": ev.features(x), "gram_project": A, "gram_project_v": v, "B": B,
            "value": value, "grad": grad, "residual": lin.residual, "lin_grad": lin.grad,
            "gram_matvec": lin.gram_matvec(u)}


# float64 to rounding; float32 within its summation error (the blocks sum in another order)
@pytest.mark.parametrize("dtype,tol,activation,block", [("float64", 1e-11, "relu", 37), ("float32", 2e-4, "gelu", 64)])
def test_streamed_even_features_equal_the_stored(dtype, tol, activation, block):
    d, n = 6, 5
    data, fmap, sfm, theta = _maps(d, n, block, activation, dtype)
    stored, streamed = jr.Target(fmap, theta), jr.Target(sfm, theta)
    for a, b in zip(jax.jit(S.split_arrays)(streamed), S.split_arrays(stored)):  # chol, theta_e, m_theta
        assert _rel(a, b) < tol
    P, Q = S.split_problem(stored), S.split_problem(streamed)
    assert Q.even.fmap.V is None and not Q.even.fmap.dense and Q.even.fmap.p == fmap.p
    k = jax.random.split(jax.random.key(3), 3)
    x = jnp.asarray(data.x + 0.3 * jax.random.normal(k[0], data.x.shape), dtype)
    alpha = jax.random.normal(k[1], (n,), dtype)
    u = jax.random.normal(k[2], x.shape, dtype)
    te = P.even.theta
    want = jax.jit(_pieces)(P.even.fmap, te, x, x[:3], alpha, u)
    got = jax.jit(_pieces)(Q.even.fmap, te, x, x[:3], alpha, u)
    for name in want:
        assert _rel(got[name], want[name]) < tol, name


def test_streamed_prefix_target_and_signs():
    """The prefix of a streamed map is the map with ``p' `` rows and the same key (no copy): its
    rows, ``theta``, split arrays and even products are the stored prefix's; the sign solve on it
    gives the training rows back from any signs. (Blocks of 200 rows: the prefix's 130 in one.)"""
    d, n = 6, 5
    data, fmap, sfm, theta = _maps(d, n, 200)
    sub, ref = S.prefix_target(jr.Target(sfm, theta), 130), S.prefix_target(jr.Target(fmap, theta), 130)
    assert (sub.fmap.p, sub.fmap.block_size, sub.fmap.V) == (130, 200, None)
    np.testing.assert_array_equal(jax.random.key_data(sub.fmap.key), jax.random.key_data(sfm.key))
    np.testing.assert_array_equal(sub.theta, ref.theta)
    np.testing.assert_allclose(jax.jit(lambda f: f.weights())(sub.fmap), ref.fmap.V, rtol=1e-15, atol=1e-15)
    P, Q = S.split_problem(ref), S.split_problem(sub)
    assert _rel(Q.even.theta, P.even.theta) < 1e-11 and _rel(Q.m_theta, P.m_theta) < 1e-11
    assert _rel(Q.even.fmap.gram(data.x, data.x), P.even.fmap.gram(data.x, data.x)) < 1e-11
    flipped = data.x.at[::2].multiply(-1)
    assert float(L.projector_loss(Q.even.fmap, Q.even.theta, flipped, form="residual")) < 1e-20
    x, relaxed = S.choose_signs(Q, flipped)
    np.testing.assert_allclose(x, data.x, atol=1e-8)
    assert float(jnp.max(jnp.abs(relaxed))) <= 1.0 + 1e-12
    batched = jax.tree_util.tree_map(lambda a: jnp.stack([a, a]), jr.Target(sfm, theta))
    bsub = S.prefix_target(batched, 130)
    assert bsub.fmap.p == 130 and bsub.theta.shape == (2, 130) and bsub.fmap.V is None


def test_adam_lm_split_on_a_streamed_map_reaches_the_training_set(capsys):
    """d = 8, n = 4, p = 10 d n = 320 in blocks of 96 (the prefix of 5 d n = 160 rows: one block
    and a partial one): the seeds driver (a chunked first stage, as the CLI runs it) recovers
    every row, as on the stored map."""
    d, n = 8, 4
    data = jr.synthetic(jax.random.key(1), n, d)
    dense = jr.RandomFeatures(jax.random.key(2), d, 10 * d * n, dtype="float32")
    theta = jr.fit(dense, jnp.asarray(data.x, jnp.float32), jnp.asarray(data.y, jnp.float32))
    for fmap in (dense, dense.replace(block_size=96)):
        res = jr.reconstruct_seeds(jr.Target(fmap, theta), jax.random.key(7), n, 1, method="adam-lm-split",
                                   steps=1500, chunk=100)
        assert res.status[0] == "converged", fmap.describe()
        assert float(match(data.x, res.x_hat[0]).error_sign) <= 1e-3, fmap.describe()
        assert res.steps[0] > 1
    assert "on the first 160 of 320 features" in capsys.readouterr().err


def test_streamed_even_products_do_not_store_V():
    """XLA's memory analysis: the streamed even features' first-order step, LM product and split
    arrays hold a few blocks, not ``V`` (d = 64, p = 16384: V is 4 MB in float32): within the memory
    model that sizes a streamed map's blocks with its margin (``scale.step_bytes`` times ``MARGIN``:
    0.84 MB here; measured 0.69, 0.76, 0.55 MB) and within 10 % of the plain streamed map's step
    and product. The memory policy counts the prefix copy for a stored ``V`` only."""
    from jaxrecon.scale import MARGIN, choose_layout, step_bytes

    d, n, p = 64, 4, 16_384
    x = jax.random.normal(jax.random.key(1), (n, d), jnp.float32)
    sfm = jr.RandomFeatures(jax.random.key(2), d, p, dtype="float32", block_size=512)
    theta = jax.random.normal(jax.random.key(3), (p,), jnp.float32)
    even = jax.eval_shape(lambda t: S.split_problem(t).even, jr.Target(sfm, theta))
    temp = lambda f, *a: jax.jit(f).lower(*a).compile().memory_analysis().temp_size_in_bytes
    step = lambda fm, t: L.residual_value_and_grad(fm, t, x)
    product = lambda fm, t, u: L.residual_linearization(fm, t, x).gram_matvec(u)
    limit = MARGIN * step_bytes(d, n, p, 512)
    assert limit < p * d * 4 / 4
    assert temp(step, even.fmap, even.theta) < min(limit, 1.1 * temp(step, sfm, theta))
    assert temp(product, even.fmap, even.theta, x) < min(limit, 1.1 * temp(product, sfm, theta, x))
    assert temp(S.split_arrays, jr.Target(sfm, theta)) < limit
    plain, split = (choose_layout(p, d, n, 1, 4, "703MB", None, copied_rows=rows) for rows in (0, p // 2))
    assert not plain.dense and (split.dense, split.block_size) == (plain.dense, plain.block_size)


SHARDED_SCRIPT = r"""
import jax, jax.numpy as jnp
jax.config.update("jax_enable_x64", True)
import jaxrecon as jr
from jaxrecon import loss as L
from jaxrecon.attack import split as S
d, n = 5, 4
data = jr.synthetic(jax.random.key(1), n, d)
fmap = jr.RandomFeatures(jax.random.key(2), d, 10 * d * n, dtype="float64").prepare()
theta = jr.fit(fmap, data.x, data.y)
rel = lambda a, b: float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))
P = S.split_problem(jr.Target(fmap, theta))
Q = jax.jit(S.split_problem)(jr.Target(fmap.replace(V=None, block_size=24, shards=4), theta))  # 9 blocks -> 12
x = data.x + 0.3 * jax.random.normal(jax.random.key(3), data.x.shape)
u = jax.random.normal(jax.random.key(4), x.shape)
f = lambda ev, t: (ev.gram(x, x), ev.project(x, t), ev.adjoint(x, x[:, 0]), *L.residual_value_and_grad(ev, t, x),
                   L.residual_linearization(ev, t, x).gram_matvec(u))
errs = [rel(a, b) for a, b in zip(jax.jit(f)(Q.even.fmap, Q.even.theta), f(P.even.fmap, P.even.theta))]
errs += [rel(Q.even.theta, P.even.theta), rel(Q.m_theta, P.m_theta)]
print("max", max(errs))
"""


def test_streamed_split_over_sharded_blocks():
    """A sharded map (4 simulated devices; 9 blocks padded to 12): the split arrays and the even
    products (one psum per pass) equal the stored V's."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert float(out.stdout.split("max")[-1]) < 1e-11, out.stdout
