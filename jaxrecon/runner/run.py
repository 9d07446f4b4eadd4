"""One reconstruction experiment end to end: data -> model -> target -> attack -> metrics -> files.

:func:`run_reconstruction` is what ``jaxrecon reconstruct`` calls; it is importable from notebooks.
It never switches JAX's float64 mode: a config with ``x64`` runs inside
:func:`jaxrecon.config.x64` (the CLI does this).
Keys: ``key = jax.random.key(seed)`` is split into ``(data, features, attack)`` roles; attack seed
``s`` starts from ``jax.random.split(attack_key, seeds)[s]``.
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple, Optional

import jax
import numpy as np

from ..config import to_dict
from ..data.synthetic import Dataset, synthetic
from ..distributed import host_local
from ..features.base import Target
from ..features.random_features import RandomFeatures
from ..io import commit_files, json_writer, made_dir, npz_writer, versions
from ..loss import report_loss
from ..metrics import match
from ..outcomes import FINAL_TOL, IDENTIFIED_TOL, final_loss, final_losses, final_verdict
from ..models.rf import describe_duplicates, duplicate_rows, fit_with_info
from ..attack import reconstruct_seeds
from ..attack.driver import seed_batching
from ..signals import Interrupted, stop_requested
from .config import ReconstructConfig
from .preflight import check_sizes


class Problem(NamedTuple):
    """A fitted model seen by the attack: its target, training loss and a one-line description."""

    target: Target
    train_loss: float
    description: str
    defence: Optional[dict] = None  # kind, level and the info of jaxrecon.defences.defend
    training: Optional[dict] = None  # a network's training: subset, steps, lr, tolerance, converged


#: A target whose ``loss_at_truth`` is above this carries it as its floor (``Target.floor``): its
#: ``theta`` is off the span of the training features (a network trained on all layers), and the
#: attack's floor and plateau stops apply. About 70 times the float32 floor of the residual form
#: (``100 eps^2``, :func:`jaxrecon.outcomes.solved_tolerance`) and the tolerance of ``solved``.
FLOOR_MIN = 1e-10


def loss_at_truth(target: Target, x) -> float:
    """The projector loss of ``theta`` at the true training set in float64
    (:func:`jaxrecon.outcomes.final_loss`, the residual form ``|P_perp theta|^2 / |theta|^2``): about
    ``0`` (float rounding) when ``theta`` is in the span of the training features (random features,
    a head-only network), ``> 0`` for a network trained on all layers and an off-span defence."""
    return float(final_loss(target, np.asarray(x)))


def with_floor(target: Target, at_truth: float) -> Target:
    """``target`` carrying ``at_truth`` as its floor when it is above :data:`FLOOR_MIN` and the target
    has none (a defence sets its own, :func:`jaxrecon.defences.defend`)."""
    if target.floor is not None or not (at_truth > FLOOR_MIN):
        return target
    import jax.numpy as jnp

    return target._replace(floor=jnp.asarray(at_truth, jnp.result_type(target.theta)))


def load_data(cfg: ReconstructConfig, key):
    """Training data for a run: synthetic sphere data, or ``n`` images of a named dataset.

    Images come as :class:`~jaxrecon.data.registry.ImageData` (``x``, ``y`` first, as ``Dataset``):
    standardised by the set's global mean and std (per colour channel for the ResNet, as the
    paper's ResNet code), then each row rescaled to norm ``sqrt(d)`` (the sphere the theory and
    the attack assume; see :mod:`jaxrecon.data.registry`; a homogeneous network is trained on the
    rows before the rescaling: :func:`jaxrecon.models.train.training_inputs`).
    """
    data = cfg.data
    if data.name == "synthetic":
        return synthetic(key, data.n, data.d, data.noise)
    from ..data.registry import load_dataset

    return load_dataset(data.name, key, data.n, data.dir, classes=data.classes, size=data.image_size,
                        standardize="channel" if cfg.model.name == "resnet" else "global")


def check_training_set(cfg: ReconstructConfig, data) -> None:
    """Refuse training data with repeated rows (:func:`jaxrecon.models.rf.duplicate_rows`): the law
    and the attack count distinct points, and a repeated row makes the kernel singular. One line
    naming the rows and the flags that chose them (``cfg`` resolved)."""
    pairs = duplicate_rows(data.x)
    if not pairs:
        return
    n, d, name = cfg.data.n, cfg.data.d, cfg.data.name
    rows = f"{len(pairs)} duplicate(s) ({describe_duplicates(pairs)})"
    if name == "synthetic" and d == 1:
        raise ValueError(f"d: with --d 1 every point of the sphere is +1 or -1, so the n={n} training points hold "
                         f"{rows}; the law counts distinct points: use --d 2 or more (or --n 1)")
    if name == "synthetic":
        raise ValueError(f"n: the n={n} training points hold {rows}; the law counts distinct points: use "
                         f"another --seed")
    raise ValueError(f"data: the n={n} training images of --data {name} hold {rows} (identical after loading); "
                     f"the law counts distinct points: choose other images (--data-classes, --seed) or a smaller --n")


def _check_fit(cfg: ReconstructConfig, train_loss: float, theta, steps: Optional[int] = None) -> None:
    """A fit whose training loss or parameters are not finite stops the run with one line naming
    the flag to change (huge ``--noise`` overflows the labels; a large ``--train-lr`` diverges)."""
    if np.isfinite(train_loss) and np.all(np.isfinite(np.asarray(theta))):
        return
    what = f"training MSE {train_loss:.3g}" if not np.isfinite(train_loss) else "non-finite parameters"
    m, dtype = cfg.model, "float64" if cfg.scale.x64 else "float32"
    if m.name != "rf":
        lr = "the default (0.1/lambda_max)" if m.train_lr is None else f"{m.train_lr:g}"
        when = f"after {steps} of --train-steps {m.train_steps}" if steps is not None else \
            f"after --train-steps {m.train_steps}"
        raise ValueError(f"train_lr: gradient descent on the {m.name} diverged ({what} {when}, --train-lr {lr}); "
                         f"use a smaller --train-lr")
    if cfg.data.name == "synthetic" and cfg.data.noise > 0:
        more = "" if cfg.scale.x64 else " (or --x64)"
        raise ValueError(f"noise: the least-squares fit gave a {what} with --noise {cfg.data.noise:g}: labels "
                         f"of that size overflow {dtype}; use a smaller --noise{more}")
    raise ValueError(f"model: the least-squares fit gave a {what} in {dtype}; nothing to attack")


def build_problem(cfg: ReconstructConfig, key, data: Dataset, layout=None, progress: bool = False) -> Problem:
    """Fit the configured model on ``data`` and return the attack's target (``cfg`` resolved; random
    features hold ``V`` as ``layout`` says, default :meth:`ReconstructConfig.layout`; a network is
    trained with progress on stderr when ``progress``). A training loss that is not finite is a
    one-line ``ValueError`` naming the flag to change."""
    m = cfg.model
    if m.name != "rf":
        import jax.numpy as jnp

        from ..models.train import build_network_problem

        net = build_network_problem(key, data, m.name, m.width, classes=m.classes, activation=m.activation,
                                    train_subset=m.train, train_steps=m.train_steps, train_lr=m.train_lr,
                                    train_tol=m.train_tol, dtype=jnp.float64 if cfg.scale.x64 else jnp.float32,
                                    progress=progress)
        tr = net.train
        _check_fit(cfg, float(tr.final_loss), net.target.theta, int(tr.steps))
        training = {"train": m.train, "steps": int(tr.steps), "max_steps": m.train_steps, "tol": m.train_tol,
                    "converged": bool(tr.converged), "initial_loss": float(tr.initial_loss),
                    "final_loss": float(tr.final_loss), "lr": float(tr.lr), "lr_rule": net.lr_rule}
        return Problem(net.target, float(tr.final_loss), net.description, training=training)
    layout = cfg.layout() if layout is None else layout
    fmap = RandomFeatures(key, cfg.data.d, m.p, m.activation, layout.block_size, shards=cfg.scale.shards)
    # The model is fitted with exact float32/64 products; only the attack may use faster matmuls.
    fitted = jax.jit(lambda fm, x, y: fit_with_info(fm, x, y, m.ridge))(fmap, data.x, data.y)
    fitted = host_local(fitted)  # with several processes, theta's slices live on different hosts
    _check_fit(cfg, float(fitted.train_loss), fitted.theta)
    spec = cfg.defence_spec()
    if spec is None:
        fmap = fmap.replace(precision=cfg.scale.precision)
        return Problem(Target(fmap, fitted.theta), float(fitted.train_loss), fmap.describe())
    from ..defences import defend

    released = jax.jit(lambda fm, x, y, k: defend(fm, x, y, spec, k))(fmap, data.x, data.y, jax.random.fold_in(key, 1))
    target = released.target._replace(fmap=fmap.replace(precision=cfg.scale.precision))
    info = {"kind": spec.kind, "level": spec.level, **{k: float(v) for k, v in released.info.items()}}
    if spec.kind == "dp":
        info.update(epsilon=spec.epsilon, delta=spec.delta, ridge=spec.fit_ridge, label_bound=spec.label_bound)
    return Problem(target, float(fitted.train_loss), f"{fmap.describe()}, defence {spec.kind} {spec.level:g}", info)


def run_reconstruction(cfg: ReconstructConfig, out=None, progress: bool = True, log=print) -> dict:
    """Run one reconstruction experiment; write ``summary.json`` and ``arrays.npz`` into ``out``.

    Returns the summary dict: ``config``, ``versions``, ``fit``, ``results`` (one entry per seed
    with ``seed, loss, loss_f64, error_abs, error_sign, recovered, flipped, train_loss, steps,
    seconds, status, method_status, solved, identified``) and the two tolerances
    ``solved_tolerance`` and ``identified_tolerance`` (see :mod:`jaxrecon.outcomes`). ``loss`` is
    the loss the method minimised (its form, the run's dtype); ``loss_f64`` the residual form in
    float64 (:func:`jaxrecon.outcomes.final_loss`), which decides ``solved`` (``<=
    solved_tolerance``) whatever the method; the labels come from one rule,
    :func:`jaxrecon.outcomes.final_verdict`: ``status`` is the method's (``method_status``) except
    that a ``"converged"`` seed that is not solved shows ``"stopped"``;
    ``loss_at_truth`` (also in ``fit``) is the float64 projector loss of ``theta`` at the true
    training set (:func:`loss_at_truth`): about 0 when ``theta`` is in the span, above
    :data:`FLOOR_MIN` for a network trained on all layers, whose target then carries it as its
    ``floor`` (top-level ``floor``; each row ``floor`` and ``error_vs_sqrt_floor = error_sign /
    sqrt(floor)``); a network's ``fit`` also holds its training (``train``, ``train_steps``,
    ``train_converged``, ``train_lr``, ``train_lr_rule``, ``train_tol``, ...);
    ``config`` holds the resolved config by flat names (``p``, ``seeds``, ...); ``seed_batching``
    says how the seeds were batched (``"map"``: seed ``s`` reruns alone bit for bit with
    ``--seeds 1`` and the attack key ``split(attack_key, seeds)[s]``; see
    :func:`jaxrecon.attack.driver.seed_batching`); ``memory`` (random features) how ``V`` was held:
    ``dense``, ``block_size`` and the ``reason`` (:func:`jaxrecon.scale.choose_layout`). A degenerate problem (``p <= n``, ``d = 1``,
    ``theta = 0``: :mod:`jaxrecon.attack.degenerate`) warns with its cause; its seeds have status
    ``"degenerate"``, are neither solved nor identified and recover nothing (``d = 1``: errors
    ``nan``). Training data with repeated rows (:func:`check_training_set`) and a fit whose
    training loss is not finite are one-line ``ValueError`` s before the attack.

    Every check (values, int32 sizes, memory: :mod:`jaxrecon.runner.preflight`) runs before any
    work or file. The files of ``out`` are committed as a unit (``summary.json`` last); a failed
    run leaves no directory it created empty. Inside :func:`jaxrecon.signals.handle_signals` a
    signal stops the attack before its next chunk and seeds still running are saved with status
    ``"interrupted"``; a signal before the attack raises :class:`~jaxrecon.signals.Interrupted`.

    A config with ``x64`` needs float64 enabled by the caller (``with jaxrecon.x64(): ...``);
    otherwise this raises a one-line ``ValueError`` before any work.
    """
    cfg = cfg.resolve()
    if cfg.scale.x64 and not jax.config.jax_enable_x64:
        raise ValueError("x64: float64 is not enabled; run inside `with jaxrecon.x64():` (the CLI does)")
    layout = check_sizes(cfg)
    if out is None:
        return _run(cfg, None, progress, log, layout)
    with made_dir(out) as out:
        if log:
            log(f"saving to {out}/")
        return _run(cfg, out, progress, log, layout)


def _run(cfg: ReconstructConfig, out, progress: bool, log, layout) -> dict:
    k_data, k_model, k_attack = jax.random.split(jax.random.key(cfg.seed), 3)
    if log and layout is not None:
        log(f"memory: V {'stored' if layout.dense else f'streamed, block_size={layout.block_size}'} "
            f"({layout.reason})")
    t0 = time.perf_counter()
    data = load_data(cfg, k_data)
    check_training_set(cfg, data)
    problem = build_problem(cfg, k_model, data, layout, progress=progress and log is not None)
    fit_seconds = time.perf_counter() - t0
    train_loss = problem.train_loss
    n, attack = cfg.data.n, cfg.attack
    at_truth = loss_at_truth(problem.target, data.x)
    target = with_floor(problem.target, at_truth)
    floor = None if target.floor is None else float(target.floor)
    if log:
        log(f"{problem.description}  n={n}  p/(dn)={cfg.model.p_over_dn:.3g}  train MSE={train_loss:.3g}  "
            f"loss_at_truth={at_truth:.3g}  method={attack.method}")
        tr = problem.training
        if tr is not None and not tr["converged"]:
            log(f"training: MSE {tr['final_loss']:.3g} > --train-tol {tr['tol']:g} after --train-steps "
                f"{tr['max_steps']}; the network is attacked as trained")
        if floor is not None and problem.defence is None:
            log(f"floor: theta is off the span of the training features (loss_at_truth {at_truth:.3g} > "
                f"{FLOOR_MIN:g}); the attack stops at its floor; error_vs_sqrt_floor = error_sign / sqrt(floor)")
    if stop_requested():
        raise Interrupted("interrupted before the attack started; nothing written")
    res = reconstruct_seeds(target, k_attack, n, attack.seeds,
                            method=cfg.method_cfg(), steps=attack.steps, chunk=attack.chunk, progress=progress,
                            seed_shards=cfg.scale.seed_shards)
    x = np.asarray(data.x)
    loss_f64 = final_losses(target, res.x_hat)  # the one number every label is judged by
    rows = []
    for s in range(attack.seeds):
        m = match(x, res.x_hat[s])
        loss = float(report_loss(res.loss[s]))
        rows.append({
            "seed": s, "loss": loss, "loss_raw": float(res.loss[s]), "loss_f64": float(loss_f64[s]),
            "error_abs": m.error_abs, "error_sign": m.error_sign, "recovered": m.recovered,
            "flipped": int(m.flipped.sum()), "train_loss": train_loss, "steps": int(res.steps[s]),
            "seconds": float(res.seconds[s]), "status": res.status[s], "method_status": res.status[s],
        })
        rows[-1].update(final_verdict(res.status[s], float(loss_f64[s]), m.error_sign, m.recovered, d=cfg.data.d))
        if problem.defence is not None:
            rows[-1]["floor"] = problem.defence["floor"]
        elif floor is not None:
            rows[-1]["floor"] = floor
        if floor is not None and floor > 0:
            rows[-1]["error_vs_sqrt_floor"] = float(rows[-1]["error_sign"]) / math.sqrt(floor)
    summary = {
        "config": to_dict(cfg, flat=True), "versions": versions(),
        "model": problem.description,
        "fit": {"train_loss": train_loss, "seconds": fit_seconds, "loss_at_truth": at_truth,
                **({} if problem.training is None else {f"train_{k}" if k != "train" else k: v
                                                        for k, v in problem.training.items()})},
        "loss_at_truth": at_truth, "floor": floor,
        "compile_seconds": res.compile_seconds, "solved_tolerance": FINAL_TOL, "identified_tolerance": IDENTIFIED_TOL,
        "seed_batching": seed_batching(), "method": attack.method, "method_run": res.method_run, "results": rows,
    }
    if problem.defence is not None:  # fit.train_loss is the clean fit's; the released theta's too
        summary["defence"] = problem.defence
        summary["fit"]["train_loss_released"] = problem.defence["train_loss"]
    if layout is not None:
        summary["memory"] = layout._asdict()
    files = []
    if hasattr(data, "row_norm"):  # images: PSNR/SSIM per image, recon.png of the best seed
        summary["images"] = _image_outputs(cfg, data, res.x_hat, rows, files, out is not None, log)
    if out is not None:
        files += [("arrays.npz", npz_writer(x=x, y=np.asarray(data.y), x_hat=res.x_hat), "wb"),
                  ("summary.json", json_writer(summary), "w")]
        commit_files(out, files)
    if log:
        log(format_table(rows))
    return summary


def _image_outputs(cfg: ReconstructConfig, data, x_hat, rows, files: list, figure: bool, log) -> dict:
    """Per-image PSNR/SSIM for every seed (added to ``rows``) and, with ``figure``, ``recon.png``
    of the best seed (appended to ``files`` for :func:`~jaxrecon.io.commit_files`)."""
    import io

    from ..image_plots import image_metrics, matched_pixels, save_recon

    per_seed = []
    for s, row in enumerate(rows):
        m = match(data.x, x_hat[s])
        met = image_metrics(*matched_pixels(data, x_hat[s], m))
        row["psnr_median"], row["ssim_mean"] = float(np.median(met["psnr"])), float(np.mean(met["ssim"]))
        per_seed.append({"psnr": [float(v) for v in met["psnr"]], "ssim": met["ssim"], "error": m.row_error,
                         "flipped": m.flipped})
    best = int(np.argmin([r["error_sign"] for r in rows]))
    info = {"dataset": data.name, "shape": list(data.shape), "class_names": list(data.class_names),
            "labels": data.labels, "mean": data.mean, "std": data.std, "normalize": data.normalize,
            "per_seed": per_seed, "figure_seed": best}
    if figure:
        m = match(data.x, x_hat[best])
        title = (f"{data.name}: n={cfg.data.n}, d={cfg.data.d}, p={cfg.model.p} (p/dn={cfg.model.p_over_dn:.3g}), "
                 f"seed {best}, "
                 f"error_sign={rows[best]['error_sign']:.3g}")
        png = io.BytesIO()
        info["figure"] = save_recon(data, x_hat[best], m, png, title=title)
        files.append(("recon.png", lambda f: f.write(png.getvalue()), "wb"))
        if log:
            log(f"recon.png: seed {best}; per image (error, PSNR dB, SSIM):")
            log("  ".join(f"[{r['index']}] {r['error']:.3g} {r['psnr']:.1f} {r['ssim']:.3f}" for r in info["figure"]))
    return info


def format_table(rows, columns=("seed", "loss", "loss_f64", "error_abs", "error_sign", "error_vs_sqrt_floor",
                                "recovered", "solved", "identified", "steps", "seconds", "status")) -> str:
    """A plain-text table, one row per seed (columns a row lacks are left out)."""
    columns = [c for c in columns if all(c in r for r in rows)]

    def fmt(v):
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, float):
            return f"{v:.3g}" if v != 0 else "0"
        return str(v)

    cells = [[fmt(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.rjust(w) for v, w in zip(vals, widths))
    return "\n".join([line(columns)] + [line(r) for r in cells])
