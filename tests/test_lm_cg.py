"""The LM phase's conjugate-gradient solver: exact on small SPD systems, the iterates of jax's cg,
and an iteration count that stops early at a tolerance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrecon as jr
from jaxrecon.attack.lm import LevenbergMarquardt, LMPhase, cg_solve, lm_direction


def spd_system(m=12, seed=0):
    """A float64 SPD matrix with a spread of eigenvalues, a right-hand side and a diagonal
    preconditioner."""
    k1, k2 = jax.random.split(jax.random.key(seed))
    Q, _ = jnp.linalg.qr(jax.random.normal(k1, (m, m), jnp.float64))
    A = (Q * jnp.logspace(-1, 1, m)) @ Q.T
    A = (A + A.T) / 2
    b = jax.random.normal(k2, (m,), jnp.float64)
    diag = jnp.diag(A)
    return A, b, lambda u: u / diag


def test_cg_solves_a_small_spd_system():
    A, b, M = spd_system()
    x, iters = jax.jit(lambda b: cg_solve(lambda u: A @ u, b, M, 1e-12, 100))(b)
    np.testing.assert_allclose(np.asarray(x), np.linalg.solve(np.asarray(A), np.asarray(b)), rtol=1e-9, atol=1e-9)
    assert 0 < int(iters) < 100
    assert float(jnp.linalg.norm(b - A @ x)) <= 1e-12 * float(jnp.linalg.norm(b))


@pytest.mark.parametrize("maxiter", [1, 5])
def test_cg_with_fixed_iterations_equals_jax_cg(maxiter):
    A, b, M = spd_system()
    x, iters = cg_solve(lambda u: A @ u, b, M, 0.0, maxiter)
    ref, _ = jax.scipy.sparse.linalg.cg(lambda u: A @ u, b, tol=0.0, maxiter=maxiter, M=M)
    assert int(iters) == maxiter
    np.testing.assert_allclose(np.asarray(x), np.asarray(ref), rtol=1e-13, atol=1e-15)
    x0 = 0.1 * b
    x, _ = cg_solve(lambda u: A @ u, b, M, 0.0, maxiter, x0)
    ref, _ = jax.scipy.sparse.linalg.cg(lambda u: A @ u, b, x0, tol=0.0, maxiter=maxiter, M=M)
    np.testing.assert_allclose(np.asarray(x), np.asarray(ref), rtol=1e-13, atol=1e-15)


def test_cg_tolerance_stops_early_and_vmap_keeps_each_count():
    A, b, M = spd_system()
    solve = lambda b, tol: cg_solve(lambda u: A @ u, b, M, tol, 50)
    (_, loose), (_, tight) = solve(b, 1e-1), solve(b, 1e-10)
    assert 0 < int(loose) < int(tight) <= 50
    tols = jnp.asarray([1e-1, 1e-10])
    xs, counts = jax.vmap(solve)(jnp.stack([b, b]), tols)
    assert int(counts[0]) == int(loose) < int(counts[1])
    for x, tol in zip(xs, tols):
        assert float(jnp.linalg.norm(b - A @ x)) <= float(tol) * float(jnp.linalg.norm(b))
    np.testing.assert_allclose(np.asarray(xs[0]), np.asarray(solve(b, 1e-1)[0]), rtol=1e-10)


def test_lm_direction_counts_iterations_and_the_phase_step_is_unchanged():
    data = jr.synthetic(jax.random.key(1), 2, 3)
    fmap = jr.RandomFeatures(jax.random.key(2), 3, 48)
    tgt = jr.Target(fmap, jr.fit(fmap, data.x, data.y))
    x = data.x + 0.1 * jax.random.normal(jax.random.key(3), data.x.shape)
    damping = jnp.asarray(1e-3)
    assert int(lm_direction(tgt, x, damping, 7).cg_iters) == 7
    assert int(lm_direction(tgt, x, damping, 7, cg_tol=0.3).cg_iters) < 7
    phase = LMPhase(LevenbergMarquardt(cg_iters=7), None, lambda z: z)
    counted, plain = phase.step_counted(tgt, x, damping), phase.step(tgt, x, damping)
    assert int(counted[4]) == 7 and len(plain) == 4
    for a, b in zip(counted[:4], plain):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
