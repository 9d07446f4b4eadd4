"""Paper Fig. 1: label fitting (p ~ n) vs reconstruction (p ~ d n) on real images, and the images.

Full size, the paper's (the default)::

    python experiments/fig1_cifar.py [--data-dir DIR]

CIFAR-10 frog vs truck when DIR (or ``$JAXRECON_DATA``) holds the CIFAR-10 python batches, the
bundled 32x32 photographs (``photos32``, same d) otherwise: n = 100 (50 per class), d = 3072,
ReLU random features, 4 attack seeds, p / (d n) from 1e-4 to 10 (p up to 3,072,000: V is 37.7 GB
in float32, so ``--memory-budget`` streams it on smaller devices). Expected time, one H100/H200:
the points p/(dn) <= 1 take seconds to minutes each (small p); the p = 10 d n point dominates:
500 Adam steps took 156 s on an H200 (issue 'Paper scale'), and exact recovery needs the LM
phase on top (not yet measured at this size). On a 2-core CPU the full size is out of reach
(hours per step budget); use ``--quick``.

Quick (CPU, bundled images, about 10 minutes on 2 cores)::

    python experiments/fig1_cifar.py --quick

Any size in between with the flags (``--data``, ``--n``, ``--ratios``, ``--seeds``, ``--steps``,
``--memory-budget``, ``--block-size``, ``--precision``). The configuration of one point is
:func:`get_config` (a :class:`~jaxrecon.runner.ReconstructConfig`); the same point from the
command line::

    jaxrecon reconstruct --data cifar10 --data-dir DIR --n 100 --seeds 4 --p-over-dn 10 --out runs/fig1/r10

Writes into ``--out`` (default ``benchmarks/results/fig1_full``, ``fig1_quick`` with ``--quick``):
``fig1.png`` (left: mean reconstruction error ``error_abs`` and training MSE against p/(dn), one
standard deviation over seeds shaded; right: the image grid of the largest p, odd rows truth, even
rows matches), ``law.png`` (the left panel alone), ``results.csv`` and each point's run directory
(``r<ratio>/summary.json``, ``recon.png``). A point whose ``summary.json`` exists is not rerun.
"""

from __future__ import annotations

import argparse
import csv
import json
import os

import numpy as np

from jaxrecon.attack import DEFAULT_METHOD
from jaxrecon.runner import ReconstructConfig, run_reconstruction

#: The paper's figure: frog vs truck, n = 100 (50 per class), ReLU random features, 4 attack seeds.
PAPER = dict(data="cifar10", n=100, seeds=4, steps=10_000, method=DEFAULT_METHOD, activation="relu")
PAPER_RATIOS = "1e-4,1e-3,1e-2,0.1,0.5,1,2,5,10"
#: ``--quick``: bundled 16x16 photographs (d = 768), n = 10, one seed, four ratios.
QUICK = dict(data="photos16", n=10, seeds=1, steps=3000, ratios="0.01,0.1,1,10")
#: Datasets read from disk -> the bundled stand-in of the same image size.
STAND_IN = {"cifar10": "photos32", "tinyimagenet": "photos64"}


def get_config(ratio: float = 10.0, **overrides) -> ReconstructConfig:
    """One point of the figure, ``p = ratio * d n`` (flat or sectioned overrides)."""
    return ReconstructConfig(**{**PAPER, "p_over_dn": ratio, **overrides})


def has_dataset(name: str, data_dir=None) -> bool:
    """Whether the on-disk dataset ``name`` can be read from ``data_dir`` / ``$JAXRECON_DATA``."""
    from jaxrecon.data import cifar, tinyimagenet
    from jaxrecon.data.registry import DATASETS, resolve_data_dir

    if not DATASETS[name].needs_dir:
        return True
    roots = {"cifar10": cifar._root, "tinyimagenet": tinyimagenet._root}
    try:
        roots[name](resolve_data_dir(data_dir, name))
        return True
    except (ValueError, KeyError, OSError):
        return False


def choose_data(data, data_dir=None, log=print) -> str:
    """``data`` if given; else the paper's dataset when it is on disk, its bundled stand-in otherwise."""
    if data is not None:
        return data
    if has_dataset(PAPER["data"], data_dir):
        return PAPER["data"]
    log(f"{PAPER['data']} not found (--data-dir / $JAXRECON_DATA): using the bundled {STAND_IN[PAPER['data']]}")
    return STAND_IN[PAPER["data"]]


def parser(**defaults) -> argparse.ArgumentParser:
    a = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("--quick", action="store_true", help="a small run on bundled images (CPU minutes)")
    a.add_argument("--data", default=defaults.get("data"),
                   help="dataset (default: the paper's if on disk, else a bundled stand-in)")
    a.add_argument("--data-dir", default=None, help="on-disk datasets (default: $JAXRECON_DATA)")
    a.add_argument("--data-classes", default=None)
    a.add_argument("--image-size", type=int, default=defaults.get("image_size"))
    a.add_argument("--n", type=int, default=defaults.get("n"))
    a.add_argument("--ratios", default=None, help=f"p / (d n) values, comma-separated (default {PAPER_RATIOS})")
    a.add_argument("--seeds", type=int, default=defaults.get("seeds"))
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--steps", type=int, default=defaults.get("steps"))
    a.add_argument("--method", default=defaults.get("method", DEFAULT_METHOD))
    a.add_argument("--activation", default=defaults.get("activation", "relu"))
    a.add_argument("--block-size", type=int, default=None, help="stream V in blocks of this many rows")
    a.add_argument("--memory-budget", default=None, help="memory per device for V and the step, e.g. 16GB")
    a.add_argument("--precision", default=None, help="matmul precision of the attack (e.g. tf32 on GPUs)")
    a.add_argument("--out", default=defaults.get("out"))
    return a


def sized(args, full: dict, quick: dict, name: str):
    """Fill the size flags left unset from ``quick`` (with ``--quick``) or ``full``; the output
    directory defaults to ``benchmarks/results/<name>_quick`` or ``<name>_full``."""
    base = quick if args.quick else full
    for k in ("n", "seeds", "steps", "ratios", "ratio"):
        if k in base and getattr(args, k, None) is None:
            setattr(args, k, base[k])
    if args.quick and args.data is None:
        args.data = quick["data"]
    args.data = choose_data(args.data, args.data_dir)
    if args.out is None:
        args.out = os.path.join("benchmarks", "results", f"{name}_{'quick' if args.quick else 'full'}")
    return args


def run_point(args, ratio, out, activation=None, seed=None, config=None, resume=False):
    """Run ``config`` (default :func:`get_config`) at ``ratio`` with the script's flags over it
    (``activation`` / ``seed`` override those); with ``resume`` a point already in ``out`` is read back."""
    done = os.path.join(out, "summary.json")
    if resume and os.path.exists(done):
        print(f"{out}: done, read back")
        with open(done) as f:
            return json.load(f)
    scale = {k: v for k, v in (("block_size", args.block_size), ("memory_budget", args.memory_budget),
                               ("precision", getattr(args, "precision", None))) if v is not None}
    cfg = (config or get_config)(
        ratio, data=args.data, data_dir=args.data_dir, data_classes=args.data_classes, image_size=args.image_size,
        n=args.n, seeds=args.seeds, seed=args.seed if seed is None else seed, steps=args.steps,
        method=args.method, activation=activation or args.activation, **scale)
    return run_reconstruction(cfg, out=out, progress=True)


def arguments(argv=None):
    """The parsed flags with the sizes filled in (the paper's, or ``--quick``'s) and the dataset chosen."""
    return sized(parser().parse_args(argv), {**PAPER, "data": None, "ratios": PAPER_RATIOS}, QUICK, "fig1")


def main(argv=None):
    args = arguments(argv)
    ratios = [float(r) for r in args.ratios.split(",")]
    os.makedirs(args.out, exist_ok=True)
    table = []
    for r in ratios:
        s = run_point(args, r, os.path.join(args.out, f"r{r:g}"), resume=True)
        errs = [row["error_abs"] for row in s["results"]]
        table.append({"p_over_dn": r, "p": s["config"]["p"], "error_mean": float(np.mean(errs)),
                      "error_std": float(np.std(errs)), "train_mse": s["fit"]["train_loss"],
                      "recovered_mean": float(np.mean([row["recovered"] for row in s["results"]])),
                      "seconds_max": float(max(row["seconds"] for row in s["results"]))})
    with open(os.path.join(args.out, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    title = f"{args.data}, n={args.n}, {args.activation}"
    plot_law(table, os.path.join(args.out, "law.png"), title)
    grid = os.path.join(args.out, f"r{max(ratios):g}", "recon.png")
    plot_figure(table, grid, os.path.join(args.out, "fig1.png"), title, max(ratios))
    print(f"wrote {args.out}/fig1.png, law.png, results.csv and one run directory per ratio")


def _law_axes(ax, table, title):
    r = np.array([t["p_over_dn"] for t in table])
    e = np.array([t["error_mean"] for t in table])
    sd = np.array([t["error_std"] for t in table])
    floor = 1e-10  # exact zeros drawn at the floor of the log axis
    ax.plot(r, np.maximum(e, floor), "o-", color="tab:red", label="reconstruction error")
    ax.fill_between(r, np.maximum(e - sd, floor), np.maximum(e + sd, floor), color="tab:red", alpha=0.2)
    ax.plot(r, [max(t["train_mse"], floor) for t in table], "s-", color="black", label="training MSE")
    ax.axvline(1.0, color="grey", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("p / (d n)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)


def plot_law(table, path, title):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5), dpi=120)
    _law_axes(fig.add_subplot(), table, title)
    fig.tight_layout()
    fig.savefig(path)


def plot_figure(table, grid_png, path, title, ratio):
    """Fig. 1: the law (left) and the image grid ``grid_png`` of the largest ratio (right)."""
    import matplotlib.image as mpimg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), dpi=120)
    _law_axes(fig.add_subplot(1, 2, 1), table, title)
    ax = fig.add_subplot(1, 2, 2)
    ax.axis("off")
    if os.path.exists(grid_png):
        ax.imshow(mpimg.imread(grid_png))
        ax.set_title(f"p = {ratio:g} d n: odd rows truth, even rows reconstructions", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
