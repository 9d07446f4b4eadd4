"""Local identifiability of the training set: the projector residual's Jacobian at a zero.

The residual ``r(x_hat) = P_perp theta / |theta|`` vanishes at the training inputs ``X``. Near
``X`` it is ``r(X + u) ~ J u`` for perturbations ``u`` tangent to the row spheres (the attack keeps
rows at radius ``sqrt(d)``), so

* the **nullity** of ``J`` (tangent space, ``n (d - 1)`` columns) is the dimension of the manifold
  of zeros through ``X``. Counting predicts ``max(0, n (d - 1) - (p - n)) = max(0, d n - p)``:
  ``theta`` in the span of ``Phi(x_hat)`` is ``p - n`` equations;
* its **smallest singular value** above the null space says how isolated ``X`` is when it is
  isolated: Gauss-Newton converges from about ``s_min / (curvature)`` around ``X``, so a small
  ``s_min`` is a small basin.

Row scaling: column block ``i`` of ``J`` scales with the coefficient ``c_i`` of row ``i`` in
``theta`` (a training point with a small dual coefficient moves the residual little), so the
spectrum is also reported with the blocks divided by ``|c_i|`` (the Marquardt scaling the LM phase
uses), which removes that trivial spread. Dense Jacobians: meant for small ``n d`` (a few thousand).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .features.base import Target
from .loss import _residual_and_coef, projector_residual


class Spectrum(NamedTuple):
    """Singular values of the tangent Jacobian at ``x``, largest first, and what they imply."""

    singular_values: np.ndarray  # of J restricted to the tangent space, (n (d - 1),) or fewer
    scaled_singular_values: np.ndarray  # the same with row block i divided by |c_i|
    nullity: int  # tangent directions along which J vanishes (rank_tol, scaled spectrum)
    predicted_nullity: int  # max(0, d n - p)
    rank: int  # singular values above rank_tol * largest (scaled spectrum)

    @property
    def s_min(self) -> float:
        """Smallest scaled singular value above the null space, relative to the largest."""
        s = self.scaled_singular_values
        return float(s[self.rank - 1] / s[0]) if self.rank > 0 else 0.0


def tangent_basis(x: np.ndarray) -> np.ndarray:
    """Orthonormal basis (``n d x n (d - 1)``) of the product of the rows' tangent spaces."""
    x = np.asarray(x, np.float64)
    n, d = x.shape
    out = np.zeros((n * d, n * (d - 1)))
    for i in range(n):
        u = x[i] / np.linalg.norm(x[i])
        q = np.linalg.svd(np.eye(d) - np.outer(u, u))[0][:, : d - 1]
        out[i * d:(i + 1) * d, i * (d - 1):(i + 1) * (d - 1)] = q
    return out


def spectrum(target: Target, x, rank_tol: float = 1e-9) -> Spectrum:
    """The tangent Jacobian's spectrum of the projector residual at ``x`` (usually the training set).

    Args:
      target: the attacked model.
      x: ``(n, d)`` rows (on their spheres) at which to linearise.
      rank_tol: singular values below ``rank_tol`` times the largest count as null (the default
        suits float64; in float32 use about ``1e-4``).
    """
    if not 0 < rank_tol < 1:
        raise ValueError(f"rank_tol: must be in (0, 1), got {rank_tol!r}")
    fmap = target.fmap.prepare()
    x = jnp.asarray(x)
    n, d = x.shape
    J = jax.jacfwd(lambda z: projector_residual(fmap, target.theta, z))(x)
    J = np.asarray(J, np.float64).reshape(-1, n * d)
    c = np.asarray(_residual_and_coef(fmap, target.theta, x)[1], np.float64)
    row_c = np.sqrt(np.sum(c.reshape(n, -1) ** 2, axis=1))
    B = tangent_basis(np.asarray(x))
    JB = J @ B
    scale = np.repeat(1.0 / np.maximum(row_c, np.finfo(np.float64).tiny), d - 1)
    sv = np.linalg.svd(JB, compute_uv=False)
    sv_scaled = np.linalg.svd(JB * scale[None, :], compute_uv=False)
    rank = int(np.sum(sv_scaled >= rank_tol * sv_scaled[0]))
    return Spectrum(sv, sv_scaled, n * (d - 1) - rank, max(0, d * n - fmap.p), rank)
