"""The paper's ResNet (Sec. 5 / App.): a stem to a 7×7 map, 4 residual blocks, a linear head.

* inputs: flat rows of ``s * s * C`` numbers in channels-last ``(H, W, C)`` order, the layout of
  :mod:`jaxrecon.data.registry` (``d = 3072`` for the paper's ``3 × 32 × 32``; ``C = 3``, or 1 for
  grey images), reshaped inside;
* stem: convolution with kernel ``s - 4`` and padding 1, so ``s × s → 7 × 7`` (kernel 28 for 32×32),
  ``width`` channels, then ReLU;
* 4 basic residual blocks ``h ← relu(h + conv(relu(conv(h))))``, 3×3 convolutions, padding 1;
* head: linear map of the flattened ``7 × 7 × width`` map to one output, so ``p = 49 · width``.

No biases, no normalisation. Initialisation, the reference code's: stem ``N(0, 1/(C s^2))`` (the
size of the input image, ``3 * 32 * 32`` for the paper's; not the kernel's fan-in ``(s - 4)^2 C``,
which is 1.31 times smaller at ``s = 32`` and 4 times at ``s = 8``), blocks ``N(0, 1/(9 width))``,
head ``N(0, 1/(49 width))`` (:data:`INIT_FAN_IN`). The reduced image size ``s`` (any ``s >= 8``)
exists for CPU-sized runs; the paper's model is ``s = 32``.

Inputs, as :mod:`jaxrecon.runner` gives them: images standardised per colour channel (the
reference's normalisation) and trained on as such; the attack and the metrics see the same rows
rescaled to norm ``sqrt(d)``. The network is positively homogeneous (ReLU, no biases:
``f(c x) = c f(x)`` for ``c > 0``), so the span of the head features of a row does not depend on
its norm, which no attack on the head can recover.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from .._optional import nnx  # flax.nnx; without the networks extra a one-line MissingExtra

from .. import _validate

MAP_SIZE = 7  # spatial size after the stem
#: The variance of each layer's initial weights is ``1 / fan`` with ``fan`` given the image side
#: ``s``, channels ``C`` and the width (the reference code's).
INIT_FAN_IN = {"stem": lambda s, c, width: c * s * s, "block": lambda s, c, width: 9 * width,
               "head": lambda s, c, width: MAP_SIZE * MAP_SIZE * width}


def _normal(fan_in):
    return nnx.initializers.normal(1 / math.sqrt(fan_in))


def image_shape_of(d: int) -> tuple[int, int]:
    """``(s, C)`` with ``d = s * s * C``, ``C = 3`` (colour) or else 1 (grey), ``s >= 8``."""
    for channels in (3, 1):
        s = int(round(math.sqrt(d / channels)))
        if channels * s * s == d and s >= 8:
            return s, channels
    raise ValueError(f"d: the resnet needs image-shaped inputs d = s*s*3 or s*s with s >= 8 "
                     f"(3072 for 32x32 colour images), got d={d}")


def image_size_of(d: int) -> int:
    """Side ``s`` of the square image of :func:`image_shape_of`."""
    return image_shape_of(d)[0]


class Block(nnx.Module):
    def __init__(self, width: int, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
        conv = lambda: nnx.Conv(width, width, (3, 3), padding=1, use_bias=False,
                                kernel_init=_normal(INIT_FAN_IN["block"](0, 0, width)), param_dtype=param_dtype,
                                rngs=rngs)
        self.conv1, self.conv2 = conv(), conv()

    def __call__(self, h):
        return jax.nn.relu(h + self.conv2(jax.nn.relu(self.conv1(h))))


class ResNet(nnx.Module):
    """The paper's ResNet with one output; ``x`` is flat ``(n, channels * s * s)``, output ``(n, 1)``."""

    def __init__(self, width: int, image_size: int = 32, channels: int = 3, blocks: int = 4, *,
                 rngs: nnx.Rngs, param_dtype=jnp.float32):
        _validate.positive_int("width", width)
        _validate.positive_int("channels", channels)
        _validate.positive_int("blocks", blocks)
        if _validate.positive_int("image_size", image_size) < 8:
            raise ValueError(f"image_size: must be >= 8, got {image_size}")
        self.image_size, self.channels, self.width = image_size, channels, width
        k = image_size + 2 - MAP_SIZE + 1  # padding 1, stride 1: s + 2 - k + 1 = 7
        fan = {name: f(image_size, channels, width) for name, f in INIT_FAN_IN.items()}
        self.stem = nnx.Conv(channels, width, (k, k), padding=1, use_bias=False,
                             kernel_init=_normal(fan["stem"]), param_dtype=param_dtype, rngs=rngs)
        self.blocks = nnx.List([Block(width, rngs=rngs, param_dtype=param_dtype) for _ in range(blocks)])
        p = MAP_SIZE * MAP_SIZE * width
        self.head = nnx.Linear(p, 1, use_bias=False, kernel_init=_normal(fan["head"]), param_dtype=param_dtype,
                               rngs=rngs)

    @property
    def input_dim(self) -> int:
        return self.channels * self.image_size ** 2

    def feature_map(self, x: jax.Array) -> jax.Array:
        """The ``(n, 7, 7, width)`` map before the head (NHWC)."""
        s, c = self.image_size, self.channels
        h = x.reshape(x.shape[0], s, s, c)
        h = jax.nn.relu(self.stem(h))
        for block in self.blocks:
            h = block(h)
        return h

    def embed(self, x: jax.Array) -> jax.Array:
        """Head inputs, shape ``(n, 49 * width)``."""
        h = self.feature_map(x)
        return h.reshape(h.shape[0], -1)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.embed(x))


def head_size(width: int) -> int:
    """Parameters of the head: ``49 * width``."""
    return MAP_SIZE * MAP_SIZE * width
