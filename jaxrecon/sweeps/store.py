"""The durable results of a sweep: ``OUT/results.csv`` and ``OUT/sweep.json``.

``results.csv`` has one row per grid point and seed (see :data:`COLUMNS`); the rows of a grid
point are appended in one write, flushed and ``fsync``-ed, so a sweep killed at any moment loses
at most the point in flight. ``sweep.json`` holds the resolved config, its hash and versions, and
the tolerances of the ``solved`` / ``identified`` columns (:mod:`jaxrecon.outcomes`).
Resuming (:func:`prepare_out`) keeps every finished point (rows of a point repeated by an earlier
double run are merged), drops a partial last line or an incomplete point (run again), moves rows
that fit no point and seed of the grid to ``OUT/rejected_rows.csv`` with a warning, and refuses an
``OUT`` that holds a sweep with a different config, or a ``jaxrecon reconstruct`` run.

Files written before the ``solved`` and ``identified`` columns existed (:data:`OLD_COLUMNS`) still
read: the two columns are derived from ``loss`` and ``error_sign``. Resuming such a file first
rewrites it atomically in the current format, so appended rows never mix two headers.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from ..io import _naming, atomic_write, fsync_dir, out_dir, versions, write_json
from ..outcomes import FINAL_TOL, IDENTIFIED_TOL, identified, method_tolerance, solved
from .config import NON_IDENTITY, ResolvedSweep

#: Columns of ``results.csv`` before ``solved`` and ``identified`` (files with them still read).
OLD_COLUMNS = ("d", "n", "p", "p_over_dn", "activation", "method", "seed", "train_loss", "loss",
               "error_abs", "error_sign", "residual", "recovered", "steps", "status", "seconds",
               "compile_seconds")
#: Columns before the defence columns (files with them still read, as ``defence = "none"``).
OUTCOME_COLUMNS = OLD_COLUMNS + ("solved", "identified")
#: Columns of ``results.csv``, in order. ``solved``: the loss is at most the method's solved
#: tolerance; ``identified``: ``error_sign <= 1e-3`` (0/1 in the file, booleans in a table);
#: ``defence``, ``defence_strength``: the defence of the released ``theta``
#: (:mod:`jaxrecon.defences`; ``"none"``, 0 without one), ``floor``: the attack's expected loss
#: floor under it (``nan`` without one; ``status`` says whether the seed stopped there).
DEFENCE_COLUMNS = OUTCOME_COLUMNS + ("defence", "defence_strength", "floor")
#: ... and ``loss_f64``: the residual-form loss in float64 that decides ``solved``
#: (:func:`jaxrecon.outcomes.final_verdict`; ``nan`` in rows written before it, read as such).
F64_COLUMNS = DEFENCE_COLUMNS + ("loss_f64",)
#: ... and ``method_run``: the recipe that ran (for ``auto``, the one it chose:
#: :func:`jaxrecon.attack.auto.method_run`; empty in rows written before it).
RUN_COLUMNS = F64_COLUMNS + ("method_run",)
#: ... and ``loss_at_truth`` (the float64 loss at the training set: about 0 when ``theta`` is in the
#: span, the floor of an all-layer network or a defence), ``params_total`` (every parameter of the
#: model: ``p`` for random features, the whole network where ``p`` counts its head) and
#: ``train_steps`` (a network's GD steps; 0 for random features).
COLUMNS = RUN_COLUMNS + ("loss_at_truth", "params_total", "train_steps")
_DEFENCE_DEFAULTS = {"defence": "none", "defence_strength": 0.0, "floor": float("nan"), "loss_f64": float("nan"),
                     "method_run": "", "loss_at_truth": float("nan"), "params_total": -1, "train_steps": -1}
_INT_COLUMNS = ("d", "n", "p", "seed", "steps", "params_total", "train_steps")
_STR_COLUMNS = ("activation", "method", "status", "defence", "method_run")
_BOOL_COLUMNS = ("solved", "identified")
_HEADER = ",".join(COLUMNS) + "\n"
#: Subdirectory of the per-process results files of a sweep run as several processes.
SHARDS = "shards"
#: Files of a ``jaxrecon reconstruct`` run: a sweep refuses a directory that holds one.
RUN_FILES = ("summary.json", "arrays.npz", "recon.png")


def _fmt(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "1" if v else "0"
    if isinstance(v, float):
        return repr(v)  # round-trips exactly
    return str(v)


def with_outcomes(row: dict, tolerance=None) -> dict:
    """``row`` with ``solved`` / ``identified`` derived from ``loss`` / ``error_sign`` where missing.

    ``tolerance(method) -> float`` gives the solved tolerance (default: the method's float32
    tolerance, :func:`jaxrecon.outcomes.method_tolerance`)."""
    if "solved" in row and "identified" in row:
        return row
    tol = (tolerance or method_tolerance)(row["method"])
    return {**row, "solved": bool(solved(row["loss"], tol)),
            "identified": bool(identified(row["error_sign"], IDENTIFIED_TOL))}


def rows_text(rows) -> str:
    """Rows as ``results.csv`` lines (no header); rows without ``solved`` / ``identified`` get
    them derived (:func:`with_outcomes`)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for r in rows:
        r = with_outcomes({**_DEFENCE_DEFAULTS, **r})
        w.writerow([_fmt(r[c]) for c in COLUMNS])
    return buf.getvalue()


def _parse_bool(v: str) -> bool:
    if v in ("1", "True", "true"):
        return True
    if v in ("0", "False", "false"):
        return False
    raise ValueError(f"not a 0/1 value: {v!r}")


def _parse_row(fields: list, columns: tuple = COLUMNS, tolerance=None) -> dict:
    if len(fields) != len(columns):
        raise ValueError(f"expected {len(columns)} fields, got {len(fields)}")
    row = {}
    for c, v in zip(columns, fields):
        row[c] = (v if c in _STR_COLUMNS else int(v) if c in _INT_COLUMNS else _parse_bool(v)
                  if c in _BOOL_COLUMNS else float(v))
    return with_outcomes({**_DEFENCE_DEFAULTS, **row}, tolerance)


def _point_key(row: dict) -> tuple:
    return (row["d"], row["n"], row["p"], row["activation"], row["method"], row.get("defence", "none"),
            float(row.get("defence_strength", 0.0)))


def _merge_duplicates(rows: list[dict]) -> tuple[list[dict], bool]:
    """Rows with one row per (point, seed) -- the first one -- and whether any was repeated."""
    seen, kept = set(), []
    for r in rows:
        k = (*_point_key(r), r["seed"])
        if k not in seen:
            seen.add(k)
            kept.append(r)
    return kept, len(kept) < len(rows)


def _file_tolerance(path: Path):
    """``method -> solved tolerance`` for a results file: what the ``sweep.json`` beside it
    records, else the float32/float64 tolerance its config implies, else float32's."""
    dtype = "float32"
    try:
        meta = json.loads((path.parent / "sweep.json").read_text())
        recorded = meta.get("solved_tolerance") or {}
        dtype = "float64" if meta["config"].get("x64") else "float32"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        recorded = {}
    return lambda method: float(recorded[method]) if method in recorded else method_tolerance(method, dtype)


def read_results(path) -> dict:
    """Read ``results.csv`` (or a sweep directory) into a table: a dict of NumPy arrays, one per
    column of :data:`COLUMNS`. A directory's table is the union of ``results.csv`` and the shard
    files of a sweep over several processes (``shards/results.<i>.csv``), so it reads at any stage.
    A partial last line (a killed write) is ignored and a repeated row of a point and seed counts
    once. A file without ``solved`` / ``identified`` gets them derived with the tolerances of its
    ``sweep.json``. Only reads: safe while a sweep is writing the files."""
    path = Path(path)
    files = result_files(path) if path.is_dir() else [path] if path.is_file() else []
    if not files:
        where = path / "results.csv" if path.is_dir() else path
        raise ValueError(f"results: no results file at {str(where)!r}")
    tol = _file_tolerance(files[0] if files[0].name == "results.csv" else path / "results.csv")
    rows = [r for f in files for r in _read_rows(f, tol)[0]]
    return to_table(_merge_duplicates(rows)[0])


def result_files(out: Path) -> list[Path]:
    """``out/results.csv`` (if there) and the shard files of ``out`` in process order."""
    out = Path(out)
    shards = sorted((out / SHARDS).glob("results.*.csv"), key=lambda f: (len(f.name), f.name))
    return [f for f in [out / "results.csv"] if f.is_file()] + shards


def to_table(rows: list[dict]) -> dict:
    """A list of rows as a table (dict of NumPy arrays keyed by column); rows without ``solved`` /
    ``identified`` get them derived (:func:`with_outcomes`)."""
    rows = [with_outcomes({**_DEFENCE_DEFAULTS, **r}) for r in rows]
    table = {}
    for c in COLUMNS:
        vals = [r[c] for r in rows]
        table[c] = np.asarray(vals, dtype=object if c in _STR_COLUMNS else np.int64 if c in _INT_COLUMNS
                              else bool if c in _BOOL_COLUMNS else np.float64)
        if c in _STR_COLUMNS:
            table[c] = table[c].astype(str) if rows else np.asarray([], dtype=str)
    return table


def table_rows(table: dict) -> list[dict]:
    """The inverse of :func:`to_table`."""
    n = len(next(iter(table.values()))) if table else 0
    return [{c: table[c][i].item() if hasattr(table[c][i], "item") else table[c][i] for c in table}
            for i in range(n)]


def _read_rows(path: Path, tolerance=None) -> tuple[list[dict], bool, bool]:
    """Complete rows of a results file, whether the file had a torn/garbled tail, and whether it
    is in the old format (:data:`OLD_COLUMNS`; ``tolerance`` derives ``solved``, see
    :func:`with_outcomes`)."""
    raw = text = path.read_bytes().decode("utf-8", errors="replace")
    torn = False
    if text and not text.endswith("\n"):  # killed mid-write: drop the partial last line
        text = text[: text.rfind("\n") + 1]
        torn = True
    lines = text.splitlines()
    if not lines:
        # a header cut short (every earlier header begins the current one), else garbage
        if raw and not _HEADER.startswith(raw):
            raise ValueError(f"results: {str(path)!r} is not a jaxrecon results file (no header)")
        return [], torn, False
    header = tuple(next(csv.reader([lines[0]])))
    if header not in (COLUMNS, RUN_COLUMNS, F64_COLUMNS, DEFENCE_COLUMNS, OUTCOME_COLUMNS, OLD_COLUMNS):
        raise ValueError(f"results: {str(path)!r} is not a jaxrecon results file (unexpected header)")
    rows = []
    for i, fields in enumerate(csv.reader(lines[1:])):
        try:
            rows.append(_parse_row(fields, header, tolerance))
        except ValueError as e:
            raise ValueError(f"results: {str(path)!r} line {i + 2} is corrupted ({e})") from None
    return rows, torn, header != COLUMNS


def complete_points(rows: list[dict], seeds: int) -> tuple[dict, bool]:
    """Rows grouped by grid point, keeping the points that have every seed ``0..seeds-1``
    (a repeated row of a seed counts once); and whether any row was left out (a repeat, or a
    point without all its seeds)."""
    rows, repeated = _merge_duplicates(rows)
    groups: dict = {}
    for r in rows:
        groups.setdefault(_point_key(r), []).append(r)
    done, dropped = {}, repeated
    for k, rs in groups.items():
        if sorted(r["seed"] for r in rs) == list(range(seeds)):
            done[k] = sorted(rs, key=lambda r: r["seed"])
        else:
            dropped = True
    return done, dropped


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text))
    fsync_dir(path.parent)


def _describe_difference(old: dict, new: dict) -> str:
    keys = sorted(set(old) | set(new))
    diff = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys
            if k not in NON_IDENTITY and old.get(k) != new.get(k)]
    return "; ".join(diff[:4]) + (" ..." if len(diff) > 4 else "")


def _check_meta(out: Path, resolved: ResolvedSweep, points: Sequence) -> None:
    """Write ``sweep.json`` for a new sweep; check an existing one holds the same config (and give
    one written before the outcome tolerances were recorded its :func:`outcome_tolerances`)."""
    meta_path, res_path = out / "sweep.json", out / "results.csv"
    h = resolved.config_hash()
    run = [f for f in RUN_FILES if (out / f).exists()]
    if run and not meta_path.exists():
        raise ValueError(f"out: {str(out)!r} holds a jaxrecon reconstruct run ({', '.join(run)}), not a sweep; "
                         f"use another --out")
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            old_hash, old_cfg = meta["config_hash"], meta["config"]
        except (OSError, ValueError, KeyError, TypeError):
            raise ValueError(f"out: {str(meta_path)!r} is unreadable; use another --out") from None
        if old_hash != h:
            raise ValueError(
                f"out: {str(out)!r} holds a sweep with a different config "
                f"({_describe_difference(old_cfg, resolved.to_dict())}); "
                f"use another --out, or delete the directory to start over")
    elif res_path.exists():
        raise ValueError(f"out: {str(res_path)!r} exists without sweep.json; use another --out")
    else:
        write_json(meta_path, {"config": resolved.to_dict(), "config_hash": h, "versions": versions(),
                               "points": len(points), "finished": False, **outcome_tolerances(resolved)})
        return
    if "solved_tolerance" not in meta:  # written before the solved/identified columns
        write_json(meta_path, {**meta, **outcome_tolerances(resolved)})


def outcome_tolerances(resolved: ResolvedSweep) -> dict:
    """What ``sweep.json`` records of the ``solved`` / ``identified`` columns: the tolerance of
    ``loss_f64`` that decides ``solved`` (``solved_tolerance_f64``), the solved tolerance per method
    of rows without ``loss_f64`` (by the sweep's dtype and the method's loss form) and ``error_sign``'s."""
    dtype = "float64" if resolved.x64 else "float32"
    return {"solved_tolerance": {m: method_tolerance(m, dtype) for m in resolved.method},
            "solved_tolerance_f64": FINAL_TOL, "identified_tolerance": IDENTIFIED_TOL}


def row_tolerance(resolved: ResolvedSweep):
    """``method -> solved tolerance`` for reading this sweep's rows (:func:`outcome_tolerances`;
    a method outside the grid gets its own default)."""
    tol = outcome_tolerances(resolved)["solved_tolerance"]
    return lambda m: tol.get(m, method_tolerance(m))


#: Where resuming moves the rows of ``results.csv`` that fit no point and seed of the grid.
REJECTED = "rejected_rows.csv"


def _warn(text: str) -> None:
    print(f"jaxrecon: warning: {text}", file=sys.stderr, flush=True)


def placeable(rows: list[dict], points: Sequence, seeds: int) -> tuple[list[dict], list[dict]]:
    """``(kept, rejected)``: the rows whose point is one of ``points`` and whose seed is in
    ``0..seeds-1``, and the others (a point outside the grid, a seed out of range)."""
    valid = {pt.key() for pt in points}
    kept, rejected = [], []
    for r in rows:
        ok = _point_key(r) in valid and 0 <= r["seed"] < seeds
        (kept if ok else rejected).append(r)
    return kept, rejected


def keep_rejected(out: Path, rows: list[dict]) -> Path:
    """Add ``rows`` to ``out/rejected_rows.csv`` (a results file: same columns as ``results.csv``;
    a row already there is not repeated), written atomically; returns its path. A file of that
    name that is not a results file is left alone: a one-line ``ValueError`` naming it."""
    path = Path(out) / REJECTED
    earlier = _read_rows(path)[0] if path.exists() else []
    lines = dict.fromkeys(rows_text(earlier + list(rows)).splitlines(keepends=True))
    _write_text(path, _HEADER + "".join(lines))
    return path


def _reject_stray(out: Path, res_path: Path, resolved: ResolvedSweep, points: Sequence, warn) -> None:
    """Move the rows of ``results.csv`` that fit no point and seed of the grid to
    ``rejected_rows.csv`` (first, so a crash in between repeats no row and loses none), then
    rewrite ``results.csv`` without them; one warning line names the count and the file."""
    rows = _read_rows(res_path, row_tolerance(resolved))[0]
    kept, rejected = placeable(rows, points, resolved.seeds)
    if not rejected:
        return
    path = keep_rejected(out, rejected)
    _write_text(res_path, _HEADER + rows_text(kept))
    (warn or _warn)(f"{len(rejected)} row(s) of {str(res_path)!r} fit no point and seed of this grid (a point "
                    f"outside it, or a seed outside 0..{resolved.seeds - 1}); moved them to {str(path)!r}")


def prepare_out(out, resolved: ResolvedSweep, points: Sequence, warn=None) -> dict:
    """Create or check ``out``; returns finished points ``{point key: rows}``.

    A new directory gets ``sweep.json`` and a header-only ``results.csv``. An existing one must hold
    the same config (by hash); rows of its results that fit no point and seed of the grid are
    moved to ``rejected_rows.csv`` (:data:`REJECTED`) with one warning line (``warn(text)``;
    default: ``jaxrecon: warning: ...`` on stderr), never dropped; the rest is cleaned of a
    partial last line, of repeated rows and of incomplete points (run again), and brought to the
    current columns (rewritten atomically), and the finished points are returned. The caller
    holds the directory's lock (:func:`jaxrecon.sweeps.lock.hold`).
    """
    out = out_dir(out)
    res_path = out / "results.csv"
    _check_meta(out, resolved, points)
    if res_path.exists():
        _reject_stray(out, res_path, resolved, points, warn)
    if (out / SHARDS).is_dir():  # left by a run over several processes: fold its rows in first
        from .shards import merge_shards

        merge_shards(out, resolved, points, drop_partial=True)
    if not res_path.exists():
        _write_text(res_path, _HEADER)
        return {}
    rows, torn, old = _read_rows(res_path, row_tolerance(resolved))
    done, dropped = complete_points(rows, resolved.seeds)
    if torn or dropped or old:  # rewrite without the partial line / repeats / incomplete points
        keep = [r for pt in points if pt.key() in done for r in done[pt.key()]]
        _write_text(res_path, _HEADER + rows_text(keep))
    return done


def append_rows(path: Path, rows) -> None:
    """Append rows to ``results.csv`` in one write, flushed and fsync-ed; an ``OSError`` (a full
    disk) names ``path``."""
    try:
        with open(path, "a") as f:
            f.write(rows_text(rows))
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise _naming(e, path) from e


def finish_meta(out: Path, points_run: int, seconds: float, compile_seconds: float) -> None:
    """Mark ``sweep.json`` finished and record this run."""
    meta = json.loads((out / "sweep.json").read_text())
    meta.update(finished=True, versions=versions())
    meta.setdefault("runs", []).append({"points_run": points_run, "seconds": seconds,
                                        "compile_seconds": compile_seconds})
    write_json(out / "sweep.json", meta)
