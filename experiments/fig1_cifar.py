"""Paper Fig. 1: label fitting (p ~ n) vs reconstruction (p ~ d n) on real images, and the images.

Full size (paper; GPU, CIFAR-10 python batches in DIR): frog vs truck, n = 100 (50 per class),
d = 3072, ReLU random features, 4 attack seeds, p / (d n) from 1e-4 to 10, reconstructions at
p = 10 d n (p = 3,072,000: stream V with --block-size)::

    python experiments/fig1_cifar.py --data cifar10 --data-dir DIR --n 100 --seeds 4 \
        --ratios 1e-4,1e-3,1e-2,0.1,0.5,1,2,5,10 --block-size 65536 --out runs/fig1

Reduced size (CPU, bundled images, no files needed; minutes per point on 2 cores)::

    python experiments/fig1_cifar.py --data digits --n 10 --seeds 2 --ratios 0.1,1,4,10 --out runs/fig1_digits

The configuration of one point is :func:`get_config` (a :class:`~jaxrecon.runner.ReconstructConfig`);
the same reconstruction point from the command line::

    jaxrecon reconstruct --data cifar10 --data-dir DIR --n 100 --seeds 4 --p-over-dn 10 --block-size 65536 \
        --out runs/fig1/r10

Writes ``law.png`` (mean reconstruction error ``error_abs`` and training MSE against p/(dn), one
standard deviation over seeds shaded), ``results.csv``, and each point's run directory
(``r<ratio>/summary.json``; ``recon.png`` of the best seed, odd rows truth, even rows matches).
"""

from __future__ import annotations

import argparse
import csv
import os

import numpy as np

from jaxrecon.attack import DEFAULT_METHOD
from jaxrecon.runner import ReconstructConfig, run_reconstruction

#: The paper's figure: frog vs truck, n = 100 (50 per class), ReLU random features, 4 attack seeds.
PAPER = dict(data="cifar10", n=100, seeds=4, steps=10_000, method=DEFAULT_METHOD, activation="relu")


def get_config(ratio: float = 10.0, **overrides) -> ReconstructConfig:
    """One point of the figure, ``p = ratio * d n`` (flat or sectioned overrides)."""
    return ReconstructConfig(**{**PAPER, "p_over_dn": ratio, **overrides})


def parser(**defaults) -> argparse.ArgumentParser:
    a = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("--data", default=defaults.get("data", "cifar10"))
    a.add_argument("--data-dir", default=None, help="on-disk datasets (default: $JAXRECON_DATA)")
    a.add_argument("--data-classes", default=None)
    a.add_argument("--image-size", type=int, default=defaults.get("image_size"))
    a.add_argument("--n", type=int, default=defaults.get("n", 100))
    a.add_argument("--ratios", default=defaults.get("ratios", "1e-4,1e-3,1e-2,0.1,0.5,1,2,5,10"),
                   help="p / (d n) values, comma-separated")
    a.add_argument("--seeds", type=int, default=defaults.get("seeds", 4))
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--steps", type=int, default=defaults.get("steps", 10_000))
    a.add_argument("--method", default=defaults.get("method", DEFAULT_METHOD))
    a.add_argument("--activation", default=defaults.get("activation", "relu"))
    a.add_argument("--block-size", type=int, default=None)
    a.add_argument("--out", default=defaults.get("out", "runs/fig1"))
    return a


def run_point(args, ratio, out, activation=None, seed=None, config=None):
    """Run ``config`` (default :func:`get_config`) at ``ratio`` with the script's flags over it
    (``activation`` / ``seed`` override those)."""
    cfg = (config or get_config)(
        ratio, data=args.data, data_dir=args.data_dir, data_classes=args.data_classes, image_size=args.image_size,
        n=args.n, seeds=args.seeds, seed=args.seed if seed is None else seed, steps=args.steps,
        method=args.method, activation=activation or args.activation, block_size=args.block_size)
    return run_reconstruction(cfg, out=out, progress=True)


def main(argv=None):
    args = parser().parse_args(argv)
    ratios = [float(r) for r in args.ratios.split(",")]
    os.makedirs(args.out, exist_ok=True)
    table = []
    for r in ratios:
        s = run_point(args, r, os.path.join(args.out, f"r{r:g}"))
        errs = [row["error_abs"] for row in s["results"]]
        table.append({"p_over_dn": r, "p": s["config"]["p"], "error_mean": float(np.mean(errs)),
                      "error_std": float(np.std(errs)), "train_mse": s["fit"]["train_loss"],
                      "recovered_mean": float(np.mean([row["recovered"] for row in s["results"]]))})
    with open(os.path.join(args.out, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    plot_law(table, os.path.join(args.out, "law.png"), f"{args.data}, n={args.n}, {args.activation}")
    print(f"wrote {args.out}/results.csv, {args.out}/law.png and one run directory per ratio")


def plot_law(table, path, title):
    from matplotlib.figure import Figure

    r = np.array([t["p_over_dn"] for t in table])
    e = np.array([t["error_mean"] for t in table])
    sd = np.array([t["error_std"] for t in table])
    fig = Figure(figsize=(5, 3.5), dpi=120)
    ax = fig.add_subplot()
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
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
