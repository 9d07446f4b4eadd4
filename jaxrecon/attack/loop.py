"""The generic attack loop: any method's phases and stall actions over an explicit state.

::

    solver = make_solver(target, n, method)           # the method bound to the problem's shapes
    tgt    = attack_target(target, solver.method, n=solver.n)  # surrogate derivative, map prepared
    state  = init_state(solver, key, tgt)             # x_hat ~ N(0, I), or start="pursuit"
    state  = advance(solver, tgt, state, max_steps)   # lax.while_loop, per-seed stopping
    result = finalize(solver, tgt, state, max_steps)

Each phase runs as a ``lax.while_loop`` while the seed is in it; a phase that is done hands over
to the next one (with a fresh phase state), and the last phase, when done, marks the seed
:attr:`Phase.STALLED`. A stalled seed takes the first stall action that applies and restarts the
first phase. Under ``vmap`` seeds that have stopped do not change. After every step each row of
``x_hat`` is put back on the sphere of radius ``sqrt(d)`` (``radius=None`` keeps rows free). A
non-finite loss or gradient stops the seed with status ``NONFINITE`` and keeps its last finite
iterate: the attack never returns NaNs silently. A degenerate problem (all-zero ``theta``,
``p <= m`` feature rows, ``d = 1`` on the sphere: :mod:`~jaxrecon.attack.degenerate`) takes no
step: the seed starts with status ``DEGENERATE``.

Noisy targets. A released ``theta`` with noise (:mod:`jaxrecon.defences`) leaves the loss at the
training set at about the noise's energy outside the span, so ``L <= tol`` is out of reach. A
target that carries that ``floor`` (``Target.floor``) turns on two stops, checked every step:
*floor*, the loss is ``<= floor_factor * floor`` (status ``FLOOR``, the iterate kept as for
``CONVERGED``), and *plateau*, the best loss has not improved by a relative ``plateau_rtol`` over
``plateau_window`` steps (status ``PLATEAU``). With either stop on (a plateau window can be set
without a floor), the result is the best iterate seen when a seed ends on a plateau or the budget
(or is cut while running), and reports the target's floor. Without them the state has no
:class:`Watch` and the program is unchanged.

Precision. Without noise the training set is a zero of the loss, but float32 evaluates the loss
only down to a floor that grows with ``n * d`` and with correlated inputs, and can lie above
``tol``. A method with ``precision_tol`` stops a seed whose loss is ``<= precision_tol`` and has not
halved in ``precision_window`` steps, or whose last phase stalls at such a loss (status
``PRECISION``), and returns its best iterate: a stall action would otherwise discard a near-exact
iterate. It uses the same :class:`Watch`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from .. import _validate
from ..data.synthetic import project_to_sphere
from ..features.base import Target
from ..loss import projector_loss, residual_value_and_grad
from .degenerate import static_loss, static_reason, warn_if_degenerate, zero_theta
from .first_order import FirstOrderPhase
from .lm import LMPhase
from .auto import resolve
from .methods import DEFAULT_METHOD, Method, method_config
from .parts import Start
from .population import advance_population, best_member, init_population, summarize
from .prepare import Prepared, attack_target, first_stage_rows, with_split  # noqa: F401  (re-exported)
from .signs import choose_signs
from .split import SPLIT_TOL, check_split
from .start import Given, RandomStart, start_for
from .state import AttackState, Phase, ReconResult, Status
from .stops import Stops, apply_after, apply_before, best_iterate, init_watch, stops_for


def stop_rule(method: Method, has_floor: bool) -> Optional[Stops]:
    """The stops of ``method`` for a target with (``has_floor``) or without a noise floor
    (:func:`~jaxrecon.attack.stops.stops_for`)."""
    return stops_for(method.stop, has_floor, keep_best=method.stall.escalate > 0)


class Solver(NamedTuple):
    """A method bound to a problem size: its phases as pure functions of a prepared target."""

    method: Method
    n: int
    radius: Optional[float]
    loss_fn: Callable  # (tgt, x) -> loss
    phases: tuple  # FirstOrderPhase / LMPhase, in order
    degenerate: Optional[str] = None  # why the problem's shapes make it degenerate (no step is taken)
    stop: Optional[Stops] = None  # the floor / plateau / precision stops in force (jaxrecon.attack.stops)
    start: Any = RandomStart()  # how a seed starts and escalates (jaxrecon.attack.start.start_for)


    def project(self, x):
        return x if self.radius is None else project_to_sphere(x, self.radius)

    def fresh_x(self, key, d, dtype):
        """A new starting point: ``N(0, I)``, projected to the sphere when ``init="sphere"``."""
        x0 = jax.random.normal(key, (self.n, d), dtype)
        return self.project(x0) if self.method.start.init == "sphere" else x0


def make_solver(target: Target, n: int, method=DEFAULT_METHOD, total_steps: int = 10_000,
                radius: float | None | str = "sphere") -> Solver:
    """Bind a method (a name or a :class:`Method`) to a target's shapes. ``radius="sphere"`` means
    ``sqrt(d)``; ``total_steps`` sets the length of learning-rate schedules."""
    method = method if isinstance(method, Method) else method_config(method)
    n = _validate.positive_int("n", n)
    method = resolve(method, target.fmap, n)  # "auto": the recipe for this map (jaxrecon.attack.auto)
    radius = math.sqrt(target.fmap.input_dim) if radius == "sphere" else radius
    if method.start.kind == "split":
        check_split(target.fmap)
    jitter = method.loss.jitter
    loss_fn = lambda tgt, x: projector_loss(tgt.fmap, tgt.theta, x, jitter, method.loss.form)
    project = (lambda x: x) if radius is None else (lambda x: project_to_sphere(x, radius))
    # the residual form's gradient in closed form where the map has one (loss.residual_value_and_grad)
    value_and_grad = (None if method.loss.form != "residual" else
                      lambda tgt, x: residual_value_and_grad(tgt.fmap, tgt.theta, x, jitter))
    phases = [FirstOrderPhase(method.first_order, method.first_order.optimizer_fn(total_steps), loss_fn, project,
                              value_and_grad=value_and_grad)]
    if method.lm is not None:
        phases.append(LMPhase(method.lm, jitter, project))
    degenerate = static_reason(target.fmap, n, radius)
    return Solver(method, n, radius, loss_fn, tuple(phases), degenerate, stop_rule(method, target.floor is not None),
                  start_for(method, degenerate is not None))


def _where(c, new, old):
    return jax.tree_util.tree_map(lambda a, b: jnp.where(c, a, b), new, old)


def _with(states: tuple, i: int, value) -> tuple:
    return states[:i] + (value,) + states[i + 1:]


def split_solver(solver: Solver) -> Solver:
    """The solver of the split start's first stage: the same phases (the LM phase configured by
    ``split_lm`` when the method has one) and stall actions on the even target, random start,
    tolerance ``SPLIT_TOL``, no floor or plateau stops."""
    m = solver.method
    phases = solver.phases
    if m.start.split.lm is not None:
        phases = phases[:1] + (phases[1]._replace(config=m.start.split.lm),)
    first = dataclasses.replace(m, start=Start(kind="random", init=m.start.init), population=None,
                                stop=dataclasses.replace(m.stop, tol=max(m.stop.tol, SPLIT_TOL), plateau_window=0),
                                stall=dataclasses.replace(m.stall, escalate=0))
    return solver._replace(method=first, stop=None, phases=phases, start=start_for(first))


def init_split(solver: Solver, key: jax.Array, tgt: Target) -> AttackState:
    """The first stage's initial state (``tgt`` prepared by :func:`attack_target`)."""
    return _init_one(split_solver(solver), key, tgt.split.even)


def advance_split(solver: Solver, tgt: Target, state: AttackState, max_steps) -> AttackState:
    """The first stage, until its loss is ``<= SPLIT_TOL`` or ``max_steps`` steps."""
    return _advance_one(split_solver(solver), tgt.split.even, state, max_steps)


def finish_split(solver: Solver, tgt: Target, key: jax.Array, state: AttackState) -> AttackState:
    """The seed's initial state on ``theta`` after the first stage: the rows' signs chosen in one
    solve (:func:`~jaxrecon.attack.split.choose_signs`), the first stage's steps counted."""
    x0, _ = choose_signs(tgt.split, state.x_hat, solver.method.loss.jitter)
    return _init_one(solver, key, tgt, x0, state.steps)


def init_state(solver: Solver, key: jax.Array, target: Target, x0=None):
    """The initial state of one seed (``target`` prepared by :func:`attack_target`): an
    :class:`AttackState`, or a :class:`~jaxrecon.attack.population.PopulationState` for a method
    with a population (``x0``, if given, is then the first member's start)."""
    if solver.method.population is not None:
        pop = init_population(lambda k: _init_one(solver, k, target, None), key, solver.method.population.size)
        if x0 is None:
            return pop
        first = _init_one(solver, jax.random.split(key, solver.method.population.size)[0], target, x0)
        return summarize(jax.tree_util.tree_map(lambda a, b: a.at[0].set(b), pop.members, first))
    return _init_one(solver, key, target, x0)


def _init_one(solver: Solver, key: jax.Array, target: Target, x0=None, steps0=0) -> AttackState:
    dtype = jnp.result_type(target.theta.dtype, jnp.float32)
    start = solver.start if x0 is None else Given(x0, steps0)
    x0, first_state, loss, steps = start.init(solver, key, target, dtype)
    later = tuple(ph.init(x0, dtype) for ph in solver.phases[1:])
    i32 = lambda v: jnp.asarray(v, jnp.int32)
    status = jnp.where(zero_theta(target.theta), Status.DEGENERATE, Status.RUNNING)
    if solver.degenerate is not None:
        status = Status.DEGENERATE
    watch = None
    if solver.stop is not None:
        watch = init_watch(solver.stop, 0.0 if target.floor is None else target.floor, x0, steps, dtype)
    return AttackState(x_hat=x0, phase_states=(first_state,) + later, loss=loss, steps=i32(steps),
                       phase=i32(solver.phases[0].kind), phase_start=i32(steps), stalls=i32(0), key=key,
                       status=i32(status), watch=watch, start_steps=i32(steps))


def _phase_loop(solver: Solver, tgt: Target, i: int, max_steps) -> Callable:
    """``state -> state``: steps of phase ``i`` while the seed runs in it."""
    ph, phases, tol = solver.phases[i], solver.phases, solver.method.stop.tol

    def cond(s):
        return (s.status == Status.RUNNING) & (s.steps < max_steps) & (s.phase == ph.kind)

    def body(s):
        aux = s.phase_states[i]
        x_next, aux_next, value, ok = ph.step(tgt, s.x_hat, aux)
        converged = ok & (value <= tol)
        move = ok & ~converged
        status = jnp.where(~ok, Status.NONFINITE, jnp.where(converged, Status.CONVERGED, Status.RUNNING))
        if solver.stop is not None:  # the terminate parts (jaxrecon.attack.stops)
            s, move, status = apply_before(solver.stop, s, value, ok, move, status)
        steps = s.steps + move.astype(jnp.int32)
        if solver.stop is not None:
            status = apply_after(solver.stop, s, value, move, steps, status)
        s = s._replace(phase_states=_with(s.phase_states, i, _where(move, aux_next, aux)),
                       x_hat=_where(move, x_next, s.x_hat), loss=jnp.where(ok, value, s.loss).astype(s.loss.dtype),
                       steps=steps, status=status.astype(jnp.int32))
        if len(phases) == 1:  # a single phase never hands over
            return s
        done = move & ph.done(value, steps - s.phase_start, s.phase_states[i])
        if i + 1 < len(phases):
            nxt = phases[i + 1]
            fresh = _where(done, nxt.init(s.x_hat, s.loss.dtype), s.phase_states[i + 1])
            return s._replace(phase=jnp.where(done, nxt.kind, ph.kind).astype(jnp.int32),
                              phase_start=jnp.where(done, steps, s.phase_start).astype(jnp.int32),
                              phase_states=_with(s.phase_states, i + 1, fresh))
        return s._replace(phase=jnp.where(done, Phase.STALLED, ph.kind).astype(jnp.int32))

    return lambda s: jax.lax.while_loop(cond, body, s)


def _on_stall(solver: Solver, tgt: Target, s: AttackState) -> AttackState:
    """A stalled seed takes the first stall action that applies (keys ``fold_in(key, stalls)``)
    and restarts the first phase; other seeds are unchanged. With a precision stop, a seed that
    stalls at a loss ``<= precision_tol`` stops instead (status ``PRECISION``)."""
    stalled = s.phase == Phase.STALLED
    precision = None if solver.stop is None else solver.stop.precision
    if precision is not None:
        precise = stalled & precision.at_stall(s)
        s = s._replace(status=jnp.where(precise, Status.PRECISION, s.status).astype(jnp.int32))
        stalled = stalled & ~precise
    stalls = s.stalls + stalled.astype(jnp.int32)
    key = jax.random.fold_in(s.key, stalls)
    x_new = s.x_hat
    for action in reversed(solver.method.stall.actions):
        x_a, applies = action(solver, tgt, s.x_hat, key)
        x_new = jnp.where(applies, x_a, x_new)
    steps = s.steps
    escalate = solver.method.stall.escalate
    if escalate:  # every escalate-th stall: a fresh start (the best iterate stays in the watch)
        due = stalled & (stalls % escalate == 0)
        x_new = jnp.where(due, solver.start.fresh(solver, jax.random.fold_in(key, 7), tgt, s.x_hat), x_new)
        if s.watch is not None:  # the plateau and precision marks count from the fresh start
            w = s.watch
            inf = jnp.asarray(jnp.inf, w.mark_loss.dtype)
            w = w._replace(mark_loss=jnp.where(due, inf, w.mark_loss), mark_step=jnp.where(due, steps, w.mark_step))
            if w.low_loss is not None:
                w = w._replace(low_loss=jnp.where(due, inf, w.low_loss), low_step=jnp.where(due, steps, w.low_step))
            s = s._replace(watch=w)
    first = solver.phases[0]
    fresh = _where(stalled, first.init(x_new, s.loss.dtype), s.phase_states[0])
    return s._replace(x_hat=_where(stalled, x_new, s.x_hat), phase_states=_with(s.phase_states, 0, fresh),
                      phase=jnp.where(stalled, first.kind, s.phase).astype(jnp.int32),
                      phase_start=jnp.where(stalled, steps, s.phase_start).astype(jnp.int32), stalls=stalls)


def advance(solver: Solver, tgt: Target, state, max_steps):
    """Run until the seed stops or has taken ``max_steps`` steps in total (prepared target)."""
    if solver.method.population is not None:
        return advance_population(solver, tgt, state, max_steps, _advance_one)
    return _advance_one(solver, tgt, state, max_steps)


def _advance_one(solver: Solver, tgt: Target, state: AttackState, max_steps) -> AttackState:
    loops = [_phase_loop(solver, tgt, i, max_steps) for i in range(len(solver.phases))]
    if len(loops) == 1:
        return loops[0](state)

    def round_(s):
        for loop in loops:
            s = loop(s)
        # lax.cond skips the stall work of seeds that have not stalled (under vmap it is a select)
        return jax.lax.cond(s.phase == Phase.STALLED, lambda t: _on_stall(solver, tgt, t), lambda t: t, s)

    running = lambda s: (s.status == Status.RUNNING) & (s.steps < max_steps)
    return jax.lax.while_loop(running, round_, state)


def run_steps(solver: Solver, target: Target, state: AttackState, max_steps) -> AttackState:
    """Advance one seed until it stops or reaches ``max_steps`` total steps (pure; vmappable)."""
    return advance(solver, attack_target(target, solver.method, n=solver.n), state, max_steps)


def finalize(solver: Solver, tgt: Target, state, max_steps) -> ReconResult:
    """Evaluate the loss at the final iterate and mark seeds that ran out of steps (for a
    population: the best member, with the round clock as its steps and all members' stalls)."""
    if solver.method.population is not None:
        best = jax.tree_util.tree_map(lambda a: a[best_member(state.members)], state.members)
        res = finalize(solver._replace(method=dataclasses.replace(solver.method, population=None)), tgt, best,
                       max_steps)
        status = jnp.where((res.status == Status.BUDGET) & (state.status == Status.RUNNING) & (state.steps < max_steps),
                           Status.RUNNING, res.status)
        return res._replace(steps=state.steps, stalls=state.stalls, status=status.astype(jnp.int32))
    if solver.degenerate is not None:  # no loss to evaluate (the kernel may not even factor)
        final = jnp.full_like(state.loss, static_loss(solver.degenerate))
        return ReconResult(state.x_hat, final, state.steps, state.status, state.stalls)
    status = jnp.where((state.status == Status.RUNNING) & (state.steps >= max_steps), Status.BUDGET, state.status)
    x_hat, floor = state.x_hat, None
    if solver.stop is not None:  # the best-iterate wrapper (jaxrecon.attack.stops.best_iterate)
        x_hat = best_iterate(state, status)
        floor = None if tgt.floor is None else state.watch.floor  # a precision stop alone reports no floor
    final = solver.loss_fn(tgt, x_hat)
    final = jnp.where(jnp.isfinite(final), final, state.loss)
    final = jnp.where(state.status == Status.DEGENERATE, jnp.nan, final)
    status = jnp.where((status == Status.BUDGET) & (final <= solver.method.stop.tol), Status.CONVERGED, status)
    return ReconResult(x_hat, final, state.steps, status.astype(jnp.int32), state.stalls, floor)


def reconstruct(target: Target, key: jax.Array, n: int, *, method=DEFAULT_METHOD, steps: int = 10_000,
                radius: float | None | str = "sphere", x0=None, **method_options) -> ReconResult:
    """Reconstruct ``n`` training inputs from a target (pure; jit- and vmap-compatible).

    Args:
      target: :class:`~jaxrecon.Target` (feature map and ``theta``).
      key: PRNG key for the initial iterate.
      n: number of rows of ``x_hat`` (training samples to recover).
      method: a name from :data:`~jaxrecon.attack.METHODS` or a :class:`~jaxrecon.attack.Method`.
      steps: step budget.
      radius: row norm kept after each step (``"sphere"`` = ``sqrt(d)``; ``None`` = free rows).
      x0: optional start (``n x d``) instead of a random one (a prior guess, or a planted start
        near the training set to probe local identifiability); the method then does not escalate
        (``stall.escalate`` is off: a seed is never moved away from the given start to random rows).
      **method_options: overrides of the method's options (``lr=0.1``, ``cg_iters=40`` ...).

    Returns:
      :class:`ReconResult` with ``x_hat`` (``n x d``), final loss, steps, status and stalls. A
      degenerate problem (:mod:`~jaxrecon.attack.degenerate`) warns with its cause and returns the
      start with status ``DEGENERATE``.
    """
    steps = _validate.positive_int("steps", steps)
    method = method_config(method, **method_options)
    if x0 is not None and method.stall.escalate:  # a given start is studied, not abandoned for random rows
        method = dataclasses.replace(method, stall=dataclasses.replace(method.stall, escalate=0))
    solver = make_solver(target, n, method, steps, radius)
    warn_if_degenerate(target, n, solver.radius)
    tgt = attack_target(target, solver.method, n=n)  # prepared once: a dense V is generated once per call
    state = init_state(solver, key, tgt, x0)
    state = advance(solver, tgt, state, steps)
    return finalize(solver, tgt, state, steps)
