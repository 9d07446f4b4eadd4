"""Running a sweep: compile ahead, run the points, append their rows, report thresholds and figures."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from ..distributed import process_count, process_index
from ..io import made_dir, out_dir
from ..signals import stop_requested
from . import lock
from .config import ResolvedSweep, SweepConfig, load_config
from .points import GridPoint, PointOutput, ProgramCache, check_sizes, compiled_program, grid, pad_width, \
    point_rows, program_key, run_point
from .shards import done_seeds, merge_shards, open_shard, wait_for_markers, write_marker
from .split import Unit, split
from .store import _check_meta, append_rows, finish_meta, prepare_out, read_results, to_table


def _check_x64(resolved: ResolvedSweep) -> None:
    """A float64 sweep needs float64 enabled by the caller (the CLI does; library users run it
    inside ``with jaxrecon.x64():``): a one-line ``ValueError`` otherwise, before any work."""
    if resolved.x64 and not jax.config.jax_enable_x64:
        raise ValueError("x64: float64 is not enabled; run inside `with jaxrecon.x64():` (the CLI does)")


def _as_config(config) -> SweepConfig:
    if isinstance(config, (str, Path)):
        return load_config(config)
    if isinstance(config, dict):
        return SweepConfig.from_dict(config)
    return config


def _check_bootstrap(bootstrap) -> None:
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0:
        raise ValueError(f"bootstrap: must be a non-negative integer, got {bootstrap!r}")


def sweep(config, out=None, progress: bool = True, plots: bool = True, log=print,
          bootstrap: int = 1000, compile_workers: int = 2, cache: Optional[ProgramCache] = None) -> dict:
    """Run a sweep; return its results table (dict of NumPy arrays, columns :data:`COLUMNS`).

    Args:
      config: a :class:`SweepConfig`, a dict of its fields, or the path of a config file.
      out: directory for ``results.csv``, ``sweep.json``, ``thresholds.csv`` and figures
        (``None``: nothing written, nothing resumed). The run holds ``out``'s lock: a second
        sweep into the same directory is refused while this one runs.
      progress: a progress bar over grid points (with an ETA); ``log`` gets one line per point.
      plots: write ``law.png/.pdf``, ``residuals.png``, ``collapse.png`` at the end.
      log: where lines go (``None``: silent).
      bootstrap: bootstrap resamples for the threshold spread.
      compile_workers: programs compiled at once, ahead of the points that need them.
      cache: compiled programs to reuse and fill (default: a fresh cache for this run).

    Inside :func:`jaxrecon.signals.handle_signals`, a SIGINT or SIGTERM stops the sweep before its
    next grid point (finished points are already in ``results.csv``); the report and figures are
    then skipped and the table holds the finished points.

    In a job of several processes (:mod:`jaxrecon.distributed`), each runs its share of the grid
    into ``out/shards/`` and process 0 merges ``results.csv`` and reports (:func:`_sweep_processes`).

    Every check of the config and its sizes runs before anything is written.
    """
    resolved = _as_config(config).resolved()
    points = grid(resolved)
    _check_bootstrap(bootstrap)
    check_sizes(resolved, points)
    _check_x64(resolved)
    log_to_stdout = log is print
    log = log or (lambda *a, **k: None)
    cache = ProgramCache() if cache is None else cache
    if process_count() > 1:
        return _sweep_processes(resolved, points, out, cache, progress, plots, log, log_to_stdout, bootstrap,
                                compile_workers)
    with contextlib.ExitStack() as stack:
        done = {}
        if out is not None:  # a directory this sweep makes is removed again if it is refused
            out = stack.enter_context(made_dir(out))
            stack.enter_context(lock.hold(out))
            done = prepare_out(out, resolved, points)
        done, todo, (total, compile_total) = _run(resolved, points, done, out, cache, progress, log,
                                                  log_to_stdout, compile_workers)
        table = to_table([r for pt in points for r in done.get(pt.key(), [])])
        if stop_requested():  # stopped by a signal between points: what is done is in results.csv
            return table
        if out is not None:
            finish_meta(out, len(todo), total, compile_total)
        report(table, out, plots=plots, bootstrap=bootstrap, seed=resolved.seed, log=log)
    return table


def _start_processes(resolved: ResolvedSweep, points: list[GridPoint], out: Path, stack) -> tuple[dict, str]:
    """Process 0 takes ``out``'s lock, checks or writes ``sweep.json`` and reads the finished
    ``(point, seed)`` keys; every process receives them (and a run id, or process 0's error) in one
    broadcast, so all split the same work. Returns ``({point key: seeds}, run id)``."""
    from jax.experimental import multihost_utils

    S, mask, error = resolved.seeds, np.zeros((len(points), resolved.seeds), np.int32), b""
    run = np.frombuffer(os.urandom(8), np.int32).copy()
    if process_index() == 0:
        try:
            stack.enter_context(lock.hold(out))
            _check_meta(out, resolved, points)
            done = done_seeds(out, resolved, points)
            for j, pt in enumerate(points):
                mask[j, sorted(done.get(pt.key(), ()))] = 1
        except ValueError as e:
            error = str(e).encode()[:1000]
    msg = np.zeros(1000, np.int32)
    msg[:len(error)] = np.frombuffer(error, np.uint8)
    mask, msg, run = (np.asarray(a) for a in multihost_utils.broadcast_one_to_all((mask, msg, run)))
    if msg.any():
        raise ValueError(bytes(msg[msg > 0].astype(np.uint8)).decode(errors="replace"))
    done = {pt.key(): {s for s in range(S) if mask[j, s]} for j, pt in enumerate(points)}
    return done, "".join(f"{int(v) & 0xFFFFFFFF:08x}" for v in run)


def _sweep_processes(resolved: ResolvedSweep, points: list[GridPoint], out, cache: ProgramCache, progress: bool,
                     plots: bool, log, log_to_stdout: bool, bootstrap: int, compile_workers: int) -> dict:
    """:func:`sweep` as one of ``K`` processes (see :mod:`jaxrecon.sweeps.shards`): run this
    process's share of the work left (:mod:`jaxrecon.sweeps.split`) into its shard file, mark it
    done, wait for every process's mark; then process 0 merges ``results.csv`` and reports.
    Returns the merged table on process 0, this process's rows elsewhere."""
    if out is None:
        raise ValueError("out: a sweep over several processes needs --out, a directory every process can reach")
    k, i = process_count(), process_index()
    tag = "" if i == 0 else f"[process {i}] "
    say = lambda text: log(tag + text)
    out = out_dir(out)
    with contextlib.ExitStack() as stack:
        done, run = _start_processes(resolved, points, out, stack)
        shares = split(points, resolved.seeds, done, k, resolved.steps,
                       program=lambda u: _unit_program(u, resolved, points)[2])
        mine = shares[i]
        finished = sum(len(v) for v in done.values())
        say(f"process {i} of {k}: {len(mine)} of {sum(map(len, shares))} unit(s) left "
            f"({finished}/{len(points) * resolved.seeds} point-seeds already done) -> {str(out)!r}")
        bar = _progress_bar(resolved, mine, progress and i == 0, desc=f" (process {i} of {k})")
        rows, (seconds, compile_seconds) = _run_units(
            resolved, points, mine, open_shard(out, i), cache, bar, say, log_to_stdout and i == 0,
            compile_workers)
        write_marker(out, i, run, units=len(mine), units_run=len(rows), seconds=seconds,
                     compile_seconds=compile_seconds, interrupted=stop_requested())
        marks = wait_for_markers(out, k, run, log=say)
        # every process has seen every marker before process 0 removes them (a quick barrier:
        # all are alive and here); without it a slow reader could wait for deleted markers
        from ..distributed import barrier  # passes over a process gone after its marker

        barrier(f"jaxrecon sweep {run}")
        if i != 0:
            return to_table([r for rs in rows for r in rs])
        complete = merge_shards(out, resolved, points)
        table = to_table([r for pt in points for r in complete.get(pt.key(), [])])
        if len(complete) < len(points):
            say(f"{len(complete)}/{len(points)} grid points complete in {str(out / 'results.csv')!r}; "
                f"run the same command again to finish")
            return table
        finish_meta(out, sum(m["units_run"] for m in marks), max(m["seconds"] for m in marks),
                    sum(m["compile_seconds"] for m in marks))
        report(table, out, plots=plots, bootstrap=bootstrap, seed=resolved.seed, log=log)
    return table


def _progress_bar(resolved: ResolvedSweep, todo: list, progress: bool, desc: str = ""):
    if not (progress and todo):
        return None
    from tqdm.auto import tqdm

    desc = ("sweep" if resolved.name == "sweep" else f"sweep {resolved.name}") + desc
    return tqdm(total=len(todo), desc=desc, unit="point", dynamic_ncols=True)


def _run(resolved: ResolvedSweep, points: list[GridPoint], done: dict, out: Optional[Path],
         cache: ProgramCache, progress: bool, log, log_to_stdout: bool, compile_workers: int):
    """Run the points not in ``done`` (appending their rows to ``out/results.csv``); returns
    ``(done, todo, (seconds, compile_seconds))``."""
    todo = [pt for pt in points if pt.key() not in done]
    if done:
        log(f"resuming {str(out)!r}: {len(points) - len(todo)}/{len(points)} grid points already done")
    every = tuple(range(resolved.seeds))
    units = [Unit(i, pt, every) for i, pt in enumerate(points) if pt.key() not in done]
    rows, timing = _run_units(resolved, points, units, out / "results.csv" if out is not None else None, cache,
                              _progress_bar(resolved, todo, progress), log, log_to_stdout, compile_workers,
                              already=len(points) - len(todo))
    for u, r in zip(units, rows):
        done[u.point.key()] = r
    return done, todo, timing


def _with_seeds(resolved: ResolvedSweep, seeds: int) -> ResolvedSweep:
    return dataclasses.replace(resolved, attack=dataclasses.replace(resolved.attack, seeds=seeds))


def _unit_program(unit: Unit, resolved: ResolvedSweep, points: list[GridPoint]):
    """``(width, resolved for the unit's seed count, program key)`` of a unit; the width is the
    whole sweep's (:func:`pad_width`), so a unit's numbers are those of its point in a full run."""
    w = pad_width(unit.point, resolved, points)
    sub = resolved if len(unit.seeds) == resolved.seeds else _with_seeds(resolved, len(unit.seeds))
    return w, sub, program_key(unit.point, sub, w)


def _run_seeds(unit: Unit, resolved: ResolvedSweep, width: int, program) -> list[dict]:
    """Rows of a unit: all seeds of its point as :func:`run_point` runs them, or some of them
    (seed ``s`` keyed ``fold_in(key(seed), s)`` as in a full run)."""
    if len(unit.seeds) == resolved.seeds:
        po = run_point(unit.point, resolved, width, program=program)
        return point_rows(unit.point, po), po
    po = run_point(unit.point, _with_seeds(resolved, len(unit.seeds)), width, program=program, seeds=unit.seeds)
    rows = point_rows(unit.point, po)
    for r, s in zip(rows, unit.seeds):
        r["seed"] = s
    return rows, po


def _run_units(resolved: ResolvedSweep, points: list[GridPoint], units: list, results: Optional[Path],
               cache: ProgramCache, bar, log, log_to_stdout: bool, compile_workers: int, already: int = 0):
    """Run ``units`` in order, appending each one's rows to ``results``; returns the rows of the
    units run (in order; fewer when a signal stopped the run) and ``(seconds, compile_seconds)``.

    Programs of later units compile in background threads while units run (XLA compiles outside
    the GIL), so a 2-core machine compiles two programs at once."""
    emit = bar.write if bar is not None and log_to_stdout else log  # lines above the bar
    t_start, compile_total = time.perf_counter(), 0.0
    pool = ThreadPoolExecutor(max_workers=max(1, compile_workers))
    futures, first_use, out_rows = {}, set(), []
    for u in units:
        w, sub, pk = _unit_program(u, resolved, points)
        if pk not in futures:
            futures[pk] = pool.submit(compiled_program, u.point, sub, w, True, cache)
    with contextlib.ExitStack() as stack:
        stack.callback(pool.shutdown, wait=False, cancel_futures=True)
        if bar is not None:
            stack.callback(bar.close)
        for i, u in enumerate(units):
            pt = u.point
            if stop_requested():
                where = f"in {str(results)!r}; run the same command again to resume" if results else \
                    "(not saved: no out)"
                emit(f"interrupted: {already + i}/{already + len(units)} grid points done {where}")
                break
            w, sub, pk = _unit_program(u, resolved, points)
            exe, cs = futures[pk].result()
            rows, po = _run_seeds(u, resolved, w, (exe, 0.0 if pk in first_use else cs))
            first_use.add(pk)
            if results is not None:
                append_rows(results, rows)
            out_rows.append(rows)
            compile_total += po.compile_seconds
            errs = np.array([r["error_abs"] for r in rows])
            seeds = "" if len(u.seeds) == resolved.seeds else f" seeds {u.seeds[0]}..{u.seeds[-1]}"
            emit(f"d={pt.d} n={pt.n} p={pt.p} (p/dn={pt.p_over_dn:.3g}) {pt.activation}/{pt.method}{seeds}: "
                 f"error_abs={errs.mean():.3g}±{errs.std():.2g}  "
                 f"train_loss={np.mean([r['train_loss'] for r in rows]):.2g}  "
                 f"run {po.seconds:.1f}s  compile {po.compile_seconds:.1f}s")
            if bar is not None:
                bar.update(1)
    total = time.perf_counter() - t_start
    if units:
        log(f"{len(units)} grid points in {total:.1f}s; {len(futures)} compiled program(s) took {compile_total:.1f}s "
            f"(compiled ahead, in {max(1, compile_workers)} threads)")
    return out_rows, (total, compile_total)


def report(table: dict, out=None, plots: bool = True, bootstrap: int = 1000, seed: int = 0,
           log=print) -> list[dict]:
    """Threshold table (printed; ``thresholds.csv``) and figures of a results table."""
    from ..thresholds import estimate_thresholds, format_thresholds, write_thresholds

    _check_bootstrap(bootstrap)
    log = log or (lambda *a, **k: None)
    thr = estimate_thresholds(table, n_boot=bootstrap, seed=seed)
    log(format_thresholds(thr))
    if thr and not any(np.isfinite(r.get(k, np.nan)) for r in thr for k in ("threshold_p", "logit_p_over_dn")):
        log("no threshold reached: no (d, n) curve's error crosses half its low-p level, and no logistic fit of "
            "P(identified) crosses 1/2 in this grid (extend p, or more steps)")
    if out is not None:
        out = out_dir(out)
        write_thresholds(out / "thresholds.csv", thr)
        files = ["thresholds.csv"]
        if plots:
            from ..plotting import plot_all

            files += plot_all(table, out, thresholds=thr)
        log("wrote " + ", ".join(str(out / f) for f in files))
    return thr


def plot_dir(path, out=None, bootstrap: int = 1000, log=print) -> list[dict]:
    """``jaxrecon plot DIR``: thresholds and figures from ``DIR/results.csv`` (written to ``out``,
    default ``DIR``). Reads the results without the sweep lock, so it works while a sweep runs."""
    path = Path(path)
    table = read_results(path)
    if len(table["p"]) == 0:
        raise ValueError(f"results: {str(path)!r} has no finished grid points yet")
    seed = 0
    meta = path / "sweep.json" if path.is_dir() else path.with_name("sweep.json")
    if meta.is_file():
        try:
            seed = int(json.loads(meta.read_text())["config"]["seed"])
        except (ValueError, KeyError, TypeError):
            pass
    out = out if out is not None else (path if path.is_dir() else path.parent)
    return report(table, out, plots=True, bootstrap=bootstrap, seed=seed, log=log)
