"""Degenerate problems: targets on which the projector loss identifies nothing.

Three cases are recognised before any step is taken:

* ``theta`` all zero (nothing was learned): the loss ``|P_perp theta|^2 / |theta|^2`` is
  ``0 / 0``. Reported loss: ``nan``.
* ``p <= m``, ``m`` the number of feature rows of the ``n`` rows of ``x_hat`` (``n``, or ``n k``
  for ``k`` outputs): ``m`` generic feature rows span all of ``R^p`` (for ``p < m`` the kernel is
  also singular), so ``theta`` lies in the span for *every* ``x_hat`` and the loss is 0
  everywhere. Reported loss: ``0``.
* ``d = 1`` with rows on the sphere: the sphere of radius 1 in ``R^1`` is ``{-1, 1}``, so every
  row of ``x_hat`` is ``+-1`` and equals a training row up to sign whatever the attack does (with
  ``n > 2`` rows repeat and the kernel is singular). Reported loss: ``nan``.

The attack does not run on them: the seed stops at step 0 with status ``"degenerate"``
(:attr:`~jaxrecon.attack.state.Status.DEGENERATE`), its starting point as ``x_hat``. The two
shape cases are known when the solver is built (:func:`static_reason`); an all-zero ``theta`` is
also tested inside the compiled program (:func:`zero_theta`), so traced targets are caught.
Host-side entry points warn once with the cause (:func:`warn_if_degenerate`).
"""

from __future__ import annotations

import math
import warnings
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from .. import _validate
from ..loss import feature_rows


class DegenerateProblemWarning(UserWarning):
    """A target on which the attack cannot identify anything (see :mod:`jaxrecon.attack.degenerate`)."""


ZERO_THETA = ("degenerate problem: theta is all zero (nothing was learned), so the loss 0/0 is undefined; "
              "the attack does not run (status 'degenerate', loss nan)")


_ROWS = "degenerate problem: p="  # how the message of the p <= m case begins


def rows_reason(p: int, m: int, n: int) -> Optional[str]:
    """The message for ``p <= m`` feature rows of ``n`` inputs, or ``None`` when ``p > m``."""
    if p > m:
        return None
    rows = f"m={m} feature rows of the n={n} rows of x_hat"
    how = (f"p={p} < {rows}: the kernel is singular and" if p < m else f"p={p} = {rows}:")
    return (f"degenerate problem: {how} {m} generic feature rows span all of R^p, so theta is in the span "
            f"for every x_hat and the loss is 0 everywhere (nothing can be identified); the attack does not "
            f"run (status 'degenerate', loss 0)")


ON_LINE = ("degenerate problem: d=1 with rows on the sphere: the sphere of radius 1 in R^1 is {-1, 1}, so every "
           "row of x_hat is +-1 and matches a training row up to sign whatever the attack does; the attack "
           "does not run (status 'degenerate', loss nan); pass radius=None for free rows")


def static_reason(fmap, n: int, radius: Optional[float]) -> Optional[str]:
    """Why a problem is degenerate from its shapes alone (``p <= m``, or ``d = 1`` on the sphere),
    or ``None``. ``radius``: the row radius the attack keeps (``None``: free rows)."""
    d = fmap.input_dim
    m = feature_rows(fmap, jnp.zeros((n, d), _dtype(fmap)))
    reason = rows_reason(fmap.p, m, n)
    if reason is None and d == 1 and radius is not None:
        reason = ON_LINE
    return reason


def static_loss(reason: str) -> float:
    """The loss reported for a shape-degenerate problem: 0 when every ``x_hat`` is a zero, else nan."""
    return 0.0 if reason.startswith(_ROWS) else math.nan


def zero_theta(theta) -> jnp.ndarray:
    """``True`` when ``theta`` has no normal entry (all zero, or subnormal: flushed to zero on CPUs);
    traceable. A ``theta`` with a NaN is not zero (the attack reports it as non-finite)."""
    theta = jnp.asarray(theta)
    return jnp.max(jnp.abs(theta)) < jnp.finfo(theta.dtype).tiny


def _dtype(fmap):
    return getattr(fmap, "feature_dtype", jnp.result_type(float))


def reason(target, n: int, radius: Optional[float], batched: bool = False) -> Optional[str]:
    """The cause (one line) if the problem is degenerate, else ``None``: shapes first, then an
    all-zero ``theta`` when it is concrete (``batched``: one ``theta`` per seed, leading axis)."""
    fmap = target.fmap
    if batched:
        fmap = jax.tree_util.tree_map(lambda a: a[0], fmap)
    why = static_reason(fmap, n, radius)
    if why is not None or not _validate.is_concrete(target.theta):
        return why
    theta = np.asarray(target.theta)
    zero = np.max(np.abs(theta.reshape(theta.shape[0], -1) if batched else theta.reshape(1, -1)), axis=1)
    zero = zero < np.finfo(theta.dtype).tiny
    if not zero.any():
        return None
    if batched and not zero.all():
        return f"{ZERO_THETA} for seeds {np.flatnonzero(zero).tolist()}"
    return ZERO_THETA


def warn_if_degenerate(target, n: int, radius: Optional[float], batched: bool = False,
                       stacklevel: int = 3) -> Optional[str]:
    """Warn (:class:`DegenerateProblemWarning`) with the cause if the problem is degenerate; return it."""
    why = reason(target, n, radius, batched)
    if why is not None:
        warnings.warn(why, DegenerateProblemWarning, stacklevel=stacklevel)
    return why
