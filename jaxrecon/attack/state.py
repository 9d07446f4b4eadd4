"""The attack's typed state: per-seed status and phase enums, the loop state and the result."""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class Status(enum.IntEnum):
    """Why a seed stopped (stored as int32 in the state)."""

    RUNNING = 0
    CONVERGED = 1  # loss <= tol
    BUDGET = 2  # step budget (or wall-clock budget) spent
    NONFINITE = 3  # a non-finite loss or gradient; the last finite iterate is kept
    DEGENERATE = 4  # the problem cannot identify anything (see jaxrecon.attack.degenerate); no step taken
    FLOOR = 5  # loss <= floor_factor * the target's noise floor (a defended target)
    PLATEAU = 6  # the best loss did not improve by plateau_rtol over plateau_window steps
    PRECISION = 7  # the loss sat at <= precision_tol (above tol) without halving: the float floor; best kept


#: Status code -> name, as written in results files.
STATUS_NAMES = {int(s): s.name.lower() for s in Status}


class Phase(enum.IntEnum):
    """The phase a seed is in (stored as int32 in the state)."""

    FIRST_ORDER = 0  # steps of an optax transformation
    LM = 1  # Levenberg-Marquardt steps
    STALLED = 2  # the last phase ran out of steps without converging: a stall action is due


class AttackState(NamedTuple):
    """State of one seed's attack (vmapped states have a leading seed axis).

    ``phase_states`` holds one state per phase of the method, in the method's order (an optax
    state for a first-order phase, or a ``PlateauWatch`` around it; the damping for an LM phase, or
    an ``LMWatch`` around it).
    """

    x_hat: jax.Array  # (n, d) current iterate
    phase_states: tuple  # per-phase states
    loss: jax.Array  # loss at x_hat (inf before the first evaluation)
    steps: jax.Array  # int32: steps taken (all phases, all stalls)
    phase: jax.Array  # int32: a Phase value
    phase_start: jax.Array  # int32: value of ``steps`` when the current phase began
    stalls: jax.Array  # int32: stalls so far (each followed by a stall action)
    key: jax.Array  # the seed's key (stall actions draw from fold_in(key, stalls))
    status: jax.Array  # int32: a Status value
    watch: Any = None  # a Watch when the floor / plateau / precision stops are on (else None)
    start_steps: Any = None  # int32: steps the start took (the split start's first stage; else 0)


class Watch(NamedTuple):
    """What the floor, plateau and precision stops track (one seed), and the best iterate."""

    floor: jax.Array  # the target's expected floor (0: no floor stop)
    best_loss: jax.Array  # lowest loss seen
    best_x: jax.Array  # (n, d) the iterate that had it
    mark_loss: jax.Array  # best loss when it last improved by more than plateau_rtol
    mark_step: jax.Array  # int32: ``steps`` at that time
    low_loss: Any = None  # with a precision stop: the loss when it last halved while <= precision_tol
    low_step: Any = None  # int32: ``steps`` at that time


def plateau_start(dtype):
    """``(mark_loss, since)`` of a phase's plateau rule at its start: no mark yet, no steps."""
    return jnp.asarray(jnp.inf, dtype), jnp.asarray(0, jnp.int32)


def plateau_after(mark_loss, since, value, fell):
    """``(mark_loss, since)`` after a step whose loss was ``value``: where the loss ``fell`` enough
    (the phase's rule), the mark moves to it and the count restarts; elsewhere the count grows.
    The rule of the first-order phase's hand-over and of the LM phase's stall."""
    return (jnp.where(fell, value, mark_loss).astype(mark_loss.dtype),
            jnp.where(fell, 0, since + 1).astype(jnp.int32))


class ReconResult(NamedTuple):
    """Result of one seed's attack."""

    x_hat: jax.Array  # (n, d)
    loss: jax.Array  # final loss at x_hat (unclipped)
    steps: jax.Array  # steps taken
    status: jax.Array  # a Status value
    stalls: jax.Array  # stalls (each followed by a stall action)
    floor: Any = None  # the target's noise floor when it has one (a defended theta; else None)


