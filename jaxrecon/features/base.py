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
``prepare()``                     a map with any per-call work done once     same type
================================  =========================================  ===========

``m`` is the number of feature rows: ``n`` for a scalar-output model, ``n * k`` for ``k`` outputs.
A :class:`Target` is a feature map plus the parameter vector ``theta`` to explain; the attack sees
only targets.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax


@runtime_checkable
class FeatureMap(Protocol):
    """Structural type of a feature map (see the module docstring)."""

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


class Target(NamedTuple):
    """What the attack sees: a feature map and the parameter vector ``theta`` (shape ``(p,)``)."""

    fmap: Any
    theta: jax.Array
