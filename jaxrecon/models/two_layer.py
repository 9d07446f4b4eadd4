"""The two-layer network of the paper's Sec. 5: ``f(x) = W2 sigma(W1 x)`` with ``k`` outputs.

``W1 ~ N(0, 1/d)`` (``width x d``), ``W2 ~ N(0, 1/width)`` (``k x width``), no biases. In flax the
layers are ``hidden`` and ``head`` (:class:`flax.nnx.Linear`, kernels stored as ``(in, out)``), so
the head subset is ``"head"`` and ``theta = vec(head.kernel)`` is ``width * k`` numbers, laid out
row-major as ``(width, k)``: the Jacobian row of sample ``i`` and output ``c`` is
``sigma(W1 x_i) ⊗ e_c`` and the head kernel is ``K_h ⊗ I_k`` with ``K_h = sigma(X W1^T) sigma(X W1^T)^T``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from .._optional import nnx  # flax.nnx; without the networks extra a one-line MissingExtra

from .. import _validate
from ..activations import get_activation


class TwoLayer(nnx.Module):
    """``f(x) = W2 sigma(W1 x)``; ``x`` is ``(n, d)``, the output ``(n, k)``.

    Args:
      d: input dimension.
      width: hidden units (the head has ``width * outputs`` parameters).
      outputs: ``k``.
      activation: a name from :data:`jaxrecon.activations.ACTIVATIONS` (default ReLU).
      rngs: :class:`flax.nnx.Rngs` (explicit key).
      param_dtype: dtype of the weights (default float32).
    """

    def __init__(self, d: int, width: int, outputs: int = 1, activation: str = "relu", *,
                 rngs: nnx.Rngs, param_dtype=jnp.float32):
        _validate.positive_int("d", d)
        _validate.positive_int("width", width)
        _validate.positive_int("outputs", outputs)
        get_activation(activation)
        self.activation = activation
        init = nnx.initializers.normal
        self.hidden = nnx.Linear(d, width, use_bias=False, kernel_init=init(1 / math.sqrt(d)),
                                 param_dtype=param_dtype, rngs=rngs)
        self.head = nnx.Linear(width, outputs, use_bias=False, kernel_init=init(1 / math.sqrt(width)),
                               param_dtype=param_dtype, rngs=rngs)

    def embed(self, x: jax.Array) -> jax.Array:
        """Hidden features ``sigma(x W1^T)``, shape ``(n, width)``."""
        return get_activation(self.activation)(self.hidden(x))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.embed(x))


def head_size(width: int, outputs: int = 1) -> int:
    """Parameters of the head: ``width * k``."""
    return width * outputs
