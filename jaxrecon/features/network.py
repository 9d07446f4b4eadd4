"""Network Jacobian feature maps: the attack applied to any model and any parameter subset.

For a model ``f(params, x)`` with ``k`` outputs and a chosen subset ``S`` of its parameters (the
head, one layer, all of them), the feature rows of an input ``x_i`` are the Jacobian rows

    phi_{(i, c)}(x) = d f_c(params, x_i) / d params_S,      c = 0 .. k-1,

evaluated at fixed (trained) parameters: ``m = n * k`` rows, sample-major (row ``i * k + c``).
``theta`` is the change of the subset during training, flattened with
:func:`jax.flatten_util.ravel_pytree` in the order of the parameter pytree's leaves. Then

* ``project(x, theta) = J(x) theta`` is one JVP,
* ``adjoint(x, alpha) = J(x)^T alpha`` one VJP,
* ``gram(x1, x2) = J(x1) J(x2)^T`` the empirical NTK restricted to ``S``.

``gram`` has two modes (same numbers):

* ``"matrix_free"`` (default): ``f`` is linearised once at each input set (:func:`jax.linearize`;
  its residuals are the network's activations), and column ``r`` of the kernel is
  ``J(x1) (J(x2)^T e_r)``: one transposed and one forward linear pass. Columns are computed
  ``row_batch`` at a time in a :func:`jax.lax.map` whose body is under :func:`jax.checkpoint`, so
  the working memory is the activations plus ``row_batch`` parameter-sized vectors, with or without
  reverse-mode differentiation with respect to the inputs (what the attack does). The ``m x p``
  Jacobian never exists.
* ``"materialise"``: the ``m x p`` Jacobian is built by vmapping the VJP over one-hot cotangents,
  then ``J1 J2^T``. Fastest for small subsets; memory ``m * p``.

``features(x)`` always materialises (tests and small sizes only).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence, Union

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from .. import _validate
from .base import FeatureMapBase, Target, static

GRAM_MODES = ("matrix_free", "materialise")

#: A subset of parameters: ``"all"``, a name (a leaf is chosen when any component of its path equals
#: it, e.g. ``"head"``), several names, a predicate ``(path: tuple[str, ...], leaf) -> bool``, or a
#: pytree of booleans with the structure of the parameters.
Subset = Union[str, Sequence[str], Callable[[tuple, Any], bool], Any]


def _key_name(k) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def leaf_paths(params) -> list[tuple[str, ...]]:
    """Path of every leaf of ``params`` as a tuple of names (``("head", "kernel", "value")``)."""
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    return [tuple(_key_name(k) for k in path) for path, _ in flat]


def subset_mask(params, subset: Subset = "all") -> tuple[bool, ...]:
    """One boolean per leaf of ``params`` saying whether it belongs to ``subset``."""
    leaves = jax.tree_util.tree_leaves(params)
    paths = leaf_paths(params)
    if isinstance(subset, str):
        mask = [True] * len(leaves) if subset == "all" else [subset in p for p in paths]
    elif callable(subset):
        mask = [bool(subset(p, l)) for p, l in zip(paths, leaves)]
    elif isinstance(subset, (list, tuple)) and all(isinstance(s, str) for s in subset):
        mask = [any(s in p for s in subset) for p in paths]
    else:
        flags = jax.tree_util.tree_leaves(subset)
        if len(flags) != len(leaves):
            raise ValueError(f"subset: a boolean pytree must have one flag per parameter leaf "
                             f"({len(leaves)}), got {len(flags)}")
        mask = [bool(f) for f in flags]
    if not any(mask):
        names = sorted({n for p in paths for n in p})
        raise ValueError(f"subset: {subset!r} selects no parameters; path names are {names}")
    return tuple(mask)


def _mask_fits(mask: tuple, params) -> bool:
    """Whether ``mask`` has one flag per leaf of ``params``. Trees holding ``None`` pass unchecked:
    ``jax.tree_util.tree_map`` may rebuild a map with ``None`` in place of its arrays."""
    leaves = jax.tree_util.tree_leaves(params, is_leaf=lambda l: l is None)
    return any(l is None for l in leaves) or len(mask) == len(leaves)


def subset_leaves(params, mask) -> list:
    return [l for l, m in zip(jax.tree_util.tree_leaves(params), mask) if m]


def ravel_subset(params, subset: Subset = "all") -> jax.Array:
    """The chosen parameters flattened into one vector (the layout of ``theta``)."""
    return ravel_pytree(subset_leaves(params, subset_mask(params, subset)))[0]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class NetworkFeatures(FeatureMapBase):
    """Jacobian features of ``apply(params, x)`` with respect to a parameter subset.

    Args:
      apply: pure ``apply(params, x) -> (n, k)`` (or ``(n,)``) for flat inputs ``x`` of shape
        ``(n, input_dim)``; an image model reshapes internally. Static: it must be hashable.
      params: the full parameter pytree at which the Jacobian is taken (the trained parameters).
      input_dim: ``d``, the width of the flat inputs.
      outputs: ``k``, the number of outputs per input (feature rows per input).
      subset: which parameters are features (see :data:`Subset`); resolved to a mask of leaves.
      gram_mode: ``"matrix_free"`` (default) or ``"materialise"`` (see the module docstring).
      row_batch: kernel columns computed together in the matrix-free mode (memory ``row_batch * p``).
    """

    apply: Callable = static()
    params: Any
    input_dim: int = static()
    outputs: int = static(default=1)
    subset: Any = static(default="all")
    gram_mode: str = static(default="matrix_free")
    row_batch: int = static(default=1)

    def __post_init__(self):
        _validate.positive_int("input_dim", self.input_dim)
        _validate.positive_int("outputs", self.outputs)
        _validate.choice("gram_mode", self.gram_mode, GRAM_MODES)
        _validate.positive_int("row_batch", self.row_batch)
        if not isinstance(self.subset, tuple) or not all(isinstance(b, bool) for b in self.subset):
            object.__setattr__(self, "subset", subset_mask(self.params, self.subset))
        elif not _mask_fits(self.subset, self.params):
            raise ValueError("subset: mask length differs from the number of parameter leaves")

    # -- properties ---------------------------------------------------------------------------
    @property
    def mask(self) -> tuple[bool, ...]:
        return self.subset

    @property
    def p(self) -> int:
        return int(sum(l.size for l in subset_leaves(self.params, self.mask)))

    @property
    def feature_dtype(self):
        return jnp.result_type(*subset_leaves(self.params, self.mask))

    def describe(self) -> str:
        names = sorted({"/".join(p[:-1]) if p[-1] == "value" else "/".join(p)
                        for p, m in zip(leaf_paths(self.params), self.mask) if m})
        shown = ", ".join(names) if len(names) <= 4 else f"{len(names)} leaves"
        return (f"NetworkFeatures(d={self.input_dim}, k={self.outputs}, p={self.p}, subset=[{shown}], "
                f"gram={self.gram_mode})")

    def theta_of(self, params_before, params_after) -> jax.Array:
        """``theta = vec(S(params_after) - S(params_before))`` in this map's layout."""
        after = ravel_pytree(subset_leaves(params_after, self.mask))[0]
        before = ravel_pytree(subset_leaves(params_before, self.mask))[0]
        return after - before

    def theta_from(self, change) -> jax.Array:
        """``theta`` from a pytree of parameter changes (all leaves): its subset, flattened."""
        return ravel_pytree(subset_leaves(change, self.mask))[0]

    # -- internals ----------------------------------------------------------------------------
    def _check_x(self, x, name="x"):
        _validate.matrix(name, x, width=self.input_dim)
        return jnp.asarray(x, self.feature_dtype)

    def _fn(self, x):
        """``(sub, unravel, f)`` with ``f(sub) = apply(params with sub, x).reshape(n * k)``."""
        leaves, treedef = jax.tree_util.tree_flatten(self.params)
        mask = self.mask
        sub = [l for l, m in zip(leaves, mask) if m]
        _, unravel = ravel_pytree(sub)
        n, k = x.shape[0], self.outputs

        def f(s):
            it = iter(s)
            full = [next(it) if m else l for l, m in zip(leaves, mask)]
            out = self.apply(jax.tree_util.tree_unflatten(treedef, full), x)
            if out.size != n * k:
                raise ValueError(f"apply: returned shape {out.shape}, expected ({n}, {k}) for outputs={k}")
            return out.reshape(n * k)

        return sub, unravel, f

    def _linear(self, x):
        """``(jvp, vjp)``: ``J(x) t`` for flat ``t`` (p,) and ``J(x)^T c`` (flat, (p,)); one forward pass."""
        sub, unravel, f = self._fn(x)
        _, lin = jax.linearize(f, sub)
        transpose = jax.linear_transpose(lin, sub)
        jvp = lambda t: lin(unravel(t))
        vjp = lambda c: ravel_pytree(transpose(c)[0])[0]
        return jvp, vjp

    def _jacobian(self, x):
        _, vjp = self._linear(x)
        m = x.shape[0] * self.outputs
        return jax.vmap(vjp)(jnp.eye(m, dtype=self.feature_dtype))

    def _gram_matrix_free(self, jvp1, vjp2, m2):
        dtype = self.feature_dtype

        @jax.checkpoint
        def column(r):
            return jvp1(vjp2(jax.nn.one_hot(r, m2, dtype=dtype)))

        cols = jax.lax.map(column, jnp.arange(m2), batch_size=min(self.row_batch, m2))
        return cols.T  # (m1, m2)

    # -- public API ---------------------------------------------------------------------------
    def features(self, x: jax.Array) -> jax.Array:
        """The Jacobian ``J(x)``, shape ``(n * k, p)``. Materialises ``m * p`` numbers."""
        return self._jacobian(self._check_x(x))

    def gram(self, x1: jax.Array, x2: jax.Array) -> jax.Array:
        """Empirical NTK over the subset, ``J(x1) J(x2)^T``, shape ``(n1 * k, n2 * k)``."""
        same = x1 is x2
        x1, x2 = self._check_x(x1, "x1"), self._check_x(x2, "x2")
        if self.gram_mode == "materialise":
            J1 = self._jacobian(x1)
            J2 = J1 if same else self._jacobian(x2)
            return J1 @ J2.T
        jvp1, vjp1 = self._linear(x1)
        vjp2 = vjp1 if same else self._linear(x2)[1]
        return self._gram_matrix_free(jvp1, vjp2, x2.shape[0] * self.outputs)

    def project(self, x: jax.Array, theta: jax.Array) -> jax.Array:
        """``J(x) theta`` (one JVP), shape ``(n * k,)``."""
        x = self._check_x(x)
        theta = jnp.asarray(_validate.vector("theta", theta, self.p), self.feature_dtype)
        sub, unravel, f = self._fn(x)
        return jax.jvp(f, (sub,), (unravel(theta),))[1]

    def adjoint(self, x: jax.Array, alpha: jax.Array) -> jax.Array:
        """``J(x)^T alpha`` (one VJP), shape ``(p,)``; ``alpha`` has ``n * k`` entries."""
        x = self._check_x(x)
        m = x.shape[0] * self.outputs
        alpha = jnp.asarray(_validate.vector("alpha", alpha, m, "n*k"), self.feature_dtype)
        sub, _, f = self._fn(x)
        _, vjp = jax.vjp(f, sub)
        return ravel_pytree(vjp(alpha)[0])[0]

    def gram_project(self, x: jax.Array, theta: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(J(x) J(x)^T, J(x) theta)`` from one linearisation of the network at ``x``."""
        x = self._check_x(x)
        theta = jnp.asarray(_validate.vector("theta", theta, self.p), self.feature_dtype)
        if self.gram_mode == "materialise":
            J = self._jacobian(x)
            return J @ J.T, J @ theta
        jvp, vjp = self._linear(x)
        return self._gram_matrix_free(jvp, vjp, x.shape[0] * self.outputs), jvp(theta)


def network_target(apply: Callable, params_before, params_after, input_dim: int, outputs: int = 1,
                   subset: Subset = "all", **options) -> Target:
    """The attack's target for a trained network.

    ``theta = vec(S(params_after) - S(params_before))`` for the subset ``S``; the features are the
    Jacobian of ``apply`` with respect to ``S`` at ``params_after``. ``options`` go to
    :class:`NetworkFeatures` (``gram_mode``, ``row_batch``).
    """
    fmap = NetworkFeatures(apply, params_after, input_dim, outputs, subset, **options)
    before = jax.tree_util.tree_structure(params_before)
    if before != jax.tree_util.tree_structure(params_after):
        raise ValueError("params_before: must have the same pytree structure as params_after")
    return Target(fmap, fmap.theta_of(params_before, params_after))
