"""Activation registry and the surrogate ReLU gradient of the published attack.

Every activation is a pure elementwise function ``sigma(z)``. The registry maps names to
functions; a user may pass any callable instead of a name.

The published reconstruction attack (Iurada et al., 2026, reference PyTorch code) replaces the
derivative of ReLU by a *leaky* one: the forward pass is the exact ReLU, but where the
pre-activation is negative the backward pass uses slope 0.02 instead of 0. This keeps gradients
alive for rows of ``X_hat`` whose features are switched off. :func:`surrogate_relu` builds that
function with ``jax.custom_jvp`` so forward values are unchanged and only derivatives differ.
"""

from __future__ import annotations

from typing import Callable, Union

import jax
import jax.numpy as jnp

Activation = Callable[[jax.Array], jax.Array]
ActivationSpec = Union[str, Activation]

#: Slope of the surrogate ReLU derivative on negative pre-activations in the published attack.
PUBLISHED_SURROGATE_SLOPE = 0.02


def relu(z):
    return jnp.maximum(z, 0)


def relu_tanh(z):
    """``relu(z) + tanh(z)``: the paper's appendix uses it to break ReLU's sign ambiguity."""
    return jnp.maximum(z, 0) + jnp.tanh(z)


def erf(z):
    return jax.scipy.special.erf(z)


def gelu(z):
    return jax.nn.gelu(z, approximate=False)


ACTIVATIONS: dict[str, Activation] = {
    "relu": relu,
    "relu_tanh": relu_tanh,
    "tanh": jnp.tanh,
    "erf": erf,
    "gelu": gelu,
}

# Activations whose ReLU part receives the surrogate derivative; the smooth part keeps its own.
_RELU_PARTS: dict[str, Activation] = {"relu": lambda z: 0 * z, "relu_tanh": jnp.tanh}


def _make_surrogate(slope: float, smooth: Activation) -> Activation:
    @jax.custom_jvp
    def f(z):
        return jnp.maximum(z, 0) + smooth(z)

    @f.defjvp
    def f_jvp(primals, tangents):
        (z,), (dz,) = primals, tangents
        smooth_out, smooth_dz = jax.jvp(smooth, (z,), (dz,))
        out = jnp.maximum(z, 0) + smooth_out
        leaky = jnp.where(z > 0, jnp.ones_like(z), jnp.full_like(z, slope))
        return out, leaky * dz + smooth_dz

    return f


def surrogate_relu(slope: float = PUBLISHED_SURROGATE_SLOPE) -> Activation:
    """Exact ReLU forward; derivative ``1`` for ``z > 0`` and ``slope`` otherwise."""
    return _make_surrogate(float(slope), _RELU_PARTS["relu"])


_SURROGATE_CACHE: dict[tuple[str, float], Activation] = {}


def get_activation(spec: ActivationSpec, surrogate_slope: float | None = None) -> Activation:
    """Return the activation function for a name or callable.

    Args:
      spec: a registered name (see :data:`ACTIVATIONS`) or a callable ``sigma(z)``.
      surrogate_slope: if given and ``spec`` is ``"relu"`` or ``"relu_tanh"``, the ReLU part gets
        the leaky surrogate derivative with this slope (forward values unchanged). Ignored for
        activations without a ReLU part.
    """
    if callable(spec):
        return spec
    if not isinstance(spec, str) or spec not in ACTIVATIONS:
        raise ValueError(
            f"activation: unknown activation {spec!r}; allowed: {sorted(ACTIVATIONS)} or a callable"
        )
    if surrogate_slope is not None and spec in _RELU_PARTS:
        cache_key = (spec, float(surrogate_slope))
        if cache_key not in _SURROGATE_CACHE:  # one function object per setting keeps jit caches warm
            _SURROGATE_CACHE[cache_key] = _make_surrogate(float(surrogate_slope), _RELU_PARTS[spec])
        return _SURROGATE_CACHE[cache_key]
    return ACTIVATIONS[spec]


def activation_name(spec: ActivationSpec) -> str:
    """A printable name for an activation spec (the registry name, or the callable's name)."""
    if isinstance(spec, str):
        return spec
    return getattr(spec, "__name__", repr(spec))
