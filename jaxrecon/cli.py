"""The ``jaxrecon`` command.

Errors in the user's input print one line (``jaxrecon: error: ...``) and exit with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from ._version import __version__


def _add_reconstruct(sub):
    from .config import add_arguments
    from .runner.config import ReconstructConfig

    p = sub.add_parser(
        "reconstruct", help="fit a model on synthetic data and reconstruct its training set",
        description="Fit a random-features model on n points of the sphere in R^d, then recover the "
                    "training inputs from its parameters with the projector-loss attack, for several "
                    "attack seeds vmapped in one compiled program. Every setting has a flag "
                    "--section.field (e.g. --attack.lr) and its short spelling (--lr).",
    )
    add_arguments(p, ReconstructConfig)
    p.add_argument("--out", default=None, help="directory for summary.json and arrays.npz")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_reconstruct)


def _cmd_reconstruct(args):
    from .config import from_args, x64
    from .runner import ReconstructConfig, run_reconstruction

    cfg = from_args(ReconstructConfig, args)
    with x64() if cfg.scale.x64 else contextlib.nullcontext():
        run_reconstruction(cfg, out=args.out, progress=not args.quiet)
    if args.out:
        print(f"wrote {args.out}/summary.json and {args.out}/arrays.npz"
              + (f" and {args.out}/recon.png" if cfg.data.name != "synthetic" else ""))
    return 0


def _add_sweep(sub):
    from .config import add_arguments
    from .sweeps import SweepConfig

    p = sub.add_parser(
        "sweep", help="run a (p, d, n) x seeds grid, resumable; writes results.csv, thresholds and figures",
        description="Run a sweep from a config file (experiments/*.py) and/or flags; flags override the "
                    "config. Seeds of a grid point run vmapped in one compiled program. Re-running the "
                    "same command resumes; a different config into the same --out is refused. Every "
                    "setting has a flag --section.field (e.g. --attack.steps) and its short spelling "
                    "(--steps); grid flags take comma-separated values (--d 50,100).")
    p.add_argument("config", nargs="?", default=None, help="config file with get_config() (optional)")
    add_arguments(p, SweepConfig)
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the threshold spread")
    p.add_argument("--out", default=None, help="results directory (default: runs/NAME)")
    p.add_argument("--no-plot", action="store_true", help="do not write figures")
    p.add_argument("--quiet", action="store_true", help="no progress bar (one line per grid point)")
    p.set_defaults(func=_cmd_sweep)


def _cmd_sweep(args):
    from .config import given_args, x64
    from .sweeps import SweepConfig, load_config, sweep

    given = given_args(SweepConfig, args)
    cfg = (load_config(args.config) if args.config else SweepConfig()).override(given)
    if not args.config and not any(f"grid.{k}" in given for k in ("p", "p_over_n", "p_over_dn")):
        raise ValueError("p: give a config file or one of --p, --p-over-n, --p-over-dn")
    out = args.out or f"runs/{cfg.name}"
    with x64() if cfg.resolved().x64 else contextlib.nullcontext():
        sweep(cfg, out=out, progress=not args.quiet, plots=not args.no_plot, bootstrap=args.bootstrap)
    return 0


def _add_plot(sub):
    p = sub.add_parser("plot", help="figures and thresholds from a sweep's results.csv",
                       description="Write law.png/.pdf, residuals.png, collapse.png, thresholds.csv and, "
                                   "with two or more (d, n) curves, finite_size.png for a sweep directory, "
                                   "and print the threshold table.")
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
