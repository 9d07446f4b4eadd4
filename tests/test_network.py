"""Network Jacobian feature maps, the flax models, GD training and the network CLI path."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxrecon as jr
from jaxrecon.features.network import NetworkFeatures, network_target, subset_mask
from jaxrecon.models.resnet import ResNet, image_shape_of, image_size_of
from jaxrecon.models.train import split_model, train, training_targets
from jaxrecon.models.two_layer import TwoLayer


def _two_layer(d=5, width=7, k=3, seed=0, dtype=jnp.float64):
    return TwoLayer(d, width, k, rngs=nnx.Rngs(seed), param_dtype=dtype)


def _x(n, d, seed=1):
    return jax.random.normal(jax.random.key(seed), (n, d), jnp.float64)


# -- feature map ---------------------------------------------------------------------------------

def test_head_jacobian_is_hidden_features_kron_identity():
    model = _two_layer()
    apply, params = split_model(model)
    x = _x(4, 5)
    fmap = NetworkFeatures(apply, params, 5, 3, "head")
    h = model.embed(x)  # sigma(W1 x), (n, width)
    J = fmap.features(x)
    np.testing.assert_allclose(J, jnp.kron(h, jnp.eye(3)), atol=1e-14)  # row i*k+c = h(x_i) ⊗ e_c
    np.testing.assert_allclose(fmap.gram(x, x), jnp.kron(h @ h.T, jnp.eye(3)), rtol=1e-12, atol=1e-12)
    assert fmap.p == 7 * 3


@pytest.mark.parametrize("subset,mode", [("head", "matrix_free"), ("all", "matrix_free"),
                                         ("all", "materialise")])
def test_matrix_free_ops_equal_materialised_jacobian(subset, mode):
    model = _two_layer()
    apply, params = split_model(model)
    fmap = NetworkFeatures(apply, params, 5, 3, subset, gram_mode=mode, row_batch=2)
    x1, x2 = _x(4, 5, 1), _x(3, 5, 2)
    # reference Jacobian by jax.jacrev of the flattened outputs w.r.t. the flattened subset
    from jax.flatten_util import ravel_pytree
    mask = subset_mask(params, subset)
    leaves, tdef = jax.tree_util.tree_flatten(params)
    sub = [l for l, m in zip(leaves, mask) if m]
    flat, unravel = ravel_pytree(sub)

    def f(theta, x):
        it = iter(unravel(theta))
        full = [next(it) if m else l for l, m in zip(leaves, mask)]
        return apply(jax.tree_util.tree_unflatten(tdef, full), x).reshape(-1)

    J1, J2 = jax.jacrev(f)(flat, x1), jax.jacrev(f)(flat, x2)
    assert J1.shape == (12, fmap.p)
    theta = jax.random.normal(jax.random.key(3), (fmap.p,), jnp.float64)
    alpha = jax.random.normal(jax.random.key(4), (12,), jnp.float64)
    tol = dict(rtol=1e-12, atol=1e-12)

    @jax.jit
    def ops(fm):
        return (fm.features(x1), fm.gram(x1, x1), fm.gram(x1, x2), fm.project(x1, theta),
                fm.adjoint(x1, alpha), fm.gram_project(x1, theta))

    F, G11, G12, proj, adj, (A, v) = ops(fmap)
    np.testing.assert_allclose(F, J1, **tol)
    np.testing.assert_allclose(G11, J1 @ J1.T, **tol)
    np.testing.assert_allclose(G12, J1 @ J2.T, **tol)
    np.testing.assert_allclose(proj, J1 @ theta, **tol)
    np.testing.assert_allclose(adj, J1.T @ alpha, **tol)
    np.testing.assert_allclose(A, J1 @ J1.T, **tol)
    np.testing.assert_allclose(v, J1 @ theta, **tol)


def test_gradient_through_matrix_free_gram_matches_materialised():
    apply, params = split_model(_two_layer())
    x, theta = _x(2, 5), jax.random.normal(jax.random.key(5), (56,), jnp.float64)
    grads = [jax.jit(jax.grad(lambda xx: jr.projector_loss(NetworkFeatures(apply, params, 5, 3, "all", gram_mode=m),
                                                    theta, xx)))(x) for m in ("matrix_free", "materialise")]
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-9, atol=1e-12)


def test_feature_map_is_a_pytree_and_validates():
    apply, params = split_model(_two_layer())
    fmap = NetworkFeatures(apply, params, 5, 3, "head")
    leaves, tdef = jax.tree_util.tree_flatten(fmap)
    again = jax.tree_util.tree_unflatten(tdef, leaves)
    assert again.p == fmap.p and again.mask == fmap.mask
    assert jax.tree_util.tree_map(lambda _: None, fmap).mask == fmap.mask  # placeholders rebuild
    # no surrogate, no precision choice, no closed-form linearisation: the defaults
    assert fmap.with_surrogate(0.1) is fmap and fmap.with_precision("bf16") is fmap
    assert fmap.precision == "highest" and fmap.prepare() is fmap
    assert fmap.residual_linearization(jnp.ones(fmap.p), _x(2, 5)) is None
    x = _x(2, 5)
    np.testing.assert_allclose(jax.jit(lambda f, xx: f.gram(xx, xx))(fmap, x), fmap.gram(x, x), rtol=1e-12)
    # subsets: names, several names, a predicate, a boolean pytree (leaves: head, hidden)
    assert subset_mask(params, "hidden") == (False, True)
    assert subset_mask(params, ("hidden", "head")) == (True, True)
    assert subset_mask(params, lambda path, leaf: leaf.shape == (5, 7)) == (False, True)
    assert subset_mask(params, jax.tree_util.tree_map(lambda _: True, params)) == (True, True)
    assert NetworkFeatures(apply, params, 5, 3, "hidden").p == 35
    with pytest.raises(ValueError, match="^subset"):
        NetworkFeatures(apply, params, 5, 3, "nonexistent_layer")
    with pytest.raises(ValueError, match="^x"):
        fmap.project(_x(2, 4), jnp.zeros(fmap.p))
    with pytest.raises(ValueError, match="^alpha"):
        fmap.adjoint(x, jnp.zeros(2))  # needs n*k = 6 entries
    with pytest.raises(ValueError, match="^gram_mode"):
        NetworkFeatures(apply, params, 5, 3, "head", gram_mode="dense")


# -- training ------------------------------------------------------------------------------------

def test_head_only_gd_puts_theta_in_the_span():
    model = _two_layer(d=6, width=20, k=3)
    apply, params = split_model(model)
    x = _x(4, 6)
    targets = jax.nn.one_hot(jnp.arange(4) % 3, 3, dtype=jnp.float64)
    res = jax.jit(lambda p: train(apply, p, x, targets, steps=200, subset="head"))(params)
    assert float(res.final_loss) < 1e-6 * float(res.losses[0])  # it fits
    # the hidden layer did not move
    np.testing.assert_array_equal(res.params["hidden"]["kernel"][...], params["hidden"]["kernel"][...])
    target = network_target(apply, params, res.params, 6, 3, "head", gram_mode="materialise")
    assert float(jnp.linalg.norm(target.theta)) > 0.1
    loss = jax.jit(lambda t, xx: jr.projector_loss(t.fmap, t.theta, xx, form="residual"))
    assert float(loss(target, x)) < 1e-10
    # a wrong input set does not span theta
    assert float(loss(target, _x(4, 6, seed=9))) > 1e-3


def test_all_layer_training_moves_hidden_layer_and_span_is_approximate():
    apply, params = split_model(_two_layer(d=6, width=20, k=3))
    x = _x(4, 6)
    targets = jax.nn.one_hot(jnp.arange(4) % 3, 3, dtype=jnp.float64)
    res = jax.jit(lambda p: train(apply, p, x, targets, steps=100, subset="all"))(params)
    assert float(jnp.abs(res.params["hidden"]["kernel"][...] - params["hidden"]["kernel"][...]).max()) > 0
    target = network_target(apply, params, res.params, 6, 3, "head", gram_mode="materialise")
    loss = float(jr.projector_loss(target.fmap, target.theta, x, form="residual"))
    assert 1e-14 < loss < 0.1


def test_training_targets_from_labels():
    t = training_targets(jnp.asarray([0.3, -1.2, 2.0, 0.1, 0.5]), 3, jnp.float64)
    np.testing.assert_array_equal(jnp.argmax(t, 1), [0, 1, 2, 0, 1])  # real labels -> balanced classes
    t = training_targets(jnp.asarray([2, 2, 0, 1]), 3, jnp.float64)
    np.testing.assert_array_equal(jnp.argmax(t, 1), [2, 2, 0, 1])


# -- models --------------------------------------------------------------------------------------

def test_two_layer_init_scales():
    model = TwoLayer(50, 400, 2, rngs=nnx.Rngs(0), param_dtype=jnp.float64)
    W1, W2 = model.hidden.kernel[...], model.head.kernel[...]
    assert W1.shape == (50, 400) and W2.shape == (400, 2)
    assert abs(float(jnp.var(W1)) * 50 - 1) < 0.05
    assert abs(float(jnp.var(W2)) * 400 - 1) < 0.1


def test_resnet_shapes_and_init_scales():
    width = 2  # one width for every ResNet test: initialiser compiles are shared
    model = ResNet(width, rngs=nnx.Rngs(0))
    assert model.stem.kernel[...].shape == (28, 28, 3, width)
    assert len(model.blocks) == 4
    apply, params = split_model(model)
    x = jax.ShapeDtypeStruct((2, 3072), jnp.float32)
    embed = lambda pp, xx: nnx.merge(apply.graph, pp).feature_map(xx)
    assert jax.eval_shape(embed, params, x).shape == (2, 7, 7, width)  # 32x32 -> 7x7
    assert jax.eval_shape(apply, params, x).shape == (2, 1)
    fmap = NetworkFeatures(apply, params, 3072, 1, "head")
    assert fmap.p == 49 * width
    # weights ~ N(0, 1/fan), pooled over the layers of one kind; no biases; the stem's fan is the
    # input's C*H*W (the reference's 3*32*32), not the kernel's 28*28*3
    fan = {"stem": 3 * 32 * 32, "head": 49 * width, "conv1": 9 * width, "conv2": 9 * width}
    pooled = {name: [] for name in fan}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        assert "bias" not in str(path)
        name = next(n for n in fan if any(getattr(k, "key", None) == n for k in path))
        pooled[name].append(np.ravel(leaf) ** 2 * fan[name])
    for name, vals in pooled.items():
        vals = np.concatenate(vals)  # E[w^2 fan_in] = 1
        assert abs(vals.mean() - 1) < 4 * math.sqrt(2 / vals.size), (name, vals.mean())
    # reduced image size keeps the 7x7 map
    small = ResNet(width, image_size=8, rngs=nnx.Rngs(0))
    assert small.stem.kernel[...].shape == (4, 4, 3, width)
    assert jax.eval_shape(small.feature_map, jax.ShapeDtypeStruct((1, 192), jnp.float32)).shape == (1, 7, 7, 2)
    assert image_size_of(3072) == 32
    with pytest.raises(ValueError, match="^d"):
        image_size_of(101)


def test_resnet_flat_input_is_channels_last():
    model = ResNet(2, image_size=8, rngs=nnx.Rngs(0))
    img = jax.random.normal(jax.random.key(1), (1, 8, 8, 3), jnp.float32)  # (N, H, W, C)
    h = jax.nn.relu(model.stem(img))
    for block in model.blocks:
        h = block(h)
    np.testing.assert_allclose(model.feature_map(img.reshape(1, -1)), h, rtol=1e-6)
    assert not np.allclose(model(img.reshape(1, -1)), model(img[..., ::-1].reshape(1, -1)))
    assert image_shape_of(784) == (28, 1) and image_shape_of(3072) == (32, 3)


# -- end to end ----------------------------------------------------------------------------------

def test_two_layer_reconstruction_above_threshold():
    d, n, k = 10, 4, 3
    data = jr.synthetic(jax.random.key(0), n, d)
    model = TwoLayer(d, 67, k, rngs=nnx.Rngs(1))  # head p = 201 ≈ 5 d n
    apply, params = split_model(model)
    targets = jax.nn.one_hot(jnp.arange(n) % k, k, dtype=jnp.float32)
    res = jax.jit(lambda p: train(apply, p, data.x.astype(jnp.float32), targets, steps=100, subset="head"))(params)
    target = network_target(apply, params, res.params, d, k, "head", gram_mode="materialise")
    out = jr.reconstruct(target, jax.random.key(2), n, method="adam", steps=1500)
    m = jr.match(data.x, out.x_hat)
    assert float(out.loss) < 1e-8
    assert m.error_sign <= 1e-2


@pytest.mark.slow
def test_cli_two_layer_and_resnet(tmp_path):
    from jaxrecon.cli import main

    out = tmp_path / "tl"
    rc = main(["reconstruct", "--model", "two_layer", "--d", "6", "--n", "2", "--classes", "2",
               "--width", "40", "--method", "adam", "--steps", "60", "--seeds", "1", "--quiet",
               "--out", str(out)])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["config"]["model"] == "two_layer" and s["config"]["p"] == 80
    assert s["fit"]["train_loss"] < 1e-3
    out = tmp_path / "rn"
    rc = main(["reconstruct", "--model", "resnet", "--d", "192", "--n", "1", "--width", "2",
               "--steps", "5", "--seeds", "1", "--quiet", "--out", str(out)])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["config"]["p"] == 98 and np.load(out / "arrays.npz")["x_hat"].shape == (1, 1, 192)


def test_cli_network_errors(capsys):
    from jaxrecon.cli import main

    assert main(["reconstruct", "--model", "resnet", "--d", "101", "--n", "2", "--width", "2"]) == 2
    assert "d:" in capsys.readouterr().err
    assert main(["reconstruct", "--model", "two_layer", "--n", "2"]) == 2
    assert "width:" in capsys.readouterr().err
    assert main(["reconstruct", "--model", "resnet", "--n", "2", "--width", "2", "--classes", "3"]) == 2
    assert "classes:" in capsys.readouterr().err
