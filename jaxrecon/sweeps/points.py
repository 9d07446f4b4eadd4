"""Grid points and their compiled programs: every seed of a point in one vmapped program.

Each seed draws its own data, random features, least-squares fit and attack from one key, so a
point is ``jax.vmap(trial)(keys)`` with

    trial(key):  k_data, k_model, k_attack = split(key, 3)
                 x, y      = synthetic(k_data, n, d)                 # rows on the sphere sqrt(d)
                 theta     = fit(RandomFeatures(k_model, d, p), x, y)
                 x_hat     = reconstruct(Target(fmap, theta), k_attack, n)
                 residual  = span_residuals(fmap, x_hat, x).mean()  # paper Fig. 2

Seed ``s`` uses ``key_s = fold_in(key(seed), s)`` at every grid point, so the curves of one seed
across ``p`` share their data (common random numbers) and, because row ``j`` of ``V`` is drawn
from ``fold_in(k_model, j)``, a larger ``p`` extends a smaller one's features. Matching (Hungarian,
SciPy) runs on the host afterwards (:func:`point_rows`).

Reproducibility: on CPUs the seeds of a point are mapped (``lax.map``, see
:func:`jaxrecon.attack.driver.seed_batching`), so seed ``s``'s row does not depend on the number of
seeds: rerunning the sweep with ``seeds=s+1`` reproduces it bit for bit, given the same config
(including the padded width of the point's program, :func:`pad_width`, which depends on the
curve's largest ``p``), machine and JAX version. On accelerators the seeds are vmapped and the
same holds only for the same number of seeds.
"""

from __future__ import annotations

import functools
import json
import threading
import time
import warnings
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..data.synthetic import synthetic
from ..defences import TRACED, Levels, defence_at, defence_levels, defend
from ..features.base import Target
from ..features.random_features import RandomFeatures
from ..loss import report_loss, span_residuals
from ..metrics import match
from ..outcomes import final_loss, final_verdict, method_tolerance
from ..models.rf import fit_with_info
from ..attack import STATUS_NAMES as _STATUS
from ..attack import Status, method_config, reconstruct
from ..attack.auto import resolve
from ..attack.degenerate import ON_LINE, DegenerateProblemWarning, rows_reason
from ..attack.driver import seed_batching
from ..scale import INT32_MAX, int32_overflow, physical_memory, step_bytes
from .config import ResolvedSweep
from .networks import head_p, host_losses, make_network_trial


# Padding every p of a (d, n) curve to the curve's largest p lets one compiled program serve the
# whole curve (p becomes a runtime argument). Compiling costs seconds per program on a CPU while a
# small point runs in a fraction of that, so "auto" pads when the padded work is small:
# p_max * d * n * seeds * steps <= PAD_AUTO_LIMIT (and V is dense).
PAD_AUTO_LIMIT = 1e10


class GridPoint(NamedTuple):
    d: int
    n: int
    p: int
    activation: str
    method: str
    defence: str = "none"  # the defence of the released theta (jaxrecon.defences)
    strength: float = 0.0  # its strength (jaxrecon.defences.defence_at)
    model: str = "rf"  # rf, or a network whose head has p parameters (jaxrecon.sweeps.networks)

    @property
    def p_over_dn(self) -> float:
        return self.p / (self.d * self.n)

    def key(self) -> tuple:
        return (self.d, self.n, self.p, self.activation, self.method, self.defence, float(self.strength))


def grid(resolved: ResolvedSweep) -> list[GridPoint]:
    """Grid points of a resolved config, ordered ``defence strength, activation, method, d, n, p``
    (p ascending). Ratios that round to the same ``p`` give one point."""
    kind = resolved.defence or "none"
    strengths = resolved.defence_strength or (0.0,)
    return [pt for s in strengths for pt in _grid(resolved, kind, float(s))]


def _grid(resolved: ResolvedSweep, kind: str, strength: float) -> list[GridPoint]:
    points, seen = [], set()
    model = resolved.model.name or "rf"
    for act in resolved.activation:
        for meth in resolved.method:
            for d in resolved.d:
                for n in resolved.n:
                    if resolved.p is not None:
                        ps = resolved.p
                    elif resolved.p_over_n is not None:
                        ps = [max(1, int(round(r * n))) for r in resolved.p_over_n]
                    else:
                        ps = [max(1, int(round(r * d * n))) for r in resolved.p_over_dn]
                    if model != "rf":  # a whole width: the head's parameter count nearest p
                        ps = [head_p(model, p, resolved.classes or 1) for p in ps]
                    for p in sorted(ps):
                        pt = GridPoint(d, n, p, act, meth, kind, strength, model)
                        if pt.key() not in seen:
                            seen.add(pt.key())
                            points.append(pt)
    if not points:
        raise ValueError("grid: the sweep has no grid points")
    return points


def pad_width(point: GridPoint, resolved: ResolvedSweep, points: Sequence[GridPoint]) -> int:
    """The static feature count of the program that runs ``point`` (``>= point.p``).

    With padding, rows ``j >= p`` of ``V`` are zero, so (as every registered activation has
    ``sigma(0) = 0``) the padded features are exactly zero and ``theta``, the loss and its gradient
    are those of the ``p``-feature model.
    """
    mode = resolved.pad_p
    if mode == "none" or resolved.block_size is not None or point.model != "rf":
        return point.p
    ran = point_method_run(point)  # auto's choice depends on p: one program per choice
    p_max = max(q.p for q in points if (q.d, q.n, q.activation, q.method, q.defence, q.strength) ==
                (point.d, point.n, point.activation, point.method, point.defence, point.strength)
                and point_method_run(q) == ran)
    if mode == "auto" and p_max * point.d * point.n * resolved.seeds * resolved.steps > PAD_AUTO_LIMIT:
        return point.p
    return p_max


_host_memory = physical_memory  # the bound check_sizes compares with (a module name tests can patch)


def point_bytes(point: GridPoint, resolved: ResolvedSweep, width: int) -> int:
    """A lower bound on the memory of one point's program: dense, every seed holds ``V``
    (``width x d``) and the features of the training set (``n x width``); streamed, the modelled
    gradient step of :func:`jaxrecon.scale.step_bytes`."""
    item = 8 if resolved.x64 else 4
    if resolved.block_size is not None:
        return step_bytes(point.d, point.n, width, min(resolved.block_size, width), resolved.seeds,
                          "float64" if resolved.x64 else "float32")
    return item * resolved.seeds * width * (point.d + point.n)


def check_sizes(resolved: ResolvedSweep, points: Sequence[GridPoint], memory: Optional[int] = None) -> None:
    """Refuse, before anything runs or is written, a grid whose sizes overflow int32 indexing
    (``p``, ``p n``, ``n d``, ``p d`` with ``p`` the padded width) or whose smallest point program
    cannot fit the machine's memory (``memory`` bytes; default: the host's physical memory)."""
    memory = _host_memory() if memory is None else memory
    for pt in points:
        w = pad_width(pt, resolved, points)
        where = f"grid point d={pt.d} n={pt.n} p={pt.p}"
        over = int32_overflow((("p", w), ("p*n", w * pt.n), ("n*d", pt.n * pt.d), ("p*d", w * pt.d)))
        if over is not None:
            raise ValueError(f"p: {where} has {over[0]} = {over[1]}, over the int32 limit {INT32_MAX}; "
                             f"use smaller d, n or p")
        need = point_bytes(pt, resolved, w)
        if memory is not None and need > memory:
            raise ValueError(f"p: {where} needs at least {need / 1e9:.3g} GB ({resolved.seeds} seeds), more than "
                             f"the {memory / 1e9:.3g} GB of memory here; use smaller p or seeds, or block_size")


def point_levels(point: GridPoint, resolved: ResolvedSweep) -> Levels:
    """The defence numbers of ``point`` as the arrays its program takes (zeros without a defence;
    :func:`jaxrecon.defences.defence_levels`)."""
    lv = Levels(0.0, 0.0)
    if point.defence != "none":
        lv = defence_levels(defence_at(point.defence, point.strength, resolved.dp_delta, resolved.ridge or None))
    strength_dtype = np.int32 if isinstance(lv.strength, int) else jax.dtypes.canonicalize_dtype(np.float64)
    return Levels(np.asarray(lv.strength, strength_dtype),
                  np.asarray(lv.noise_multiplier, jax.dtypes.canonicalize_dtype(np.float64)))


def make_trial(point: GridPoint, resolved: ResolvedSweep, width: Optional[int] = None) -> Callable:
    """``trial(key, p, levels) -> dict`` for one seed at one grid point (pure; jit- and
    vmap-compatible).

    ``width`` (default ``point.p``) is the static number of features of the program; when it is
    larger than ``p``, rows ``p..width-1`` of ``V`` are zeroed (see :func:`pad_width`). ``levels``
    (:func:`point_levels`) are the defence's numbers: for the kinds of
    :data:`jaxrecon.defences.TRACED` one program serves every strength (:func:`program_key`)."""
    dtype = "float64" if resolved.x64 else "float32"
    mcfg = method_config(point.method, **resolved.method_options())
    if point.model != "rf":  # a network: auto resolves on the network's map (jaxrecon.attack.auto)
        return make_network_trial(point, resolved, mcfg)
    # auto chooses by the point's own p, not the padded width of its program (jaxrecon.attack.auto)
    mcfg = resolve(mcfg, RandomFeatures(jax.random.key(0), point.d, point.p, point.activation, resolved.block_size),
                   point.n)
    steps, noise, ridge, block = resolved.steps, resolved.noise, resolved.ridge, resolved.block_size
    defence = None
    if point.defence != "none":
        defence = defence_at(point.defence, point.strength, resolved.dp_delta, ridge or None)
    planted = resolved.planted
    width = point.p if width is None else width
    padded = block is None and resolved.pad_p != "none"  # a no-op mask when width == p

    def trial(key, p, levels):
        k_data, k_model, k_attack = jax.random.split(key, 3)
        data = synthetic(k_data, point.n, point.d, noise, dtype=dtype)
        fmap = RandomFeatures(k_model, point.d, width, point.activation, block, dtype=dtype)
        if padded:
            keep = (jnp.arange(width) < p)[:, None]
            fmap = fmap.replace(V=jnp.where(keep, fmap.weights(), 0))
        fitted = fit_with_info(fmap, data.x, data.y, ridge)
        target, floor = Target(fmap, fitted.theta), jnp.asarray(jnp.nan, fitted.theta.dtype)
        if defence is not None:  # the released theta; its noise from a key of its own
            active = jnp.arange(width) < p
            target, info = defend(fmap, data.x, data.y, defence, jax.random.fold_in(k_attack, 2), active,
                                  levels if point.defence in TRACED else None)
            floor = info["floor"]
        x0 = None
        if planted is not None:  # a start near the training set: is it a locally isolated zero?
            x0 = data.x + planted * jax.random.normal(jax.random.fold_in(k_attack, 1), data.x.shape, data.x.dtype)
        res = reconstruct(target, k_attack, point.n, method=mcfg, steps=steps, x0=x0)
        # span_residuals divides by sqrt(width); the paper's normalisation is sqrt(p)
        residual = span_residuals(fmap, res.x_hat, data.x).mean() * jnp.sqrt(width / p).astype(dtype)
        return {"x": data.x, "x_hat": res.x_hat, "train_loss": fitted.train_loss, "loss": res.loss,
                "steps": res.steps, "status": res.status, "residual": residual, "floor": floor,
                "theta": target.theta}

    return trial


def seed_keys(seed: int, seeds) -> jax.Array:
    """Key of seed ``s`` is ``fold_in(key(seed), s)`` (the same at every grid point), for
    ``s < seeds`` (an int) or for the seeds listed."""
    base = jax.random.key(seed)
    which = jnp.arange(seeds) if isinstance(seeds, int) else jnp.asarray(seeds)
    return jax.vmap(lambda s: jax.random.fold_in(base, s))(which)


class ProgramCache:
    """Compiled point programs, keyed by their static description (:func:`program_key`).

    A sweep owns one for its run; background threads compile into it (hence the lock)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._programs: dict = {}

    def get(self, key):
        with self._lock:
            return self._programs.get(key)

    def put(self, key, program):
        """Store ``program`` unless another thread stored one first; return the stored one."""
        with self._lock:
            return self._programs.setdefault(key, program)

    def clear(self) -> None:
        with self._lock:
            self._programs.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._programs)


def program_key(point: GridPoint, resolved: ResolvedSweep, width: int, vmapped: bool = True) -> tuple:
    """What makes two points share a compiled program."""
    static = {k: getattr(resolved, k) for k in ("steps", "x64", "block_size", "noise", "ridge", "pad_p", "planted",
                                                "dp_delta")}
    static["method_options"] = resolved.method_options()
    strength = None if point.defence in TRACED else float(point.strength)  # traced: an argument
    return (point.d, point.n, width, point.activation, point.method, point_method_run(point), point.defence, strength,
            json.dumps(static, sort_keys=True),
            resolved.seeds if vmapped else None, bool(jax.config.jax_enable_x64))


def compiled_program(point: GridPoint, resolved: ResolvedSweep, width: Optional[int] = None,
                     vmapped: bool = True, cache: Optional[ProgramCache] = None):
    """The compiled program of a point, ``(executable, compile_seconds)``; ``compile_seconds`` is 0
    when an earlier point compiled the same program into ``cache`` (default: a fresh cache).
    Thread-safe (sweeps compile ahead)."""
    cache = ProgramCache() if cache is None else cache
    width = point.p if width is None else width
    keys = seed_keys(resolved.seed, resolved.seeds)
    pkey = program_key(point, resolved, width, vmapped)
    exe = cache.get(pkey)
    if exe is not None:
        return exe, 0.0
    trial = make_trial(point, resolved, width)
    if not vmapped:
        fn = jax.jit(trial)
    elif seed_batching() == "map":
        fn = jax.jit(lambda keys, p, lv: jax.lax.map(lambda k: trial(k, p, lv), keys))
    else:
        fn = jax.jit(jax.vmap(trial, in_axes=(0, None, None)))
    t0 = time.perf_counter()
    exe = fn.lower(keys if vmapped else keys[0], np.int32(point.p), point_levels(point, resolved)).compile()
    seconds = time.perf_counter() - t0
    return cache.put(pkey, exe), seconds


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
    floor: Optional[np.ndarray] = None  # the defence's expected loss floor per seed (nan: none)
    loss_f64: Optional[np.ndarray] = None  # the residual-form loss in float64 (jaxrecon.outcomes.final_loss)
    loss_at_truth: Optional[np.ndarray] = None  # the same loss at the training set (0 up to rounding in the span)
    train_steps: Optional[np.ndarray] = None  # GD steps of a network's training (0: random features)
    params_total: Optional[int] = None  # every parameter of the model (random features: p)


def run_point(point: GridPoint, resolved: ResolvedSweep, width: Optional[int] = None,
              vmapped: bool = True, program=None, cache: Optional[ProgramCache] = None,
              seeds: Optional[Sequence[int]] = None) -> PointOutput:
    """Run every seed of one grid point in one program (``width``: see :func:`pad_width`); the
    seeds are mapped on CPUs, vmapped on accelerators (see the module docstring). ``seeds``: run
    only these (keyed as in a full run; ``resolved`` and ``program`` then for that many seeds).

    ``vmapped=False`` runs the seeds one by one through separately compiled calls of the per-seed
    function (for tests and benchmarks; the results agree to rounding). ``program``: a ``compiled_program`` result; without
    it the program comes from ``cache`` (compiled there if missing; default: a fresh cache)."""
    exe, compile_seconds = program or compiled_program(point, resolved, width, vmapped, cache)
    keys = seed_keys(resolved.seed, resolved.seeds if seeds is None else tuple(seeds))
    p, lv = np.int32(point.p), point_levels(point, resolved)
    t0 = time.perf_counter()
    as_np = lambda tree: jax.tree_util.tree_map(np.asarray, tree)
    if vmapped:
        out = as_np(jax.block_until_ready(exe(keys, p, lv)))
    else:
        per = [as_np(jax.block_until_ready(exe(keys[s], p, lv))) for s in range(keys.shape[0])]
        out = jax.tree_util.tree_map(lambda *a: np.stack(a), *per)
    seconds = time.perf_counter() - t0
    if point.model != "rf":
        loss_f64, at_truth = host_losses(point, resolved, keys, out)
        # every parameter of the network: the sizes of one seed's trained leaves
        params_total = sum(int(np.size(leaf[0])) for leaf in jax.tree_util.tree_leaves(out["params"]))
        train_steps = np.asarray(out["train_steps"])
    else:
        loss_f64, at_truth = final_point_losses(point, resolved, keys, out["theta"], out["x_hat"], out["x"])
        train_steps, params_total = np.zeros(len(loss_f64), np.int64), point.p
    return PointOutput(out["x"], out["x_hat"], out["train_loss"], out["loss"], out["steps"],
                       out["status"], out["residual"], seconds, compile_seconds, out["floor"], loss_f64,
                       at_truth, train_steps, params_total)


def final_point_losses(point: GridPoint, resolved: ResolvedSweep, keys, theta, x_hat, x=None):
    """:func:`jaxrecon.outcomes.final_loss` of every seed of a point, on the host: each seed's
    random features rebuilt from its key as :func:`make_trial` drew them (the first ``p`` rows of
    ``V``; a padded program's other rows are zero, as are those entries of ``theta``). With the
    training rows ``x``: ``(loss_f64, loss_at_truth)``, the second the same loss at ``x``."""
    dtype = "float64" if resolved.x64 else "float32"
    out, truth = np.full(len(x_hat), np.nan), np.full(len(x_hat), np.nan)
    for s in range(len(x_hat)):
        k_model = jax.random.split(keys[s], 3)[1]
        fmap = RandomFeatures(k_model, point.d, point.p, point.activation, dtype=dtype)
        target = Target(fmap, np.asarray(theta[s])[:point.p])
        out[s] = final_loss(target, x_hat[s])
        if x is not None:
            truth[s] = final_loss(target, x[s])
    return out if x is None else (out, truth)


def degenerate_reason(point: GridPoint) -> Optional[str]:
    """Why every seed of a point is degenerate (:mod:`jaxrecon.attack.degenerate`): ``p <= n``
    (random features: one feature row per input) or ``d = 1`` on the sphere; else ``None``."""
    return rows_reason(point.p, point.n, point.n) or (ON_LINE if point.d == 1 else None)


def point_method_run(point: GridPoint) -> str:
    """What ran at ``point``: for ``auto`` the recipe it chooses for the point's map
    (:func:`jaxrecon.attack.auto.method_run`; the map's shape and activation decide, not its numbers)."""
    if point.method != "auto":
        return point.method
    if point.model != "rf":  # the split start needs random features
        from ..attack.auto import NEAR_THRESHOLD

        return "global" if point.p < NEAR_THRESHOLD * point.d * point.n else "adam-lm"
    return _auto_choice(point.d, point.n, point.p, point.activation)


@functools.lru_cache(maxsize=None)
def _auto_choice(d: int, n: int, p: int, activation: str) -> str:
    """``auto``'s choice for a random-features map of this shape (cached: :func:`pad_width` asks it
    for every point of a curve, for every point)."""
    from ..attack.auto import method_run
    from ..features.random_features import RandomFeatures

    return method_run("auto", RandomFeatures(jax.random.key(0), d, p, activation), n)


def point_rows(point: GridPoint, po: PointOutput) -> list[dict]:
    """Results rows (see :data:`jaxrecon.sweeps.COLUMNS`) of one grid point, with Hungarian
    matching per seed. The labels come from :func:`jaxrecon.outcomes.final_verdict`: ``solved`` is
    ``loss_f64 <= 1e-10`` (the residual-form loss in float64, :func:`final_point_losses`), a
    ``"converged"`` seed that is not solved shows ``"stopped"``; an output without ``loss_f64``
    (built by hand) falls back to the method's loss and its form's tolerance in the point's dtype
    (:func:`jaxrecon.outcomes.method_tolerance`).

    Degenerate seeds (every seed of a point with ``p <= n`` or ``d = 1``; a seed whose ``theta`` is
    zero) get status ``"degenerate"``, ``solved`` and ``identified`` false, ``recovered`` 0 (at
    ``d = 1`` errors ``nan``) and a warning naming the cause; at ``p <= n`` their loss and
    residual are 0 (every ``x_hat`` spans ``R^p``). A seed of any other point whose training loss
    is not finite (labels too large for the dtype: ``--noise``) is a one-line ``ValueError``."""
    rows = []
    dtype = np.asarray(po.loss).dtype
    tol = method_tolerance(point.method, dtype if dtype.kind == "f" else np.float32)
    why = degenerate_reason(point)
    status = np.where(why is not None, int(Status.DEGENERATE), np.asarray(po.status))
    degenerate = status == Status.DEGENERATE
    if degenerate.any():
        from ..attack.degenerate import ZERO_THETA

        warnings.warn(f"grid point d={point.d} n={point.n} p={point.p}, {int(degenerate.sum())} of "
                      f"{degenerate.size} seeds: {why or ZERO_THETA}", DegenerateProblemWarning, stacklevel=2)
    bad = np.flatnonzero(~np.isfinite(np.asarray(po.train_loss, np.float64)) & ~degenerate)
    if bad.size:
        raise ValueError(f"noise: grid point d={point.d} n={point.n} p={point.p}, seed {int(bad[0])}: the "
                         f"least-squares fit gave a training MSE of {float(po.train_loss[bad[0]]):.3g}, labels too "
                         f"large for {dtype.name if dtype.kind == 'f' else 'float32'}; use a smaller --noise "
                         f"(or --x64)")
    everywhere_zero = point.p <= point.n
    ran = point_method_run(point)
    for s in range(po.x.shape[0]):
        m = match(po.x[s], po.x_hat[s])
        loss, residual = float(report_loss(po.loss[s])), float(po.residual[s])
        loss_f64 = None if po.loss_f64 is None else float(po.loss_f64[s])
        if degenerate[s] and everywhere_zero:
            loss, residual = 0.0, 0.0
        name = _STATUS.get(int(status[s]), str(int(status[s])))
        rows.append({
            "d": point.d, "n": point.n, "p": point.p, "p_over_dn": point.p_over_dn,
            "activation": point.activation, "method": point.method, "seed": s,
            "train_loss": float(po.train_loss[s]), "loss": loss,
            "error_abs": m.error_abs, "error_sign": m.error_sign, "residual": residual,
            "recovered": m.recovered, "steps": int(po.steps[s]), "status": name,
            "seconds": po.seconds, "compile_seconds": po.compile_seconds,
            "defence": point.defence, "defence_strength": float(point.strength),
            "floor": float("nan") if po.floor is None else float(po.floor[s]),
            "loss_f64": float("nan") if loss_f64 is None else loss_f64, "method_run": ran,
            "loss_at_truth": float("nan") if po.loss_at_truth is None else float(po.loss_at_truth[s]),
            "params_total": point.p if po.params_total is None else int(po.params_total),
            "train_steps": 0 if po.train_steps is None else int(po.train_steps[s]),
        })
        rows[-1].update(final_verdict(name, loss_f64, m.error_sign, m.recovered, d=point.d, loss=loss,
                                      method_tol=tol))
    return rows
