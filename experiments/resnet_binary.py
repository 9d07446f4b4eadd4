"""The paper's ResNet experiment (appendix): CIFAR-10 frog vs truck, n = 10, all layers trained.

Full size, the paper's (the default; a GPU run)::

    python experiments/resnet_binary.py [--data-dir DIR]

As the paper's released code runs it: CIFAR-10 frog (-1) vs truck (+1), ``n = 10`` images (5 per
class), standardised per colour channel (``d = 3 x 32 x 32``); the ResNet of
:mod:`jaxrecon.models.resnet` (stem to 7x7, 4 residual blocks, no biases, no batch norm, the
reference's initialisation) with one output; **all parameters** trained by plain full-batch GD
on the MSE to ``±1``, lr ``1e-5``, until the MSE is ``<= 1e-7`` (budget ``10^6`` steps). The
attack's target is the change of the head, with the ``7 x 7 x width`` embedding at the trained
weights as features; its loss at the training set (``loss_at_truth``) is the floor it is judged
against. The head has ``p = 49 width = 10 d n`` parameters (width 6269; the reference's ``--p``
is the head size, ``width = p // 49``).

CIFAR-10 is read from ``--data-dir`` (or ``$JAXRECON_DATA``) when it is there; otherwise two
classes of the bundled 32x32 photographs stand in (``photos32``: chelsea the cat (-1) vs the
rocket (+1)), and the substitution is printed.

Quick (CPU, minutes on 2 cores)::

    python experiments/resnet_binary.py --quick

The same classes at 8x8 (``d = 192``: CIFAR-10 resized when present, else ``photos16`` resized),
``n = 10``, ``p = 2 d n`` (width 78), the default learning rate (``0.1 / lambda_max``: the
paper's ``1e-5`` is for its widths), one attack seed of 2000 Adam steps (about 0.1 s each; near the
threshold the default method runs a population of LM seeds, each LM step about 30 gradients through
the ResNet: too slow on a CPU, see ``benchmarks/RESULTS.md``, "The ResNet"). Measured
on the loaded 2-core CPU: training 8230 GD steps in 136 s, ``loss_at_truth`` 6.4e-3.

The configuration is :func:`get_config`; the same quick run from the command line::

    jaxrecon reconstruct --model resnet --data photos16 --data-classes 1,3 --image-size 8 --n 10 \\
        --p-over-dn 2 --seeds 1 --steps 2000 --method adam --out runs/resnet_binary

Writes ``summary.json``, ``arrays.npz`` and ``recon.png`` into ``--out`` (default
``benchmarks/results/resnet_binary_full``, ``..._quick`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import os
import sys

from jaxrecon.attack import DEFAULT_METHOD
from jaxrecon.runner import ReconstructConfig, run_reconstruction

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fig1_cifar import has_dataset  # noqa: E402

#: The paper's run (its ResNet script and launch file; p = 10 d n head parameters).
PAPER = dict(model="resnet", data="cifar10", data_classes="6,9", n=10, p_over_dn=10.0, train="all",
             train_lr=1e-5, train_tol=1e-7, train_steps=1_000_000, seeds=4, steps=10_000, method=DEFAULT_METHOD)
#: ``--quick``: CPU minutes, 8x8 images.
QUICK = dict(PAPER, p_over_dn=2.0, image_size=8, train_lr=None, train_steps=100_000, seeds=1, steps=2000,
             method="adam")
#: Without CIFAR-10 on disk: two classes of the bundled photographs (an animal and a vehicle).
STAND_IN = {False: "photos32", True: "photos16"}
STAND_IN_CLASSES = "1,3"


def get_config(quick: bool = False, **overrides) -> ReconstructConfig:
    """The run at the paper's size, or at ``--quick``'s (flat or sectioned overrides)."""
    return ReconstructConfig(**{**(QUICK if quick else PAPER), **overrides})


def choose_data(data_dir=None, quick: bool = False, log=print) -> dict:
    """CIFAR-10 frog vs truck when on disk, else the stand-in photographs (the substitution printed)."""
    if has_dataset("cifar10", data_dir):
        return dict(data="cifar10", data_dir=data_dir)
    name = STAND_IN[quick]
    log(f"cifar10 not found (--data-dir / $JAXRECON_DATA): using the bundled {name} (classes chelsea vs rocket) "
        f"instead of frog vs truck")
    return dict(data=name, data_classes=STAND_IN_CLASSES)


def arguments(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a CPU-sized run (minutes)")
    ap.add_argument("--data-dir", default=None, help="directory holding CIFAR-10 (default: $JAXRECON_DATA)")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--p-over-dn", type=float, default=None, help="head parameters p = 49*width as a multiple of d*n")
    ap.add_argument("--train", default=None, choices=["all", "head"])
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--method", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = os.path.join("benchmarks", "results", f"resnet_binary_{'quick' if args.quick else 'full'}")
    return args


def config_of(args, log=print) -> ReconstructConfig:
    """The run the flags ask for (the data chosen as :func:`choose_data` says)."""
    given = {k: getattr(args, k) for k in ("n", "p_over_dn", "train", "seeds", "steps", "method")
             if getattr(args, k) is not None}
    return get_config(args.quick, seed=args.seed, **choose_data(args.data_dir, args.quick, log), **given)


def main(argv=None):
    args = arguments(argv)
    run_reconstruction(config_of(args), out=args.out, progress=True)


if __name__ == "__main__":
    main()
