"""Worked examples of ARCHITECTURE.md's "where to add ...": a new method, a new model (feature
map), a new dataset and a new sweep axis, each as small as it can be and each checked."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrecon as jr
from jaxrecon.attack import METHODS, FirstOrder, LevenbergMarquardt, Loss, Method, RowRedraw, Stall, Start, Stop
from jaxrecon.data import registry
from jaxrecon.data.base import RawImages
from jaxrecon.features.base import FeatureMapBase, static


def test_a_new_method_is_a_factory_composing_parts(monkeypatch):
    # Gauss-Newton from the first step: a short LM-only schedule after 20 Adam steps, redraws on stalls
    def lm_early() -> Method:
        """Adam for 20 steps, then Levenberg-Marquardt; a stall redraws the weakest row."""
        return Method(phases=(FirstOrder(optimizer="adam", lr=0.05, momentum=None, switch_after=20),
                              LevenbergMarquardt(cg_iters=20, stall_after=30)),
                      start=Start(init="sphere"), stop=Stop(tol=1e-12), stall=Stall(actions=(RowRedraw(),)),
                      loss=Loss(form="residual"))

    monkeypatch.setitem(METHODS, "lm-early", lm_early)  # in the library: one line in attack/methods.py
    data = jr.synthetic(jax.random.key(0), 3, 6)
    fmap = jr.RandomFeatures(jax.random.key(1), 6, 360)
    res = jr.reconstruct(jr.Target(fmap, jr.fit(fmap, data.x, data.y)), jax.random.key(2), 3,
                         method="lm-early", steps=400)
    assert float(res.loss) <= 1e-10 and jr.match(data.x, res.x_hat).error_sign <= 1e-3


@dataclasses.dataclass(frozen=True)
class QuadraticFeatures(FeatureMapBase):
    """phi(x) = (W x)^2 / sqrt(p): a new model is a frozen dataclass with the protocol's methods."""

    W: jax.Array
    p: int = static()

    @property
    def input_dim(self) -> int:
        return self.W.shape[1]

    def features(self, x):
        return (x @ self.W.T) ** 2 / jnp.sqrt(self.p)

    def gram(self, x1, x2):
        return self.features(x1) @ self.features(x2).T

    def project(self, x, theta):
        return self.features(x) @ theta

    def adjoint(self, x, alpha):
        return self.features(x).T @ alpha

    def gram_project(self, x, theta):
        f = self.features(x)
        return f @ f.T, f @ theta


jax.tree_util.register_dataclass(QuadraticFeatures, data_fields=["W"], meta_fields=["p"])


def test_a_new_model_is_a_feature_map():
    d, n, p = 5, 3, 150
    fmap = QuadraticFeatures(jax.random.normal(jax.random.key(0), (p, d)) / jnp.sqrt(d), p)
    x = jr.synthetic(jax.random.key(1), n, d).x
    theta = fmap.adjoint(x, jnp.asarray([1.0, -2.0, 0.5]))  # theta in the span of Phi(X)
    assert float(jr.projector_loss(fmap, theta, x, form="residual")) <= 1e-20
    res = jr.reconstruct(jr.Target(fmap, theta), jax.random.key(2), n, steps=600)
    assert float(res.loss) <= 1e-10  # solved ...
    # ... but not identified: quadratic features span only the d(d+1)/2 quadratic forms, so theta
    # fixes M = sum_j alpha_j x_j x_j^T and nothing more; the zero found reproduces M, not X
    quad = lambda rows, c: (rows.T * c) @ rows  # sum_j c_j x_j x_j^T
    c_hat = jnp.linalg.lstsq(fmap.features(res.x_hat).T, theta)[0]
    np.testing.assert_allclose(quad(res.x_hat, c_hat), quad(x, jnp.asarray([1.0, -2.0, 0.5])), rtol=1e-3, atol=1e-3)


def test_a_new_dataset_is_a_loader_in_the_registry(monkeypatch):
    def load_checkers(data_dir, split, classes, size):
        """8x8 grey images of two kinds: checkerboards (class 0) and stripes (class 1)."""
        rng = np.random.default_rng(0)
        i, j = np.indices((8, 8))
        base = np.stack([(i + j) % 2, i % 2]).astype(np.float32)
        images = np.clip(base[np.arange(40) % 2] + 0.1 * rng.standard_normal((40, 8, 8)), 0, 1)[..., None]
        return RawImages(images, np.arange(40) % 2, ("checkers", "stripes"))

    spec = registry.DatasetSpec(load_checkers, (8, 8, 1), 2, False, "synthetic checkerboards and stripes")
    monkeypatch.setitem(registry.DATASETS, "checkers", spec)  # in the library: one entry in DATASETS
    data = jr.load_dataset("checkers", jax.random.key(0), 6)
    assert data.x.shape == (6, 64) and sorted(set(data.y.tolist())) == [-1.0, 1.0]
    np.testing.assert_allclose(np.linalg.norm(data.x, axis=1), 8.0, rtol=1e-5)  # rows on the sphere sqrt(d)


def test_a_new_sweep_axis_is_a_config_field_read_by_the_trial():
    # The "planted" axis (attack section of jaxrecon/sweeps/config.py, used in points.make_trial) is
    # the model: a field with a default that leaves old configs' hashes alone, validated in
    # resolved(), part of the program key, read by the trial.
    cfg = jr.SweepConfig(d=[6], n=[2], p_over_dn=[4.0], seeds=2, steps=200)
    assert cfg.resolved().planted is None and "planted" not in cfg.resolved().to_dict()
    with pytest.raises(ValueError, match="planted"):
        cfg.replace(planted=-1.0).resolved()
    table = jr.sweep(cfg.replace(planted=0.0), out=None, progress=False, plots=False, log=None)
    np.testing.assert_array_equal(table["steps"], 0)  # started at X itself: nothing to do
