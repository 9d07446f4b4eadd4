"""The precision stop and the best iterate (jaxrecon/attack/loop.py): float32, small.

With ``tol = 0`` the zero of the loss is out of float32's reach, as ``tol = 1e-12`` is at large
``n * d``: without the stop the stall actions run until the budget and discard the exact rows."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrecon as jr
from jaxrecon.attack import Status, reconstruct
from jaxrecon.attack.methods import PRECISION_TOL, method_config
from jaxrecon.attack.population import summarize
from jaxrecon.metrics import error_sign


@pytest.fixture(scope="module")
def problem():
    d, n = 10, 5
    data = jr.synthetic(jax.random.key(1), n, d)
    fmap = jr.RandomFeatures(jax.random.key(2), d, 10 * d * n)
    return data.x, jr.Target(fmap, jr.fit(fmap, data.x, data.y))


def _run(target, n, **kw):
    return reconstruct(target, jax.random.key(3), n, method="adam-lm", steps=3000, **kw)


def test_precision_stop_keeps_the_exact_rows(problem):
    x, target = problem
    n = x.shape[0]
    stopped = _run(target, n, tol=0.0, precision_tol=1e-6)
    assert int(stopped.status) == Status.PRECISION
    assert int(stopped.steps) < 1000 and int(stopped.stalls) == 0
    assert float(stopped.loss) <= 1e-6 and stopped.floor is None  # no noise floor to report
    assert error_sign(np.asarray(x), np.asarray(stopped.x_hat)) < 1e-3
    # without it the seed runs into its stall actions until the budget (this seed ends spoiled)
    plain = _run(target, n, tol=0.0)
    assert int(plain.status) == Status.BUDGET and int(plain.steps) == 3000 and int(plain.stalls) > 0


def test_budget_returns_the_best_iterate(problem):
    """With the stop on but out of reach (1e-30), the stall actions run as before, and the seed
    that ends on its budget returns the best iterate it saw, not the last."""
    x, target = problem
    n = x.shape[0]
    plain = _run(target, n, tol=0.0)
    kept = _run(target, n, tol=0.0, precision_tol=1e-30)
    assert int(kept.status) == Status.BUDGET and int(kept.stalls) == int(plain.stalls)
    assert float(kept.loss) < 1e-9 < float(plain.loss)
    assert error_sign(np.asarray(x), np.asarray(kept.x_hat)) < 1e-3


def test_stall_at_a_tiny_loss_stops(problem):
    """A last phase that stalls at a loss ``<= precision_tol`` stops there: the window is longer
    than the LM phase (stall_after 40), so only the stall rule can fire."""
    x, target = problem
    res = _run(target, x.shape[0], tol=0.0, precision_tol=1e-6, precision_window=1000)
    assert int(res.status) == Status.PRECISION and int(res.stalls) == 0
    assert error_sign(np.asarray(x), np.asarray(res.x_hat)) < 1e-3


def test_methods_and_validation():
    for name in ("adam-lm-split", "adam-lm-repair"):
        assert method_config(name).stop.precision_tol == PRECISION_TOL
    assert method_config("adam-lm").stop.precision_tol is None  # the default's recorded results stand
    for bad in (dict(precision_tol=-1.0), dict(precision_window=0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            method_config("adam-lm", **bad)


def test_population_status_with_a_member_at_precision():
    st = jnp.asarray([Status.BUDGET, Status.PRECISION, Status.PLATEAU], jnp.int32)
    members = jr.attack.AttackState(x_hat=jnp.zeros((3, 2, 2)), phase_states=(), loss=jnp.asarray([1e-3, 1e-10, 1e-4]),
                                    steps=jnp.asarray([5, 5, 5]), phase=jnp.zeros(3, jnp.int32),
                                    phase_start=jnp.zeros(3, jnp.int32), stalls=jnp.zeros(3, jnp.int32),
                                    key=None, status=st)
    pop = summarize(members)
    assert int(pop.status) == Status.PRECISION and float(pop.loss) == pytest.approx(1e-10)
    pop = summarize(members._replace(status=st.at[0].set(Status.CONVERGED)))
    assert int(pop.status) == Status.CONVERGED
