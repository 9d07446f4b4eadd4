"""The paper's two-layer multiclass experiment (appendix): CIFAR-10, 10 classes, both layers trained.

Full size, the paper's (the default; a GPU run)::

    python experiments/two_layer_multiclass.py [--data-dir DIR]

As the paper's released code runs it: CIFAR-10, all 10 classes, ``n / 10`` images of each
(``n = 100``), flattened and standardised (``d = 3072``); ``f(x) = W2 relu(W1 x)`` with
``W1 ~ N(0, 1/d)``, ``W2 ~ N(0, 1/width)``, no biases, ``k = 10`` outputs trained to one-hot
targets; **both layers** trained by plain full-batch GD on the MSE, lr ``1e-5``, until the MSE is
``<= 1e-7`` (budget ``10^6`` steps). The attack's target is ``theta = vec(W2 - W2^(0))`` with the
head Jacobian at the trained ``W1`` as features (``n k`` rows); its loss at the training set
(``loss_at_truth``) is the floor it is judged against. The head has ``p = k * width = 4 d n``
parameters (width 122 880, the launch file's).

CIFAR-10 is read from ``--data-dir`` (or ``$JAXRECON_DATA``) when it is there; otherwise the bundled
scikit-learn digits (8x8 grey, 10 classes, ``d = 64``) stand in, and the substitution is printed.

Quick (CPU, a few minutes on 2 cores)::

    python experiments/two_layer_multiclass.py --quick

CIFAR-10 resized to 8x8 (``d = 192``) when present, else the digits; ``n = 20`` (2 per class),
``p = 4 d n``, the default learning rate (``0.1 / lambda_max``: the paper's ``1e-5`` is for its
widths and would take millions of steps here), 2 attack seeds of 3000 steps. Measured on the
loaded 2-core CPU with the digits: 6.4 minutes (training 10 056 GD steps, ``loss_at_truth``
2.3e-3; the attack, 370 s, ended at 7-12 times that floor, ``error_sign`` 0.25-0.40).

The configuration is :func:`get_config`; the same quick run from the command line::

    jaxrecon reconstruct --model two_layer --data digits --data-classes 10 --classes 10 --n 20 \\
        --p-over-dn 4 --seeds 2 --steps 3000 --out runs/two_layer_multiclass

Writes ``summary.json``, ``arrays.npz`` and ``recon.png`` into ``--out`` (default
``benchmarks/results/two_layer_multiclass_full``, ``..._quick`` with ``--quick``).
"""

from __future__ import annotations

import os
import sys

from jaxrecon.attack import DEFAULT_METHOD
from jaxrecon.runner import ReconstructConfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _network_run  # noqa: E402
from fig1_cifar import has_dataset  # noqa: E402

#: The paper's run (its two-layer script and launch file).
PAPER = dict(model="two_layer", data="cifar10", data_classes="10", classes=10, n=100, p_over_dn=4.0,
             activation="relu", train="all", train_lr=1e-5, train_tol=1e-7, train_steps=1_000_000,
             seeds=4, steps=10_000, method=DEFAULT_METHOD)
#: ``--quick``: CPU minutes.
QUICK = dict(PAPER, n=20, train_lr=None, train_steps=100_000, seeds=2, steps=3000)
#: Without CIFAR-10 on disk: the bundled dataset of 10 classes.
STAND_IN = "digits"
#: ``--quick`` on CIFAR-10: images resized to this side.
QUICK_IMAGE_SIZE = 8


def get_config(quick: bool = False, **overrides) -> ReconstructConfig:
    """The run at the paper's size, or at ``--quick``'s (flat or sectioned overrides)."""
    return ReconstructConfig(**{**(QUICK if quick else PAPER), **overrides})


def choose_data(data_dir=None, quick: bool = False, log=print) -> dict:
    """The data overrides: CIFAR-10 when it is on disk (resized with ``quick``), else the stand-in
    (the substitution printed)."""
    if has_dataset("cifar10", data_dir):
        return dict(data="cifar10", data_dir=data_dir, image_size=QUICK_IMAGE_SIZE if quick else None)
    log(f"cifar10 not found (--data-dir / $JAXRECON_DATA): using the bundled {STAND_IN} "
        f"(8x8 grey, 10 classes, d = 64) instead")
    return dict(data=STAND_IN)


def arguments(argv=None):
    return _network_run.arguments(argv, __doc__, 'two_layer_multiclass', 'head parameters p = k*width as a multiple of d*n', n_help='training images, n/10 per class')


def config_of(args, log=print) -> ReconstructConfig:
    """The run the flags ask for (the data chosen as :func:`choose_data` says)."""
    return _network_run.config_of(args, get_config, choose_data, log)


def main(argv=None):
    args = arguments(argv)
    _network_run.run(args, config_of(args))


if __name__ == "__main__":
    main()
