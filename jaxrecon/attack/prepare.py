"""The target the attack differentiates, prepared once per attack from a model's :class:`Target`.

::

    tgt = attack_target(target, method, n=n)   # a Prepared: map prepared, theta rescaled, the split
                                               # start's problem attached when the method starts so

The model layer's :class:`~jaxrecon.Target` holds a feature map, ``theta`` and an optional noise
floor; everything the attack adds (the surrogate derivative, the prepared map, the even problem of
the split start) lives on :class:`Prepared`, which has the same first fields, so every phase reads
``tgt.fmap``, ``tgt.theta`` and ``tgt.floor`` of either.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax

from ..features.base import Target
from ..loss import normalized_theta
from .split import prefix_target, split_arrays, split_problem, split_rows


class Prepared(NamedTuple):
    """A target as the attack runs on it (:func:`attack_target`): the prepared feature map,
    ``theta`` rescaled, the noise ``floor`` of the released target, and, for a method with the split
    start, ``split`` (:class:`~jaxrecon.attack.split.SplitProblem`: the even target and the linear
    part of ``theta``)."""

    fmap: Any
    theta: jax.Array
    floor: Optional[Any] = None
    split: Optional[Any] = None


def attack_target(target: Target, method, split: bool = True, n: Optional[int] = None) -> Prepared:
    """The target the attack differentiates: surrogate derivative if the method asks, map prepared,
    ``theta`` rescaled by a power of two to a largest entry in ``[1/2, 1)`` (exact; the loss does not
    depend on the scale, and stall actions then never square a huge or tiny ``theta``).
    ``split=False`` leaves ``split`` for :func:`with_split` (a jitted preparation would otherwise
    return ``V`` twice: the map's and the even features'); with the split start, ``n`` (the rows to
    recover) sets the first stage's features (``start.split.features``)."""
    fmap = target.fmap
    if method.loss.surrogate_slope is not None:
        fmap = fmap.with_surrogate(method.loss.surrogate_slope)
    tgt = Prepared(fmap.prepare(), normalized_theta(target.theta), target.floor)
    if method.start.kind == "split" and split:
        sub = prefix_target(tgt, first_stage_rows(method, tgt.fmap.p, tgt.fmap.input_dim, n))
        tgt = tgt._replace(split=split_problem(sub))
    return tgt


def first_stage_rows(method, p: int, d: int, n: Optional[int]) -> int:
    """Features of the split start's first stage on a map with ``p`` features of ``d`` inputs
    (:func:`~jaxrecon.attack.split.split_rows` of the method's ``start.split.features``); ``n`` is
    needed when that option is set."""
    if not method.start.split.features:
        return p
    if n is None:
        raise ValueError("start.split.features: the first stage's features depend on n; pass n (the rows to recover)")
    return split_rows(p, d, n, method.start.split.features)


def with_split(tgt: Prepared, batched: bool = False, rows: Optional[int] = None) -> Prepared:
    """A prepared target (``attack_target(..., split=False)``) with ``split`` filled: the split
    arrays computed in one jitted program (vmapped over a batch of targets), the even features
    holding the map's own ``V`` (no copy), or a copy of its first ``rows`` rows
    (:func:`~jaxrecon.attack.split.prefix_target`) when ``rows`` is below ``p``."""
    sub = tgt if rows is None else prefix_target(tgt, rows)
    fn = split_arrays if not batched else jax.vmap(split_arrays)
    return tgt._replace(split=split_problem(sub, jax.jit(fn)(sub)))
