"""The split start: rows up to sign from the even part of ``theta``, then their signs in one solve.

For an activation whose odd part is linear, ``sigma(z) - sigma(-z) = 2 k z`` (ReLU and GELU:
``k = 1/2``; the "relu-like" symmetry class of :mod:`jaxrecon.theory`), every feature splits as

    phi(x) = e(x) + k V x,        e(x) = (sigma(V x) + sigma(-V x)) / 2   (even in x),

so ``theta = sum_j alpha_j phi(x_j)`` has a part outside the column space of ``V`` that depends on
the training rows only up to sign::

    theta_e = P_perp(V) theta = sum_j alpha_j P_perp(V) e(x_j).

Stage 1 attacks ``theta_e`` with the even features ``P_perp(V) e(x)``
(:class:`~jaxrecon.features.even.EvenFeatures`, in :mod:`jaxrecon.features.even`): the
same method (phases and stall actions), on a problem in which ``x`` and ``-x`` are the same point,
so the sign-flip minima of ReLU features (rows at ``-x_j`` whose linear deficits cancel, the reason
``adam-lm`` stalls once ``n`` nears ``d``: ``benchmarks/RESULTS.md``, "Many rows") do not exist there.
Stage 2 chooses the signs ``s`` of the recovered rows ``y_j`` at once from the linear part of
``theta`` (``d`` equations ``sum_j alpha_j s_j y_j = m``, ``m`` from ``(V^T V)^{-1} V^T theta``: a
box-constrained least-squares problem, rounded, polished, and near ``n = 2d`` an LLL reduction:
:mod:`jaxrecon.attack.signs`). The method then runs as usual on the full ``theta`` from the signed
rows (its LM phase polishes them).

Costs: ``V^T V`` once per attack (``p d^2`` multiply-adds, ``d`` passes of ``n = 1`` rows); an even
first-order step (``EvenFeatures.residual_value_and_grad``) reads ``V`` three times with ``n``
rows and twice with one column, where a plain one reads it twice; its LM phase has closed-form
products (``EvenFeatures.residual_linearization``: two passes over row blocks of ``V``, each
reading ``V`` once, as for plain features).
``V`` stored or streamed: a dense :class:`~jaxrecon.RandomFeatures` lends the even features its
``V``; a streamed (or sharded) one its key, and every product of the even features, the split
arrays (:func:`split_arrays`) and the sign solve run over its blocks, ``V`` never stored
(:mod:`jaxrecon.features.even_streamed`; the first-order step there reads ``V`` three times).

A prefix of the features (``Method.split_features``, :func:`split_rows`, :func:`prefix_target`).
The first ``p'`` features alone, ``theta[:p'] = sum_j alpha_j phi_{:p'}(x_j)``, carry the same
structure with the prefix ``V[:p']`` of ``V``, so stage 1 and the sign solve can run on them: the
zero is the same while ``p'`` stays well above ``d n`` (the law of the paper, for the prefix), and
each of the stage's passes reads ``p'/p`` of ``V``. Stage 2 runs on every feature. For a stored
``V`` the prefix is a copy (``p' d`` numbers held next to ``V`` while the attack runs); for a
streamed one it is the map with ``p'`` rows and the same key (no copy).
"""


from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..features import even_streamed
from ..features.base import Target
# The moved parts, re-exported for ``from .split import ...``:
from ..features.even import EVEN_BLOCK_BYTES, EvenFeatures, _block_rows, _scan_rows, _vt, odd_slope  # noqa: F401
from .signs import (LLL_MAX_ITERS, SIGN_ITERS, SIGN_NOISE, SIGN_SOLVED, box_least_squares,  # noqa: F401
                    choose_signs, lattice_signs, lll_reduce, polish_signs)

#: Loss on the even part at which stage 1 ends and the signs are chosen (the full attack's LM
#: phase then polishes the rows to the method's own tolerance).
SPLIT_TOL = 1e-9
_HIGHEST = jax.lax.Precision.HIGHEST


class SplitProblem(NamedTuple):
    """What the split start needs, prepared once per attack (:func:`split_problem`)."""

    even: Target  # EvenFeatures and theta_e = P_perp(V) theta
    m_theta: jax.Array  # (V^T V)^{-1} V^T theta, shape (d,)


def check_split(fmap) -> float:
    """The odd slope ``k`` of ``fmap``, or a ``ValueError`` saying why the split start does not apply
    (it needs a :class:`~jaxrecon.RandomFeatures` map, ``V`` stored or streamed, sharded or not,
    with a relu-like activation)."""
    from ..features.random_features import RandomFeatures

    if not isinstance(fmap, RandomFeatures):
        what = fmap.describe() if hasattr(fmap, "describe") else type(fmap).__name__
        raise ValueError("start: 'split' needs random features (a RandomFeatures map, V stored or streamed); "
                         f"got {what}")
    return odd_slope(fmap.activation, fmap.surrogate_slope)


def split_arrays(tgt: Target):
    """``(chol, theta_e, m_theta)`` of a prepared random-features target: the Cholesky factor of
    ``V^T V``, ``theta_e = P_perp(V) theta`` and ``(V^T V)^{-1} V^T theta``. A stored ``V``: three
    matmuls; a streamed one: two passes over its blocks (``V^T V`` and ``V^T theta`` in one,
    ``theta_e`` in the next), ``V`` never stored."""
    fmap = tgt.fmap
    if not fmap.dense:
        theta = tgt.theta.astype(fmap.feature_dtype)
        G, vt = even_streamed.gram_and_vt(fmap, theta)
        chol = jnp.linalg.cholesky(G)
        m_theta = jax.scipy.linalg.cho_solve((chol, True), vt)
        return chol, even_streamed.minus_range(fmap, theta, m_theta), m_theta
    V = fmap.weights()
    chol = jnp.linalg.cholesky(jnp.matmul(V.T, V, precision=_HIGHEST))
    theta = tgt.theta.astype(V.dtype)
    m_theta = jax.scipy.linalg.cho_solve((chol, True), _vt(V, theta))
    theta_e = theta - jnp.matmul(V, m_theta, precision=_HIGHEST)
    return chol, theta_e, m_theta


def split_rows(p: int, d: int, n: int, features: float) -> int:
    """Features (rows of ``V``) the first stage uses: all ``p`` when ``features`` is 0, else
    ``ceil(features * d * n)``, at least ``2 d`` (so that ``V^T V`` of the prefix is well
    conditioned) and at most ``p``."""
    if not features:
        return p
    return int(min(p, max(math.ceil(features * d * n), 2 * d)))


def prefix_target(tgt: Target, rows: int) -> Target:
    """The prepared random-features target restricted to its first ``rows`` features: the map with
    ``p = rows`` and the same key (whose rows are the same numbers) and ``theta[:rows]``; batched
    targets (a leading axis) alike. A stored ``V`` is cut to ``V[:rows]`` (a copy); a streamed map
    needs none. ``theta[:rows]`` lies in the span of the prefix's features at the training rows, as
    ``theta`` does in theirs, so the first stage's zero is the same. ``rows = p`` returns ``tgt``."""
    fmap = tgt.fmap
    if rows >= fmap.p:
        return tgt
    if not fmap.dense:
        return Target(fmap.replace(p=rows), tgt.theta[..., :rows], tgt.floor)
    V = fmap.weights()
    return Target(fmap.replace(p=rows, V=V[..., :rows, :]), tgt.theta[..., :rows], tgt.floor)


def split_problem(tgt: Target, arrays=None) -> SplitProblem:
    """The even target and the linear part of ``theta`` of a prepared random-features target
    (``arrays``: :func:`split_arrays`, when already computed). The even features hold the map's
    own ``V``: called outside ``jit`` on a prepared target, no copy of ``V`` is made (a
    :func:`prefix_target` of a stored ``V`` holds a copy of its rows); a streamed map lends them its
    key (``EvenFeatures.source``)."""
    fmap = tgt.fmap
    k = check_split(fmap)
    chol, theta_e, m_theta = split_arrays(tgt) if arrays is None else arrays
    if not fmap.dense:
        even = EvenFeatures(None, chol, fmap.activation, fmap.surrogate_slope, k, source=fmap)
    else:
        even = EvenFeatures(fmap.weights(), chol, fmap.activation, fmap.surrogate_slope, k)
    return SplitProblem(Target(even, theta_e), m_theta)
