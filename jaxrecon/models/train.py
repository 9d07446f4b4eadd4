"""Full-batch gradient descent on MSE for flax (NNX) models, and network targets for the attack.

The boundary with flax is :func:`split_model`: ``nnx.split`` gives a static graph and a parameter
pytree, and ``apply(params, x) = nnx.merge(graph, params)(x)`` is a pure function. Training and the
feature maps see only ``apply`` and ``params``.

Training (paper Sec. 5): plain gradient descent (optax) on the mean squared error
``mean_{i,c} (f_c(x_i) - t_ic)^2`` to one-hot targets (``k`` classes) or to ``±1``/real labels
(one output), updating only a parameter subset (``"head"``) or everything (``"all"``). With the
head alone and a linear head, the head's Jacobian does not change during training, so
``theta = head_after - head_before`` lies exactly in the span of the training features.

As the paper's released code trains (:func:`train_to_tolerance`, what ``jaxrecon reconstruct``
runs): **all** layers, plain full-batch GD, until the training MSE is ``<= tol`` (default
``1e-7``, the paper's) or a step budget is spent. Then ``theta = vec(W_head - W_head^(0))`` with
the head Jacobian at the *trained* body as features is only close to the span of the training
features; its float64 projector loss at the true training set (``loss_at_truth``) is the floor
of any attack. The learning rate: the paper's ``1e-5`` (:data:`PAPER_LR`) suits its widths
(``lr * lambda_max`` about 0.04 at width 122 880); at CPU widths ``lambda_max`` is thousands of
times smaller, so the default is :func:`auto_lr`, ``1 / lambda_max`` of the Gauss-Newton
Hessian at initialisation (half the stability bound of GD), see :data:`AUTO_LR_RULE`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
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


#: Jacobians of at most this many numbers are materialised for :func:`auto_lr`; larger ones go
#: matrix-free (one JVP and one VJP per kernel column).
_MATERIALISE_MAX = 1 << 24


def auto_lr(apply, params, x, outputs: int, subset: Subset = "all") -> jax.Array:
    """``1 / lambda_max`` of the Gauss-Newton Hessian ``2 J^T J / (n k)`` of the MSE at ``params``.

    Gradient descent is stable below ``2 / lambda_max``; this is half that bound, so the top
    direction of the empirical NTK converges in about one step.
    """
    mask = subset_mask(params, subset)
    p = sum(int(l.size) for l, m in zip(jax.tree_util.tree_leaves(params), mask) if m)
    mode = "materialise" if x.shape[0] * outputs * p <= _MATERIALISE_MAX else "matrix_free"
    fmap = NetworkFeatures(apply, params, x.shape[1], outputs, mask, gram_mode=mode)
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
    x, targets, mask = _gd_inputs(params, x, targets, subset)
    if lr is None:
        lr = auto_lr(apply, params, x, targets.shape[1], mask)
    else:
        lr = _validate.positive_float("lr", lr)
    opt = getattr(optax, optimizer)(learning_rate=lr)
    sub0, full, value_and_grad, _ = _gd_parts(apply, params, x, targets, mask)

    def step(carry, _):
        sub, state = carry
        value, grad, _ = value_and_grad(sub)
        updates, state = opt.update(grad, state, sub)
        return (optax.apply_updates(sub, updates), state), value

    (sub, _), losses = jax.lax.scan(step, (sub0, opt.init(sub0)), None, length=steps)
    return TrainResult(full(sub), losses, mse(apply, full(sub), x, targets), jnp.asarray(lr))


# -- training to a tolerance (the paper's procedure) ----------------------------------------------

#: The paper's training tolerance: plain GD runs until the training MSE is below it.
DEFAULT_TOL = 1e-7
#: The paper's learning rate (its two-layer and ResNet scripts), meant for its widths.
PAPER_LR = 1e-5
#: Default step budget of :func:`train_to_tolerance` (the paper's is ``10^6``).
DEFAULT_MAX_STEPS = 100_000
#: The default learning rate is this times :func:`auto_lr` (``1 / lambda_max``). Measured on the
#: two-layer net (d = 10, n = 4, p_head/(dn) = 0.5 ... 32, all layers): ``loss_at_truth`` at
#: ``0.1 / lambda_max`` is within 10 % of its value at ``0.04 / lambda_max`` (GD near gradient
#: flow, as the paper's ``1e-5`` at its widths: ``lr * lambda_max`` about 0.05) and reaches
#: ``1e-7`` in about 250 steps; at ``1 / lambda_max`` (about 20 steps) it is up to 2x higher.
AUTO_LR_SCALE = 0.1
#: How the default learning rate is chosen (recorded in ``summary.json``).
AUTO_LR_RULE = "0.1/lambda_max, lambda_max of the Gauss-Newton Hessian 2 J^T J/(n k) at initialisation"


class Trained(NamedTuple):
    """The result of :func:`train_to_tolerance` / :func:`gd_to_tolerance`."""

    params: Any  # parameters after training (full pytree)
    final_loss: jax.Array  # training MSE of ``params``
    steps: jax.Array  # GD updates taken
    lr: jax.Array  # the learning rate used
    initial_loss: jax.Array  # training MSE at initialisation
    converged: Any  # whether the MSE reached the tolerance (a boolean array under jit)
    #: the change of every trained parameter, summed step by step (zeros where untrained):
    #: ``theta`` is read from it, not from ``params - params_before``, whose float32 rounding (of
    #: the parameters' size, not of the change's, at every step) put a head-only ResNet's ``theta``
    #: off its span by ``loss_at_truth`` 4e-7 (3x8x8, width 392, 9318 steps). A linear head sums
    #: the output gradients and returns ``J^T`` of the sum (:func:`_gd_parts`): ``loss_at_truth``
    #: 1e-14 there; all layers sum the parameter gradients.
    change: Any = None


def _gd_inputs(params, x, targets, subset):
    """Checked ``(x, targets (n, k), mask)`` in the dtype of the trained parameters."""
    _validate.matrix("x", x)
    targets = jnp.asarray(targets)
    if targets.ndim == 1:
        targets = targets[:, None]
    if targets.shape[0] != x.shape[0]:
        raise ValueError(f"targets: must have {x.shape[0]} rows (one per input), got shape {targets.shape}")
    mask = subset_mask(params, subset)
    dtype = jnp.result_type(*[l for l, m in zip(jax.tree_util.tree_leaves(params), mask) if m])
    return jnp.asarray(x, dtype), targets.astype(dtype), mask


def _gd_lr(apply, params, x, targets, mask, lr):
    """The learning rate: given (checked when concrete), else :data:`AUTO_LR_SCALE` x :func:`auto_lr`."""
    if lr is None:
        return AUTO_LR_SCALE * auto_lr(apply, params, x, targets.shape[1], mask)
    if _validate.is_concrete(lr):
        lr = _validate.positive_float("lr", lr)
    return jnp.asarray(lr, x.dtype)


def _merged(params, mask, sub):
    """``params`` with the leaves that ``mask`` selects replaced by ``sub`` (in leaf order)."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    it = iter(sub)
    return jax.tree_util.tree_unflatten(treedef, [next(it) if m else l for l, m in zip(leaves, mask)])


class _Parts(NamedTuple):
    """What GD on the MSE over the leaves a mask selects needs (:func:`_gd_parts`)."""

    sub0: list  # the selected leaves at the start
    full: Callable  # sub -> the full parameter pytree
    value_and_grad: Callable  # sub -> (MSE, its gradient, the part of the step that is summed)
    tally: Callable  # the summed part -> the change of sub


def _gd_parts(apply, params, x, targets, mask, linear=False) -> _Parts:
    """GD's parts for the MSE over the leaves ``mask`` selects.

    ``linear``: the model is affine in the subset (a linear head), so the network is linearised
    once (:func:`jax.linearize`: its activations kept) and each step costs the head's products
    only; the same function, not an approximation. The summed part of a step is then the MSE's
    gradient with respect to the outputs (``n x k`` numbers), and the change of the subset is
    ``J^T`` of their sum: ``theta`` in the span of the training features to the rounding of one
    product, whatever the number of steps. Otherwise the gradient itself is summed (``None`` in
    the carry)."""
    sub0 = [l for l, m in zip(jax.tree_util.tree_leaves(params), mask) if m]
    full = lambda sub: _merged(params, mask, sub)
    if not linear:
        out = lambda sub: apply(full(sub), x).reshape(targets.shape)
        vg = jax.value_and_grad(lambda sub: jnp.mean((out(sub) - targets) ** 2))
        return _Parts(sub0, full, lambda sub: (*vg(sub), None), lambda moved: moved)
    out0, lin = jax.linearize(lambda sub: apply(full(sub), x).reshape(targets.shape), sub0)
    lin_t = jax.linear_transpose(lin, sub0)

    def value_and_grad(sub):
        err = out0 + lin(jax.tree_util.tree_map(jnp.subtract, sub, sub0)) - targets
        g_out = 2 * err / err.size
        return jnp.mean(err ** 2), lin_t(g_out)[0], g_out

    return _Parts(sub0, full, value_and_grad, lambda moved: lin_t(moved)[0])


def _gd_step(value_and_grad, lr, carry):
    """One GD update of ``carry = (sub, loss, grad, summed, step, moved)``: ``sub`` takes
    ``-lr * grad`` and ``moved`` ``-lr * summed`` (``-lr * grad`` when ``summed`` is ``None``);
    then the loss, gradient and summed part at the new ``sub``."""
    sub, _, grad, summed, step, moved = carry
    sub = jax.tree_util.tree_map(lambda s, g: s - lr * g, sub, grad)
    moved = jax.tree_util.tree_map(lambda m, g: m - lr * g, moved, grad if summed is None else summed)
    return (sub, *value_and_grad(sub), step + 1, moved)


def _gd_start(value_and_grad, sub0):
    """The carry before the first update (:func:`_gd_step`)."""
    loss, grad, summed = value_and_grad(sub0)
    moved = jax.tree_util.tree_map(jnp.zeros_like, sub0 if summed is None else summed)
    return (sub0, loss, grad, summed, jnp.int32(0), moved)


def _gd_advance(value_and_grad, lr, tol, carry, until):
    """GD steps (:func:`_gd_step`) while ``step < until`` and ``tol < loss < inf``: one forward and
    one backward pass per step."""
    def cond(c):
        return (c[4] < until) & (c[1] > tol) & jnp.isfinite(c[1])

    return jax.lax.while_loop(cond, functools.partial(_gd_step, value_and_grad, lr), carry)


def _trained(params, mask, carry, change, lr, loss0, converged) -> "Trained":
    """:class:`Trained` from a final carry and the subset's ``change`` (zero on the other leaves)."""
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    return Trained(_merged(params, mask, carry[0]), carry[1], carry[4], lr, loss0, converged,
                   _merged(zeros, mask, change))


def gd_to_tolerance(apply: Callable, params, x: jax.Array, targets: jax.Array, *, tol: float = DEFAULT_TOL,
                    max_steps: int = DEFAULT_MAX_STEPS, lr: Optional[float] = None,
                    subset: Subset = "all", linear: bool = False) -> Trained:
    """Plain full-batch GD on the MSE until it is ``<= tol`` or ``max_steps`` updates are taken.

    Pure (jit / vmap it; ``lr`` and ``tol`` may be traced): one :func:`jax.lax.while_loop`, no
    progress. :func:`train_to_tolerance` is the same steps in chunks with progress and signals.
    ``lr=None``: :data:`AUTO_LR_SCALE` times :func:`auto_lr` of ``subset`` at ``params``.
    ``linear=True`` when the model is affine in ``subset`` (the head alone): same steps, cheaper.
    """
    max_steps = _validate.positive_int("max_steps", max_steps)
    x, targets, mask = _gd_inputs(params, x, targets, subset)
    lr = _gd_lr(apply, params, x, targets, mask, lr)
    parts = _gd_parts(apply, params, x, targets, mask, linear)
    carry = _gd_start(parts.value_and_grad, parts.sub0)
    loss0 = carry[1]
    tol = jnp.asarray(tol, loss0.dtype)
    carry = _gd_advance(parts.value_and_grad, lr, tol, carry, max_steps)
    return _trained(params, mask, carry, parts.tally(carry[5]), lr, loss0, carry[1] <= tol)


def train_to_tolerance(apply: Callable, params, x: jax.Array, targets: jax.Array, *, tol: float = DEFAULT_TOL,
                       max_steps: int = DEFAULT_MAX_STEPS, lr: Optional[float] = None, subset: Subset = "all",
                       linear: bool = False, host_steps: bool = False, chunk: int = 10_000,
                       progress: bool = False, desc: str = "train") -> Trained:
    """:func:`gd_to_tolerance` run on the host in compiled chunks sized by time (the attack's
    :class:`~jaxrecon.attack.progress.ChunkSizer`, at most ``chunk`` steps), with progress on
    stderr and the signal check of :func:`jaxrecon.signals.stop_requested` between chunks (a signal
    raises :class:`~jaxrecon.signals.Interrupted`). The same steps as :func:`gd_to_tolerance`
    whatever the chunks: the chunk bound is a runtime argument of one compiled loop.

    Stops when the training MSE is ``<= tol`` (``converged``), at ``max_steps`` updates, or when
    the MSE is not finite (diverged; the caller checks ``final_loss``).

    ``host_steps``: a chunk is a host loop of one compiled GD step per call (dispatched without
    waiting; a step after the stop leaves the state as it is) instead of one compiled loop. For convolutional
    networks on CPU: XLA:CPU ran the ResNet's step with :func:`jax.lax.conv_general_dilated` 15
    times slower inside a compiled loop (``while_loop`` or ``scan``, 0.2 s vs 0.014 s per step at
    width 39, 3x8x8 inputs, n = 10); with the blocks' convolutions as matrix products
    (:func:`jaxrecon.models.resnet.conv3x3_matmul`) both ways take the same time (0.36 s and
    0.41 s per step at width 392), and the ResNet keeps the host steps.
    """
    from ..attack.progress import ChunkSizer, StepProgress
    from ..signals import Interrupted, stop_requested

    max_steps = _validate.positive_int("max_steps", max_steps)
    tol = _validate.positive_float("tol", tol, allow_zero=True)
    chunk = _validate.positive_int("chunk", chunk)
    x, targets, mask = _gd_inputs(params, x, targets, subset)
    given = None if lr is None else _validate.positive_float("lr", lr)
    lr = jax.jit(lambda p, xx, t: _gd_lr(apply, p, xx, t, mask, given))(params, x, targets)
    # the parameters, data and lr are arguments (not constants folded into the programs)

    @jax.jit
    def start(p, xx, t):
        parts = _gd_parts(apply, p, xx, t, mask, linear)
        return _gd_start(parts.value_and_grad, parts.sub0)

    @jax.jit
    def loop(p, xx, t, lr, c, until):
        vg = _gd_parts(apply, p, xx, t, mask, linear).value_and_grad
        return _gd_advance(vg, lr, jnp.asarray(tol, c[1].dtype), c, until)

    @functools.partial(jax.jit, donate_argnums=4)
    def one(p, xx, t, lr, c):
        vg = _gd_parts(apply, p, xx, t, mask, linear).value_and_grad
        running = (c[1] > tol) & jnp.isfinite(c[1])  # straight-line code: no loop, no cond
        return jax.tree_util.tree_map(lambda a, b: jnp.where(running, a, b), _gd_step(vg, lr, c), c)

    def advance(p, xx, t, lr, c, until):
        if not host_steps:
            return loop(p, xx, t, lr, c, until)
        for _ in range(int(until) - int(c[4])):
            c = one(p, xx, t, lr, c)
        return c

    carry = start(params, x, targets)
    loss0 = jnp.copy(carry[1])  # the carry is donated to the steps
    shown = StepProgress(max_steps, desc, progress)
    show = lambda step, loss: shown.show(step, {"mse": f"{loss:.3g}"}, f"MSE {loss:.3g}")
    sizer = ChunkSizer(chunk)
    try:
        step = 0
        while step < max_steps:
            loss = float(carry[1])
            show(step, loss)
            if not (tol < loss < math.inf):
                break
            if stop_requested():
                raise Interrupted("interrupted while training the network; nothing written")
            size = min(sizer.next(), max_steps - step)
            t = time.perf_counter()
            carry = advance(params, x, targets, lr, carry, jnp.int32(step + size))
            done = int(carry[4])
            sizer.timed(max(1, done - step), time.perf_counter() - t, frozenset({0}))
            step = done
        show(step, float(carry[1]))
    finally:
        shown.close()
    tally = jax.jit(lambda p, xx, t, moved: _gd_parts(apply, p, xx, t, mask, linear).tally(moved))
    return _trained(params, mask, carry, tally(params, x, targets, carry[5]), lr, loss0,
                    bool(float(carry[1]) <= tol))


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
    train: Trained
    description: str
    lr_rule: str = "given"  # how the learning rate was chosen (AUTO_LR_RULE, or "given")


def homogeneous(model: str, activation: str = "relu") -> bool:
    """Whether the network is positively homogeneous of degree 1 in its input, ``f(c x) = c f(x)``
    for ``c > 0`` (ReLU, no biases): the ResNet, and the two-layer net with ReLU. Then the head
    Jacobian rows at ``c x`` are ``c`` times those at ``x``: their span, hence the target's
    projector loss, does not depend on the row norms, which no attack on the head can recover."""
    return model == "resnet" or activation == "relu"


def training_inputs(data, model: str, activation: str = "relu"):
    """The rows the network is trained on. Images whose rows were rescaled to the sphere
    (``normalize="sphere"``, :mod:`jaxrecon.data.registry`) are trained on as standardised, before
    the rescaling (the paper's code does not project them), when the network is
    :func:`homogeneous`: the attack and the metrics then see the same rows on the sphere, whose
    span of head features is the same. Otherwise (synthetic rows, a non-homogeneous net) ``data.x``."""
    x = jnp.asarray(data.x)
    norms = getattr(data, "row_norm", None)
    if norms is None or getattr(data, "normalize", None) != "sphere" or not homogeneous(model, activation):
        return x
    scale = jnp.asarray(norms, x.dtype) / jnp.sqrt(jnp.asarray(x.shape[1], x.dtype))
    return x * scale[:, None]


def class_labels(data, classes: int):
    """Class indices ``0 .. k-1`` of the training rows for one-hot targets, or ``None``: images
    carry their class (``data.labels``, numbered by rank of the class index); synthetic data none."""
    labels = getattr(data, "labels", None)
    if labels is None or classes < 2:
        return None
    import numpy as np

    found, inverse = np.unique(np.asarray(labels), return_inverse=True)
    if len(found) > classes:
        raise ValueError(f"classes: the training images hold {len(found)} classes but the network has "
                         f"--classes {classes} outputs; give --classes {len(found)} (or select fewer with "
                         f"--data-classes)")
    return jnp.asarray(inverse, jnp.int32)


def build_network_problem(key, data, model: str, width: int, *, classes: int = 1, activation: str = "relu",
                          train_subset: str = "all", train_steps: int = DEFAULT_MAX_STEPS,
                          train_lr: Optional[float] = None, train_tol: float = DEFAULT_TOL,
                          dtype=jnp.float32, progress: bool = False) -> NetworkProblem:
    """Initialise a network (:func:`make_model`), train it on ``data`` and return the head target.

    Training is :func:`train_to_tolerance` of ``train_subset`` (``"all"``: the paper's; ``"head"``:
    the head alone, so ``theta`` is exactly in the span) to ``train_tol`` within ``train_steps``
    updates, on :func:`training_inputs`. One output (the ResNet, or ``classes=1``) is trained to
    ``±1`` (``sign`` of the labels; the two-layer net with one output on real labels), ``k >= 2``
    outputs to one-hot targets of the images' classes (:func:`class_labels`; synthetic data:
    sample ``i`` has class ``i mod k``). The target is ``theta = vec(W_head - W_head^(0))``; its
    features are the head Jacobian at the trained parameters (all layers trained: the span holds
    only approximately; the runner measures ``loss_at_truth``).
    """
    _validate.choice("train_subset", train_subset, TRAIN_SUBSETS)
    x = jnp.asarray(training_inputs(data, model, activation), dtype)
    net = make_model(model, key, x.shape[1], width, classes, activation, dtype)
    apply, params0 = split_model(net)
    labels = class_labels(data, classes)
    y = data.y if labels is None else labels
    targets = training_targets(y, classes, dtype, sign=model == "resnet")
    name = "TwoLayer" if model == "two_layer" else "ResNet"
    what = "all layers" if train_subset == "all" else "the head"
    head = train_subset == "head"
    result = train_to_tolerance(apply, params0, x, targets, tol=train_tol, max_steps=train_steps, lr=train_lr,
                                subset=train_subset, linear=head, host_steps=model == "resnet" and not head,
                                progress=progress, desc=f"train {name} ({what})")
    fmap = NetworkFeatures(apply, result.params, x.shape[1], targets.shape[1], "head")
    target = Target(fmap, fmap.theta_from(result.change))
    desc = (f"{name}(width={width}, k={targets.shape[1]}, train={train_subset}, "
            f"steps={int(result.steps)}, lr={float(result.lr):.3g}) head p={fmap.p}")
    return NetworkProblem(target, result, desc, AUTO_LR_RULE if train_lr is None else "given")
