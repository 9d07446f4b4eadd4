"""The multi-seed driver: many seeds in one compiled program (mapped or vmapped), advanced in chunks.

:func:`build_program` compiles the program (vmapped seeds, optional sharding of the seeds over
devices); :func:`run_chunks` is the host loop (chunks of steps, progress, wall-clock budget);
:func:`reconstruct_seeds` composes the two.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from .. import _validate
from ..features.base import Target
from .loop import advance, advance_split, finalize, finish_split, init_split, init_state, make_solver
from .prepare import attack_target, first_stage_rows, with_split
from .auto import method_run, reason
from .degenerate import warn_if_degenerate
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
    method_run: str = ""  # what ran: for "auto", the recipe it chose (jaxrecon.attack.auto.choice)


class Program(NamedTuple):
    """A compiled multi-seed attack: ``advance(tgt, state, max_steps)`` and ``finalize(tgt, state)``
    with the prepared target and initial state they run on."""

    tgt: Target
    state: object  # vmapped AttackState
    advance: Callable
    finalize: Callable
    start_seconds: float = 0.0  # running the initial state (the split start's first stage), not compiling
    split: Optional["SplitStage"] = None  # the split start's first stage, run by the host loop before ``state``
    lockstep: bool = False  # the program's collectives span processes: every process runs the same chunks


def spans_processes(target: Target, seed_shards: int = 1) -> bool:
    """Whether a program on ``target`` runs collectives across processes (a sharded map or seeds
    split over the devices of several processes): then every process must run the same chunks
    and stop at the same one (:func:`run_chunks` agrees on them with process 0)."""
    if jax.process_count() == 1:
        return False
    return getattr(target.fmap, "shards", 1) > 1 or seed_shards > 1


def _agree(size: int, code: int) -> tuple:
    """``(size, code)`` as process 0 decided them (its chunk sizer; its signals and time budget)."""
    from jax.experimental import multihost_utils

    got = np.asarray(multihost_utils.broadcast_one_to_all(np.asarray([size, code], np.int32)))
    return int(got[0]), int(got[1])


class SplitStage(NamedTuple):
    """The split start's first stage as a chunked program (:mod:`jaxrecon.attack.split`): its
    initial state, ``advance(tgt, state, max_steps)`` and ``finish(tgt, state) -> main state``."""

    state: object
    advance: Callable
    finish: Callable
    max_steps: int


def _check_seed_shards(seeds: int, seed_shards: int) -> None:
    if seed_shards > len(jax.devices()):
        raise ValueError(f"seed_shards: {seed_shards} devices requested but only {len(jax.devices())} "
                         f"available; on CPU, simulate them with "
                         f"XLA_FLAGS=--xla_force_host_platform_device_count={seed_shards}")
    if seeds % seed_shards:
        raise ValueError(f"seed_shards: seeds={seeds} must be a multiple of seed_shards={seed_shards}")


#: How the seeds of one program are batched: ``"map"`` (``lax.map``, one seed after another
#: through the same one-seed program), ``"vmap"`` (one batched program), ``"auto"`` (map on
#: CPUs, vmap on accelerators).
BATCHINGS = ("auto", "map", "vmap")


def seed_batching(batching: str = "auto") -> str:
    """Resolve ``"auto"``: ``"map"`` on CPUs, ``"vmap"`` on accelerators.

    With ``"map"`` a seed's numbers do not depend on how many seeds run beside it: every seed runs
    the same one-seed program, so ``seeds=1``, ``2`` and ``10`` give seed 0 the same bits. With
    ``"vmap"`` XLA picks kernels by the batch size, so the last bits of a seed's iterates change
    with the number of seeds, and chaotic trajectories (the LM phase near the threshold) then end
    in different places: d=25, n=6, p=1.5dn, ``adam-lm``, 2000 steps, seed 1 ends at loss 4.1e-3,
    1.7e-3, 2.0e-3 with 2, 4, 10 seeds (max ``|dx|`` up to 4.3) on a CPU, and seeds 0-1 move by
    up to 2.6 between 2 and 4 seeds on an H200. Measured cost of ``"map"`` (d=25, n=6, p=10dn, 8
    seeds): on a 2-core CPU none (run 0.7-0.9 s vs 1.0-1.2 s for ``"vmap"``, compile 4.3-6.0 s vs
    5.8-8.1 s; 8000 steps without stopping 2.1 s vs 3.1 s); on an H200 about 4 times slower (0.78 s
    vs 0.20 s; 5.1 s vs 1.2 s at p=1.5dn), since one seed does not fill the device.
    """
    _validate.choice("batching", batching, BATCHINGS)
    if batching == "auto":
        return "map" if jax.default_backend() == "cpu" else "vmap"
    return batching


def over_seeds(fn: Callable, target_axis: Optional[int], batching: str) -> Callable:
    """``fn(tgt, state, *rest)`` of one seed applied to every seed (leading axis of ``state``, and
    of ``tgt`` when ``target_axis=0``), by ``lax.map`` or ``vmap`` (:func:`seed_batching`)."""
    if batching == "vmap":
        return lambda t, s, *rest: jax.vmap(lambda tt, ss: fn(tt, ss, *rest), in_axes=(target_axis, 0))(t, s)
    if target_axis is None:
        return lambda t, s, *rest: jax.lax.map(lambda ss: fn(t, ss, *rest), s)
    return lambda t, s, *rest: jax.lax.map(lambda ts: fn(ts[0], ts[1], *rest), (t, s))


def build_program(target: Target, key: jax.Array, n: int, seeds: int, method, steps: int, radius,
                  target_axis: Optional[int] = None, seed_shards: int = 1, batching: str = "auto") -> Program:
    """Prepare the target, initialise ``seeds`` states and compile the chunk program.

    Seed ``s`` starts from ``jax.random.split(key, seeds)[s]``. ``target_axis=0`` maps over a
    batched target (one per seed); ``None`` shares one target. ``batching``: see
    :func:`seed_batching`. ``seed_shards=k`` splits the seeds over the first ``k`` devices (each
    device maps over its own seeds with ``batching="map"``; XLA partitions the batched program
    with ``"vmap"``). With ``"vmap"``, one seed with a shared target runs an unbatched program
    (``lax.cond`` then skips untaken branches).
    """
    batching = seed_batching(batching)
    one_target = target if target_axis is None else jax.tree_util.tree_map(lambda a: a[0], target)
    solver = make_solver(one_target, n, method, steps, radius)
    keys = jax.random.split(key, seeds)
    prep = lambda t: attack_target(t, solver.method, split=False)
    tgt = jax.jit(prep if target_axis is None else jax.vmap(prep))(target)
    if solver.method.start.kind == "split" and solver.degenerate is None:
        rows = first_stage_rows(solver.method, one_target.fmap.p, one_target.fmap.input_dim, n)
        tgt = with_split(tgt, batched=target_axis is not None, rows=rows)  # shares the map's V, or copies a prefix
        if solver.method.population is None and seed_shards == 1:
            return _split_program(solver, tgt, keys, steps, target_axis, batching)
    init = jax.jit(over_seeds(lambda t, k: init_state(solver, k, t), target_axis, batching))
    advance_fn = over_seeds(lambda t, s, m: advance(solver, t, s, m), target_axis, batching)
    if seeds == 1 and target_axis is None and batching == "vmap":
        tree = jax.tree_util.tree_map
        advance_fn = lambda t, s, m: tree(lambda a: a[None], advance(solver, t, tree(lambda a: a[0], s), m))
    step_fn = jax.jit(advance_fn)
    fin = jax.jit(over_seeds(lambda t, s: finalize(solver, t, s, steps), target_axis, batching))
    if seed_shards > 1:  # seeds split over devices, the target replicated (or split, when batched)
        P = jax.sharding.PartitionSpec
        mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:seed_shards]), ("seeds",))
        by_seed, whole = jax.sharding.NamedSharding(mesh, P("seeds")), jax.sharding.NamedSharding(mesh, P())
        tgt_spec = P() if target_axis is None else P("seeds")
        tgt = jax.device_put(tgt, whole if target_axis is None else by_seed)
        keys = jax.device_put(keys, by_seed)
        if batching == "map":
            step_fn = jax.jit(jax.shard_map(advance_fn, mesh=mesh, in_specs=(tgt_spec, P("seeds"), P()),
                                            out_specs=P("seeds"), check_vma=False))
        else:
            step_fn = jax.jit(advance_fn, in_shardings=(whole if target_axis is None else by_seed, by_seed, whole),
                              out_shardings=by_seed)
    init_compiled = init.lower(tgt, keys).compile()
    t_start = time.perf_counter()
    state = jax.block_until_ready(init_compiled(tgt, keys))
    start_seconds = time.perf_counter() - t_start
    if seed_shards > 1:
        state = jax.device_put(state, by_seed)
    compiled = step_fn.lower(tgt, state, 0).compile()
    return Program(tgt, state, compiled, fin, start_seconds, lockstep=spans_processes(one_target, seed_shards))


def _split_program(solver, tgt: Target, keys, steps: int, target_axis, batching: str) -> Program:
    """:func:`build_program` for a method with the split start: the first stage (on the even
    target) and the rest are two chunked programs, so that progress, the time budget and signals
    reach the first stage too; same numbers as :func:`~jaxrecon.attack.loop.reconstruct`."""
    over = lambda fn: jax.jit(over_seeds(fn, target_axis, batching))
    init = over(lambda t, k: init_split(solver, k, t))
    advance_split_fn = over(lambda t, s, m: advance_split(solver, t, s, m)).lower(
        tgt, jax.eval_shape(init, tgt, keys), 0).compile()
    finish = over(lambda t, ks: finish_split(solver, t, ks[0], ks[1]))
    state = jax.block_until_ready(init(tgt, keys))
    main = jax.eval_shape(finish, tgt, (keys, state))
    compiled = jax.jit(over_seeds(lambda t, s, m: advance(solver, t, s, m), target_axis, batching)).lower(
        tgt, main, 0).compile()
    fin = jax.jit(over_seeds(lambda t, s: finalize(solver, t, s, steps), target_axis, batching))
    stage = SplitStage(state, advance_split_fn, lambda t, s: finish(t, (keys, s)),
                       min(solver.method.start.split.steps, steps))
    return Program(tgt, None, compiled, fin, 0.0, stage, lockstep=spans_processes(tgt, 1))


def run_split_stage(program: Program, chunk: int, t0: float, progress: bool, time_budget, callback) -> Program:
    """Run the split start's first stage in chunks (its own progress line) and hand its rows,
    with their signs chosen, to the main program; the first stage ends early on the time budget
    or a signal as the main loop would (the main loop then stops at once)."""
    stage = program.split
    if progress:
        p, rows = program.tgt.fmap.p, program.tgt.split.even.theta.shape[-1]
        on = "" if rows >= p else f", on the first {rows:,} of {p:,} features"
        print(f"split start: rows up to sign first (the even part of theta{on})", file=sys.stderr, flush=True)
    first = Program(program.tgt, stage.state, stage.advance, None, lockstep=program.lockstep)
    state, _, _ = run_chunks(first, stage.max_steps, chunk, t0, progress, time_budget, callback)
    return program._replace(state=stage.finish(program.tgt, state), split=None)


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
    shown = Progress(steps, seeds, progress, t0=t0)
    # steps a start already took (the split start's first stage, several candidates) count
    done_steps, interrupted = min(int(np.min(np.asarray(state.steps))), steps), False
    before = phases_running(state)
    over_budget = False
    try:
        while done_steps < steps:
            size = min(sizer.next(), steps - done_steps)
            code = 1 if stop_requested() else 2 if over_budget else 0  # 1: a signal, 2: the time budget
            if program.lockstep:  # chunks sized by time differ between processes: process 0 decides
                size, code = _agree(size, code)
            if code:
                interrupted = code == 1
                break
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
            if np.all(status != Status.RUNNING):
                break
            if time_budget is not None and now >= time_budget:
                over_budget = True
                if not program.lockstep:
                    break
    finally:
        shown.close()
    return state, seconds, interrupted


def reconstruct_seeds(target: Target, key: jax.Array, n: int, seeds: int, *, method=DEFAULT_METHOD,
                      steps: int = 10_000, radius: float | None | str = "sphere", chunk: int = 250,
                      progress: bool = True, target_axis: Optional[int] = None,
                      time_budget: Optional[float] = None, callback: Optional[Callable] = None,
                      seed_shards: int = 1, batching: str = "auto", **method_options) -> SeedsResult:
    """Run ``seeds`` attacks in one compiled program (``batching``: :func:`seed_batching`), in chunks of steps.

    Seed ``s`` starts from ``jax.random.split(key, seeds)[s]``, so results equal those of
    :func:`~jaxrecon.attack.reconstruct` called with that key. ``target_axis=0`` vmaps over a batched
    target (one target per seed, as in sweeps); ``None`` shares one target.

    ``time_budget`` (seconds, compilation included) stops after the first chunk that ends past
    it; running seeds then report status ``"budget"``. ``callback(elapsed_seconds, state)`` is
    called after every chunk with the vmapped state (for traces of loss vs time).
    ``seed_shards=k`` splits the seeds over the first ``k`` devices (``seeds`` a multiple of
    ``k``): same numbers as one device.

    Reproducibility: seed ``s``'s result depends only on its key, the target and the options when
    the seeds are mapped (``batching="map"``, the default on CPUs: :func:`seed_batching`), so a
    seed rerun alone (``key=split(key, seeds)[s]``, one seed) or among any number of seeds gives
    the same bits on the same machine and JAX version. With ``"vmap"`` (the default on
    accelerators) the same command with the same number of seeds gives the same bits, and another
    number of seeds the same result only up to rounding, which a chaotic trajectory can amplify.
    A degenerate problem (:mod:`~jaxrecon.attack.degenerate`) warns with its cause. Inside :func:`jaxrecon.signals.handle_signals`, a SIGINT
    or SIGTERM stops the loop before its next chunk; seeds still running report ``"interrupted"``.
    """
    seeds = _validate.positive_int("seeds", seeds)
    seed_shards = _validate.positive_int("seed_shards", seed_shards)
    if seed_shards > 1:
        _check_seed_shards(seeds, seed_shards)
    steps = _validate.positive_int("steps", steps)
    chunk = _validate.positive_int("chunk", chunk)
    asked = method
    method = method_config(method, **method_options)
    warn_if_degenerate(target, n, math.sqrt(target.fmap.input_dim) if radius == "sphere" else radius,
                       batched=target_axis is not None)
    is_auto = asked == "auto" if isinstance(asked, str) else getattr(getattr(asked, "start", None), "kind", None) == "auto"
    if progress and is_auto:
        print(reason(target.fmap, n), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    program = build_program(target, key, n, seeds, method, steps, radius, target_axis, seed_shards, batching)
    compile_seconds = time.perf_counter() - t0 - program.start_seconds
    if program.split is not None:
        program = run_split_stage(program, chunk, t0, progress, time_budget, callback)
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
                       [names[int(s)] for s in status], seconds, compile_seconds, np.asarray(res.stalls),
                       method_run(asked if isinstance(asked, str) else method, target.fmap, n))

