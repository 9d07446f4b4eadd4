"""Solved vs identified: what an attack's result says about the optimiser and about the law.

The training inputs ``X`` always give ``L(X) = 0``, so every ``p`` has a zero of the projector
loss. A seed is

* **solved** when the attack reached a zero: its reported loss is ``<= solved_tolerance`` (an
  optimiser fact), and
* **identified** when that result is the training set: ``error_sign <= IDENTIFIED_TOL`` (the law).

A seed can be solved without being identified (a zero that is not ``X``: below ``p = d n`` a
manifold of zeros exists) and, rarely, identified without being solved (close to ``X`` but stopped
above the tolerance).

Per row (:func:`row_outcomes`), after the Hungarian matching of :func:`jaxrecon.metrics.match`: each
training row's sign-aware error (its term of ``error_sign``), whether it is *recovered* (that error
``<= tol``, default ``1e-2``), its plain error ``||x_i - x_hat_pi(i)|| / sqrt(d)`` and whether the
match is sign-flipped (closer to ``-x_i``). Below ``p = d n`` a zero of the loss need not be ``X``,
yet some of its rows may be: per-row outcomes measure that partial leakage.

The tolerance is the smaller "zero" the loss can resolve: ``1e-10``, unless rounding puts the
loss's floor at ``X`` itself higher (:func:`solved_tolerance`). Measured floor, ``|L(X)|`` at the
training set (ReLU, ``d n`` from 50 to 2000, ``p/(dn)`` from 0.5 to 3, float32): the kernel form
``<= 4.8e-7`` (about 4 ``eps``: it cancels ``1 - |L^{-1} v|^2 / |theta|^2``), the residual form
``<= 1.4e-12`` (about 100 ``eps^2``). So the rule is ``max(1e-10, floor)`` with the floor
``8 eps`` for the kernel form (``9.5e-7`` in float32, the only case above ``1e-10``) and
``100 eps^2`` for the residual form.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

#: A result identifies the training set when its ``error_sign`` is at most this.
IDENTIFIED_TOL = 1e-3
#: The loss below which a result is a zero, where the dtype's floor allows it.
SOLVED_TOL = 1e-10
_FORMS = ("kernel", "residual")


def solved_tolerance(dtype="float32", loss_form: str = "residual") -> float:
    """The loss at or below which an attack counts as having reached a zero (module docstring).

    ``max(1e-10, floor)``, the floor of the loss form in ``dtype`` being ``8 eps`` for
    ``"kernel"`` (the published form: ``9.5e-7`` in float32, ``1.8e-15`` in float64) and
    ``100 eps^2`` for ``"residual"``. Only the kernel form in float32 is above ``1e-10``.
    """
    if loss_form not in _FORMS:
        raise ValueError(f"loss_form: must be one of {list(_FORMS)}, got {loss_form!r}")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"dtype: must be a floating dtype (float32, float64), got {dtype}")
    eps = float(np.finfo(dtype).eps)
    floor = 8 * eps if loss_form == "kernel" else 100 * eps * eps
    return max(SOLVED_TOL, floor)


def method_tolerance(method, dtype="float32") -> float:
    """:func:`solved_tolerance` for the loss form a named method (or a ``Method``) reports.

    A name no longer registered gets the larger of the two forms' tolerances (its loss form is
    unknown; a result at the kernel form's floor must still count as solved)."""
    from .attack import method_config

    try:
        form = method_config(method).loss_form
    except ValueError:
        return max(solved_tolerance(dtype, f) for f in _FORMS)
    return solved_tolerance(dtype, form)


def solved(loss, tol: float) -> np.ndarray:
    """``loss <= tol`` elementwise (a non-finite loss is not solved)."""
    loss = np.asarray(loss, np.float64)
    return np.isfinite(loss) & (loss <= tol)


def identified(error_sign, tol: float = IDENTIFIED_TOL) -> np.ndarray:
    """``error_sign <= tol`` elementwise (a non-finite error is not identified)."""
    err = np.asarray(error_sign, np.float64)
    return np.isfinite(err) & (err <= tol)


class RowOutcomes(NamedTuple):
    """Per training row ``i`` (arrays of shape ``(n,)``), matched as in :func:`jaxrecon.metrics.match`."""

    error: np.ndarray  # min_s ||x_i - s x_hat_pi(i)|| / sqrt(d): the row's term of error_sign
    recovered: np.ndarray  # bool: error <= tol
    error_plain: np.ndarray  # ||x_i - x_hat_pi(i)|| / sqrt(d) (no sign freedom)
    flipped: np.ndarray  # bool: x_hat_pi(i) is closer to -x_i than to x_i
    perm: np.ndarray  # int: the row of x_hat matched to x_i


def row_outcomes(x_hat, x, tol: float | None = None) -> RowOutcomes:
    """Per-row errors and recovered flags of a reconstruction ``x_hat`` (``m x d``, ``m >= n``) of
    ``x`` (``n x d``); ``tol`` defaults to :data:`jaxrecon.metrics.RECOVERED_TOL` (``1e-2``).

    A recovered row that is ``flipped`` came out as ``-x_i``: recovered up to sign only."""
    from .metrics import RECOVERED_TOL, match

    tol = RECOVERED_TOL if tol is None else float(tol)
    if not (np.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol: must be a finite number >= 0, got {tol!r}")
    m = match(x, x_hat)
    x = np.asarray(x, np.float64)
    x_hat = np.asarray(x_hat, np.float64)
    plain = np.linalg.norm(x - x_hat[m.perm], axis=1) / np.sqrt(x.shape[1])
    return RowOutcomes(m.row_error, m.row_error <= tol, plain, np.asarray(m.flipped), np.asarray(m.perm))
