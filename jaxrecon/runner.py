"""One reconstruction experiment end to end: data -> model -> target -> attack -> metrics -> files.

:func:`run_reconstruction` is what ``jaxrecon reconstruct`` calls; it is importable from notebooks.
Keys: ``key = jax.random.key(seed)`` is split into ``(data, features, attack)`` roles; attack seed
``s`` starts from ``jax.random.split(attack_key, seeds)[s]``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import NamedTuple, Optional

import jax
import numpy as np

from . import _validate
from .activations import ACTIVATIONS
from .data.synthetic import Dataset, synthetic
from .features.base import Target
from .features.random_features import PRECISIONS, RandomFeatures
from .io import out_dir, versions, write_json, write_npz
from .loss import report_loss
from .metrics import match
from .models.rf import fit_with_info
from .attack import DEFAULT_METHOD, METHODS, method_config, reconstruct_seeds
from .scale import block_size_for


@dataclasses.dataclass
class ReconstructConfig:
    """Configuration of one reconstruction run (the CLI flags of ``jaxrecon reconstruct``)."""

    d: Optional[int] = None  # None: 100 for synthetic data; for images d = H*W*C of the dataset
    n: int = 20
    p: Optional[int] = None  # number of features; or give p_over_dn
    p_over_dn: Optional[float] = None
    seeds: Optional[int] = None  # None: 4 for synthetic data, 1 for images (one seed draws recon.png)
    seed: int = 0
    steps: int = 10_000
    method: str = DEFAULT_METHOD
    optimizer: Optional[str] = None
    lr: Optional[float] = None
    activation: str = "relu"
    block_size: Optional[int] = None
    # scale (issue 9): block size from a memory budget, matmul precision, devices
    memory_budget: Optional[str] = None  # e.g. "4GB" per device: picks block_size (streamed V)
    precision: str = "highest"  # matmul precision of the attack (the fit always uses "highest")
    shards: int = 1  # devices the random features are split over (needs block_size or memory_budget)
    seed_shards: int = 1  # devices the vmapped seeds are split over
    x64: bool = False
    noise: float = 0.5
    ridge: float = 0.0
    chunk: int = 250
    # networks (issue 7): the target is the head's change; p = head parameters
    model: str = "rf"  # rf | two_layer | resnet
    width: Optional[int] = None  # hidden units / ResNet channels; default from p or p_over_dn
    classes: int = 1  # outputs k of the two-layer net (one-hot targets when k >= 2)
    train: str = "head"  # parameters trained by GD: head | all
    train_steps: int = 100
    train_lr: Optional[float] = None  # None: 1 / lambda_max of the Gauss-Newton Hessian

    # real images (issue 8): a name from jaxrecon.data.registry.DATASETS, or "synthetic"
    data: str = "synthetic"
    data_dir: Optional[str] = None  # on-disk datasets (default: $JAXRECON_DATA)
    data_classes: Optional[str] = None  # "6,9" or "2" (first k classes); None: the dataset's default
    image_size: Optional[int] = None  # resize images to image_size x image_size

    def resolve(self) -> "ReconstructConfig":
        """Validate every field and fill ``p`` from ``p_over_dn`` (``p = round(r * d * n)``)."""
        _resolve_data(self)
        _validate.positive_int("d", self.d)
        _validate.positive_int("n", self.n)
        if self.model != "rf":
            from .models.train import resolve_network

            resolve_network(self)  # sets p = head parameters from --width (or width from p)
        if self.p is None and self.p_over_dn is None:
            raise ValueError("p: give --p or --p-over-dn")
        if self.p is not None and self.p_over_dn is not None:
            raise ValueError("p: give only one of --p and --p-over-dn")
        if self.p_over_dn is not None:
            r = _validate.positive_float("p_over_dn", self.p_over_dn)
            self.p = max(1, int(round(r * self.d * self.n)))
        _validate.positive_int("p", self.p)
        self.p_over_dn = self.p / (self.d * self.n)
        if self.seeds is None:
            self.seeds = 4 if self.data == "synthetic" else 1
        _validate.positive_int("seeds", self.seeds)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed: must be a non-negative integer, got {self.seed!r}")
        _validate.positive_int("steps", self.steps)
        _validate.positive_int("chunk", self.chunk)
        _validate.choice("method", self.method, METHODS)
        _validate.choice("activation", self.activation, ACTIVATIONS)
        if self.block_size is not None:
            _validate.positive_int("block_size", self.block_size)
        _validate.choice("precision", self.precision, PRECISIONS)
        _validate.positive_int("shards", self.shards)
        _validate.positive_int("seed_shards", self.seed_shards)
        if self.model != "rf" and (self.memory_budget, self.precision, self.shards) != (None, "highest", 1):
            raise ValueError("memory_budget / precision / shards: apply to --model rf only")
        if self.memory_budget is not None and self.block_size is not None:
            raise ValueError("memory_budget: give only one of --memory-budget and --block-size")
        self.stream_block()  # a budget too small fails here, before any work
        if self.shards > 1 and self.stream_block() is None:
            raise ValueError("shards: sharding the features needs a streamed map; give --block-size or "
                             "--memory-budget")
        _validate.positive_float("noise", self.noise, allow_zero=True)
        _validate.positive_float("ridge", self.ridge, allow_zero=True)
        self.method_cfg()  # validates optimizer / lr
        return self

    def stream_block(self) -> Optional[int]:
        """Rows of V per streamed block: ``block_size``, or the largest that fits ``memory_budget``
        (per device, for this run's vmapped seeds per device); ``None`` for dense V."""
        if self.memory_budget is None:
            return self.block_size
        return block_size_for(self.d, self.n, self.p, self.memory_budget, seeds=-(-self.seeds // self.seed_shards),
                              dtype="float64" if self.x64 else "float32", shards=self.shards)

    def method_cfg(self):
        return method_config(self.method, optimizer=self.optimizer, lr=self.lr)


class Problem(NamedTuple):
    """A fitted model seen by the attack: its target, training loss and a one-line description."""

    target: Target
    train_loss: float
    description: str


def _resolve_data(cfg: ReconstructConfig) -> None:
    """Image data fix ``d``: ``--d`` may be omitted, or must agree with the dataset."""
    if cfg.data == "synthetic":
        if cfg.image_size is not None or cfg.data_classes is not None:
            raise ValueError("data: --image-size and --data-classes apply to image datasets, not synthetic data")
        cfg.d = 100 if cfg.d is None else cfg.d
        return
    from .data.registry import DATASETS, input_dim

    _validate.choice("data", cfg.data, ("synthetic", *DATASETS))
    d = input_dim(cfg.data, cfg.image_size)
    if cfg.d is not None and cfg.d != d:
        raise ValueError(f"d: --data {cfg.data} has d = H*W*C = {d}; omit --d or give --d {d}, got {cfg.d}")
    cfg.d = d


def load_data(cfg: ReconstructConfig, key):
    """Training data for a run: synthetic sphere data, or ``n`` images of a named dataset.

    Images come as :class:`~jaxrecon.data.registry.ImageData` (``x``, ``y`` first, as ``Dataset``):
    standardised by the set's global mean and std, then each row rescaled to norm ``sqrt(d)``
    (the sphere the theory and the attack assume; see :mod:`jaxrecon.data.registry`).
    """
    if cfg.data == "synthetic":
        return synthetic(key, cfg.n, cfg.d, cfg.noise)
    from .data.registry import load_dataset

    return load_dataset(cfg.data, key, cfg.n, cfg.data_dir, classes=cfg.data_classes, size=cfg.image_size)


def build_problem(cfg: ReconstructConfig, key, data: Dataset) -> Problem:
    """Fit the configured model on ``data`` and return the attack's target (random features)."""
    if cfg.model != "rf":
        from .models.train import build_network_problem

        net = build_network_problem(cfg, key, data)
        return Problem(net.target, float(net.train.final_loss), net.description)
    fmap = RandomFeatures(key, cfg.d, cfg.p, cfg.activation, cfg.stream_block(), shards=cfg.shards)
    # The model is fitted with exact float32/64 products; only the attack may use faster matmuls.
    fitted = jax.jit(lambda fm, x, y: fit_with_info(fm, x, y, cfg.ridge))(fmap, data.x, data.y)
    fmap = fmap.replace(precision=cfg.precision)
    return Problem(Target(fmap, fitted.theta), float(fitted.train_loss), fmap.describe())


def run_reconstruction(cfg: ReconstructConfig, out=None, progress: bool = True, log=print) -> dict:
    """Run one reconstruction experiment; write ``summary.json`` and ``arrays.npz`` into ``out``.

    Returns the summary dict: ``config``, ``versions``, ``fit`` and ``results`` (one entry per seed
    with ``seed, loss, error_abs, error_sign, recovered, flipped, train_loss, steps, seconds,
    status``).
    """
    cfg.resolve()
    if cfg.x64:
        jax.config.update("jax_enable_x64", True)
    out = out_dir(out) if out is not None else None  # fail before computing anything
    k_data, k_model, k_attack = jax.random.split(jax.random.key(cfg.seed), 3)
    t0 = time.perf_counter()
    data = load_data(cfg, k_data)
    problem = build_problem(cfg, k_model, data)
    fit_seconds = time.perf_counter() - t0
    train_loss = problem.train_loss
    if log:
        log(f"{problem.description}  n={cfg.n}  p/(dn)={cfg.p_over_dn:.3g}  train MSE={train_loss:.3g}  "
            f"method={cfg.method}")
    res = reconstruct_seeds(problem.target, k_attack, cfg.n, cfg.seeds,
                            method=cfg.method_cfg(), steps=cfg.steps, chunk=cfg.chunk, progress=progress,
                            seed_shards=cfg.seed_shards)
    x = np.asarray(data.x)
    rows = []
    for s in range(cfg.seeds):
        m = match(x, res.x_hat[s])
        rows.append({
            "seed": s, "loss": float(report_loss(res.loss[s])), "loss_raw": float(res.loss[s]),
            "error_abs": m.error_abs, "error_sign": m.error_sign, "recovered": m.recovered,
            "flipped": int(m.flipped.sum()), "train_loss": train_loss, "steps": int(res.steps[s]),
            "seconds": float(res.seconds[s]), "status": res.status[s],
        })
    summary = {
        "config": dataclasses.asdict(cfg), "versions": versions(),
        "model": problem.description, "fit": {"train_loss": train_loss, "seconds": fit_seconds},
        "compile_seconds": res.compile_seconds, "results": rows,
    }
    if hasattr(data, "row_norm"):  # images: PSNR/SSIM per image, recon.png of the best seed
        summary["images"] = _image_outputs(cfg, data, res.x_hat, rows, out, log)
    if out is not None:
        write_npz(out / "arrays.npz", x=x, y=np.asarray(data.y), x_hat=res.x_hat)
        write_json(out / "summary.json", summary)
    if log:
        log(format_table(rows))
    return summary


def _image_outputs(cfg: ReconstructConfig, data, x_hat, rows, out, log) -> dict:
    """Per-image PSNR/SSIM for every seed (added to ``rows``) and ``recon.png`` for the best seed."""
    from .image_plots import image_metrics, matched_pixels, save_recon

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
    if out is not None:
        m = match(data.x, x_hat[best])
        title = (f"{data.name}: n={cfg.n}, d={cfg.d}, p={cfg.p} (p/dn={cfg.p_over_dn:.3g}), seed {best}, "
                 f"error_sign={rows[best]['error_sign']:.3g}")
        info["figure"] = save_recon(data, x_hat[best], m, out / "recon.png", title=title)
        if log:
            log(f"recon.png: seed {best}; per image (error, PSNR dB, SSIM):")
            log("  ".join(f"[{r['index']}] {r['error']:.3g} {r['psnr']:.1f} {r['ssim']:.3f}" for r in info["figure"]))
    return info


def format_table(rows, columns=("seed", "loss", "error_abs", "error_sign", "recovered", "steps",
                                "seconds", "status")) -> str:
    """A plain-text table, one row per seed."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}" if v != 0 else "0"
        return str(v)

    cells = [[fmt(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.rjust(w) for v, w in zip(vals, widths))
    return "\n".join([line(columns)] + [line(r) for r in cells])
