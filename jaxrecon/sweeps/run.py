"""Running a sweep: compile ahead, run the points, append their rows, report thresholds and figures."""

from __future__ import annotations

import contextlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import jax
import numpy as np

from ..io import out_dir
from ..signals import stop_requested
from . import lock
from .config import ResolvedSweep, SweepConfig, load_config
from .points import GridPoint, ProgramCache, check_sizes, compiled_program, grid, pad_width, point_rows, \
    program_key, run_point
from .store import append_rows, finish_meta, prepare_out, read_results, to_table


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
    with contextlib.ExitStack() as stack:
        done = {}
        if out is not None:
            out = out_dir(out)
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


def _progress_bar(resolved: ResolvedSweep, todo: list, progress: bool):
    if not (progress and todo):
        return None
    from tqdm.auto import tqdm

    desc = "sweep" if resolved.name == "sweep" else f"sweep {resolved.name}"
    return tqdm(total=len(todo), desc=desc, unit="point", dynamic_ncols=True)


def _run(resolved: ResolvedSweep, points: list[GridPoint], done: dict, out: Optional[Path],
         cache: ProgramCache, progress: bool, log, log_to_stdout: bool, compile_workers: int):
    """Run the points not in ``done`` (appending their rows to ``out/results.csv``); returns
    ``(done, todo, (seconds, compile_seconds))``.

    Programs of later curves compile in background threads while points run (XLA compiles outside
    the GIL), so a 2-core machine compiles two programs at once."""
    todo = [pt for pt in points if pt.key() not in done]
    if done:
        log(f"resuming {str(out)!r}: {len(points) - len(todo)}/{len(points)} grid points already done")
    bar = _progress_bar(resolved, todo, progress)
    emit = bar.write if bar is not None and log_to_stdout else log  # lines above the bar
    t_start, compile_total = time.perf_counter(), 0.0
    pool = ThreadPoolExecutor(max_workers=max(1, compile_workers))
    futures, first_use = {}, set()
    for pt in todo:
        w = pad_width(pt, resolved, points)
        pk = program_key(pt, resolved, w)
        if pk not in futures:
            futures[pk] = pool.submit(compiled_program, pt, resolved, w, True, cache)
    with contextlib.ExitStack() as stack:
        stack.callback(pool.shutdown, wait=False, cancel_futures=True)
        if bar is not None:
            stack.callback(bar.close)
        for i, pt in enumerate(todo):
            if stop_requested():
                where = f"in {str(out / 'results.csv')!r}; run the same command again to resume" if out else \
                    "(not saved: no out)"
                emit(f"interrupted: {len(points) - len(todo) + i}/{len(points)} grid points done {where}")
                break
            w = pad_width(pt, resolved, points)
            pk = program_key(pt, resolved, w)
            exe, cs = futures[pk].result()
            po = run_point(pt, resolved, w, program=(exe, 0.0 if pk in first_use else cs))
            first_use.add(pk)
            rows = point_rows(pt, po)
            if out is not None:
                append_rows(out / "results.csv", rows)
            done[pt.key()] = rows
            compile_total += po.compile_seconds
            errs = np.array([r["error_abs"] for r in rows])
            emit(f"d={pt.d} n={pt.n} p={pt.p} (p/dn={pt.p_over_dn:.3g}) {pt.activation}/{pt.method}: "
                 f"error_abs={errs.mean():.3g}±{errs.std():.2g}  "
                 f"train_loss={np.mean([r['train_loss'] for r in rows]):.2g}  "
                 f"run {po.seconds:.1f}s  compile {po.compile_seconds:.1f}s")
            if bar is not None:
                bar.update(1)
    total = time.perf_counter() - t_start
    if todo:
        log(f"{len(todo)} grid points in {total:.1f}s; {len(futures)} compiled program(s) took {compile_total:.1f}s "
            f"(compiled ahead, in {max(1, compile_workers)} threads)")
    return done, todo, (total, compile_total)


def report(table: dict, out=None, plots: bool = True, bootstrap: int = 1000, seed: int = 0,
           log=print) -> list[dict]:
    """Threshold table (printed; ``thresholds.csv``) and figures of a results table."""
    from ..thresholds import estimate_thresholds, format_thresholds, write_thresholds

    _check_bootstrap(bootstrap)
    log = log or (lambda *a, **k: None)
    thr = estimate_thresholds(table, n_boot=bootstrap, seed=seed)
    log(format_thresholds(thr))
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
