"""Network law sweeps: a grid point's trial for a network model (``model = two_layer | resnet``).

The same grid, results and figures as random features, with ``p`` counted as the **head's**
parameters (the law of the paper's Sec. 5 is in the last layer's parameter count)::

    trial(key):  k_data, k_model, k_attack = split(key, 3)
                 x, y     = synthetic(k_data, n, d)                  # rows on the sphere sqrt(d)
                 params0  = init(model, k_model, width)              # width = p / (head parameters per unit)
                 params   = GD on the MSE, all layers (or the head) until MSE <= train_tol
                 theta    = vec(W_head - W_head0); features = head Jacobian at the trained params
                 x_hat    = reconstruct(Target(fmap, theta, floor), k_attack, n)

All layers trained (``train="all"``, the paper's): ``theta`` lies only near the span of the head
features at the training set; the trial measures that gap (the projector loss at the training set,
``loss_at_truth``) and gives it to the attack as the target's ``floor``, so the default method
stops there and returns its best iterate (:mod:`jaxrecon.attack.stops`). Head only: ``theta`` is
exactly in the span, no floor. The seeds of a point run in one program as for random features
(:func:`jaxrecon.models.train.gd_to_tolerance` is pure); the host then computes ``loss_f64`` and
``loss_at_truth`` in float64 (:func:`jaxrecon.outcomes.final_loss`) from each seed's trained
parameters.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..data.synthetic import synthetic
from ..features.base import Target
from ..loss import projector_loss, span_residuals
from ..outcomes import final_loss
from .config import NETWORK_DEFAULTS


def settings(resolved) -> dict:
    """The network fields of a resolved sweep with their defaults filled in."""
    return {k: (getattr(resolved, k) if getattr(resolved, k) is not None else v) for k, v in NETWORK_DEFAULTS.items()}


def head_p(model: str, p: int, classes: int) -> int:
    """The head's parameter count nearest ``p`` (a whole width): ``width * per_width``."""
    from ..models.train import head_params_per_width, width_for_params

    return width_for_params(p, model, classes) * head_params_per_width(model, classes)


def _network(model: str, d: int, width: int, classes: int, activation: str, dtype):
    """``make(key) -> (apply, params0)``: the network's pure function and fresh parameters."""
    from ..models.train import make_model, split_model

    return lambda key: split_model(make_model(model, key, d, width, classes, activation, dtype))


def _targets(y, n: int, classes: int, sign: bool, dtype):
    if classes >= 2:  # synthetic rows have no class: sample i has class i mod k (balanced)
        return jax.nn.one_hot(jnp.arange(n) % classes, classes, dtype=dtype)
    return (jnp.sign(y) if sign else y).astype(dtype)[:, None]


def make_network_trial(point, resolved, mcfg) -> Callable:
    """``trial(key, p, levels) -> dict`` of a network grid point (pure; the outputs of
    :func:`jaxrecon.sweeps.points.make_trial` plus the trained ``params``, ``train_steps`` and the
    in-program ``at_truth``)."""
    from ..attack import reconstruct
    from ..features.network import NetworkFeatures
    from ..attack.methods import paper_lr
    from ..models.train import gd_to_tolerance, width_for_params

    cfg = settings(resolved)
    model, classes, train = resolved.model.name, cfg["classes"], cfg["train"]
    mcfg = paper_lr(mcfg, point.method, resolved.method_options(), True)  # published: the paper's lr on networks
    dtype = "float64" if resolved.x64 else "float32"
    width = width_for_params(point.p, model, classes)
    make = _network(model, point.d, width, classes, point.activation, jnp.dtype(dtype))
    steps, noise = resolved.steps, resolved.noise

    def trial(key, p, levels):
        k_data, k_model, k_attack = jax.random.split(key, 3)
        data = synthetic(k_data, point.n, point.d, noise, dtype=dtype)
        apply, params0 = make(k_model)
        targets = _targets(data.y, point.n, classes, model == "resnet", jnp.dtype(dtype))
        tr = gd_to_tolerance(apply, params0, data.x, targets, tol=cfg["train_tol"], max_steps=cfg["train_steps"],
                             lr=cfg["train_lr"], subset=train, linear=train == "head")
        fmap = NetworkFeatures(apply, tr.params, point.d, classes, "head")
        theta = fmap.theta_from(tr.change)  # summed steps: no rounding of after - before
        at_truth = projector_loss(fmap, theta, data.x, None, "residual")
        floor = jnp.maximum(at_truth, 0.0) if train == "all" else None  # all layers: off the span
        res = reconstruct(Target(fmap, theta, floor), k_attack, point.n, method=mcfg, steps=steps)
        residual = span_residuals(fmap, res.x_hat, data.x).mean()
        return {"x": data.x, "x_hat": res.x_hat, "train_loss": tr.final_loss, "loss": res.loss,
                "steps": res.steps, "status": res.status, "residual": residual,
                "floor": jnp.asarray(jnp.nan, theta.dtype) if floor is None else floor, "theta": theta,
                "params": tr.params, "train_steps": tr.steps, "at_truth": at_truth}

    return trial


def host_losses(point, resolved, keys, out: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(loss_f64, loss_at_truth)`` per seed in float64 (:func:`jaxrecon.outcomes.final_loss`): the
    seed's head features rebuilt from its trained parameters (``out["params"]``, leading axis seeds)."""
    from ..features.network import NetworkFeatures
    from ..models.train import width_for_params

    cfg = settings(resolved)
    dtype = jnp.dtype("float64" if resolved.x64 else "float32")
    width = width_for_params(point.p, resolved.model.name, cfg["classes"])
    apply, _ = _network(resolved.model.name, point.d, width, cfg["classes"], point.activation, dtype)(jax.random.key(0))
    seeds = len(out["x_hat"])
    f64, truth = np.full(seeds, np.nan), np.full(seeds, np.nan)
    for s in range(seeds):
        params = jax.tree_util.tree_map(lambda a: a[s], out["params"])
        fmap = NetworkFeatures(apply, params, point.d, cfg["classes"], "head")
        target = Target(fmap, np.asarray(out["theta"][s]))
        f64[s], truth[s] = final_loss(target, out["x_hat"][s]), final_loss(target, out["x"][s])
    return f64, truth
