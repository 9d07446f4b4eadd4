"""A population of attacks per seed: ``K`` independent starts advanced together in rounds.

Near the threshold ``p ~ d n`` the projector loss has many spurious minima and the basin of the
training set shrinks, so a single start reaches a zero only with some probability ``q``; ``K``
starts reach one with probability ``1 - (1 - q)^K``. Members are vmapped (one program), advanced
``round_steps`` steps at a time; the seed stops as soon as one member converges. Between rounds
the worst ``cull`` fraction of members (by loss) is restarted from fresh random points.

The seed's state is a :class:`PopulationState`: the members (leading axis ``K``) and a summary
with the attribute names of :class:`~jaxrecon.attack.state.AttackState` that drivers read
(``x_hat``, ``loss``, ``steps``, ``phase``, ``stalls``, ``status``: those of the best member;
``steps`` is the round clock, each member's step count; the work is ``K`` times that).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .. import _validate
from .state import AttackState, Status


@dataclasses.dataclass(frozen=True)
class Population:
    """``size`` starts per seed, advanced ``round_steps`` steps per round; after each round the
    worst ``cull`` fraction of the running members is restarted from fresh random points."""

    size: int = 8
    round_steps: int = 200
    cull: float = 0.0

    def validate(self) -> "Population":
        _validate.positive_int("population", self.size)
        _validate.positive_int("round_steps", self.round_steps)
        if not 0.0 <= self.cull < 1.0:
            raise ValueError(f"cull: must be in [0, 1), got {self.cull!r}")
        return self


class PopulationState(NamedTuple):
    """Members (leading axis ``K``) and the summary drivers read (see the module docstring)."""

    members: AttackState
    x_hat: jax.Array
    loss: jax.Array
    steps: jax.Array
    phase: jax.Array
    stalls: jax.Array
    status: jax.Array

    @property
    def phase_states(self) -> tuple:
        return self.members.phase_states


def best_member(members: AttackState) -> jax.Array:
    """Index of the best member: a converged one if any, else the lowest finite loss."""
    score = jnp.where(jnp.isfinite(members.loss), members.loss, jnp.inf)
    score = jnp.where(members.status == Status.FLOOR, -1.0, score)
    score = jnp.where(members.status == Status.PRECISION, -1.5, score)
    score = jnp.where(members.status == Status.CONVERGED, -2.0, score)
    return jnp.argmin(score)


def summarize(members: AttackState) -> PopulationState:
    """The population state of ``members``: the best member's view, and the seed's status
    (converged as soon as one member is, then at precision or at the floor as soon as one member
    is; running while any runs; else non-finite / degenerate when every member is, plateau when one
    member ended on one, else budget)."""
    i = best_member(members)
    st = members.status
    rules = ((jnp.any(st == Status.CONVERGED), Status.CONVERGED), (jnp.any(st == Status.PRECISION), Status.PRECISION),
             (jnp.any(st == Status.FLOOR), Status.FLOOR), (jnp.any(st == Status.RUNNING), Status.RUNNING),
             (jnp.all(st == Status.NONFINITE), Status.NONFINITE), (jnp.all(st == Status.DEGENERATE), Status.DEGENERATE),
             (jnp.any(st == Status.PLATEAU), Status.PLATEAU))
    status = jnp.asarray(Status.BUDGET, jnp.int32)
    for cond, value in reversed(rules):  # the first rule that holds decides
        status = jnp.where(cond, value, status)
    return PopulationState(members, members.x_hat[i], members.loss[i], jnp.max(members.steps),
                           members.phase[i], jnp.sum(members.stalls), status.astype(jnp.int32))


def init_population(init_one, key: jax.Array, size: int) -> PopulationState:
    """``size`` members started by ``init_one(key)`` from ``split(key, size)``."""
    return summarize(jax.vmap(init_one)(jax.random.split(key, size)))


def _cull(solver, tgt, members: AttackState, pop: Population, key) -> AttackState:
    """Restart the worst ``cull`` fraction of running members (fresh point, first phase)."""
    k = int(pop.cull * pop.size)
    if k == 0:
        return members
    score = jnp.where((members.status == Status.RUNNING) & jnp.isfinite(members.loss), members.loss, -jnp.inf)
    worst = jnp.argsort(-score)[:k]
    mask = jnp.zeros(pop.size, bool).at[worst].set(True) & (members.status == Status.RUNNING)
    d, dtype = members.x_hat.shape[-1], members.x_hat.dtype
    fresh_x = jax.vmap(lambda kk: solver.fresh_x(kk, d, dtype))(jax.random.split(key, pop.size))
    first = solver.phases[0]
    fresh_first = jax.vmap(lambda x: first.init(x, dtype))(fresh_x)
    sel = lambda new, old: jnp.where(mask.reshape((-1,) + (1,) * (old.ndim - 1)), new, old)
    states = (jax.tree_util.tree_map(sel, fresh_first, members.phase_states[0]),) + members.phase_states[1:]
    return members._replace(x_hat=sel(fresh_x, members.x_hat), phase_states=states,
                            loss=jnp.where(mask, jnp.inf, members.loss).astype(members.loss.dtype),
                            phase=jnp.where(mask, first.kind, members.phase).astype(jnp.int32),
                            phase_start=jnp.where(mask, members.steps, members.phase_start).astype(jnp.int32))


def advance_population(solver, tgt, ps: PopulationState, max_steps, advance_one) -> PopulationState:
    """Rounds of ``round_steps`` steps for every member until one converges, all stop or every
    member has taken ``max_steps`` steps."""
    pop = solver.method.population

    def cond(s):
        return (s.status == Status.RUNNING) & (s.steps < max_steps)

    def body(s):
        # rounds end at multiples of round_steps, whatever the host loop's chunks: a chunk that ends
        # inside a round cuts it there and the next chunk finishes it (the same numbers either way)
        end = (s.steps // pop.round_steps + 1) * pop.round_steps
        until = jnp.minimum(end, max_steps)
        members = jax.vmap(lambda m: advance_one(solver, tgt, m, until))(s.members)
        running = summarize(members).status == Status.RUNNING
        key = jax.random.fold_in(members.key[0], until)
        members = jax.lax.cond(running & (until == end), lambda m: _cull(solver, tgt, m, pop, key),
                               lambda m: m, members)
        out = summarize(members)
        # the seed's outcome is decided at a round's end: cut by a chunk, it runs on to the end
        # (unless no member runs any more), so the chunks never change where it stops
        undecided = (until < end) & jnp.any(members.status == Status.RUNNING)
        return out._replace(status=jnp.where(undecided, Status.RUNNING, out.status).astype(jnp.int32))

    return jax.lax.while_loop(cond, body, ps)
