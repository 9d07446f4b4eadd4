"""Sweeps: the law of data reconstruction as a grid over ``(d, n, p)`` x activation x method x seeds.

A sweep is described by a :class:`SweepConfig` (plain data; a config file's ``get_config()`` returns
a dict of its fields). Every grid point runs all its seeds as **one vmapped, compiled program**:
each seed draws its own data, random features, least-squares fit and attack from one key, so a
point is ``jax.vmap(trial)(keys)`` with

    trial(key):  k_data, k_model, k_attack = split(key, 3)
                 x, y      = synthetic(k_data, n, d)                 # rows on the sphere sqrt(d)
                 theta     = fit(RandomFeatures(k_model, d, p), x, y)
                 x_hat     = reconstruct(Target(fmap, theta), k_attack, n)
                 residual  = span_residuals(fmap, x_hat, x).mean()  # paper Fig. 2

Seed ``s`` uses ``key_s = fold_in(key(seed), s)`` at every grid point, so the curves of one seed
across ``p`` share their data (common random numbers) and, because row ``j`` of ``V`` is drawn
from ``fold_in(k_model, j)``, a larger ``p`` extends a smaller one's features. Matching (Hungarian,
SciPy) runs on the host afterwards.

Results go to ``OUT/results.csv`` (one row per grid point and seed, see :data:`COLUMNS`) and
``OUT/sweep.json`` (config, its hash, versions). Rows of a grid point are appended in one write,
flushed and ``fsync``-ed, so a sweep killed at any moment loses at most the point in flight; a
rerun skips finished points, drops a partial last line or an incomplete point, and refuses an
``OUT`` that holds a sweep with a different config.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import importlib.util
import io
import json
import math
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import _validate
from .activations import ACTIVATIONS
from .data.synthetic import synthetic
from .features.base import Target
from .features.random_features import RandomFeatures
from .io import out_dir, versions, write_json
from .loss import report_loss, span_residuals
from .metrics import match
from .models.rf import fit_with_info
from .reconstruct import METHODS, method_config, reconstruct

#: Columns of ``results.csv``, in order.
COLUMNS = ("d", "n", "p", "p_over_dn", "activation", "method", "seed", "train_loss", "loss",
           "error_abs", "error_sign", "residual", "recovered", "steps", "status", "seconds",
           "compile_seconds")
_INT_COLUMNS = ("d", "n", "p", "seed", "steps")
_STR_COLUMNS = ("activation", "method", "status")
_STATUS = {0: "running", 1: "converged", 2: "budget", 3: "nonfinite"}

#: Config keys that are grids (lists); every other key is a scalar.
GRID_KEYS = ("d", "n", "p", "p_over_n", "p_over_dn", "activation", "method")
_P_KEYS = ("p", "p_over_n", "p_over_dn")
# Keys that do not change a single number of the results (left out of the config hash).
_NON_IDENTITY = ("name", "block_size")


@dataclasses.dataclass
class SweepConfig:
    """A sweep: the grid ``d x n x p x activation x method`` and ``seeds`` seeds per point.

    ``p`` is given by exactly one of ``p`` (feature counts), ``p_over_n`` (multiples of ``n``) or
    ``p_over_dn`` (multiples of ``d * n``; ``p = max(1, round(r * d * n))``). ``method=None`` means
    :data:`jaxrecon.reconstruct.DEFAULT_METHOD` at run time; ``optimizer`` and ``lr`` override
    every method's. ``block_size`` streams ``V`` (same numbers as dense, less memory).
    ``pad_p`` (``"auto"``, ``"max"``, ``"none"``): run every ``p`` of a ``(d, n)`` curve in one
    program compiled for the curve's largest ``p`` (see :func:`pad_width`).
    """

    name: str = "sweep"
    d: Sequence[int] = (20,)
    n: Sequence[int] = (5,)
    p: Optional[Sequence[int]] = None
    p_over_n: Optional[Sequence[float]] = None
    p_over_dn: Optional[Sequence[float]] = None
    activation: Sequence[str] = ("relu",)
    method: Optional[Sequence[str]] = None
    seeds: int = 4
    seed: int = 0
    steps: int = 4000
    optimizer: Optional[str] = None
    lr: Optional[float] = None
    x64: bool = False
    block_size: Optional[int] = None
    noise: float = 0.5
    ridge: float = 0.0
    pad_p: str = "auto"

    @classmethod
    def from_dict(cls, values: dict) -> "SweepConfig":
        """Build from plain data, refusing unknown keys (``ValueError`` naming them)."""
        if not isinstance(values, dict):
            raise ValueError(f"config: get_config() must return a dict, got {type(values).__name__}")
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ValueError(f"config: unknown key(s) {unknown}; allowed: {fields}")
        return cls(**values)

    def replace(self, **overrides) -> "SweepConfig":
        """A copy with overrides applied (``None`` values are ignored). Giving any of ``p``,
        ``p_over_n``, ``p_over_dn`` replaces the config's way of giving ``p``."""
        overrides = {k: v for k, v in overrides.items() if v is not None}
        SweepConfig.from_dict(overrides)  # unknown keys
        if any(k in overrides for k in _P_KEYS):
            for k in _P_KEYS:
                overrides.setdefault(k, None)
        return dataclasses.replace(self, **overrides)

    def resolved(self) -> dict:
        """Validated plain-data form: grids as lists, the method names filled in."""
        from .reconstruct import DEFAULT_METHOD  # read at run time: the default may change

        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in GRID_KEYS and v is not None:
                v = _as_list(f.name, v)
            out[f.name] = v
        if out["method"] is None:
            out["method"] = [DEFAULT_METHOD]
        for name in ("d", "n"):
            out[name] = [_validate.positive_int(name, v) for v in out[name]]
        given = [k for k in _P_KEYS if out[k] is not None]
        if not given:
            raise ValueError("p: give one of p, p_over_n, p_over_dn")
        if len(given) > 1:
            raise ValueError(f"p: give only one of p, p_over_n, p_over_dn (got {given})")
        pk = given[0]
        if pk == "p":
            out["p"] = [_validate.positive_int("p", v) for v in out["p"]]
        else:
            out[pk] = [_validate.positive_float(pk, v) for v in out[pk]]
        for a in out["activation"]:
            _validate.choice("activation", a, ACTIVATIONS)
        for m in out["method"]:
            _validate.choice("method", m, METHODS)
            method_config(m, optimizer=self.optimizer, lr=self.lr)  # validates optimizer / lr
        if not isinstance(out["name"], str) or not out["name"]:
            raise ValueError(f"name: must be a non-empty string, got {out['name']!r}")
        _validate.positive_int("seeds", out["seeds"])
        if isinstance(out["seed"], bool) or not isinstance(out["seed"], int) or out["seed"] < 0:
            raise ValueError(f"seed: must be a non-negative integer, got {out['seed']!r}")
        _validate.positive_int("steps", out["steps"])
        if out["block_size"] is not None:
            _validate.positive_int("block_size", out["block_size"])
        if not isinstance(out["x64"], bool):
            raise ValueError(f"x64: must be true or false, got {out['x64']!r}")
        out["noise"] = _validate.positive_float("noise", out["noise"], allow_zero=True)
        out["ridge"] = _validate.positive_float("ridge", out["ridge"], allow_zero=True)
        _validate.choice("pad_p", out["pad_p"], ("auto", "max", "none"))
        if out["lr"] is not None:
            out["lr"] = _validate.positive_float("lr", out["lr"])
        return out


class GridPoint(NamedTuple):
    d: int
    n: int
    p: int
    activation: str
    method: str

    @property
    def p_over_dn(self) -> float:
        return self.p / (self.d * self.n)

    def key(self) -> tuple:
        return (self.d, self.n, self.p, self.activation, self.method)


def _as_list(name, v) -> list:
    if isinstance(v, (str, int, float)) and not isinstance(v, bool):
        v = [v]
    try:
        v = list(v)
    except TypeError:
        raise ValueError(f"{name}: must be a value or a list of values, got {v!r}") from None
    if not v:
        raise ValueError(f"{name}: empty list; the grid needs at least one value")
    return v


def grid(resolved: dict) -> list[GridPoint]:
    """Grid points of a resolved config, ordered ``activation, method, d, n, p`` (p ascending).
    Ratios that round to the same ``p`` give one point."""
    points, seen = [], set()
    for act in resolved["activation"]:
        for meth in resolved["method"]:
            for d in resolved["d"]:
                for n in resolved["n"]:
                    if resolved["p"] is not None:
                        ps = resolved["p"]
                    elif resolved["p_over_n"] is not None:
                        ps = [max(1, int(round(r * n))) for r in resolved["p_over_n"]]
                    else:
                        ps = [max(1, int(round(r * d * n))) for r in resolved["p_over_dn"]]
                    for p in sorted(ps):
                        pt = GridPoint(d, n, p, act, meth)
                        if pt.key() not in seen:
                            seen.add(pt.key())
                            points.append(pt)
    if not points:
        raise ValueError("grid: the sweep has no grid points")
    return points


def config_hash(resolved: dict) -> str:
    """SHA-256 (first 16 hex digits) of the config values that determine the results."""
    ident = {k: v for k, v in resolved.items() if k not in _NON_IDENTITY}
    blob = json.dumps(ident, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Config files
# --------------------------------------------------------------------------------------------
def load_config(path) -> SweepConfig:
    """Load ``get_config()`` from a Python file (``experiments/*.py``); ``ValueError`` if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config: no such file {str(path)!r}")
    try:
        spec = importlib.util.spec_from_file_location(f"_jaxrecon_config_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except Exception as e:  # syntax errors, import errors: one clear line
        raise ValueError(f"config: cannot read {str(path)!r}: {type(e).__name__}: {e}") from None
    get = getattr(module, "get_config", None)
    if not callable(get):
        raise ValueError(f"config: {str(path)!r} has no get_config() function")
    try:
        values = get()
    except Exception as e:
        raise ValueError(f"config: get_config() in {str(path)!r} failed: {type(e).__name__}: {e}") from None
    return SweepConfig.from_dict(values)


# --------------------------------------------------------------------------------------------
# One grid point: seeds vmapped in one compiled program
# --------------------------------------------------------------------------------------------
class PointOutput(NamedTuple):
    """Per-seed arrays of one grid point (leading axis: seeds)."""

    x: np.ndarray  # (S, n, d)
    x_hat: np.ndarray  # (S, n, d)
    train_loss: np.ndarray
    loss: np.ndarray
    steps: np.ndarray
    status: np.ndarray
    residual: np.ndarray
    seconds: float  # execution wall-clock of the point (all seeds), compile excluded
    compile_seconds: float  # 0 when the program was compiled for an earlier point


# Padding every p of a (d, n) curve to the curve's largest p lets one compiled program serve the
# whole curve (p becomes a runtime argument). Compiling costs seconds per program on a CPU while a
# small point runs in a fraction of that, so "auto" pads when the padded work is small:
# p_max * d * n * seeds * steps <= PAD_AUTO_LIMIT (and V is dense).
PAD_AUTO_LIMIT = 1e10


def pad_width(point: GridPoint, resolved: dict, points: Sequence[GridPoint]) -> int:
    """The static feature count of the program that runs ``point`` (``>= point.p``).

    With padding, rows ``j >= p`` of ``V`` are zero, so (as every registered activation has
    ``sigma(0) = 0``) the padded features are exactly zero and ``theta``, the loss and its gradient
    are those of the ``p``-feature model.
    """
    mode = resolved["pad_p"]
    if mode == "none" or resolved["block_size"] is not None:
        return point.p
    p_max = max(q.p for q in points if (q.d, q.n, q.activation, q.method) ==
                (point.d, point.n, point.activation, point.method))
    if mode == "auto" and p_max * point.d * point.n * resolved["seeds"] * resolved["steps"] > PAD_AUTO_LIMIT:
        return point.p
    return p_max


def make_trial(point: GridPoint, resolved: dict, width: Optional[int] = None) -> Callable:
    """``trial(key, p) -> dict`` for one seed at one grid point (pure; jit- and vmap-compatible).

    ``width`` (default ``point.p``) is the static number of features of the program; when it is
    larger than ``p``, rows ``p..width-1`` of ``V`` are zeroed (see :func:`pad_width`)."""
    dtype = "float64" if resolved["x64"] else "float32"
    mcfg = method_config(point.method, optimizer=resolved["optimizer"], lr=resolved["lr"])
    steps, noise, ridge, block = resolved["steps"], resolved["noise"], resolved["ridge"], resolved["block_size"]
    width = point.p if width is None else width
    padded = block is None and resolved["pad_p"] != "none"  # a no-op mask when width == p

    def trial(key, p):
        k_data, k_model, k_attack = jax.random.split(key, 3)
        data = synthetic(k_data, point.n, point.d, noise, dtype=dtype)
        fmap = RandomFeatures(k_model, point.d, width, point.activation, block, dtype=dtype)
        if padded:
            keep = (jnp.arange(width) < p)[:, None]
            fmap = fmap.replace(V=jnp.where(keep, fmap.weights(), 0))
        fitted = fit_with_info(fmap, data.x, data.y, ridge)
        res = reconstruct(Target(fmap, fitted.theta), k_attack, point.n, method=mcfg, steps=steps)
        # span_residuals divides by sqrt(width); the paper's normalisation is sqrt(p)
        residual = span_residuals(fmap, res.x_hat, data.x).mean() * jnp.sqrt(width / p).astype(dtype)
        return {"x": data.x, "x_hat": res.x_hat, "train_loss": fitted.train_loss, "loss": res.loss,
                "steps": res.steps, "status": res.status, "residual": residual}

    return trial


def seed_keys(seed: int, seeds: int) -> jax.Array:
    """Key of seed ``s`` is ``fold_in(key(seed), s)`` (the same at every grid point)."""
    base = jax.random.key(seed)
    return jax.vmap(lambda s: jax.random.fold_in(base, s))(jnp.arange(seeds))


_COMPILED: dict = {}  # (static description of a program) -> compiled executable
_LOCK = threading.Lock()


def clear_cache() -> None:
    """Forget compiled sweep programs."""
    with _LOCK:
        _COMPILED.clear()


def _program_key(point, resolved, width, seeds, vmapped):
    static = {k: resolved[k] for k in ("steps", "optimizer", "lr", "x64", "block_size", "noise", "ridge", "pad_p")}
    return (point.d, point.n, width, point.activation, point.method, json.dumps(static, sort_keys=True),
            seeds if vmapped else None, bool(jax.config.jax_enable_x64))


def compiled_program(point: GridPoint, resolved: dict, width: Optional[int] = None,
                     vmapped: bool = True):
    """The compiled program of a point, ``(executable, compile_seconds)``; ``compile_seconds`` is 0
    when an earlier point with the same program compiled it. Thread-safe (sweeps compile ahead)."""
    width = point.p if width is None else width
    keys = seed_keys(resolved["seed"], resolved["seeds"])
    pkey = _program_key(point, resolved, width, resolved["seeds"], vmapped)
    with _LOCK:
        if pkey in _COMPILED:
            return _COMPILED[pkey], 0.0
    trial = make_trial(point, resolved, width)
    fn = jax.jit(jax.vmap(trial, in_axes=(0, None)) if vmapped else trial)
    t0 = time.perf_counter()
    exe = fn.lower(keys if vmapped else keys[0], np.int32(point.p)).compile()
    seconds = time.perf_counter() - t0
    with _LOCK:
        _COMPILED.setdefault(pkey, exe)
    return exe, seconds


def run_point(point: GridPoint, resolved: dict, width: Optional[int] = None,
              vmapped: bool = True, program=None) -> PointOutput:
    """Run every seed of one grid point in one vmapped program (``width``: see :func:`pad_width`).

    ``vmapped=False`` runs the seeds one by one through the same per-seed function (for tests and
    benchmarks; the results agree to rounding). ``program``: a ``compiled_program`` result."""
    exe, compile_seconds = program or compiled_program(point, resolved, width, vmapped)
    keys = seed_keys(resolved["seed"], resolved["seeds"])
    p = np.int32(point.p)
    t0 = time.perf_counter()
    if vmapped:
        out = jax.block_until_ready(exe(keys, p))
        out = {k: np.asarray(v) for k, v in out.items()}
    else:
        per = [jax.block_until_ready(exe(keys[s], p)) for s in range(keys.shape[0])]
        out = {k: np.stack([np.asarray(o[k]) for o in per]) for k in per[0]}
    seconds = time.perf_counter() - t0
    return PointOutput(out["x"], out["x_hat"], out["train_loss"], out["loss"], out["steps"],
                       out["status"], out["residual"], seconds, compile_seconds)


def point_rows(point: GridPoint, po: PointOutput) -> list[dict]:
    """Results rows (see :data:`COLUMNS`) of one grid point, with Hungarian matching per seed."""
    rows = []
    for s in range(po.x.shape[0]):
        m = match(po.x[s], po.x_hat[s])
        rows.append({
            "d": point.d, "n": point.n, "p": point.p, "p_over_dn": point.p_over_dn,
            "activation": point.activation, "method": point.method, "seed": s,
            "train_loss": float(po.train_loss[s]), "loss": float(report_loss(po.loss[s])),
            "error_abs": m.error_abs, "error_sign": m.error_sign, "residual": float(po.residual[s]),
            "recovered": m.recovered, "steps": int(po.steps[s]),
            "status": _STATUS.get(int(po.status[s]), str(int(po.status[s]))),
            "seconds": po.seconds, "compile_seconds": po.compile_seconds,
        })
    return rows


# --------------------------------------------------------------------------------------------
# results.csv: append-only, fsync per point, resumable
# --------------------------------------------------------------------------------------------
def _fmt(v) -> str:
    if isinstance(v, float):
        return repr(v)  # round-trips exactly
    return str(v)


def _rows_text(rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for r in rows:
        w.writerow([_fmt(r[c]) for c in COLUMNS])
    return buf.getvalue()


def _parse_row(fields: list) -> dict:
    if len(fields) != len(COLUMNS):
        raise ValueError(f"expected {len(COLUMNS)} fields, got {len(fields)}")
    row = {}
    for c, v in zip(COLUMNS, fields):
        row[c] = v if c in _STR_COLUMNS else int(v) if c in _INT_COLUMNS else float(v)
    return row


def read_results(path) -> dict:
    """Read ``results.csv`` (or a sweep directory) into a table: a dict of NumPy arrays, one per
    column of :data:`COLUMNS`. A partial last line (a killed write) is ignored."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.csv"
    if not path.is_file():
        raise ValueError(f"results: no results file at {str(path)!r}")
    rows, _ = _read_rows(path)
    return to_table(rows)


def to_table(rows: list[dict]) -> dict:
    """A list of rows as a table (dict of NumPy arrays keyed by column)."""
    table = {}
    for c in COLUMNS:
        vals = [r[c] for r in rows]
        table[c] = np.asarray(vals, dtype=object if c in _STR_COLUMNS else
                              np.int64 if c in _INT_COLUMNS else np.float64)
        if c in _STR_COLUMNS:
            table[c] = table[c].astype(str) if rows else np.asarray([], dtype=str)
    return table


def table_rows(table: dict) -> list[dict]:
    """The inverse of :func:`to_table`."""
    n = len(next(iter(table.values()))) if table else 0
    return [{c: table[c][i].item() if hasattr(table[c][i], "item") else table[c][i] for c in table}
            for i in range(n)]


def _read_rows(path: Path) -> tuple[list[dict], bool]:
    """Complete rows of a results file and whether the file had a torn/garbled tail."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    torn = False
    if text and not text.endswith("\n"):  # killed mid-write: drop the partial last line
        text = text[: text.rfind("\n") + 1]
        torn = True
    lines = text.splitlines()
    if not lines:
        return [], torn
    header = next(csv.reader([lines[0]]))
    if tuple(header) != COLUMNS:
        raise ValueError(f"out: {str(path)!r} is not a jaxrecon results file (unexpected header)")
    rows = []
    for i, fields in enumerate(csv.reader(lines[1:])):
        try:
            rows.append(_parse_row(fields))
        except ValueError as e:
            raise ValueError(f"out: {str(path)!r} line {i + 2} is corrupted ({e})") from None
    return rows, torn


def _complete_points(rows, seeds) -> tuple[dict, bool]:
    """Rows grouped by grid point, keeping only points with exactly seeds ``0..seeds-1``."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["d"], r["n"], r["p"], r["activation"], r["method"]), []).append(r)
    done, dropped = {}, False
    for k, rs in groups.items():
        if sorted(r["seed"] for r in rs) == list(range(seeds)):
            done[k] = sorted(rs, key=lambda r: r["seed"])
        else:
            dropped = True
    return done, dropped


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _describe_difference(old: dict, new: dict) -> str:
    keys = sorted(set(old) | set(new))
    diff = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys
            if k not in _NON_IDENTITY and old.get(k) != new.get(k)]
    return "; ".join(diff[:4]) + (" ..." if len(diff) > 4 else "")


def prepare_out(out, resolved: dict, points: list[GridPoint]) -> dict:
    """Create or check ``out``; returns finished points ``{point key: rows}``.

    A new directory gets ``sweep.json`` and a header-only ``results.csv``. An existing one must hold
    the same config (by hash); its results are cleaned of a partial last line and of incomplete
    points (rewritten atomically), and the finished points are returned.
    """
    out = out_dir(out)
    meta_path, res_path = out / "sweep.json", out / "results.csv"
    h = config_hash(resolved)
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            old_hash, old_cfg = meta["config_hash"], meta["config"]
        except (OSError, ValueError, KeyError, TypeError):
            raise ValueError(f"out: {str(meta_path)!r} is unreadable; use another --out") from None
        if old_hash != h:
            raise ValueError(
                f"out: {str(out)!r} holds a sweep with a different config ({_describe_difference(old_cfg, resolved)}); "
                f"use another --out, or delete the directory to start over")
    elif res_path.exists():
        raise ValueError(f"out: {str(res_path)!r} exists without sweep.json; use another --out")
    else:
        write_json(meta_path, {"config": resolved, "config_hash": h, "versions": versions(),
                               "points": len(points), "finished": False})
    if not res_path.exists():
        _atomic_text(res_path, ",".join(COLUMNS) + "\n")
        _fsync_dir(out)
        return {}
    rows, torn = _read_rows(res_path)
    done, dropped = _complete_points(rows, resolved["seeds"])
    valid = {pt.key() for pt in points}
    stray = [k for k in done if k not in valid]
    if stray:
        raise ValueError(f"out: {str(res_path)!r} has rows for points outside this grid, e.g. {stray[0]}")
    if torn or dropped:  # rewrite without the partial line / incomplete points, atomically
        keep = [r for pt in points if pt.key() in done for r in done[pt.key()]]
        _atomic_text(res_path, ",".join(COLUMNS) + "\n" + _rows_text(keep))
        _fsync_dir(out)
    return done


def _append_rows(path: Path, rows) -> None:
    with open(path, "a") as f:
        f.write(_rows_text(rows))
        f.flush()
        os.fsync(f.fileno())


# --------------------------------------------------------------------------------------------
# The sweep
# --------------------------------------------------------------------------------------------
def sweep(config, out=None, progress: bool = True, plots: bool = True, log=print,
          bootstrap: int = 1000, compile_workers: int = 2) -> dict:
    """Run a sweep; return its results table (dict of NumPy arrays, columns :data:`COLUMNS`).

    Args:
      config: a :class:`SweepConfig`, a dict of its fields, or the path of a config file.
      out: directory for ``results.csv``, ``sweep.json``, ``thresholds.csv`` and figures
        (``None``: nothing written, nothing resumed).
      progress: a progress bar over grid points (with an ETA); ``log`` gets one line per point.
      plots: write ``law.png/.pdf``, ``residuals.png``, ``collapse.png`` at the end.
      log: where lines go (``None``: silent).
      bootstrap: bootstrap resamples for the threshold spread.
      compile_workers: programs compiled at once, ahead of the points that need them.
    """
    if isinstance(config, (str, Path)):
        config = load_config(config)
    elif isinstance(config, dict):
        config = SweepConfig.from_dict(config)
    resolved = config.resolved()
    points = grid(resolved)
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0:
        raise ValueError(f"bootstrap: must be a non-negative integer, got {bootstrap!r}")
    if resolved["x64"]:
        jax.config.update("jax_enable_x64", True)
    done = prepare_out(out, resolved, points) if out is not None else {}
    out = Path(out) if out is not None else None
    todo = [pt for pt in points if pt.key() not in done]
    to_stdout = log is print
    log = log or (lambda *a, **k: None)
    if done:
        log(f"resuming {str(out)!r}: {len(points) - len(todo)}/{len(points)} grid points already done")

    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        desc = "sweep" if resolved["name"] == "sweep" else f"sweep {resolved['name']}"
        bar = tqdm(total=len(todo), desc=desc, unit="point", dynamic_ncols=True)
    emit = bar.write if bar is not None and to_stdout else log  # lines above the bar
    t_start = time.perf_counter()
    compile_total = 0.0
    # Compile ahead: programs of later curves compile in background threads while points run
    # (XLA compiles outside the GIL), so a 2-core machine compiles two programs at once.
    pool = ThreadPoolExecutor(max_workers=max(1, compile_workers))
    futures = {}
    for pt in todo:
        w = pad_width(pt, resolved, points)
        pk = _program_key(pt, resolved, w, resolved["seeds"], True)
        if pk not in futures:
            futures[pk] = pool.submit(compiled_program, pt, resolved, w)
    first_use = set()
    try:
        for pt in todo:
            w = pad_width(pt, resolved, points)
            pk = _program_key(pt, resolved, w, resolved["seeds"], True)
            exe, cs = futures[pk].result()
            if pk in first_use:
                cs = 0.0
            first_use.add(pk)
            po = run_point(pt, resolved, w, program=(exe, cs))
            rows = point_rows(pt, po)
            if out is not None:
                _append_rows(out / "results.csv", rows)
            done[pt.key()] = rows
            compile_total += po.compile_seconds
            errs = np.array([r["error_abs"] for r in rows])
            emit(f"d={pt.d} n={pt.n} p={pt.p} (p/dn={pt.p_over_dn:.3g}) {pt.activation}/{pt.method}: "
                 f"error_abs={errs.mean():.3g}±{errs.std():.2g}  "
                 f"train_loss={np.mean([r['train_loss'] for r in rows]):.2g}  "
                 f"run {po.seconds:.1f}s  compile {po.compile_seconds:.1f}s")
            if bar is not None:
                bar.update(1)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        if bar is not None:
            bar.close()
    total = time.perf_counter() - t_start
    rows = [r for pt in points for r in done[pt.key()]]
    table = to_table(rows)
    if todo:
        log(f"{len(todo)} grid points in {total:.1f}s; {len(futures)} compiled program(s) took {compile_total:.1f}s "
            f"(compiled ahead, in {max(1, compile_workers)} threads)")

    if out is not None:
        meta = json.loads((out / "sweep.json").read_text())
        meta.update(finished=True, versions=versions())
        meta.setdefault("runs", []).append({"points_run": len(todo), "seconds": total,
                                            "compile_seconds": compile_total})
        write_json(out / "sweep.json", meta)
    report(table, out, plots=plots, bootstrap=bootstrap, seed=resolved["seed"], log=log)
    return table


def report(table: dict, out=None, plots: bool = True, bootstrap: int = 1000, seed: int = 0,
           log=print) -> list[dict]:
    """Threshold table (printed; ``thresholds.csv``) and figures of a results table."""
    from .thresholds import estimate_thresholds, format_thresholds, write_thresholds

    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0:
        raise ValueError(f"bootstrap: must be a non-negative integer, got {bootstrap!r}")
    log = log or (lambda *a, **k: None)
    thr = estimate_thresholds(table, n_boot=bootstrap, seed=seed)
    log(format_thresholds(thr))
    if out is not None:
        out = out_dir(out)
        write_thresholds(out / "thresholds.csv", thr)
        files = ["thresholds.csv"]
        if plots:
            from .plotting import plot_all

            files += plot_all(table, out)
        log("wrote " + ", ".join(str(out / f) for f in files))
    return thr


def plot_dir(path, out=None, bootstrap: int = 1000, log=print) -> list[dict]:
    """``jaxrecon plot DIR``: thresholds and figures from ``DIR/results.csv`` (written to ``out``,
    default ``DIR``)."""
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
