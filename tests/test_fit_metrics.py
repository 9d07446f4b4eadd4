import jax
import numpy as np
import pytest

import jaxrecon as jr
from jaxrecon.models import fit_with_info
from jaxrecon.metrics import image_metrics


@pytest.mark.parametrize("p", [7, 60])  # under- and over-parameterised
@pytest.mark.parametrize("block_size", [None, 11])
def test_fit_equals_pinv(p, block_size):
    fmap = jr.RandomFeatures(jax.random.key(0), 4, p, block_size=block_size, dtype="float64")
    data = jr.synthetic(jax.random.key(1), 12, 4)
    F = np.asarray(fmap.features(data.x))
    expected = np.linalg.pinv(F) @ np.asarray(data.y)
    info = fit_with_info(fmap, data.x, data.y)
    np.testing.assert_allclose(info.theta, expected, rtol=1e-7, atol=1e-9)
    mse = np.mean((F @ expected - np.asarray(data.y)) ** 2)
    assert float(info.train_loss) == pytest.approx(mse, rel=1e-6, abs=1e-12)
    if p > 12:
        assert float(info.train_loss) < 1e-20
    else:
        assert float(info.train_loss) > 1e-3
    np.testing.assert_allclose(jr.fit(fmap, data.x, data.y), expected, rtol=1e-7, atol=1e-9)


def test_ridge_closed_form():
    fmap = jr.RandomFeatures(jax.random.key(0), 4, 30, dtype="float64")
    data = jr.synthetic(jax.random.key(1), 8, 4)
    F, y = np.asarray(fmap.features(data.x)), np.asarray(data.y)
    expected = F.T @ np.linalg.solve(F @ F.T + 0.3 * np.eye(8), y)
    np.testing.assert_allclose(jr.fit(fmap, data.x, data.y, ridge=0.3), expected, rtol=1e-9)


def test_synthetic_data_on_sphere_and_deterministic():
    a = jr.synthetic(jax.random.key(5), 10, 7)
    b = jr.synthetic(jax.random.key(5), 10, 7)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_allclose(np.linalg.norm(a.x, axis=1), np.sqrt(7), rtol=1e-12)
    assert a.y.shape == (10,)


def test_match_permutation_and_sign_flip():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 8))
    perm = np.array([3, 0, 4, 1, 2])
    x_hat = x[perm].copy()
    x_hat[1] *= -1  # the row matched to x[0] is flipped
    m = jr.match(x, x_hat)
    assert m.error_sign == pytest.approx(0.0, abs=1e-12)
    assert m.error_abs == pytest.approx(0.0, abs=1e-12)
    assert m.recovered == 1.0
    np.testing.assert_array_equal(x_hat[m.perm], np.where(m.flipped[:, None], -1, 1) * x)
    assert m.flipped.tolist() == [True, False, False, False, False]


def test_match_hand_worked_errors():
    x = np.array([[1.0, 0.0], [0.0, 1.0]])
    x_hat = np.array([[0.0, 1.0], [1.0, 1.0]])  # x[1] exact; x[0] off by (0, 1)
    m = jr.match(x, x_hat)
    assert m.perm.tolist() == [1, 0]
    assert m.error_sign == pytest.approx(1.0 / (2 * np.sqrt(2)))
    assert m.recovered == 0.5
    # error_abs uses |x| - |x_hat|: a negated row costs nothing
    assert jr.match(x, np.array([[-1.0, 0.0], [0.0, -1.0]])).error_abs == 0.0
    # error_sign allows one global sign per row, not per entry
    assert jr.match(x[:1], np.array([[-1.0, 0.0]])).error_sign == 0.0
    assert jr.match(np.array([[1.0, 1.0]]), np.array([[1.0, -1.0]])).error_sign == pytest.approx(np.sqrt(2))


def test_image_metrics_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.uniform(size=(3, 8, 8, 3))
    b = np.clip(a + 0.1 * np.array([0, 1, -1])[:, None, None, None], 0, 1)
    met = image_metrics(a, b)
    assert np.isinf(met["psnr"][0]) and met["ssim"][0] == pytest.approx(1.0)
    mse = np.mean((a[1] - b[1]) ** 2)
    assert met["psnr"][1] == pytest.approx(10 * np.log10(1 / mse))
    assert met["ssim"][1] < 1 and met["ssim"][2] < 1
