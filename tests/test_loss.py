import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrecon as jr
from jaxrecon.loss import factor_kernel, report_loss
from jaxrecon.data import sphere

D, N, P = 5, 4, 120


@pytest.fixture
def setup():
    fmap = jr.RandomFeatures(jax.random.key(3), D, P, dtype="float64")
    x = sphere(jax.random.key(1), N, D)
    theta = np.asarray(jax.random.normal(jax.random.key(2), (P,)))
    x_hat = np.asarray(jax.random.normal(jax.random.key(4), (N, D)))
    return fmap, x, theta, x_hat


def numpy_loss(F_hat, theta):
    proj = F_hat.T @ np.linalg.solve(F_hat @ F_hat.T, F_hat)  # explicit projector onto span
    r = theta - proj @ theta
    return r @ r / (theta @ theta)


@pytest.mark.parametrize("form", ["kernel", "residual"])
@pytest.mark.parametrize("block_size", [None, 17])
def test_loss_matches_numpy_projector(setup, form, block_size):
    fmap, _, theta, x_hat = setup
    fmap = fmap.replace(block_size=block_size)
    expected = numpy_loss(np.asarray(fmap.features(x_hat)), theta)
    got = jr.projector_loss(fmap, theta, x_hat, form=form)
    assert float(got) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("form", ["kernel", "residual"])
def test_gradient_matches_finite_differences(setup, form):
    fmap, _, theta, x_hat = setup
    f = lambda xh: jr.projector_loss(fmap, theta, xh, form=form)
    g = np.asarray(jax.grad(f)(jnp.asarray(x_hat)))
    rng = np.random.default_rng(0)
    for _ in range(4):
        u = rng.standard_normal(x_hat.shape)
        eps = 1e-6
        fd = (f(x_hat + eps * u) - f(x_hat - eps * u)) / (2 * eps)
        assert float(fd) == pytest.approx(float((g * u).sum()), rel=1e-6, abs=1e-10)


def test_streamed_gradient_equals_dense(setup):
    fmap, _, theta, x_hat = setup
    g_dense = jax.grad(lambda xh: jr.projector_loss(fmap, theta, xh))(x_hat)
    g_stream = jax.grad(lambda xh: jr.projector_loss(fmap.replace(block_size=31), theta, xh))(x_hat)
    np.testing.assert_allclose(g_stream, g_dense, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 1e-6)])
def test_loss_zero_at_training_inputs_and_permutation_invariant(dtype, tol):
    fmap = jr.RandomFeatures(jax.random.key(3), D, P, dtype=dtype)
    data = jr.synthetic(jax.random.key(1), N, D, dtype=dtype)
    theta = jr.fit(fmap, data.x, data.y)
    assert float(jr.projector_loss(fmap, theta, data.x)) < tol
    assert float(jr.projector_loss(fmap, theta, data.x, form="residual")) < tol
    x_hat = jax.random.normal(jax.random.key(9), (N, D), dtype)
    perm = np.array([2, 0, 3, 1])
    a = jr.projector_loss(fmap, theta, x_hat)
    b = jr.projector_loss(fmap, theta, x_hat[perm])
    assert float(a) == pytest.approx(float(b), rel=1e-10 if dtype == "float64" else 1e-5)
    assert 0.05 < float(a) <= 1.0


def test_span_residuals_match_numpy(setup):
    fmap, x, _, x_hat = setup
    F_hat, F = np.asarray(fmap.features(x_hat)), np.asarray(fmap.features(x))
    proj = F_hat.T @ np.linalg.solve(F_hat @ F_hat.T, F_hat)
    expected = np.linalg.norm(F - F @ proj, axis=1) / np.sqrt(P)
    np.testing.assert_allclose(jr.span_residuals(fmap, x_hat, x), expected, rtol=1e-6)
    assert np.all(np.asarray(jr.span_residuals(fmap, x, x)) < 1e-6)


def test_factor_kernel_jitter_is_relative():
    A = jnp.diag(jnp.array([1.0, 2.0, 3.0])) * 1e6
    fac = factor_kernel(A, jitter=1e-3)
    assert float(fac.shift) == pytest.approx(1e-3 * 2e6)
    np.testing.assert_allclose(fac.chol @ fac.chol.T, A + fac.shift * jnp.eye(3), rtol=1e-12)


def test_report_loss_clips():
    assert float(report_loss(-1e-9)) == 0.0 and float(report_loss(1.5)) == 1.0


@pytest.mark.parametrize("block_size", [None, 17])
def test_residual_value_and_grad_closed_form_equals_autodiff(setup, block_size):
    """The first-order phase's value and gradient of the residual form (closed form for random
    features, dense and streamed) equal autodiff's in float64; the jitter's derivative, which the
    closed form leaves out, is far below the tolerance at float64's jitter."""
    from jaxrecon.loss import residual_value_and_grad

    fmap, _, theta, x_hat = setup
    fmap = fmap.replace(block_size=block_size)
    auto = jax.value_and_grad(lambda xh: jr.projector_loss(fmap, theta, xh, form="residual"))(x_hat)
    closed = jax.jit(residual_value_and_grad)(fmap, theta, x_hat)
    assert float(closed[0]) == pytest.approx(float(auto[0]), rel=1e-12)
    np.testing.assert_allclose(closed[1], auto[1], rtol=1e-9, atol=1e-12 * float(jnp.abs(auto[1]).max()))
    assert closed[1].dtype == jnp.asarray(x_hat).dtype


def test_residual_value_and_grad_without_a_closed_form_is_autodiff(setup):
    """A map without a closed form (the base class's ``residual_linearization``) gets autodiff's
    numbers, bit for bit."""
    from jaxrecon.features.base import FeatureMapBase
    from jaxrecon.loss import residual_value_and_grad

    fmap, _, theta, x_hat = setup

    @jax.tree_util.register_dataclass
    class Plain(type(fmap)):
        def residual_linearization(self, theta, x, jitter=None):
            return FeatureMapBase.residual_linearization(self, theta, x, jitter)

    plain = Plain(**{f: getattr(fmap, f) for f in fmap.__dataclass_fields__})
    auto = jax.value_and_grad(lambda xh: jr.projector_loss(plain, theta, xh, form="residual"))(x_hat)
    got = residual_value_and_grad(plain, theta, x_hat)
    np.testing.assert_array_equal(got[0], auto[0])
    np.testing.assert_array_equal(got[1], auto[1])
