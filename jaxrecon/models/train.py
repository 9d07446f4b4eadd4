"""Full-batch gradient descent on MSE for flax (NNX) models, and network targets for the attack.

The boundary with flax is :func:`split_model`: ``nnx.split`` gives a static graph and a parameter
pytree, and ``apply(params, x) = nnx.merge(graph, params)(x)`` is a pure function. Training and the
feature maps see only ``apply`` and ``params``.

Training (paper Sec. 5): plain gradient descent (optax) on the mean squared error
``mean_{i,c} (f_c(x_i) - t_ic)^2`` to one-hot targets (``k`` classes) or to ``±1``/real labels
(one output), updating only a parameter subset (``"head"``) or everything (``"all"``). With the
head alone and a linear head, the head's Jacobian does not change during training, so
``theta = head_after - head_before`` lies exactly in the span of the training features.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax
from .._optional import nnx  # flax.nnx; without the networks extra a one-line MissingExtra

from .. import _validate
from . import MODELS, NETWORKS, TRAIN_SUBSETS  # noqa: F401  (MODELS, TRAIN_SUBSETS re-exported)
from ..features.base import Target
from ..features.network import NetworkFeatures, Subset, subset_mask



@dataclasses.dataclass(frozen=True)
class NNXApply:
    """``apply(params, x) = nnx.merge(graph, params).<method>(x)``; hashable (a static jit argument)."""

    graph: Any
    method: str = "__call__"

    def __call__(self, params, x):
        return getattr(nnx.merge(self.graph, params), self.method)(x)


def split_model(model: nnx.Module, method: str = "__call__") -> tuple[NNXApply, Any]:
    """``(apply, params)`` for an NNX model: the pure function and its parameter pytree."""
    graph, params = nnx.split(model)
    return NNXApply(graph, method), params


class TrainResult(NamedTuple):
    params: Any  # parameters after training (full pytree)
    losses: jax.Array  # (steps,) training MSE before each step
    final_loss: jax.Array  # training MSE after the last step
    lr: jax.Array  # the learning rate used


def mse(apply, params, x, targets) -> jax.Array:
    """``mean((apply(params, x) - targets)^2)`` over all ``n * k`` entries."""
    out = apply(params, x)
    return jnp.mean((out.reshape(targets.shape) - targets) ** 2)


def auto_lr(apply, params, x, outputs: int, subset: Subset = "all") -> jax.Array:
    """``1 / lambda_max`` of the Gauss-Newton Hessian ``2 J^T J / (n k)`` of the MSE at ``params``.

    Gradient descent is stable below ``2 / lambda_max``; this is half that bound, so the top
    direction of the empirical NTK converges in about one step.
    """
    fmap = NetworkFeatures(apply, params, x.shape[1], outputs, subset, gram_mode="materialise")
    K = fmap.gram(x, x)
    return K.shape[0] / (2 * jnp.linalg.eigvalsh(K)[-1])


def train(apply: Callable, params, x: jax.Array, targets: jax.Array, *, steps: int,
          lr: Optional[float] = None, subset: Subset = "all", optimizer: str = "sgd") -> TrainResult:
    """Full-batch GD (``optax.<optimizer>``, default plain SGD) on the MSE, updating ``subset``.

    Args:
      apply, params: the model (see :func:`split_model`).
      x: training inputs ``(n, d)``; targets ``(n, k)`` (one-hot / ``±1`` / real labels).
      steps: number of full-batch steps.
      lr: learning rate; ``None`` uses :func:`auto_lr` (the paper's plain GD used ``1e-5``).
      subset: the trained parameters (``"head"``, ``"all"``, any :data:`Subset`).
    """
    steps = _validate.positive_int("steps", steps)
    _validate.matrix("x", x)
    targets = jnp.asarray(targets)
    if targets.ndim == 1:
        targets = targets[:, None]
    if targets.shape[0] != x.shape[0]:
        raise ValueError(f"targets: must have {x.shape[0]} rows (one per input), got shape {targets.shape}")
    mask = subset_mask(params, subset)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    sub0 = [l for l, m in zip(leaves, mask) if m]
    x = jnp.asarray(x, jnp.result_type(*sub0))
    targets = targets.astype(x.dtype)
    if lr is None:
        lr = auto_lr(apply, params, x, targets.shape[1], mask)
    else:
        lr = _validate.positive_float("lr", lr)
    opt = getattr(optax, optimizer)(learning_rate=lr)

    def full(sub):
        it = iter(sub)
        return jax.tree_util.tree_unflatten(treedef, [next(it) if m else l for l, m in zip(leaves, mask)])

    loss = lambda sub: mse(apply, full(sub), x, targets)

    def step(carry, _):
        sub, state = carry
        value, grad = jax.value_and_grad(loss)(sub)
        updates, state = opt.update(grad, state, sub)
        return (optax.apply_updates(sub, updates), state), value

    (sub, _), losses = jax.lax.scan(step, (sub0, opt.init(sub0)), None, length=steps)
    return TrainResult(full(sub), losses, loss(sub), jnp.asarray(lr))


# -- networks for the attack: sizes, models, targets ----------------------------------------------

def head_params_per_width(model: str, classes: int = 1) -> int:
    """Head parameters per unit of width: ``k = classes`` for the two-layer net (``W2`` is
    ``width x k``), ``49`` for the ResNet (its head maps the flattened ``7 x 7 x width`` map to one
    output)."""
    _validate.choice("model", model, NETWORKS)
    if model == "resnet":
        from .resnet import head_size

        return head_size(1)
    return _validate.positive_int("classes", classes)


def width_for_params(p: float, model: str, classes: int = 1) -> int:
    """The width whose head has about ``p`` parameters: ``max(1, round(p / per_width))``."""
    return max(1, int(round(p / head_params_per_width(model, classes))))


def check_network(model: str, d: int, classes: int) -> None:
    """Reject sizes a network cannot take: the ResNet needs ``d = 3 s^2`` (or ``s^2``) and one output."""
    _validate.choice("model", model, NETWORKS)
    _validate.positive_int("classes", classes)
    if model == "resnet":
        from .resnet import image_shape_of

        image_shape_of(d)
        if classes != 1:
            raise ValueError(f"classes: the resnet has one output (binary ±1 targets), got {classes}")


def make_model(model: str, key, d: int, width: int, classes: int = 1, activation: str = "relu",
               dtype=jnp.float32) -> nnx.Module:
    """A freshly initialised network: ``TwoLayer(d, width, classes)`` or ``ResNet(width)`` for ``d``."""
    rngs = nnx.Rngs(params=key)
    if model == "two_layer":
        from .two_layer import TwoLayer

        return TwoLayer(d, width, classes, activation, rngs=rngs, param_dtype=dtype)
    from .resnet import ResNet, image_shape_of

    s, channels = image_shape_of(d)
    return ResNet(width, s, channels, rngs=rngs, param_dtype=dtype)


def training_targets(y: jax.Array, classes: int, dtype, sign: bool = False) -> jax.Array:
    """Targets ``(n, k)``: the labels for one output (``±1`` = ``sign(y)`` with ``sign``), else one-hot.

    Synthetic data has real labels and no classes: with ``k >= 2`` classes, sample ``i`` gets class
    ``i mod k`` (balanced; the attack never sees labels). Integer labels in ``[0, k)`` are used as is.
    """
    y = jnp.asarray(y)
    n = y.shape[0]
    if classes == 1:
        t = jnp.sign(y) if sign else y
        return t.astype(dtype)[:, None]
    is_int = jnp.issubdtype(y.dtype, jnp.integer) or bool(jnp.all((y == jnp.round(y)) & (y >= 0)))
    labels = y.astype(jnp.int32) if is_int and int(jnp.max(y)) < classes else jnp.arange(n) % classes
    return jax.nn.one_hot(labels, classes, dtype=dtype)


class NetworkProblem(NamedTuple):
    target: Target
    train: TrainResult
    description: str


def build_network_problem(key, data, model: str, width: int, *, classes: int = 1, activation: str = "relu",
                          train_subset: str = "head", train_steps: int = 100, train_lr: Optional[float] = None,
                          dtype=jnp.float32) -> NetworkProblem:
    """Initialise a network (:func:`make_model`), train it on ``data`` and return the head target.

    The ResNet is trained to ``±1`` targets (``sign`` of the labels). The target is the change of
    the head; its features are the head Jacobian at the trained parameters (``train_subset="all"``
    changes the hidden layers too, so the span holds only approximately).
    """
    x = jnp.asarray(data.x, dtype)
    net = make_model(model, key, x.shape[1], width, classes, activation, dtype)
    apply, params0 = split_model(net)
    targets = training_targets(data.y, classes, dtype, sign=model == "resnet")
    run = jax.jit(lambda p, xx, t: train(apply, p, xx, t, steps=train_steps, lr=train_lr, subset=train_subset))
    result = run(params0, x, targets)
    fmap = NetworkFeatures(apply, result.params, x.shape[1], targets.shape[1], "head")
    target = Target(fmap, fmap.theta_of(params0, result.params))
    name = "TwoLayer" if model == "two_layer" else "ResNet"
    desc = (f"{name}(width={width}, k={targets.shape[1]}, train={train_subset}, "
            f"steps={train_steps}, lr={float(result.lr):.3g}) head p={fmap.p}")
    return NetworkProblem(target, result, desc)
