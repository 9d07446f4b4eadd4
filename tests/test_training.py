"""Networks trained as the paper trains them: all layers, plain GD to a tolerance; the target's
``loss_at_truth`` and floor; the ResNet's initialisation and per-channel normalisation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxrecon as jr
from jaxrecon.data.registry import preprocess, to_pixels
from jaxrecon.features.base import Target
from jaxrecon.features.network import NetworkFeatures
from jaxrecon.models.resnet import ResNet
from jaxrecon.models.train import (AUTO_LR_SCALE, auto_lr, build_network_problem, class_labels, gd_to_tolerance,
                                   split_model, train_to_tolerance, training_inputs)
from jaxrecon.models.two_layer import TwoLayer
from jaxrecon.runner import ReconstructConfig, run_reconstruction
from jaxrecon.runner.run import FLOOR_MIN, loss_at_truth, with_floor


def _problem(d=6, n=3, width=24, k=2, seed=0):
    x = jr.synthetic(jax.random.key(seed), n, d).x
    apply, params = split_model(TwoLayer(d, width, k, rngs=nnx.Rngs(seed + 1), param_dtype=jnp.float64))
    targets = jax.nn.one_hot(jnp.arange(n) % k, k, dtype=jnp.float64)
    return apply, params, x, targets


# -- GD to a tolerance ---------------------------------------------------------------------------

def test_training_stops_at_the_tolerance_and_at_the_budget():
    apply, params, x, targets = _problem()
    res = train_to_tolerance(apply, params, x, targets, tol=1e-6, max_steps=5000)
    assert res.converged and float(res.final_loss) <= 1e-6 < float(res.initial_loss)
    assert 0 < int(res.steps) < 5000
    # the MSE is the returned parameters' (not the one before the last step)
    mse = float(jnp.mean((apply(res.params, x) - targets) ** 2))
    assert mse == pytest.approx(float(res.final_loss), rel=1e-9)
    # one step fewer is above the tolerance: it stopped at the first step below
    before = train_to_tolerance(apply, params, x, targets, tol=1e-6, max_steps=int(res.steps) - 1)
    assert not before.converged and float(before.final_loss) > 1e-6 and int(before.steps) == int(res.steps) - 1
    # the default lr is the stated rule; the hidden layer moved (all layers trained)
    lr0 = float(auto_lr(apply, params, x, 2, "all"))
    assert float(res.lr) == pytest.approx(AUTO_LR_SCALE * lr0, rel=1e-12)
    assert not np.allclose(res.params["hidden"]["kernel"][...], params["hidden"]["kernel"][...])


def test_chunked_training_equals_the_pure_loop_and_host_steps():
    apply, params, x, targets = _problem()
    pure = jax.jit(lambda p: gd_to_tolerance(apply, p, x, targets, tol=1e-6, max_steps=5000))(params)
    for host in (False, True):
        res = train_to_tolerance(apply, params, x, targets, tol=1e-6, max_steps=5000, chunk=7, host_steps=host)
        assert int(res.steps) == int(pure.steps) and bool(pure.converged)
        np.testing.assert_allclose(float(res.final_loss), float(pure.final_loss), rtol=1e-9)
    # a given lr (the paper's 1e-5 is far too small at this width: the budget is spent)
    slow = train_to_tolerance(apply, params, x, targets, tol=1e-6, max_steps=20, lr=1e-5)
    assert not slow.converged and int(slow.steps) == 20 and float(slow.lr) == 1e-5
    # a diverging lr stops at the first non-finite MSE, well before the budget
    wild = train_to_tolerance(apply, params, x, targets, tol=1e-6, max_steps=10_000, lr=1e8)
    assert not np.isfinite(float(wild.final_loss)) and int(wild.steps) < 10_000


def test_head_only_training_on_the_linearised_net_is_the_same():
    apply, params, x, targets = _problem()
    a = train_to_tolerance(apply, params, x, targets, tol=1e-8, subset="head")
    b = train_to_tolerance(apply, params, x, targets, tol=1e-8, subset="head", linear=True)
    assert int(a.steps) == int(b.steps) and a.converged
    np.testing.assert_allclose(b.params["head"]["kernel"][...], a.params["head"]["kernel"][...], rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(b.params["hidden"]["kernel"][...], params["hidden"]["kernel"][...])


# -- loss at the truth ---------------------------------------------------------------------------

def _numpy_loss_at_truth(W1, theta, x, k):
    """|P_perp theta|^2 / |theta|^2 with P onto the rows of J = relu(x W1) ⊗ I_k, in NumPy float64."""
    H = np.maximum(np.asarray(x, np.float64) @ np.asarray(W1, np.float64), 0.0)  # (n, width)
    J = np.kron(H, np.eye(k))  # row i*k+c = h_i ⊗ e_c, the layout of vec(W2) as (width, k)
    t = np.asarray(theta, np.float64)
    t = t / np.linalg.norm(t)
    coef = np.linalg.lstsq(J.T, t, rcond=None)[0]
    r = t - J.T @ coef
    return float(r @ r)


def test_loss_at_truth_is_zero_in_the_span_and_independent_off_it():
    d, n, k = 6, 3, 2
    data = jr.synthetic(jax.random.key(0), n, d)
    nets = {}
    for subset in ("all", "head"):
        nets[subset] = build_network_problem(jax.random.key(1), data, "two_layer", 40, classes=k,
                                             train_subset=subset, dtype=jnp.float64)
        assert bool(nets[subset].train.converged) and float(nets[subset].train.final_loss) <= 1e-7
    assert loss_at_truth(nets["head"].target, data.x) <= 1e-10
    tgt = nets["all"].target
    W1 = nets["all"].train.params["hidden"]["kernel"][...]
    expect = _numpy_loss_at_truth(W1, tgt.theta, data.x, k)
    assert expect > 1e-6  # all layers trained: off the span
    assert loss_at_truth(tgt, data.x) == pytest.approx(expect, rel=1e-6)
    # random features: theta is in the span
    fmap = jr.RandomFeatures(jax.random.key(2), d, 60)
    rf = jr.fit(fmap, data.x, data.y)
    assert loss_at_truth(Target(fmap, rf), data.x) <= 1e-10
    # the floor: set above FLOOR_MIN only, never over a defence's own
    assert with_floor(nets["head"].target, 1e-12).floor is None
    floored = with_floor(tgt, expect)
    assert float(floored.floor) == pytest.approx(expect) and FLOOR_MIN < expect
    assert float(with_floor(floored, 0.5).floor) == pytest.approx(expect)


def test_homogeneous_nets_train_on_unprojected_images_with_the_same_span():
    """Images on the sphere are trained on as standardised (the paper's); the span of the head
    features, hence loss_at_truth at the rows the attack sees, does not depend on row norms."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)
    data = preprocess(images, np.arange(12) % 2, ("a", "b"), jax.random.key(0), 6, standardize="channel")
    x_train = np.asarray(training_inputs(data, "resnet"))
    np.testing.assert_allclose(np.linalg.norm(x_train, axis=1), data.row_norm, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(training_inputs(data, "two_layer", "tanh")), data.x)
    net = build_network_problem(jax.random.key(1), data, "resnet", 2, train_steps=30, dtype=jnp.float64)
    at_sphere, at_train = loss_at_truth(net.target, data.x), loss_at_truth(net.target, x_train)
    assert at_sphere > FLOOR_MIN
    assert at_sphere == pytest.approx(at_train, rel=1e-8)


def test_one_hot_targets_follow_the_image_classes():
    class D:
        labels = np.array([3, 3, 7, 1, 7])
    np.testing.assert_array_equal(class_labels(D, 3), [1, 1, 2, 0, 2])
    assert class_labels(D, 1) is None
    with pytest.raises(ValueError, match="^classes: the training images hold 3 classes"):
        class_labels(D, 2)


# -- the ResNet, faithful --------------------------------------------------------------------------

@pytest.mark.parametrize("size", [8, 16])
def test_resnet_init_matches_the_reference_formulas(size):
    width = 24
    model = ResNet(width, image_size=size, rngs=nnx.Rngs(0))
    std = {"stem": 1 / math.sqrt(3 * size * size), "conv1": 1 / math.sqrt(9 * width),
           "conv2": 1 / math.sqrt(9 * width), "head": 1 / math.sqrt(49 * width)}
    pooled = {name: [] for name in std}
    for path, leaf in jax.tree_util.tree_flatten_with_path(nnx.state(model))[0]:
        name = next(n for n in std if any(getattr(k, "key", None) == n for k in path))
        pooled[name].append(np.ravel(leaf))
    for name, vals in pooled.items():
        vals = np.concatenate(vals)
        assert vals.size >= 1000
        assert abs(vals.std() / std[name] - 1) < 0.05, (name, vals.std(), std[name])
        assert abs(vals.mean()) < 4 * std[name] / math.sqrt(vals.size)


@pytest.mark.parametrize("shape", [(2, 7, 7, 5, 4, 3, 1), (1, 9, 6, 3, 2, 3, 2), (3, 10, 10, 2, 3, 5, 0)])
def test_resnet_convolution_as_a_matrix_product_is_the_convolution(shape):
    n, h, w, cin, cout, k, pad = shape
    from jaxrecon.models.resnet import conv3x3_matmul

    k1, k2 = jax.random.split(jax.random.key(3))
    lhs = jax.random.normal(k1, (n, h, w, cin), jnp.float64)
    rhs = jax.random.normal(k2, (k, k, cin, cout), jnp.float64)
    dn = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC"))
    padding = ((pad, pad), (pad, pad))
    ref = jax.lax.conv_general_dilated(lhs, rhs, (1, 1), padding, dimension_numbers=dn)
    got = conv3x3_matmul(lhs, rhs, (1, 1), padding, dimension_numbers=dn)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    # and its gradients (the attack differentiates through it, training through its kernel)
    f = lambda conv: lambda a, b: jnp.sum(jnp.sin(conv(a, b, (1, 1), padding, dimension_numbers=dn)))
    for g_ref, g in zip(jax.grad(f(jax.lax.conv_general_dilated), (0, 1))(lhs, rhs),
                        jax.grad(f(conv3x3_matmul), (0, 1))(lhs, rhs)):
        np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-10)
    # a stride or a layout it does not handle goes to lax unchanged
    np.testing.assert_allclose(conv3x3_matmul(lhs, rhs, (2, 2), padding, dimension_numbers=dn),
                               jax.lax.conv_general_dilated(lhs, rhs, (2, 2), padding, dimension_numbers=dn))
    # the model's blocks use it: the same embedding as with lax's convolution
    model = ResNet(4, image_size=8, rngs=nnx.Rngs(0), param_dtype=jnp.float64)
    x = jax.random.normal(k1, (2, 192), jnp.float64)
    e = model.embed(x)
    for block in model.blocks:
        assert block.conv1.conv_general_dilated is conv3x3_matmul
        block.conv1.conv_general_dilated = block.conv2.conv_general_dilated = jax.lax.conv_general_dilated
    np.testing.assert_allclose(model.embed(x), e, rtol=1e-12, atol=1e-12)


def test_theta_is_the_summed_change_in_the_span_for_a_float32_head():
    """theta is summed step by step (Trained.change), not params_after - params_before: in float32
    the difference carries the rounding of the weights at every step; a linear head's change is
    J^T of its summed output gradients, in the span to the rounding of one product."""
    data = jr.synthetic(jax.random.key(0), 4, 48)
    net = build_network_problem(jax.random.key(1), data, "two_layer", 400, train_subset="head",
                                train_lr=2e-4, train_steps=4000, train_tol=0.0)
    tr = net.train
    assert int(tr.steps) == 4000
    # zero change on the untrained layer; the head's change agrees with the difference to rounding
    assert not np.any(np.asarray(tr.change["hidden"]["kernel"][...]))
    fmap = net.target.fmap
    apply, params0 = split_model(TwoLayer(48, 400, 1, rngs=nnx.Rngs(params=jax.random.key(1))))
    diff = fmap.theta_of(params0, tr.params)
    np.testing.assert_allclose(net.target.theta, diff, rtol=0, atol=1e-4 * float(jnp.abs(diff).max()))
    summed = loss_at_truth(net.target, data.x)  # J^T of the summed output gradients (measured 2.6e-14)
    rounded = loss_at_truth(Target(fmap, diff), data.x)  # measured 6.9e-10
    assert summed <= 1e-12 and summed < rounded / 100, (summed, rounded)


def test_resnet_images_are_standardised_per_channel():
    rng = np.random.default_rng(1)
    images = (rng.random((20, 8, 8, 3)) * np.array([0.2, 0.5, 1.0]) + np.array([0.0, 0.3, 0.0])).astype(np.float32)
    data = preprocess(images, np.arange(20) % 2, ("a", "b"), jax.random.key(0), 10, normalize="standard",
                      standardize="channel")
    per = data.x.reshape(10, -1, 3)
    np.testing.assert_allclose(per.mean(axis=(0, 1)), 0, atol=1e-5)
    np.testing.assert_allclose(per.std(axis=(0, 1)), 1, atol=1e-5)
    assert len(data.mean) == 3 and data.std[0] < data.std[2]
    np.testing.assert_allclose(to_pixels(data, data.x).reshape(10, -1, 3).mean(axis=(0, 1)), data.mean, atol=1e-5)
    with pytest.raises(ValueError, match="^standardize"):
        preprocess(images, np.arange(20) % 2, ("a", "b"), jax.random.key(0), 10, standardize="pixel")


# -- the run -------------------------------------------------------------------------------------

def test_run_prints_and_records_loss_at_truth_and_the_floor():
    lines = []
    common = dict(model="two_layer", d=6, n=2, width=24, seeds=1, steps=30, method="adam")
    s = run_reconstruction(ReconstructConfig(**common), progress=False, log=lines.append)
    header = next(line for line in lines if line.startswith("TwoLayer("))
    assert f"loss_at_truth={s['loss_at_truth']:.3g}" in header and "train=all" in header
    fit = s["fit"]
    assert fit["train"] == "all" and fit["train_converged"] and fit["train_loss"] <= 1e-7
    assert 0 < fit["train_steps"] < fit["train_max_steps"] and fit["train_lr"] > 0
    assert fit["train_lr_rule"].startswith("0.1/lambda_max") and fit["loss_at_truth"] == s["loss_at_truth"]
    assert s["loss_at_truth"] > FLOOR_MIN and s["floor"] == pytest.approx(s["loss_at_truth"], rel=1e-6)
    row = s["results"][0]
    assert row["error_vs_sqrt_floor"] == pytest.approx(row["error_sign"] / math.sqrt(s["floor"]))
    assert any("error_vs_sqrt_floor" in line for line in lines)
    head = run_reconstruction(ReconstructConfig(**common, train="head"), progress=False, log=None)
    assert head["loss_at_truth"] <= 1e-10 and head["floor"] is None
    assert "error_vs_sqrt_floor" not in head["results"][0] and head["fit"]["train"] == "head"
    rf = run_reconstruction(ReconstructConfig(d=6, n=2, p=40, seeds=1, steps=30, method="adam"), progress=False,
                            log=lines.append)
    assert rf["loss_at_truth"] <= 1e-10 and rf["floor"] is None
    assert f"loss_at_truth={rf['loss_at_truth']:.3g}" in next(line for line in lines if line.startswith("RandomFeatures"))


def test_train_options_resolve_and_reject():
    cfg = ReconstructConfig(model="two_layer", d=6, n=2, width=4).resolve()
    assert (cfg.model.train, cfg.model.train_tol, cfg.model.train_steps, cfg.model.train_lr) == ("all", 1e-7, 100_000,
                                                                                                 None)
    with pytest.raises(ValueError, match="^train_tol"):
        ReconstructConfig(model="two_layer", d=6, n=2, width=4, train_tol=-1.0).resolve()
