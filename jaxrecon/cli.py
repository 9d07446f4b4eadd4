"""The ``jaxrecon`` command.

Errors in the user's input print one line (``jaxrecon: error: ...``) and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys

from ._version import __version__


def _add_reconstruct(sub):
    from .activations import ACTIVATIONS
    from .features.random_features import PRECISIONS
    from .attack import DEFAULT_METHOD, METHODS

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
    p.add_argument("--seeds", type=int, default=None,
                   help="attack seeds, vmapped in one program (default: 4; 1 for image datasets, whose "
                        "steps cost d/100 times more and whose figure shows one seed)")
    p.add_argument("--seed", type=int, default=0, help="base seed (data, features and attack keys)")
    p.add_argument("--steps", type=int, default=10_000, help="step budget per seed")
    p.add_argument("--method", default=DEFAULT_METHOD, choices=sorted(METHODS), help="attack method")
    p.add_argument("--optimizer", default=None, help="any optax optimiser by name (overrides the method's)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (overrides the method's)")
    p.add_argument("--activation", default="relu", choices=sorted(ACTIVATIONS), help="RF activation")
    p.add_argument("--block-size", type=int, default=None,
                   help="stream V in blocks of this many rows (default: dense V)")
    p.add_argument("--memory-budget", default=None,
                   help="stream V with the largest block that fits this much memory per device, e.g. 4GB")
    p.add_argument("--precision", default="highest", choices=list(PRECISIONS),
                   help="matmul precision of the attack (tf32/bf16 are faster on GPUs; the fit stays exact)")
    p.add_argument("--shards", type=int, default=1,
                   help="split the random features over this many devices (needs --block-size or --memory-budget)")
    p.add_argument("--seed-shards", type=int, default=1, help="split the vmapped seeds over this many devices")
    p.add_argument("--ridge", type=float, default=0.0, help="ridge of the least-squares fit")
    p.add_argument("--noise", type=float, default=0.5, help="label noise std of the synthetic task")
    p.add_argument("--data", default="synthetic",
                   help="synthetic, or an image dataset: cifar10, tinyimagenet, mnist, fashion_mnist (read "
                        "from --data-dir) or digits, photos16, photos32, photos64 (bundled); d = H*W*C")
    p.add_argument("--data-dir", default=None,
                   help="directory of the on-disk datasets (default: $JAXRECON_DATA); nothing is downloaded")
    p.add_argument("--data-classes", default=None,
                   help="image classes: indices '6,9' or a count '2' (first k); default: the dataset's "
                        "(cifar10: frog,truck)")
    p.add_argument("--image-size", type=int, default=None, help="resize images to SIZE x SIZE")
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
        d=args.d if args.d is not None else (3072 if args.model == "resnet" and args.data == "synthetic" else None), n=args.n, p=args.p, p_over_dn=args.p_over_dn, seeds=args.seeds, seed=args.seed,
        steps=args.steps, method=args.method, optimizer=args.optimizer, lr=args.lr,
        activation=args.activation, block_size=args.block_size, memory_budget=args.memory_budget,
        precision=args.precision, shards=args.shards, seed_shards=args.seed_shards, x64=args.x64, noise=args.noise,
        ridge=args.ridge, chunk=args.chunk, model=args.model, width=args.width, classes=args.classes,
        train=args.train, train_steps=args.train_steps, train_lr=args.train_lr,
        data=args.data, data_dir=args.data_dir, data_classes=args.data_classes, image_size=args.image_size,
    )
    run_reconstruction(cfg, out=args.out, progress=not args.quiet)
    if args.out:
        print(f"wrote {args.out}/summary.json and {args.out}/arrays.npz"
              + (f" and {args.out}/recon.png" if args.data != "synthetic" else ""))
    return 0


def _list(kind):
    def parse(text):
        try:
            return [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind.__name__}, got {text!r}")
    parse.__name__ = f"{kind.__name__} list"
    return parse


def _add_sweep(sub):
    p = sub.add_parser(
        "sweep", help="run a (p, d, n) x seeds grid, resumable; writes results.csv, thresholds and figures",
        description="Run a sweep from a config file (experiments/*.py) and/or flags; flags override the "
                    "config. Seeds of a grid point run vmapped in one compiled program. Re-running the "
                    "same command resumes; a different config into the same --out is refused.")
    p.add_argument("config", nargs="?", default=None, help="config file with get_config() (optional)")
    p.add_argument("--name", default=None, help="sweep name (default out: runs/NAME)")
    p.add_argument("--d", type=_list(int), default=None, help="input dimensions, e.g. 50,100")
    p.add_argument("--n", type=_list(int), default=None, help="training set sizes, e.g. 10,20")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--p", type=_list(int), default=None, help="feature counts")
    g.add_argument("--p-over-n", type=_list(float), default=None, help="p as multiples of n")
    g.add_argument("--p-over-dn", type=_list(float), default=None, help="p as multiples of d*n")
    p.add_argument("--activation", type=_list(str), default=None, help="activations, e.g. relu,tanh")
    p.add_argument("--method", type=_list(str), default=None, help="attack methods (default: the library default)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per grid point (vmapped)")
    p.add_argument("--seed", type=int, default=None, help="base seed")
    p.add_argument("--steps", type=int, default=None, help="attack step budget per seed")
    p.add_argument("--optimizer", default=None, help="optax optimiser overriding the method's")
    p.add_argument("--lr", type=float, default=None, help="learning rate overriding the method's")
    p.add_argument("--x64", default=None, action=argparse.BooleanOptionalAction, help="compute in float64")
    p.add_argument("--block-size", type=int, default=None, help="stream V in blocks of this many rows")
    p.add_argument("--noise", type=float, default=None, help="label noise std")
    p.add_argument("--ridge", type=float, default=None, help="ridge of the least-squares fit")
    p.add_argument("--pad-p", default=None, choices=["auto", "max", "none"],
                   help="one compiled program per (d, n) curve, p padded to its largest value")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the threshold spread")
    p.add_argument("--out", default=None, help="results directory (default: runs/NAME)")
    p.add_argument("--no-plot", action="store_true", help="do not write figures")
    p.add_argument("--quiet", action="store_true", help="no progress bar (one line per grid point)")
    p.set_defaults(func=_cmd_sweep)


def _cmd_sweep(args):
    from .sweeps import SweepConfig, load_config, sweep
    from .sweeps.run import _enable_x64_if

    cfg = load_config(args.config) if args.config else SweepConfig()
    keys = ("name", "d", "n", "p", "p_over_n", "p_over_dn", "activation", "method", "seeds", "seed",
            "steps", "optimizer", "lr", "x64", "block_size", "noise", "ridge", "pad_p")
    cfg = cfg.replace(**{k: getattr(args, k) for k in keys})
    if not args.config and not any(getattr(args, k) is not None for k in ("p", "p_over_n", "p_over_dn")):
        raise ValueError("p: give a config file or one of --p, --p-over-n, --p-over-dn")
    out = args.out or f"runs/{cfg.name}"
    _enable_x64_if(cfg.resolved())
    sweep(cfg, out=out, progress=not args.quiet, plots=not args.no_plot, bootstrap=args.bootstrap)
    return 0


def _add_plot(sub):
    p = sub.add_parser("plot", help="figures and thresholds from a sweep's results.csv",
                       description="Write law.png/.pdf, residuals.png, collapse.png and thresholds.csv "
                                   "for a sweep directory, and print the threshold table.")
    p.add_argument("dir", help="sweep directory holding results.csv")
    p.add_argument("--out", default=None, help="where to write (default: DIR)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the threshold spread")
    p.set_defaults(func=_cmd_plot)


def _cmd_plot(args):
    from .sweeps import plot_dir

    plot_dir(args.dir, out=args.out, bootstrap=args.bootstrap)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxrecon",
        description="Reconstruct training data from model parameters (Iurada et al., ICLR 2026).",
    )
    parser.add_argument("--version", action="version", version=f"jaxrecon {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_reconstruct(sub)
    _add_sweep(sub)
    _add_plot(sub)
    from .theory import add_parser as add_theory

    add_theory(sub)
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
