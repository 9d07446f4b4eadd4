"""The law for a two-layer network: reconstruction error vs head parameters ``p = width * k``.

    python experiments/two_layer_law.py --d 10 --n 4 --out runs/two_layer_law       # ~10 min, 2-core CPU
    python experiments/two_layer_law.py --d 20 --n 5 --classes 3 --ratios 0.5,1,2,4,8

For each ``p / (d n)`` a two-layer ReLU net ``W2 relu(W1 x)`` (``W1 ~ N(0, 1/d)``, ``W2 ~ N(0,
1/width)``) with ``width = p / k`` is trained as the paper trains it: all layers, plain full-batch
GD on the MSE until it is ``<= 1e-7`` (``--train head``: the head alone, so ``theta = W2 - W2_0``
lies exactly in the span of the head Jacobian), on ``n`` synthetic points of the sphere of radius
``sqrt(d)``; then ``--seeds`` attacks run vmapped, for ``--trials`` independent data/model draws.
The table gives the median over all attacks of the matched errors and of the final projector
loss, and the median ``loss_at_truth`` (the loss of ``theta`` at the training set: ~0 for head-only
training, the floor of the attack for all layers; ``error / sqrt(L(X))`` beside it). Expect error
near its random-guess level (~0.5-0.6) below ``p ~ d n`` and a drop a few multiples above (to ~0
for the head; to about ``sqrt(L(X))``, which falls with width, for all layers).

Uses :func:`jaxrecon.runner.run_reconstruction`, i.e. exactly what ``jaxrecon reconstruct --model
two_layer`` runs on :func:`get_config`; one point from the command line::

    jaxrecon reconstruct --model two_layer --d 10 --n 4 --p-over-dn 2 --seeds 2 --steps 3000

Writes ``OUT/results.csv`` (one row per attack) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time

import numpy as np

import jaxrecon as jr
from jaxrecon.runner import ReconstructConfig, run_reconstruction

#: One point of the table at CPU size (the script's defaults).
CPU = dict(model="two_layer", d=10, n=4, classes=1, seeds=2, steps=3000, method=jr.DEFAULT_METHOD, train="all")


def get_config(ratio: float = 1.0, **overrides) -> ReconstructConfig:
    """One model of the table, ``p = ratio * d n`` head parameters (flat or sectioned overrides)."""
    return ReconstructConfig(**{**CPU, "p_over_dn": ratio, **overrides})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--d", type=int, default=10)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--classes", type=int, default=1)
    ap.add_argument("--ratios", default="0.25,0.5,1,2,4,8", help="p/(d n) values")
    ap.add_argument("--seeds", type=int, default=2, help="attack seeds per model (vmapped)")
    ap.add_argument("--trials", type=int, default=2, help="independent data/model draws per ratio")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--method", default=jr.DEFAULT_METHOD)
    ap.add_argument("--train", default="all", choices=["head", "all"])
    ap.add_argument("--train-steps", type=int, default=None, help="GD step budget (default: the runner's)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    rows = []
    for r in [float(v) for v in args.ratios.split(",")]:
        for trial in range(args.trials):
            budget = {} if args.train_steps is None else {"train_steps": args.train_steps}
            cfg = get_config(r, d=args.d, n=args.n, classes=args.classes, seeds=args.seeds, seed=trial,
                             steps=args.steps, method=args.method, train=args.train, **budget).resolve()
            t0 = time.perf_counter()
            summary = run_reconstruction(cfg, out=None, progress=False, log=None)
            for row in summary["results"]:
                rows.append({"ratio": r, "p": cfg.p, "width": cfg.width, "trial": trial,
                             "loss_at_truth": summary["loss_at_truth"], "train_steps": summary["fit"]["train_steps"],
                             **row})
            last = rows[-1]
            print(f"p/(dn)={r:g} (width {cfg.width}, head p={cfg.p}) trial {trial}: "
                  f"error_sign {[round(x['error_sign'], 4) for x in summary['results']]}  "
                  f"{time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "results.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    print(f"\ntwo-layer net, d={args.d}, n={args.n}, k={args.classes}, train={args.train}, "
          f"method={args.method}, {args.trials} models x {args.seeds} attacks per row\n")
    print("| p/(dn) | width | head p | train MSE | L(X) (median) | loss (median) | error_abs (median) | "
          "error_sign (median) | error_sign/sqrt(L(X)) (median) | recovered (mean) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted({x["ratio"] for x in rows}):
        sel = [x for x in rows if x["ratio"] == r]
        med = lambda k: float(np.median([x[k] for x in sel]))
        ratio = (f"{float(np.median([x['error_sign'] / np.sqrt(x['loss_at_truth']) for x in sel])):.3g}"
                 if all(x["loss_at_truth"] > 0 for x in sel) else "-")
        print(f"| {r:g} | {sel[0]['width']} | {sel[0]['p']} | {med('train_loss'):.2g} | {med('loss_at_truth'):.2g} | "
              f"{med('loss'):.2g} | {med('error_abs'):.3g} | {med('error_sign'):.3g} | {ratio} | "
              f"{np.mean([x['recovered'] for x in sel]):.2f} |")


if __name__ == "__main__":
    main()
