"""The paper's ResNet (Sec. 5 / App.): a stem to a 7×7 map, 4 residual blocks, a linear head.

* inputs: flat rows of ``s * s * C`` numbers in channels-last ``(H, W, C)`` order, the layout of
  :mod:`jaxrecon.data.registry` (``d = 3072`` for the paper's ``3 × 32 × 32``; ``C = 3``, or 1 for
  grey images), reshaped inside;
* stem: convolution with kernel ``s - 4`` and padding 1, so ``s × s → 7 × 7`` (kernel 28 for 32×32),
  ``width`` channels, then ReLU;
* 4 basic residual blocks ``h ← relu(h + conv(relu(conv(h))))``, 3×3 convolutions, padding 1;
* head: linear map of the flattened ``7 × 7 × width`` map to one output, so ``p = 49 · width``.

No biases, no normalisation. The 3×3 convolutions of the blocks are computed as one matrix product
of the nine shifted copies of the map (:func:`conv3x3_matmul`, the same numbers as
:func:`jax.lax.conv_general_dilated`): XLA:CPU runs it 3 to 5 times faster than its convolution,
inside compiled loops (the attack's chunks, GD to tolerance) too, where its convolution is slower
still.

Initialisation, the reference code's: stem ``N(0, 1/(C s^2))`` (the size of the input image,
``3 * 32 * 32`` for the paper's; not the kernel's fan-in ``(s - 4)^2 C``, which is 1.31 times
smaller at ``s = 32`` and 4 times at ``s = 8``), blocks ``N(0, 1/(9 width))``, head
``N(0, 1/(49 width))`` (:data:`INIT_FAN_IN`). The reduced image size ``s`` (any ``s >= 8``)
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


def conv3x3_matmul(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                   dimension_numbers=None, feature_group_count=1, precision=None, **kwargs):
    """A stride-1 convolution of ``NHWC`` maps with an ``HWIO`` kernel as one matrix product.

    The signature of :func:`jax.lax.conv_general_dilated` (``nnx.Conv`` calls it so); other
    strides, dilations, groups or layouts go to it unchanged. The input is padded, its ``kh * kw``
    shifted copies are stacked on the channel axis (``(N*H'*W', kh*kw*C)``) and multiplied by the
    kernel reshaped to ``(kh*kw*C, O)``: the numbers of the convolution (summed in another order).
    """
    kh, kw, cin, cout = rhs.shape
    plain = (tuple(window_strides) == (1, 1) and all(d in (None, 1) or tuple(d) == (1, 1)
                                                     for d in (lhs_dilation, rhs_dilation))
             and feature_group_count == 1 and not isinstance(padding, str) and lhs.ndim == 4
             and _nhwc(dimension_numbers, lhs.ndim) and lhs.shape[-1] == cin)
    if not plain:
        return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                            dimension_numbers, feature_group_count, precision=precision,
                                            **kwargs)
    (top, bottom), (left, right) = padding
    h = jnp.pad(lhs, ((0, 0), (top, bottom), (left, right), (0, 0)))
    n, hp, wp, _ = h.shape
    ho, wo = hp - kh + 1, wp - kw + 1
    cols = jnp.concatenate([h[:, i:i + ho, j:j + wo, :] for i in range(kh) for j in range(kw)], axis=-1)
    out = jnp.dot(cols.reshape(n * ho * wo, kh * kw * cin), rhs.reshape(kh * kw * cin, cout),
                  precision=precision)
    return out.reshape(n, ho, wo, cout)


def _nhwc(dimension_numbers, ndim) -> bool:
    """Whether ``dimension_numbers`` say ``NHWC`` inputs and outputs and an ``HWIO`` kernel."""
    if dimension_numbers is None:
        return False
    dn = jax.lax.conv_dimension_numbers((1,) * ndim, (1,) * ndim, dimension_numbers) \
        if not isinstance(dimension_numbers, jax.lax.ConvDimensionNumbers) else dimension_numbers
    return (tuple(dn.lhs_spec) == (0, 3, 1, 2) and tuple(dn.rhs_spec) == (3, 2, 0, 1)
            and tuple(dn.out_spec) == (0, 3, 1, 2))


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
                                conv_general_dilated=conv3x3_matmul, rngs=rngs)
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
