import jax
import numpy as np
import pytest

import jaxrecon as jr


@pytest.mark.parametrize("kw,msg", [
    (dict(d=0, p=10), "d: must be a positive integer"),
    (dict(d=3, p=-1), "p: must be a positive integer"),
    (dict(d=3, p=10, activation="softsign"), "activation: unknown activation 'softsign'"),
    (dict(d=3, p=10, block_size=0), "block_size: must be a positive integer"),
    (dict(d=3, p=10, precision="low"), "precision: unknown value 'low'"),
])
def test_bad_feature_map_arguments(kw, msg):
    with pytest.raises(ValueError, match=msg):
        jr.RandomFeatures(jax.random.key(0), **kw)


def test_bad_inputs_to_fit_and_loss():
    fmap = jr.RandomFeatures(jax.random.key(0), 3, 20)
    x = np.arange(12.0).reshape(4, 3)  # four distinct rows (fit refuses repeated ones)
    with pytest.raises(ValueError, match=r"x: has 5 columns but the feature map expects d=3"):
        jr.fit(fmap, np.ones((4, 5)), np.ones(4))
    with pytest.raises(ValueError, match="y: must have shape"):
        jr.fit(fmap, x, np.ones(5))
    with pytest.raises(ValueError, match="x: contains NaN or inf"):
        jr.fit(fmap, np.full((4, 3), np.nan), np.ones(4))
    with pytest.raises(ValueError, match=r"theta: must be a vector of shape \(p=20,\)"):
        jr.projector_loss(fmap, np.ones(7), x)
    with pytest.raises(ValueError, match="theta: contains NaN or inf"):
        jr.projector_loss(fmap, np.full(20, np.inf), x)
    with pytest.raises(ValueError, match="x_hat: must be a 2-D array"):
        jr.projector_loss(fmap, np.ones(20), np.ones(3))
    with pytest.raises(ValueError, match="form: unknown value"):
        jr.projector_loss(fmap, np.ones(20), x, form="fast")
    with pytest.raises(ValueError, match="n: must be a positive integer"):
        jr.reconstruct(jr.Target(fmap, np.ones(20)), jax.random.key(0), n=0)
    with pytest.raises(ValueError, match="method: unknown method"):
        jr.reconstruct(jr.Target(fmap, np.ones(20)), jax.random.key(0), n=2, method="magic")
    with pytest.raises(ValueError, match="ridge"):
        jr.fit(fmap, x, np.ones(4), ridge=-1.0)


@pytest.mark.parametrize("kw,msg", [
    (dict(seed=-1), "seed: must be a non-negative integer"),
    (dict(model="mlp"), "model: unknown value 'mlp'"),
    (dict(model="two_layer", train="some"), "train: unknown value 'some'"),
    (dict(model="resnet", d=192, classes=2), "classes: the resnet has one output"),
    (dict(model="resnet", d=101), "d: "),
    (dict(image_size=8), "data: --image-size and --data-classes apply to image datasets"),
    (dict(data="digits", d=100), "d: --data digits has d = H\\*W\\*C = 64"),
    (dict(method="magic"), "method: unknown value 'magic'"),
    (dict(model="two_layer", memory_budget="1GB"), "memory_budget / precision / shards: apply to --model rf only"),
    (dict(noise=-1.0), "noise: must be a finite number >= 0"),
])
def test_bad_reconstruct_config(kw, msg):
    from jaxrecon.runner import ReconstructConfig

    with pytest.raises(ValueError, match="^" + msg):
        ReconstructConfig(**{"n": 2, "p": 40, **kw}).resolve()


def test_bad_config_keys_and_values():
    from jaxrecon.config import override
    from jaxrecon.runner import ReconstructConfig

    with pytest.raises(ValueError, match=r"^stpes: unknown ReconstructConfig key; allowed: .*steps"):
        ReconstructConfig(stpes=10)
    with pytest.raises(ValueError, match=r"^attack\.steps: must be an int, got 'ten'"):
        override(ReconstructConfig(), "attack.steps", "ten")
