"""The files of a sweep run as several processes: one results file per process, merged at the end.

Process ``i`` appends its rows to ``OUT/shards/results.<i>.csv`` (the columns of
``results.csv``; each point's rows in one write, flushed and ``fsync``-ed), a file no other process
writes, so no cross-host file locking is needed (``flock`` is unreliable on network file systems).
When its share is done it writes ``OUT/shards/done.<i>`` naming the run; process 0 waits for the
``K`` markers of the run (a file barrier) and merges: ``results.csv`` gets every complete point,
deduplicated by ``(point, seed)``, in grid order, written atomically; then the shard files and
markers are removed (kept while a point is still incomplete, so a rerun keeps its seeds).
Every process waits for the markers (:func:`wait_for_markers`); one whose peer ended without its
marker (killed: the job's coordinator says so, :func:`jaxrecon.distributed.gone_processes`)
stops there with one line naming that process and the command that resumes, its own rows
flushed and marked, instead of waiting forever or being aborted natively.

Readers (``jaxrecon plot``, resuming) take the union of ``results.csv`` and the shard files.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Optional, Sequence

from ..io import fsync_dir, write_json
from . import store


def shard_path(out: Path, process: int) -> Path:
    return Path(out) / store.SHARDS / f"results.{process}.csv"


def marker_path(out: Path, process: int) -> Path:
    return Path(out) / store.SHARDS / f"done.{process}"


def open_shard(out: Path, process: int) -> Path:
    """Create process ``process``'s results file (header only) or cut a partial last line a
    killed write left (only this process writes the file); return its path."""
    path = shard_path(out, process)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        with open(path, "w") as f:
            f.write(store._HEADER)
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(path.parent)
        return path
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
            f.flush()
            os.fsync(f.fileno())
    return path


def done_seeds(out: Path, resolved, points: Sequence) -> dict:
    """``{point key: finished seeds}`` in the union of ``results.csv`` and the shard files; a row
    of a point outside the grid is a one-line ``ValueError``."""
    tolerance = store.row_tolerance(resolved)
    valid = {pt.key() for pt in points}
    done: dict = {}
    for f in store.result_files(out):
        for r in store._read_rows(f, tolerance)[0]:
            k = store._point_key(r)
            if k not in valid:
                raise ValueError(f"out: {str(f)!r} has rows for points outside this grid, e.g. {k}")
            done.setdefault(k, set()).add(r["seed"])
    return done


def merge_shards(out: Path, resolved, points: Sequence, drop_partial: bool = False) -> dict:
    """Fold the shard files into ``results.csv``; return the complete points ``{key: rows}``.

    ``results.csv`` is rewritten atomically with every complete point in grid order (seeds
    ascending). The shard files and markers are removed when every row they hold is in it, or
    with ``drop_partial`` (a single process reruns incomplete points whole). The caller is the
    only writer (process 0 after the barrier, or a single process holding the lock)."""
    out = Path(out)
    tolerance = store.row_tolerance(resolved)
    rows = [r for f in store.result_files(out) for r in store._read_rows(f, tolerance)[0]]
    done, partial = store.complete_points(rows, resolved.seeds)
    valid = {pt.key() for pt in points}
    stray = [k for k in done if k not in valid]
    if stray:
        raise ValueError(f"out: results in {str(out)!r} have rows for points outside this grid, e.g. {stray[0]}")
    keep = [r for pt in points if pt.key() in done for r in done[pt.key()]]
    store._write_text(out / "results.csv", store._HEADER + store.rows_text(keep))
    incomplete = any(store._point_key(r) not in done for r in rows)
    if drop_partial or not incomplete:
        shards = out / store.SHARDS
        for f in list(shards.glob("results.*.csv")) + list(shards.glob("done.*")):
            f.unlink()
        fsync_dir(shards)
        try:
            shards.rmdir()
        except OSError:  # something else lives there: leave it
            pass
    return done


def write_marker(out: Path, process: int, run: str, **info) -> None:
    """Process ``process`` finished its share of run ``run`` (``info``: what it did)."""
    write_json(marker_path(out, process), {"run": run, "process": process, **info})


def _marker(out: Path, process: int) -> Optional[dict]:
    try:
        return json.loads(marker_path(out, process).read_text())
    except (OSError, ValueError):
        return None


def wait_for_markers(out: Path, processes: int, run: str, log=None, poll: float = 0.2,
                     max_poll: float = 5.0, say_every: float = 60.0) -> list[dict]:
    """Block until every process wrote its marker for ``run``; return the markers in process
    order. A process of the job that has ended without its marker (killed, or failed) will never
    write it: then this process, whose own rows are flushed and marked, stops with one line naming
    it and the command that resumes (:class:`jaxrecon.distributed.JobError`). So does a process
    other than 0 whose process 0 ended (nobody would merge)."""
    from .. import distributed

    me = distributed.process_index()
    t0 = last = time.monotonic()
    while True:
        found = [_marker(out, i) for i in range(processes)]
        missing = [i for i, m in enumerate(found) if not m or m.get("run") != run]
        gone = distributed.gone_processes()
        lost = {i: gone[i] for i in missing if i in gone}
        if lost:
            raise distributed.peer_lost_error(
                lost, "finishing its share of the sweep",
                f"this process finished its share, its rows are in {str(shard_path(out, me))!r}")
        if not missing:
            if me != 0 and 0 in gone:
                raise distributed.peer_lost_error(
                    {0: gone[0]}, "merging the results",
                    f"every share is done, the rows are in {str(Path(out) / store.SHARDS)!r}")
            return found
        if log and time.monotonic() - last > say_every:
            last = time.monotonic()
            log(f"waiting for process(es) {', '.join(map(str, missing))} to finish "
                f"({time.monotonic() - t0:.0f}s)")
        time.sleep(poll)
        poll = min(max_poll, poll * 1.5)
