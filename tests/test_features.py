import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrecon as jr
from jaxrecon.activations import ACTIVATIONS, get_activation
from jaxrecon.features import FeatureMapBase

D, N, P = 6, 5, 53  # P prime: no block size but 1 and P divides it


def make(activation="relu", block_size=None, dtype="float64", **kw):
    return jr.RandomFeatures(jax.random.key(3), D, P, activation, block_size, dtype=dtype, **kw)


@pytest.fixture
def x():
    return np.asarray(jax.random.normal(jax.random.key(1), (N, D)))


def numpy_features(fmap, x):
    V = np.asarray(fmap.weights())
    return np.asarray(get_activation(fmap.activation)(jnp.asarray(x @ V.T)))


def test_weights_shape_and_scale():
    V = np.asarray(jr.RandomFeatures(jax.random.key(0), 50, 4000, dtype="float64").weights())
    assert V.shape == (4000, 50)
    assert abs(V.mean()) < 3 * np.sqrt(1 / 50 / V.size)
    assert V.var() == pytest.approx(1 / 50, rel=0.03)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_features_equal_sigma_of_Vx(activation, x):
    fmap = make(activation)
    np.testing.assert_allclose(fmap.features(x), numpy_features(fmap, x), rtol=1e-12, atol=1e-12)


def test_user_callable_activation(x):
    fmap = make(lambda z: z**2)
    V = np.asarray(fmap.weights())
    np.testing.assert_allclose(fmap.features(x), (x @ V.T) ** 2, rtol=1e-12)


@pytest.mark.parametrize("block_size,dtype", [
    (1, "float64"), (7, "float32"), (7, "float64"), (16, "float32"), (53, "float64"), (100, "float32"),
])
def test_streamed_equals_dense(block_size, dtype, x):
    dense, streamed = make(dtype=dtype), make(block_size=block_size, dtype=dtype)
    tol = 1e-12 if dtype == "float64" else 2e-5
    theta = np.asarray(jax.random.normal(jax.random.key(2), (P,)))
    alpha = np.asarray(jax.random.normal(jax.random.key(4), (N,)))
    x2 = x[:3] * 0.5
    # The same V: rows of V come from fold_in(key, row) whatever the blocking.
    V = np.asarray(dense.weights())
    for b in range(streamed.n_blocks):
        rows = np.asarray(streamed.rows(b * block_size, block_size))[: P - b * block_size]
        np.testing.assert_array_equal(rows, V[b * block_size:(b + 1) * block_size])
    np.testing.assert_allclose(streamed.features(x), dense.features(x), rtol=tol, atol=tol)
    np.testing.assert_allclose(streamed.gram(x, x2), dense.gram(x, x2), rtol=tol, atol=tol)
    np.testing.assert_allclose(streamed.project(x, theta), dense.project(x, theta), rtol=tol, atol=tol)
    np.testing.assert_allclose(streamed.adjoint(x, alpha), dense.adjoint(x, alpha), rtol=tol, atol=tol)
    A, v = streamed.gram_project(x, theta)
    np.testing.assert_allclose(A, dense.gram(x, x), rtol=tol, atol=tol)
    np.testing.assert_allclose(v, dense.project(x, theta), rtol=tol, atol=tol)


@pytest.mark.parametrize("block_size", [None, 10])
def test_gram_project_adjoint_consistent_with_features(block_size, x):
    fmap = make(block_size=block_size)
    F = np.asarray(fmap.features(x))
    x2 = np.asarray(jax.random.normal(jax.random.key(5), (3, D)))
    F2 = np.asarray(fmap.features(x2))
    theta = np.asarray(jax.random.normal(jax.random.key(2), (P,)))
    alpha = np.asarray(jax.random.normal(jax.random.key(4), (N,)))
    np.testing.assert_allclose(fmap.gram(x, x2), F @ F2.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fmap.project(x, theta), F @ theta, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fmap.adjoint(x, alpha), F.T @ alpha, rtol=1e-12, atol=1e-12)


def test_prepare_materialises_once_and_matches(x):
    fmap = make()
    prepared = fmap.prepare()
    assert prepared.V is not None and prepared.V.shape == (P, D)
    np.testing.assert_array_equal(prepared.features(x), fmap.features(x))
    assert make(block_size=8).prepare().V is None  # streamed maps never store V


def test_surrogate_relu_forward_exact_backward_leaky():
    z = jnp.array([-2.0, -0.5, 0.5, 3.0])
    f = get_activation("relu", 0.02)
    np.testing.assert_array_equal(f(z), jnp.maximum(z, 0))
    g = jax.grad(lambda z: f(z).sum())(z)
    np.testing.assert_allclose(g, [0.02, 0.02, 1.0, 1.0])
    g2 = jax.grad(lambda z: get_activation("relu_tanh", 0.02)(z).sum())(z)
    np.testing.assert_allclose(g2, np.array([0.02, 0.02, 1, 1]) + 1 - np.tanh(np.asarray(z)) ** 2, rtol=1e-12)


def test_feature_map_is_a_pytree_usable_under_jit_and_vmap(x):
    keys = jax.random.split(jax.random.key(7), 3)

    def gram_of(k):
        return jr.RandomFeatures(k, D, P, dtype="float64").gram(x, x)

    batched = jax.jit(jax.vmap(gram_of))(keys)
    for i, k in enumerate(keys):
        np.testing.assert_allclose(batched[i], gram_of(k), rtol=1e-12)
    fmap = make(block_size=9)
    leaves, treedef = jax.tree_util.tree_flatten(fmap)
    again = jax.tree_util.tree_unflatten(treedef, leaves)
    assert again.block_size == 9 and again.p == P
    # key and V are the leaves; every other field is part of the structure (static under jit)
    dense = make().prepare()
    assert [l.shape for l in jax.tree_util.tree_leaves(dense)] == [dense.key.shape, (P, D)]
    assert jax.tree_util.tree_structure(dense) != jax.tree_util.tree_structure(dense.with_precision("bf16"))
    assert jax.tree_util.tree_map(lambda _: None, dense).V is None


def test_optional_abilities():
    fmap = make()
    assert fmap.precision == "highest" and fmap.with_precision("bf16").precision == "bf16"
    assert fmap.with_surrogate(0.2).surrogate_slope == 0.2
    assert fmap.replace(V=jnp.zeros((P, D))).V.shape == (P, D)
    with pytest.raises(ValueError, match="^precision"):
        fmap.with_precision("fp8")

    class Minimal(FeatureMapBase):  # a map that has none of the optional abilities
        pass

    m = Minimal()
    assert m.precision == "highest" and m.prepare() is m and m.with_surrogate(0.1) is m
    assert m.with_precision("bf16") is m and m.residual_linearization(None, None) is None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dense_v_is_filled_block_by_block_with_the_rows_bits(dtype, monkeypatch):
    """Row j of the dense V (filled in blocks, the last one overlapping) is rows(j, 1), bit for bit,
    compiled as the attack runs them."""
    import jaxrecon.features.random_features as rf

    monkeypatch.setattr(rf, "GENERATE_ELEMENTS", 50)  # blocks of 8 rows of d=6: 7 blocks for P=53
    fmap = make(dtype=dtype)
    row = jax.jit(lambda m, j: m.rows(j, 1)[0])
    rows = np.stack([np.asarray(row(fmap, j)) for j in range(P)])
    for V in (fmap.weights(), jax.jit(lambda m: m.prepare().V)(fmap), jax.jit(lambda m: m.rows(0, P))(fmap)):
        np.testing.assert_array_equal(np.asarray(V), rows)
