"""The paper's ResNet, one output, binary ±1 targets: reconstruct its training images from the head.

    python experiments/resnet_binary.py                  # CPU size: 3x8x8 synthetic images, n=2
    python experiments/resnet_binary.py --full           # paper scale (GPU): 3x32x32, n=10, p = 10 d n
    python experiments/resnet_binary.py --full --data cifar10 --data-dir DIR   # frog vs truck

The same CPU-size run from the command line:

    jaxrecon reconstruct --model resnet --d 192 --n 2 --p-over-dn 5 --method adam --steps 1500 \\
        --seeds 2 --out runs/resnet_binary

Model (:mod:`jaxrecon.models.resnet`): stem convolution of kernel ``s - 4`` with padding 1
(``s x s -> 7 x 7``; kernel 28 for the paper's 32 x 32), 4 residual blocks of 3x3 convolutions,
no biases, weights ``~ N(0, 1/fan_in)``, a linear head with ``p = 49 * width`` parameters. It is
trained by full-batch GD on MSE to ``±1`` targets (``sign(y)`` of the synthetic labels, or the two
classes of an image dataset); the target is the change of the head and the features the head
Jacobian at the trained weights. The reduced image size 8 x 8 (``d = 192``) keeps the run on a
2-core CPU; ``--full`` is the paper's 32 x 32 input with ``n = 10`` and ``p = 10 d n`` (width 6269).
"""

from __future__ import annotations

import argparse

from jaxrecon.runner import ReconstructConfig, run_reconstruction

CPU = dict(model="resnet", d=192, n=2, p_over_dn=5.0, method="adam", steps=1500, seeds=2)
PAPER = dict(model="resnet", d=3072, n=10, p_over_dn=10.0, method="adam", steps=20000, seeds=4)


def get_config(full: bool = False, **overrides) -> ReconstructConfig:
    """The run at CPU size, or the paper's with ``full`` (flat or sectioned overrides)."""
    return ReconstructConfig(**{**(PAPER if full else CPU), **overrides})


def main(argv=None):
    ap = argparse.ArgumentParser(description="ResNet binary reconstruction")
    ap.add_argument("--full", action="store_true", help="paper scale (GPU)")
    ap.add_argument("--train", default="head", choices=["head", "all"])
    ap.add_argument("--data", default="synthetic", help="synthetic or an image dataset (see jaxrecon.data.registry)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default="runs/resnet_binary")
    args = ap.parse_args(argv)
    over = dict(train=args.train)
    if args.data != "synthetic":
        over.update(data=args.data, data_dir=args.data_dir, d=None, image_size=None if args.full else 8)
    run_reconstruction(get_config(args.full, **over), out=args.out, progress=True)


if __name__ == "__main__":
    main()
