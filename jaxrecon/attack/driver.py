"""The multi-seed driver: many seeds vmapped in one compiled program, advanced in chunks.

:func:`build_program` compiles the program (vmapped seeds, optional sharding of the seeds over
devices); :func:`run_chunks` is the host loop (chunks of steps, progress, wall-clock budget);
:func:`reconstruct_seeds` composes the two.
"""

from __future__ import annotations

import time
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from .. import _validate
from ..features.base import Target
from .loop import advance, attack_target, finalize, init_state, make_solver
from .methods import DEFAULT_METHOD, method_config
from ..signals import stop_requested
from .progress import ChunkSizer, Progress, phases_running
from .state import STATUS_NAMES, Status

#: Status code of seeds still running when a signal stopped the host loop (results only: a seed's
#: state never holds it). Reported as ``"interrupted"``.
INTERRUPTED = max(int(s) for s in Status) + 100


class SeedsResult(NamedTuple):
    """Results of :func:`reconstruct_seeds` (leading axis: seeds) with timing."""

    x_hat: np.ndarray  # (S, n, d)
    loss: np.ndarray  # (S,)
    steps: np.ndarray  # (S,)
    status: list  # status names
    seconds: np.ndarray  # (S,) wall-clock until each seed stopped (chunk resolution), compile included
    compile_seconds: float
    stalls: np.ndarray  # (S,)


class Program(NamedTuple):
    """A compiled multi-seed attack: ``advance(tgt, state, max_steps)`` and ``finalize(tgt, state)``
    with the prepared target and initial state they run on."""

    tgt: Target
    state: object  # vmapped AttackState
    advance: Callable
    finalize: Callable


def _check_seed_shards(seeds: int, seed_shards: int) -> None:
    if seed_shards > len(jax.devices()):
        raise ValueError(f"seed_shards: {seed_shards} devices requested but only {len(jax.devices())} "
                         f"available; on CPU, simulate them with "
                         f"XLA_FLAGS=--xla_force_host_platform_device_count={seed_shards}")
    if seeds % seed_shards:
        raise ValueError(f"seed_shards: seeds={seeds} must be a multiple of seed_shards={seed_shards}")


def build_program(target: Target, key: jax.Array, n: int, seeds: int, method, steps: int, radius,
                  target_axis: Optional[int] = None, seed_shards: int = 1) -> Program:
    """Prepare the target, initialise ``seeds`` states and compile the chunk program.

    Seed ``s`` starts from ``jax.random.split(key, seeds)[s]``. ``target_axis=0`` vmaps over a
    batched target (one per seed); ``None`` shares one target. ``seed_shards=k`` splits the seeds
    over the first ``k`` devices (XLA partitions the vmapped program along the seed axis). One
    seed with a shared target runs an unbatched program (``lax.cond`` then skips untaken branches).
    """
    one_target = target if target_axis is None else jax.tree_util.tree_map(lambda a: a[0], target)
    solver = make_solver(one_target, n, method, steps, radius)
    keys = jax.random.split(key, seeds)
    prep = lambda t: attack_target(t, solver.method)
    tgt = jax.jit(prep if target_axis is None else jax.vmap(prep))(target)
    init = jax.jit(jax.vmap(lambda k, t: init_state(solver, k, t), in_axes=(0, target_axis)))
    advance_fn = jax.vmap(lambda t, s, m: advance(solver, t, s, m), in_axes=(target_axis, 0, None))
    if seeds == 1 and target_axis is None:
        tree = jax.tree_util.tree_map
        advance_fn = lambda t, s, m: tree(lambda a: a[None], advance(solver, t, tree(lambda a: a[0], s), m))
    step_fn = jax.jit(advance_fn)
    fin = jax.jit(jax.vmap(lambda t, s: finalize(solver, t, s, steps), in_axes=(target_axis, 0)))
    if seed_shards > 1:  # seeds split over devices, the target replicated (or split, when batched)
        mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:seed_shards]), ("seeds",))
        by_seed = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("seeds"))
        whole = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        tgt = jax.device_put(tgt, whole if target_axis is None else by_seed)
        keys = jax.device_put(keys, by_seed)
        step_fn = jax.jit(advance_fn, in_shardings=(whole if target_axis is None else by_seed, by_seed, whole),
                          out_shardings=by_seed)
    state = init(keys, tgt)
    if seed_shards > 1:
        state = jax.device_put(state, by_seed)
    compiled = step_fn.lower(tgt, state, 0).compile()
    return Program(tgt, state, compiled, fin)


def run_chunks(program: Program, steps: int, chunk: int, t0: float, progress: bool = True,
               time_budget: Optional[float] = None, callback: Optional[Callable] = None):
    """The host loop: advance in chunks until every seed stopped, ``steps`` are spent, the
    wall-clock ``time_budget`` (seconds since ``t0``) is passed or a signal asked to stop
    (:func:`jaxrecon.signals.stop_requested`, checked before every chunk).

    Chunks are sized to take a few seconds each and at most ``chunk`` steps
    (:class:`~jaxrecon.attack.progress.ChunkSizer`); the results do not depend on the sizes. Returns ``(final state, seconds until each seed stopped, interrupted)``."""
    state = program.state
    seeds = int(np.asarray(state.status).shape[0])
    seconds = np.full(seeds, np.nan)
    sizer = ChunkSizer(chunk, len(state.phase_states))
    shown = Progress(steps, seeds, progress)
    done_steps, interrupted = 0, False
    before = phases_running(state)
    try:
        while done_steps < steps:
            if stop_requested():
                interrupted = True
                break
            size = min(sizer.next(), steps - done_steps)
            t_chunk = time.perf_counter()
            state = program.advance(program.tgt, state, done_steps + size)
            status = np.asarray(state.status)
            after = phases_running(state)
            sizer.timed(size, time.perf_counter() - t_chunk, before | after)
            done_steps, before = done_steps + size, after
            now = time.perf_counter() - t0
            seconds[(status != Status.RUNNING) & np.isnan(seconds)] = now
            shown.update(done_steps, state)
            if callback is not None:
                callback(now, state)
            if np.all(status != Status.RUNNING) or (time_budget is not None and now >= time_budget):
                break
    finally:
        shown.close()
    return state, seconds, interrupted


def reconstruct_seeds(target: Target, key: jax.Array, n: int, seeds: int, *, method=DEFAULT_METHOD,
                      steps: int = 10_000, radius: float | None | str = "sphere", chunk: int = 250,
                      progress: bool = True, target_axis: Optional[int] = None,
                      time_budget: Optional[float] = None, callback: Optional[Callable] = None,
                      seed_shards: int = 1, **method_options) -> SeedsResult:
    """Run ``seeds`` attacks vmapped in one compiled program, in chunks of steps.

    Seed ``s`` starts from ``jax.random.split(key, seeds)[s]``, so results equal those of
    :func:`~jaxrecon.attack.reconstruct` called with that key. ``target_axis=0`` vmaps over a batched
    target (one target per seed, as in sweeps); ``None`` shares one target.

    ``time_budget`` (seconds, compilation included) stops after the first chunk that ends past
    it; running seeds then report status ``"budget"``. ``callback(elapsed_seconds, state)`` is
    called after every chunk with the vmapped state (for traces of loss vs time).
    ``seed_shards=k`` splits the seeds over the first ``k`` devices (``seeds`` a multiple of
    ``k``): same numbers as one device. Inside :func:`jaxrecon.signals.handle_signals`, a SIGINT
    or SIGTERM stops the loop before its next chunk; seeds still running report ``"interrupted"``.
    """
    seeds = _validate.positive_int("seeds", seeds)
    seed_shards = _validate.positive_int("seed_shards", seed_shards)
    if seed_shards > 1:
        _check_seed_shards(seeds, seed_shards)
    steps = _validate.positive_int("steps", steps)
    chunk = _validate.positive_int("chunk", chunk)
    method = method_config(method, **method_options)
    t0 = time.perf_counter()
    program = build_program(target, key, n, seeds, method, steps, radius, target_axis, seed_shards)
    compile_seconds = time.perf_counter() - t0
    state, seconds, interrupted = run_chunks(program, steps, chunk, t0, progress, time_budget, callback)
    res = program.finalize(program.tgt, state)
    seconds[np.isnan(seconds)] = time.perf_counter() - t0
    if time_budget is not None and not interrupted:  # seeds cut by the wall-clock budget ran out of it
        res = res._replace(status=jnp.where(res.status == Status.RUNNING, Status.BUDGET, res.status))
    names = {**STATUS_NAMES, INTERRUPTED: "interrupted"}
    status = np.asarray(res.status)
    if interrupted:  # seeds still running when a signal stopped the loop
        status = np.where(status == Status.RUNNING, INTERRUPTED, status)
    return SeedsResult(np.asarray(res.x_hat), np.asarray(res.loss), np.asarray(res.steps),
                       [names[int(s)] for s in status], seconds, compile_seconds, np.asarray(res.stalls))

