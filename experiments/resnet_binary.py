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

import os
import sys

from jaxrecon.attack import DEFAULT_METHOD
from jaxrecon.runner import ReconstructConfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _network_run  # noqa: E402
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
    return _network_run.arguments(argv, __doc__, 'resnet_binary', 'head parameters p = 49*width as a multiple of d*n')


def config_of(args, log=print) -> ReconstructConfig:
    """The run the flags ask for (the data chosen as :func:`choose_data` says)."""
    return _network_run.config_of(args, get_config, choose_data, log)


def main(argv=None):
    args = arguments(argv)
    _network_run.run(args, config_of(args))


if __name__ == "__main__":
    main()
