"""Two-layer network with k outputs (the paper's Sec. 5 "two-layer multiclass"), one reconstruction.

    python experiments/two_layer_multiclass.py                 # CPU size, ~2 min on 2 cores
    python experiments/two_layer_multiclass.py --full          # paper scale (GPU), see PAPER below
    python experiments/two_layer_multiclass.py --train all     # all layers trained: span only approximate

The same run from the command line (CPU size):

    jaxrecon reconstruct --model two_layer --d 10 --n 4 --classes 3 --p-over-dn 5 --method adam \\
        --steps 3000 --seeds 4 --out runs/two_layer_multiclass

``f(x) = W2 relu(W1 x)`` (``W1 ~ N(0, 1/d)``, ``W2 ~ N(0, 1/width)``), trained by full-batch GD on
MSE to one-hot targets (synthetic data: sample ``i`` has class ``i mod k``); the target is
``theta = vec(W2 - W2_0)`` (``width * k`` numbers) with the head Jacobian at the trained weights as
features (``n * k`` rows). ``width`` is set so that the head has ``p = p_over_dn * d * n`` parameters.
The paper-scale sizes (``d = 100, n = 20``, the figure "2layermulti" next to the RF ``d = 100, n = 20``
panel; ``k = 10`` assumed) are a documented option, not a verified copy of the paper's appendix.
"""

from __future__ import annotations

import argparse

from jaxrecon.runner import ReconstructConfig, run_reconstruction

CPU = dict(model="two_layer", d=10, n=4, classes=3, p_over_dn=5.0, method="adam", steps=3000, seeds=4)
PAPER = dict(model="two_layer", d=100, n=20, classes=10, p_over_dn=10.0, method="adam", steps=20000, seeds=4)


def get_config(full: bool = False, **overrides) -> ReconstructConfig:
    """The run at CPU size, or the paper's with ``full`` (flat or sectioned overrides)."""
    return ReconstructConfig(**{**(PAPER if full else CPU), **overrides})


def main(argv=None):
    ap = argparse.ArgumentParser(description="two-layer multiclass reconstruction")
    ap.add_argument("--full", action="store_true", help="paper scale (GPU)")
    ap.add_argument("--train", default="head", choices=["head", "all"])
    ap.add_argument("--out", default="runs/two_layer_multiclass")
    args = ap.parse_args(argv)
    run_reconstruction(get_config(args.full, train=args.train), out=args.out, progress=True)


if __name__ == "__main__":
    main()
