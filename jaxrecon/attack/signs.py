"""The split start's sign solve: the signs of rows known up to sign, from the linear part of ``theta``.

After the first stage (:mod:`jaxrecon.attack.split`) the rows ``y_j`` are right up to sign. With the
even coefficients ``alpha`` (the even fit) the linear part of ``theta`` gives ``d`` equations

    sum_j alpha_j s_j y_j = m,     m = ((V^T V)^{-1} V^T theta - (V^T V)^{-1} V^T E(y)^T alpha) / k,

solved as a box-constrained least-squares problem ``min |A s - m|_G^2`` over ``s in [-1, 1]^n``
(``G = V^T V``; accelerated projected gradient, :func:`box_least_squares`), rounded and polished
by single flips (:func:`polish_signs`). For ``n <= d`` the solution is the sign vector itself; for
``d < n < 2d`` it is still unique with high probability for generic rows (Mangasarian & Recht
2011, "Probability of unique integer solution to a system of linear equations"); near ``n = 2d``
it is not, and :func:`lattice_signs` solves the integer problem by LLL reduction (measured at
``n = 2d = 100``; beyond that untested).

:func:`choose_signs` reads ``V`` only through the even features' products (``gram_project_b``,
``ginv``, ``chol``): one pass over a streamed ``V``, matmuls with a stored one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..loss import factor_kernel

#: Iterations of the accelerated projected gradient of the sign problem (``n x d`` products each).
SIGN_ITERS = 2000
#: A sign vector solves the linear part when its residual is below this fraction of ``|b|``
#: (float32 rows that are right to ~1e-5 leave ~1e-6); above it, :func:`lattice_signs` runs.
SIGN_SOLVED = 1e-4
#: Relative size of the residual at the true signs that the lattice embedding allows for.
SIGN_NOISE = 1e-5
#: Step cap of the LLL reduction (its run time is about 0.15 ms per step at n = 100).
LLL_MAX_ITERS = 1_000_000


def box_least_squares(A: jax.Array, b: jax.Array, iters: int = SIGN_ITERS) -> jax.Array:
    """``argmin |A s - b|^2`` over ``s in [-1, 1]^n`` by accelerated projected gradient (FISTA),
    from ``s = 0``; ``A`` is ``(m, n)``."""
    L = jnp.maximum(jnp.linalg.eigvalsh(A.T @ A)[-1], jnp.finfo(A.dtype).tiny)

    def body(_, carry):
        s, z, t = carry
        s_new = jnp.clip(z - (A.T @ (A @ z - b)) / L, -1.0, 1.0)
        t_new = (1 + jnp.sqrt(1 + 4 * t * t)) / 2
        return s_new, s_new + (t - 1) / t_new * (s_new - s), t_new

    s0 = jnp.zeros(A.shape[1], A.dtype)
    s, _, _ = jax.lax.fori_loop(0, iters, body, (s0, s0, jnp.asarray(1.0, A.dtype)))
    return s


def polish_signs(A: jax.Array, b: jax.Array, s: jax.Array) -> jax.Array:
    """Single sign flips of ``s in {-1, 1}^n`` while one lowers ``|A s - b|^2`` (the best flip
    each round, at most ``n`` rounds): the rounding of the relaxed solution can leave a few wrong
    signs where the box problem's solution is not unique (``n`` near ``2 d``)."""
    n = s.shape[0]

    col2 = jnp.sum(A * A, axis=0)

    def body(carry):
        s_, k, _ = carry
        res = A @ s_ - b
        g = -4 * s_ * (A.T @ res) + 4 * col2  # |res - 2 s_j a_j|^2 - |res|^2 for flipping j
        j = jnp.argmin(g)
        go = g[j] < -1e-6 * jnp.sum(jnp.square(res))
        return jnp.where(go, s_.at[j].multiply(-1), s_), k + 1, go

    s, _, _ = jax.lax.while_loop(lambda c: c[2] & (c[1] < n), body, (s, jnp.asarray(0), jnp.asarray(True)))
    return s


def lll_reduce(B: np.ndarray, delta: float = 0.99, max_iters: int = LLL_MAX_ITERS) -> np.ndarray:
    """The LLL reduction (Lenstra, Lenstra & Lovasz 1982) of the rows of ``B``, in floating point
    (Gram-Schmidt coefficients updated after each swap, rows re-orthogonalised once); stops after
    ``max_iters`` steps. NumPy on the host: the reduction is a sequential, data-dependent loop."""
    B = np.array(B, dtype=np.float64)
    m = B.shape[0]
    Bs, mu, bb = np.zeros_like(B), np.zeros((m, m)), np.zeros(m)

    def orthogonalize(k):
        scale = np.where(bb[:k] > 0, bb[:k], 1.0)
        c1 = (Bs[:k] @ B[k]) / scale
        v = B[k] - c1 @ Bs[:k]
        c2 = (Bs[:k] @ v) / scale
        Bs[k], mu[k, :k] = v - c2 @ Bs[:k], c1 + c2
        bb[k] = Bs[k] @ Bs[k]

    for k in range(m):
        orthogonalize(k)
    k, it = 1, 0
    while k < m and it < max_iters:
        it += 1
        for j in range(k - 1, -1, -1):  # size reduction
            q = np.round(mu[k, j])
            if q != 0:
                B[k] -= q * B[j]
                mu[k, :j] -= q * mu[j, :j]
                mu[k, j] -= q
        if bb[k] >= (delta - mu[k, k - 1] ** 2) * bb[k - 1]:  # Lovasz condition
            k += 1
            continue
        B[[k, k - 1]], mu[[k, k - 1]] = B[[k - 1, k]], mu[[k - 1, k]]
        orthogonalize(k - 1)
        orthogonalize(k)
        if k + 1 < m:
            mu[k + 1:, [k - 1, k]] = (B[k + 1:] @ Bs[[k - 1, k]].T) / bb[[k - 1, k]]
        k = max(k - 1, 1)
    return B


def lattice_signs(A: np.ndarray, b: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Signs ``s in {-1, 1}^n`` with ``A s = b`` by lattice reduction, when ``s`` (the polished
    rounding) leaves a residual above ``SIGN_SOLVED * |b|``; else ``s`` unchanged.

    The embedding of Lagarias & Odlyzko (1985) for subset sums: the rows ``(e_j, 0, K a_j)`` and
    ``(0, 1, -K b)`` span a lattice holding ``(s, 1, K (A s - b))``, of norm about ``sqrt(n + 1)``
    when ``K |A s - b|`` is small; with ``K = 1 / (SIGN_NOISE |b|)`` every other short vector has a
    large last part, so LLL finds the solution as a basis row. For ``n`` near ``2d`` the relaxation
    is not unique and this is what recovers the signs (n = 100, d = 50: 20 wrong after the
    polish, none after LLL, in about 15 s of NumPy)."""
    A, b, s = (np.asarray(a, np.float64) for a in (A, b, s))
    nb = np.linalg.norm(b)
    res = np.linalg.norm(A @ s - b)
    if res <= SIGN_SOLVED * nb or nb == 0:
        return s.astype(np.float32)
    d, n = A.shape
    K = 1.0 / (SIGN_NOISE * nb)
    basis = np.zeros((n + 1, n + 1 + d))
    basis[:n, :n], basis[:n, n + 1:] = np.eye(n), K * A.T
    basis[n, n], basis[n, n + 1:] = 1.0, -K * b
    best, best_res = s, res
    for row in lll_reduce(basis):
        t = row[n]
        if abs(abs(t) - 1) < 1e-6 and np.all(np.abs(np.abs(row[:n]) - 1) < 1e-6):
            cand = np.sign(row[:n] * t)
            r = np.linalg.norm(A @ cand - b)
            if r < best_res:
                best, best_res = cand, r
    return best.astype(np.float32)


def choose_signs(problem, y: jax.Array, jitter=None, iters: int = SIGN_ITERS):
    """``(x, s)``: the rows ``y`` (right up to sign) with signs chosen from the linear part of
    ``theta`` of ``problem`` (a :class:`~jaxrecon.attack.split.SplitProblem`; module docstring: the
    relaxed problem, rounded, then :func:`polish_signs`); ``s`` the relaxed signs in ``[-1, 1]``
    (near ``+-1`` where the choice is clear). With ``k = 0`` (no odd part) the rows are returned as
    they are."""
    even = problem.even.fmap
    if even.odd == 0:
        return y, jnp.ones(y.shape[0], y.dtype)
    A_even, v, B = even.gram_project_b(y, problem.even.theta)
    alpha = factor_kernel(A_even, jitter).solve(v)
    m = (problem.m_theta - even.ginv(B.T @ alpha)) / even.odd
    A = y.T * alpha[None, :]  # (d, n): column j is alpha_j y_j
    W = even.chol.T  # |W u|^2 = u^T V^T V u: the residual's norm in feature space
    scale = jnp.maximum(jnp.linalg.norm(W @ A), jnp.finfo(y.dtype).tiny)
    A, b = (W @ A) / scale, (W @ m) / scale
    relaxed = box_least_squares(A, b, iters)
    s = polish_signs(A, b, jnp.where(relaxed < 0, -1.0, 1.0).astype(y.dtype))
    s = jax.pure_callback(lattice_signs, jax.ShapeDtypeStruct(s.shape, jnp.float32), A, b, s,
                          vmap_method="sequential").astype(y.dtype)
    return jnp.where((s < 0)[:, None], -y, y), relaxed
