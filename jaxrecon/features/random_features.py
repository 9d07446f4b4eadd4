"""Random features ``phi(x) = sigma(V x)`` with ``V`` regenerated from a key.

Row ``j`` of ``V`` (shape ``(p, d)``) is ``normal(fold_in(key, j), (d,)) / sqrt(d)``, i.e.
``V_ij ~ N(0, 1/d)``. Because every row has its own key, the dense ``V`` and any streamed blocking
of it hold *identical* numbers: a block size never changes a result, only memory and speed.

* ``block_size=None`` (dense): ``prepare()`` materialises ``V`` once (``p * d`` floats) and every
  later call reuses it. It is filled block by block (:data:`GENERATE_ELEMENTS` numbers at a time)
  into one buffer, so generating it needs ``V`` plus one block, not the several ``p x d``
  temporaries of drawing all rows at once.
* ``block_size=B`` (streamed): ``V`` is never stored. Each call walks over ``ceil(p / B)`` blocks in
  a ``lax.scan``, regenerating the block's rows inside the compiled program, each block under
  ``jax.checkpoint`` so that reverse-mode autodiff recomputes the block instead of storing it.
  Memory is ``O(n * B + n^2)``, not ``O(p * d)``. A last partial block is padded and masked.
  :func:`jaxrecon.scale.block_size_for` picks ``B`` from a memory budget.
* ``shards=k`` (streamed only): the blocks are split over ``k`` devices with ``jax.shard_map``;
  each device regenerates only its own range of blocks and holds only its slice of ``theta``, and
  the kernel sums are combined with one all-reduce (``psum``) per pass. Same numbers as one device
  up to the order of the final sum.
* ``cache_preactivations=True`` (streamed): reverse-mode keeps the pre-activations ``x V_b^T``
  of every block (``n * p`` numbers) instead of recomputing them, so a gradient step costs two
  matmuls per block instead of three; ``V`` itself is still regenerated, never stored.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.ad_checkpoint import checkpoint_name
from jax.sharding import Mesh, PartitionSpec

from .. import _validate
from ..activations import ActivationSpec, activation_name, get_activation
from . import rf_gauss_newton
from .base import FeatureMapBase, static

#: Matmul precisions. ``highest``: full float32 products (the reference). ``high`` / ``default``:
#: XLA's faster passes on accelerators (``default`` is TF32 on NVIDIA GPUs since Ampere; ``tf32`` is
#: its alias). ``bf16``: operands rounded to bfloat16, products accumulated in float32. On CPUs
#: every option but ``bf16`` computes in full float32.
_PRECISIONS = {
    "highest": jax.lax.Precision.HIGHEST,
    "high": jax.lax.Precision.HIGH,
    "default": jax.lax.Precision.DEFAULT,
    "tf32": jax.lax.Precision.DEFAULT,
    "bf16": jax.lax.Precision.DEFAULT,
}
PRECISIONS = tuple(_PRECISIONS)

_AXIS = "p"  # mesh axis name over which the feature blocks are sharded

#: Numbers of ``V`` drawn at a time when a dense ``V`` is materialised (about 16 MB of float32 per
#: temporary of the generator).
GENERATE_ELEMENTS = 1 << 22


def _dtype_or_default(dtype):
    return jnp.dtype(dtype) if dtype is not None else jnp.dtype(jnp.result_type(float))


def _draw_rows(key, start, size: int, d: int, dtype) -> jax.Array:
    """``normal(fold_in(key, j), (d,)) / sqrt(d)`` for ``j = start .. start+size-1``."""
    row = lambda j: jax.random.normal(jax.random.fold_in(key, j), (d,), dtype)
    return jax.vmap(row)(start + jnp.arange(size)) * jnp.asarray(1.0 / math.sqrt(d), dtype)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class RandomFeatures(FeatureMapBase):
    """Random-features map ``phi(x) = sigma(V x)``, ``V_ij ~ N(0, 1/d)`` (paper Sec. 2).

    Args:
      key: PRNG key from which ``V`` is derived (never ``V`` itself).
      d: input dimension.
      p: number of features (= parameters of the RF model).
      activation: a name from :data:`jaxrecon.activations.ACTIVATIONS` or a callable.
      block_size: ``None`` for dense ``V``; an integer streams ``V`` in blocks of that many rows.
      surrogate_slope: if set, ReLU's derivative is ``slope`` on negative pre-activations
        (the published attack's surrogate gradient); forward values are unchanged.
      dtype: dtype of ``V`` and of the features (default: JAX's default float).
      precision: matmul precision, one of :data:`PRECISIONS`: ``"highest"`` (default; float32
        products on GPUs stay exact), ``"high"``, ``"default"``/``"tf32"`` (TF32 on NVIDIA GPUs),
        ``"bf16"`` (bfloat16 operands, float32 accumulation, on every backend).
      shards: number of devices the feature blocks are split over (streamed maps only; the first
        ``shards`` of ``jax.devices()``).
      cache_preactivations: keep the blocks' pre-activations for reverse mode (streamed maps).
      V: the materialised matrix, filled in by :meth:`prepare` for dense maps; leave ``None``.
    """

    key: jax.Array
    d: int = static()
    p: int = static()
    activation: ActivationSpec = static(default="relu")
    block_size: Optional[int] = static(default=None)
    surrogate_slope: Optional[float] = static(default=None)
    dtype: Optional[str] = static(default=None)
    precision: str = static(default="highest")
    shards: int = static(default=1)
    cache_preactivations: bool = static(default=False)
    V: Optional[jax.Array] = None

    def __post_init__(self):
        _validate.positive_int("d", self.d)
        _validate.positive_int("p", self.p)
        if self.block_size is not None:
            _validate.positive_int("block_size", self.block_size)
        get_activation(self.activation)  # raises a ValueError for unknown names
        _validate.choice("precision", self.precision, _PRECISIONS)
        if self.surrogate_slope is not None:
            _validate.positive_float("surrogate_slope", self.surrogate_slope, allow_zero=True)
        if self.dtype is not None:
            object.__setattr__(self, "dtype", jnp.dtype(self.dtype).name)
        _validate.positive_int("shards", self.shards)
        if self.shards > 1:
            if self.block_size is None:
                raise ValueError("shards: sharding over devices needs a streamed map; set block_size "
                                 "(or use jaxrecon.scale.block_size_for)")
            available = len(jax.devices())
            if self.shards > available:
                raise ValueError(f"shards: {self.shards} devices requested but only {available} available "
                                 f"({jax.devices()[0].platform}); on CPU, simulate devices with "
                                 f"XLA_FLAGS=--xla_force_host_platform_device_count={self.shards}")

    # -- properties ---------------------------------------------------------------------------
    @property
    def input_dim(self) -> int:
        return self.d

    @property
    def dense(self) -> bool:
        return self.block_size is None

    @property
    def n_blocks(self) -> int:
        """Blocks walked per pass, padded up to a multiple of ``shards`` (extra blocks are masked)."""
        if not self.block_size:
            return 1
        return math.ceil(math.ceil(self.p / self.block_size) / self.shards) * self.shards

    @property
    def sigma(self):
        return get_activation(self.activation, self.surrogate_slope)

    @property
    def feature_dtype(self):
        return _dtype_or_default(self.dtype)

    def describe(self) -> str:
        mode = "dense" if self.dense else f"streamed(block_size={self.block_size})"
        if self.shards > 1:
            mode += f", shards={self.shards}"
        if self.precision != "highest":
            mode += f", precision={self.precision}"
        return f"RandomFeatures(d={self.d}, p={self.p}, activation={activation_name(self.activation)}, {mode})"

    def with_surrogate(self, slope: float) -> "RandomFeatures":
        return self.replace(surrogate_slope=slope)

    def with_precision(self, precision: str) -> "RandomFeatures":
        return self.replace(precision=precision)

    # -- V ------------------------------------------------------------------------------------
    def rows(self, start, size: int) -> jax.Array:
        """Rows ``start .. start+size-1`` of ``V`` (shape ``(size, d)``); ``start`` may be traced.

        Compiled (inside ``jit``, as the attack runs), a row has the same bits whether drawn alone,
        in a streamed block or in the dense ``V``; op-by-op outside ``jit`` the scaling may round
        one ulp differently from XLA's fused draw."""
        return _draw_rows(self.key, start, size, self.d, self.feature_dtype)

    def weights(self) -> jax.Array:
        """The dense ``V`` of shape ``(p, d)``: the stored one, else generated block by block
        (row ``j`` is always ``rows(j, 1)``, bit for bit)."""
        if self.V is not None:
            return self.V
        B = min(self.p, max(1, GENERATE_ELEMENTS // self.d))
        n_gen = -(-self.p // B)
        if n_gen == 1:
            return self.rows(0, self.p)

        def fill(b, V):  # the last block starts at p - B: it rewrites rows it shares, with the same numbers
            start = jnp.minimum(b * B, self.p - B)
            return jax.lax.dynamic_update_slice(V, self.rows(start, B), (start, 0))

        return jax.lax.fori_loop(0, n_gen, fill, jnp.zeros((self.p, self.d), self.feature_dtype))

    def prepare(self) -> "RandomFeatures":
        """Materialise ``V`` for a dense map (call once, outside loops); streamed maps are unchanged."""
        if self.dense and self.V is None:
            return self.replace(V=self.weights())
        return self

    # -- internals ----------------------------------------------------------------------------
    def _matmul(self, a, b):
        if self.precision == "bf16":
            return jnp.matmul(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16),
                              preferred_element_type=jnp.promote_types(a.dtype, b.dtype))
        return jnp.matmul(a, b, precision=_PRECISIONS[self.precision])

    def _check_x(self, x, name="x"):
        _validate.matrix(name, x, width=self.d)
        return jnp.asarray(x, self.feature_dtype)

    def _block_features(self, x, b):
        """Features of block ``b`` (``(n, B)``), with rows of ``V`` beyond ``p`` masked to zero."""
        B = self.block_size
        Vb = self.rows(b * B, B)
        Z = self._matmul(x, Vb.T)
        if self.cache_preactivations:
            Z = checkpoint_name(Z, "preactivation")
        F = self.sigma(Z)
        mask = (b * B + jnp.arange(B)) < self.p
        return jnp.where(mask[None, :], F, 0)

    def _blocked(self, vec):
        """Zero-pad a length-``p`` vector to ``n_blocks * B`` and reshape to ``(n_blocks, B)``."""
        pad = self.n_blocks * self.block_size - self.p
        return jnp.pad(vec, (0, pad)).reshape(self.n_blocks, self.block_size)

    def _checkpointed(self, fn):
        if self.cache_preactivations:
            return jax.checkpoint(fn, policy=jax.checkpoint_policies.save_only_these_names("preactivation"))
        return jax.checkpoint(fn)

    def _mesh(self) -> Mesh:
        from ..distributed import mesh_devices  # with several processes, each holds a range of the mesh

        return Mesh(mesh_devices(self.shards), (_AXIS,))

    def _over_blocks(self, local, args, xs, reduce):
        """Run ``local(fmap, first_block, n_local, args, xs_local)`` over all blocks.

        One device: ``local`` sees every block. ``shards`` devices: ``xs`` (leading axis = blocks,
        or ``None``) is split over the mesh, each device runs ``local`` on its range, and the
        results are summed with ``psum`` (``reduce=True``) or concatenated along the block axis
        (``False``); a tuple of such flags treats a tuple result element by element.
        """
        if self.shards == 1:
            return local(self, 0, self.n_blocks, args, xs)
        per = self.n_blocks // self.shards
        keyless = self.replace(key=None)  # the key travels as an explicit replicated argument
        flags = reduce if isinstance(reduce, tuple) else None

        def body(key, args, xs):
            fmap = keyless.replace(key=key)
            first = jax.lax.axis_index(_AXIS) * per
            out = local(fmap, first, per, args, xs)
            if flags is not None:
                return tuple(jax.lax.psum(o, _AXIS) if f else o for o, f in zip(out, flags))
            return jax.lax.psum(out, _AXIS) if reduce else out

        spec = PartitionSpec(_AXIS)
        out_spec = (tuple(PartitionSpec() if f else spec for f in flags) if flags is not None
                    else PartitionSpec() if reduce else spec)
        return jax.shard_map(body, mesh=self._mesh(), in_specs=(PartitionSpec(), PartitionSpec(), spec),
                             out_specs=out_spec, check_vma=False)(self.key, args, xs)

    def _sum_blocks(self, contrib, init, args, xs=None):
        """``sum_b contrib(fmap, b, args, xs[b])`` with a ``lax.scan``; ``contrib`` is checkpointed
        (``xs``: per-block inputs with a leading block axis, or ``None``)."""

        def local(fmap, first, count, args, xs):
            fn = fmap._checkpointed(contrib)

            def body(acc, inp):
                b, xb = inp
                return jax.tree_util.tree_map(jnp.add, acc, fn(fmap, b, args, xb)), None

            acc, _ = jax.lax.scan(body, init, (first + jnp.arange(count), xs))
            return acc

        return self._over_blocks(local, args, xs, reduce=True)

    def _scan_blocks(self, contrib, init, args, xs):
        """``(sum_b s_b, stack_b y_b)`` for ``(s_b, y_b) = contrib(fmap, b, args, xs[b])``: one pass
        that sums some results and keeps others per block (not checkpointed: never differentiated)."""

        def local(fmap, first, count, args, xs):
            def body(acc, inp):
                b, xb = inp
                s, y = contrib(fmap, b, args, xb)
                return jax.tree_util.tree_map(jnp.add, acc, s), y

            return jax.lax.scan(body, init, (first + jnp.arange(count), xs))

        return self._over_blocks(local, args, xs, reduce=(True, False))

    def _map_blocks(self, contrib, args):
        """``stack_b contrib(fmap, b, args)`` with ``lax.map`` (leading axis = blocks)."""

        def local(fmap, first, count, args, xs):
            fn = fmap._checkpointed(contrib)
            return jax.lax.map(lambda b: fn(fmap, b, args), first + jnp.arange(count))

        return self._over_blocks(local, args, None, reduce=False)

    # -- public API ---------------------------------------------------------------------------
    def features(self, x: jax.Array) -> jax.Array:
        """``Phi(x) = sigma(x V^T)``, shape ``(n, p)``. Materialises ``n * p`` numbers."""
        x = self._check_x(x)
        if self.dense:
            return self.sigma(self._matmul(x, self.weights().T))
        F = self._map_blocks(lambda fm, b, x: fm._block_features(x, b), x)
        return jnp.moveaxis(F, 0, 1).reshape(x.shape[0], -1)[:, : self.p]

    def gram(self, x1: jax.Array, x2: jax.Array) -> jax.Array:
        """Kernel ``Phi(x1) Phi(x2)^T``, shape ``(n1, n2)``."""
        x1, x2 = self._check_x(x1, "x1"), self._check_x(x2, "x2")
        if self.dense:
            V = self.weights()
            return self._matmul(self.sigma(self._matmul(x1, V.T)), self.sigma(self._matmul(x2, V.T)).T)
        init = jnp.zeros((x1.shape[0], x2.shape[0]), self.feature_dtype)

        def contrib(fm, b, xs, _):
            return fm._matmul(fm._block_features(xs[0], b), fm._block_features(xs[1], b).T)

        return self._sum_blocks(contrib, init, (x1, x2))

    def project(self, x: jax.Array, theta: jax.Array) -> jax.Array:
        """``Phi(x) theta``, shape ``(n,)``."""
        x = self._check_x(x)
        theta = jnp.asarray(_validate.vector("theta", theta, self.p), self.feature_dtype)
        if self.dense:
            return self._matmul(self.sigma(self._matmul(x, self.weights().T)), theta)
        init = jnp.zeros((x.shape[0],), self.feature_dtype)
        return self._sum_blocks(lambda fm, b, x, tb: fm._matmul(fm._block_features(x, b), tb), init, x,
                                self._blocked(theta))

    def adjoint(self, x: jax.Array, alpha: jax.Array) -> jax.Array:
        """``Phi(x)^T alpha``, shape ``(p,)``."""
        x = self._check_x(x)
        alpha = jnp.asarray(_validate.vector("alpha", alpha, x.shape[0], "n"), self.feature_dtype)
        if self.dense:
            return self._matmul(alpha, self.sigma(self._matmul(x, self.weights().T)))
        out = self._map_blocks(lambda fm, b, a: fm._matmul(a[1], fm._block_features(a[0], b)), (x, alpha))
        return out.reshape(-1)[: self.p]

    def gram_project(self, x: jax.Array, theta: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(Phi(x) Phi(x)^T, Phi(x) theta)`` in one pass over ``V`` (the projector loss's needs)."""
        x = self._check_x(x)
        theta = jnp.asarray(_validate.vector("theta", theta, self.p), self.feature_dtype)
        if self.dense:
            F = self.sigma(self._matmul(x, self.weights().T))
            return self._matmul(F, F.T), self._matmul(F, theta)
        n = x.shape[0]
        init = (jnp.zeros((n, n), self.feature_dtype), jnp.zeros((n,), self.feature_dtype))

        def contrib(fm, b, x, tb):
            F = fm._block_features(x, b)
            return fm._matmul(F, F.T), fm._matmul(F, tb)

        return self._sum_blocks(contrib, init, x, self._blocked(theta))

    def residual_linearization(self, theta: jax.Array, x: jax.Array, jitter=None):
        """Closed-form Gauss-Newton pieces of the projector residual
        (:mod:`jaxrecon.features.rf_gauss_newton`): for dense ``V`` two ``n x d x p`` matmuls per
        ``J^T J u``; for streamed and sharded maps the same sums over blocks, two passes per product."""
        x = self._check_x(x)
        if self.dense:
            return rf_gauss_newton.dense_linearization(self, theta, x, jitter)
        return rf_gauss_newton.streamed_linearization(self, theta, x, jitter)
