"""The one interface between models and the attack.

A *feature map* is an immutable pytree with a width ``p`` (the number of parameters it
describes) that offers pure functions of inputs ``x`` of shape ``(n, d)``:

================================  =========================================  ===========
method                            value                                      shape
================================  =========================================  ===========
``features(x)``                   ``Phi(x)`` (materialised; small sizes)     ``(m, p)``
``gram(x1, x2)``                  ``Phi(x1) Phi(x2)^T``                      ``(m1, m2)``
``project(x, theta)``             ``Phi(x) theta``                           ``(m,)``
``adjoint(x, alpha)``             ``Phi(x)^T alpha``                         ``(p,)``
``gram_project(x, theta)``        ``(gram(x, x), project(x, theta))``        one pass
================================  =========================================  ===========

``m`` is the number of feature rows: ``n`` for a scalar-output model, ``n * k`` for ``k`` outputs.

Besides these, the attack uses a few optional abilities; :class:`FeatureMapBase` gives each a
default that is correct for a map without it, so a new map subclasses it and overrides only what
it has:

==========================================  ====================================================
member                                      default
==========================================  ====================================================
``precision``                               ``"highest"`` (full float32 matmul products)
``dense``                                   ``False`` (``features`` not meant to be materialised)
``prepare()``                               ``self`` (nothing to do once per call)
``with_surrogate(slope)``                   ``self`` (no activation whose derivative to replace)
``with_precision(precision)``               ``self`` (no choice of matmul precision)
``residual_linearization(theta, x, jit)``   ``None`` (the loss falls back to autodiff)
``residual_value_and_grad(theta, x, jit)``  ``None`` (from ``residual_linearization``, else autodiff)
``replace(**changes)``                      :func:`dataclasses.replace`
==========================================  ====================================================

Maps are frozen dataclasses registered with :func:`jax.tree_util.register_dataclass`: fields made
with :func:`static` are part of the tree structure (hashable, fixed under ``jit``), all others are
leaves (arrays, or pytrees of arrays). Unflattening calls the constructor, so ``__post_init__``
must accept any leaves (tracers, ``None``, placeholder objects) and validate static fields only.

A :class:`Target` is a feature map plus the parameter vector ``theta`` to explain; the attack sees
only targets.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Optional, Protocol, runtime_checkable

import jax

from ..loss import ResidualLinearization


@runtime_checkable
class FeatureMap(Protocol):
    """Structural type of a feature map (see the module docstring)."""

    precision: str

    @property
    def p(self) -> int: ...

    @property
    def input_dim(self) -> int: ...

    def features(self, x: jax.Array) -> jax.Array: ...

    def gram(self, x1: jax.Array, x2: jax.Array) -> jax.Array: ...

    def project(self, x: jax.Array, theta: jax.Array) -> jax.Array: ...

    def adjoint(self, x: jax.Array, alpha: jax.Array) -> jax.Array: ...

    def gram_project(self, x: jax.Array, theta: jax.Array) -> tuple[jax.Array, jax.Array]: ...

    def prepare(self) -> "FeatureMap": ...

    def with_surrogate(self, slope: float) -> "FeatureMap": ...

    def with_precision(self, precision: str) -> "FeatureMap": ...

    def residual_linearization(self, theta: jax.Array, x: jax.Array,
                               jitter: Optional[float] = None) -> Optional[ResidualLinearization]: ...

    def residual_value_and_grad(self, theta: jax.Array, x: jax.Array, jitter: Optional[float] = None): ...


class FeatureMapBase:
    """Defaults of a feature map's optional abilities (see the module docstring).

    Subclasses are frozen dataclasses; a map with a choice of matmul precision declares
    ``precision`` as a field, which replaces the class-level default.
    """

    precision = "highest"
    #: Whether ``features`` is cheap enough to materialise whole (dense random features); maps
    #: that stream or linearise a network say no, and callers go row by row instead.
    dense = False

    def replace(self, **changes):
        """A copy with some fields changed (validated again by the constructor)."""
        return dataclasses.replace(self, **changes)

    def prepare(self):
        """A map with any per-call work done once (call outside loops); by default ``self``."""
        return self

    def with_surrogate(self, slope: float):
        """The map whose activation derivative is ``slope`` on negative pre-activations (the
        published attack's surrogate gradient); ``self`` for maps without such an activation."""
        return self

    def with_precision(self, precision: str):
        """The map with matmuls at ``precision``; ``self`` for maps without a choice."""
        return self

    def residual_linearization(self, theta: jax.Array, x: jax.Array,
                               jitter: Optional[float] = None) -> Optional[ResidualLinearization]:
        """A closed-form linearisation of the projector residual at ``x``
        (:class:`jaxrecon.loss.ResidualLinearization`), or ``None``: use autodiff."""
        return None

    def residual_value_and_grad(self, theta: jax.Array, x: jax.Array, jitter: Optional[float] = None):
        """``(|r|^2, 2 J^T r)`` of the residual form at ``x`` in closed form, for maps that can do
        better than their ``residual_linearization`` (:func:`jaxrecon.loss.residual_value_and_grad`),
        or ``None``."""
        return None


def static(**field_options) -> Any:
    """A dataclass field that is part of the pytree's structure rather than a leaf."""
    return dataclasses.field(metadata={"static": True}, **field_options)


class Target(NamedTuple):
    """What the attack sees: a feature map and the parameter vector ``theta`` (shape ``(p,)``).

    ``floor`` (optional, a scalar): the loss the attack can expect at best when ``theta`` was
    released with noise (:func:`jaxrecon.defences.defend` sets it); a target that carries one
    turns on the attack's floor and plateau stops (:mod:`jaxrecon.attack.stops`). ``None``: none.
    What the attack adds to it (the prepared map, the split start's problem) lives on
    :class:`jaxrecon.attack.prepare.Prepared`.
    """

    fmap: Any
    theta: jax.Array
    floor: Optional[Any] = None
