"""The ``jaxrecon`` command.

Errors in the user's input print one line (``jaxrecon: error: ...``) and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys

from ._version import __version__


def _add_reconstruct(sub):
    from .activations import ACTIVATIONS
    from .reconstruct import DEFAULT_METHOD, METHODS

    p = sub.add_parser(
        "reconstruct", help="fit a model on synthetic data and reconstruct its training set",
        description="Fit a random-features model on n points of the sphere in R^d, then recover the "
                    "training inputs from its parameters with the projector-loss attack, for several "
                    "attack seeds vmapped in one compiled program.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--d", type=int, default=None,
                   help="input dimension (default 100; 3072 = 3x32x32 for --model resnet)")
    p.add_argument("--n", type=int, default=20, help="number of training samples")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--p", type=int, default=None, help="number of random features (parameters)")
    g.add_argument("--p-over-dn", type=float, default=None, help="p as a multiple of d*n (p = round(r*d*n))")
    p.add_argument("--seeds", type=int, default=4, help="attack seeds, vmapped in one program")
    p.add_argument("--seed", type=int, default=0, help="base seed (data, features and attack keys)")
    p.add_argument("--steps", type=int, default=10_000, help="step budget per seed")
    p.add_argument("--method", default=DEFAULT_METHOD, choices=sorted(METHODS), help="attack method")
    p.add_argument("--optimizer", default=None, help="any optax optimiser by name (overrides the method's)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (overrides the method's)")
    p.add_argument("--activation", default="relu", choices=sorted(ACTIVATIONS), help="RF activation")
    p.add_argument("--block-size", type=int, default=None,
                   help="stream V in blocks of this many rows (default: dense V)")
    p.add_argument("--ridge", type=float, default=0.0, help="ridge of the least-squares fit")
    p.add_argument("--noise", type=float, default=0.5, help="label noise std of the synthetic task")
    p.add_argument("--model", default="rf", choices=["rf", "two_layer", "resnet"],
                   help="rf: random features; two_layer: W2 relu(W1 x); resnet: the paper's ResNet "
                        "(image-shaped d = 3*s*s). Networks are trained by full-batch GD and the "
                        "target is the change of the head")
    p.add_argument("--width", type=int, default=None,
                   help="hidden units / ResNet channels (default: from --p or --p-over-dn, "
                        "p = width*classes or 49*width head parameters)")
    p.add_argument("--classes", type=int, default=1, help="outputs k of the two-layer net (one-hot targets)")
    p.add_argument("--train", default="head", choices=["head", "all"], help="network layers trained by GD")
    p.add_argument("--train-steps", type=int, default=100, help="full-batch GD steps for networks")
    p.add_argument("--train-lr", type=float, default=None,
                   help="GD learning rate for networks (default: 1/lambda_max of the Gauss-Newton Hessian)")
    p.add_argument("--x64", action="store_true", help="compute in float64")
    p.add_argument("--chunk", type=int, default=250, help="steps per compiled chunk (progress granularity)")
    p.add_argument("--out", default=None, help="directory for summary.json and arrays.npz")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_reconstruct)


def _cmd_reconstruct(args):
    from .runner import ReconstructConfig, run_reconstruction

    cfg = ReconstructConfig(
        d=args.d if args.d is not None else (3072 if args.model == "resnet" else 100), n=args.n, p=args.p, p_over_dn=args.p_over_dn, seeds=args.seeds, seed=args.seed,
        steps=args.steps, method=args.method, optimizer=args.optimizer, lr=args.lr,
        activation=args.activation, block_size=args.block_size, x64=args.x64, noise=args.noise,
        ridge=args.ridge, chunk=args.chunk, model=args.model, width=args.width, classes=args.classes,
        train=args.train, train_steps=args.train_steps, train_lr=args.train_lr,
    )
    run_reconstruction(cfg, out=args.out, progress=not args.quiet)
    if args.out:
        print(f"wrote {args.out}/summary.json and {args.out}/arrays.npz")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxrecon",
        description="Reconstruct training data from model parameters (Iurada et al., ICLR 2026).",
    )
    parser.add_argument("--version", action="version", version=f"jaxrecon {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_reconstruct(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except ValueError as e:
        print(f"jaxrecon: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jaxrecon: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
