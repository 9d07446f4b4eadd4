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

import math
from typing import NamedTuple, Optional

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
        m = method_config(method)
        form = m.loss.form if hasattr(m, "loss") else m.loss_form
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


# -- the final verdict: one rule for every reporting path -------------------------------------------

#: The float64 residual-form loss (:func:`final_loss`) at or below which a result is a zero.
FINAL_TOL = SOLVED_TOL
#: Bytes of float64 features :func:`final_loss` holds for an SVD (beyond: passes over blocks).
_KEEP_BYTES = 1 << 28
#: Steps of iterative refinement of the blocked evaluation (each divides the error by about
#: ``1 / (eps cond(Phi)^2)``).
_REFINE = 3
#: Rows of ``V`` drawn per block when :func:`final_loss` generates random features.
_ROW_BLOCK = 4096


def _x64():
    """float64 for this thread only (``jax.enable_x64``): a sweep compiling float32 programs in
    another thread is not affected."""
    import jax

    return jax.enable_x64(True)


_DRAW = {}


def _numpy_activation(name):
    """A registered activation in NumPy float64 (``None``: not one of them)."""
    from scipy.special import erf

    return {"relu": lambda z: np.maximum(z, 0.0), "relu_tanh": lambda z: np.maximum(z, 0.0) + np.tanh(z),
            "tanh": np.tanh, "erf": erf, "gelu": lambda z: 0.5 * z * (1.0 + erf(z / math.sqrt(2.0)))}.get(name)


def _rf_blocks(fmap, x_hat):
    """``(start, Phi block)`` of random features in float64: ``V`` as the run drew it (its own
    dtype, bit for bit), then the products and the activation in float64."""
    import jax
    import jax.numpy as jnp

    from .features.random_features import _draw_rows

    p = fmap.p
    V = getattr(fmap, "V", None)
    size = min(_ROW_BLOCK, 1 << max(0, p - 1).bit_length())  # a power of two: few programs to compile
    if V is None and size not in _DRAW:
        _DRAW[size] = jax.jit(lambda key, start, d, dtype: _draw_rows(key, start, size, d, dtype),
                              static_argnums=(2, 3))
    act = _numpy_activation(fmap.activation) if isinstance(fmap.activation, str) else None
    for start in range(0, p, size):
        stop = min(p, start + size)
        if V is not None:
            Vb = np.asarray(V[start:stop], np.float64)
        else:  # rows past p are drawn and left out
            Vb = np.asarray(_DRAW[size](fmap.key, np.int32(start), fmap.d, fmap.feature_dtype.name),
                            np.float64)[:stop - start]
        Z = x_hat @ Vb.T
        if act is not None:
            F = act(Z)
        else:
            with _x64():
                F = np.asarray(fmap.sigma(jnp.asarray(Z)), np.float64)
        yield start, F


def _generic_blocks(fmap, x_hat):
    """The whole feature matrix of any map, its floating leaves cast to float64 (one block)."""
    import jax
    import jax.numpy as jnp

    with _x64():
        cast = lambda a: (jnp.asarray(a, jnp.float64) if hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.floating)
                          else a)
        fm = jax.tree_util.tree_map(cast, fmap)
        F = np.asarray(jax.jit(lambda f, x: f.features(x))(fm, jnp.asarray(x_hat, jnp.float64)), np.float64)
    yield 0, F


def final_loss(target, x_hat) -> float:
    """The residual form of the projector loss, ``|P_perp theta|^2 / |theta|^2``, at ``x_hat`` in
    float64 on the host, whatever the dtype the attack ran in and the loss form it minimised.

    The features are those of the run (random features: ``V`` drawn in the run's dtype, bit for
    bit) evaluated in float64; ``P_perp`` projects out the span of the feature rows of ``x_hat``
    by an SVD of the features (singular values below ``max(m, p) eps64`` of the largest are left
    out, so repeated rows are fine), accurate to about ``eps64 cond(Phi)``; features larger than
    :data:`_KEEP_BYTES` go through the float64 kernel with iterative refinement instead. ``nan``
    when ``theta`` is zero or anything is non-finite. Every reporting path decides ``solved`` from
    it (:func:`final_verdict`)."""
    from .features.random_features import RandomFeatures

    fmap = target.fmap
    x_hat = np.asarray(x_hat, np.float64)
    theta = np.asarray(target.theta, np.float64).reshape(-1)
    if not (np.all(np.isfinite(theta)) and np.all(np.isfinite(x_hat))):
        return math.nan
    norm = float(np.linalg.norm(theta))
    if not (np.isfinite(norm) and norm > 0):
        return math.nan
    theta = theta / norm
    make = _rf_blocks if isinstance(fmap, RandomFeatures) else _generic_blocks
    if 8 * x_hat.shape[0] * theta.size <= _KEEP_BYTES:  # the features fit: an SVD of them
        F = np.hstack([F for _, F in make(fmap, x_hat)])
        if not np.all(np.isfinite(F)):
            return math.nan
        U, sv, _ = np.linalg.svd(F.T, full_matrices=False)
        U = U[:, sv > max(F.shape) * np.finfo(np.float64).eps * (sv[0] if sv.size else 0.0)]
        r = theta - U @ (U.T @ theta)
        r = r - U @ (U.T @ r)  # once more: the projection's rounding off the span
        return float(r @ r)
    return _blocked_loss(lambda: make(fmap, x_hat), theta)


def _blocked_loss(blocks, theta) -> float:
    """:func:`final_loss` through the float64 kernel, for features too large to hold: passes over
    the feature blocks (``blocks()`` yields them anew), the pseudo-inverse of the kernel and
    :data:`_REFINE` steps of iterative refinement."""
    G = v = None
    for start, F in blocks():
        if not np.all(np.isfinite(F)):
            return math.nan
        tb = theta[start:start + F.shape[1]]
        G = F @ F.T if G is None else G + F @ F.T
        v = F @ tb if v is None else v + F @ tb
    evals, evecs = np.linalg.eigh(G)
    keep = evals > G.shape[0] * np.finfo(np.float64).eps * max(float(evals[-1]), 0.0)
    pinv = (evecs[:, keep] / evals[keep]) @ evecs[:, keep].T
    c = pinv @ v
    for _ in range(_REFINE):  # r = theta - Phi^T c; Phi r corrects c
        w = np.zeros_like(c)
        for start, F in blocks():
            w += F @ (theta[start:start + F.shape[1]] - F.T @ c)
        c = c + pinv @ w
    total = 0.0
    for start, F in blocks():
        rb = theta[start:start + F.shape[1]] - F.T @ c
        total += float(rb @ rb)
    return total


def final_losses(target, x_hats) -> np.ndarray:
    """:func:`final_loss` of every seed's ``x_hat`` (leading axis: seeds) against one target."""
    return np.array([final_loss(target, xh) for xh in np.asarray(x_hats)], np.float64)


#: The status shown when the method's own stopping loss met its tolerance but the float64
#: residual-form loss is above :data:`FINAL_TOL`: it stopped, yet is not a zero.
STOPPED = "stopped"


def final_verdict(status: str, loss_f64: Optional[float], error_sign: float, recovered: float, *,
                  d: Optional[int] = None, loss: Optional[float] = None,
                  method_tol: Optional[float] = None) -> dict:
    """The reported ``status``, ``solved``, ``identified`` and ``recovered`` of one seed: the one
    rule of every reporting path (``jaxrecon reconstruct``, sweeps, results read back).

    * ``solved``: ``loss_f64 <= FINAL_TOL`` (:func:`final_loss`: the residual form in float64,
      whatever the method minimised); a row without a float64 loss (``None``: written before it
      existed) falls back to the method's own ``loss`` and ``method_tol``.
    * ``identified``: ``error_sign <= IDENTIFIED_TOL``.
    * ``status``: the method's, except that ``"converged"`` (its own loss met its tolerance) is
      shown only when solved; otherwise :data:`STOPPED`.
    * A ``"degenerate"`` seed is neither solved nor identified and recovers nothing
      (``recovered`` 0); at ``d = 1`` (every row is ``+-1`` and matches up to sign by
      construction) its errors are not measured: ``error_abs`` / ``error_sign`` ``nan``.

    Returns the fields to update the row with."""
    if loss_f64 is None:
        ok = loss is not None and method_tol is not None and bool(solved(loss, method_tol))
    else:
        ok = bool(solved(loss_f64, FINAL_TOL))
    ident = bool(identified(error_sign))
    out = {"status": status, "solved": ok, "identified": ident, "recovered": recovered}
    if status == "degenerate":
        out.update(solved=False, identified=False, recovered=0.0)
        if d == 1:
            out.update(error_abs=math.nan, error_sign=math.nan)
    elif status == "converged" and not ok:
        out["status"] = STOPPED
    return out

