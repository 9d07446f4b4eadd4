"""The ``jaxrecon`` command.

Errors in the user's input print one line (``jaxrecon: error: ...``) and exit with status 2;
file-system errors (read-only or full disk) one line naming the path and the reason, status 1.
A first Ctrl-C or SIGTERM stops the run after its current chunk (or grid point) and saves what is
done, exiting 130 or 143; a second quits at once (:mod:`jaxrecon.signals`). Compiled programs are
kept in JAX's persistent cache (:mod:`jaxrecon.cache`; ``JAXRECON_CACHE_DIR=off`` disables it).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

from ._version import __version__


def _add_reconstruct(sub):
    from .config import add_arguments
    from .distributed import add_process_arguments
    from .runner.config import ReconstructConfig

    p = sub.add_parser(
        "reconstruct", help="fit a model on synthetic data and reconstruct its training set",
        description="Fit a random-features model on n points of the sphere in R^d, then recover the "
                    "training inputs from its parameters with the projector-loss attack, for several "
                    "attack seeds vmapped in one compiled program. Every setting has a flag "
                    "--section.field (e.g. --attack.lr) and its short spelling (--lr).",
    )
    add_arguments(p, ReconstructConfig)
    save = p.add_mutually_exclusive_group()
    save.add_argument("--out", default=None,
                      help="directory for summary.json and arrays.npz (default: runs/reconstruct-<date>-<time>)")
    save.add_argument("--no-save", action="store_true", help="print the results only; write no files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_process_arguments(p)
    p.set_defaults(func=_cmd_reconstruct, stops_after="chunk")


def _process_index() -> int:
    from .distributed import process_index

    return process_index()


def default_run_dir(command: str = "reconstruct", root: str = "runs") -> str:
    """``runs/<command>-<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``, ... when taken)."""
    base = os.path.join(root, f"{command}-{time.strftime('%Y%m%d-%H%M%S')}")
    path, k = base, 1
    while os.path.exists(path):
        k += 1
        path = f"{base}-{k}"
    return path


def _cmd_reconstruct(args):
    from .config import from_args, x64
    from .distributed import flags_from_args, initialize
    from .runner import ReconstructConfig, run_reconstruction
    from .signals import current_request

    # every process runs the same program; process 0 alone prints and writes the files
    lead = not initialize(flags_from_args(args), log=print) or _process_index() == 0
    cfg = from_args(ReconstructConfig, args)
    out = None if args.no_save or not lead else (args.out or default_run_dir())
    with x64() if cfg.scale.x64 else contextlib.nullcontext():
        summary = run_reconstruction(cfg, out=out, progress=not args.quiet and lead, log=print if lead else None)
    if not lead:
        return 0
    files = "summary.json and arrays.npz" + (" and recon.png" if "images" in summary else "")
    interrupted = [r["seed"] for r in summary["results"] if r["status"] == "interrupted"]
    request = current_request()
    if interrupted or (request is not None and request.signum is not None):
        finished = len(summary["results"]) - len(interrupted)
        where = f"wrote {out}/{files}" if out else "nothing written (--no-save)"
        print(f"jaxrecon: interrupted: {finished} seed(s) finished, {len(interrupted)} interrupted; {where}",
              file=sys.stderr)
        return request.exit_code if request is not None and request.exit_code else 130
    print(f"wrote {out}/{files}" if out else "results not saved (--no-save)")
    return 0


def _add_sweep(sub):
    from .config import add_arguments
    from .distributed import add_process_arguments
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
    add_process_arguments(p)
    p.set_defaults(func=_cmd_sweep)


def _cmd_sweep(args):
    from .config import given_args, x64
    from .distributed import flags_from_args, initialize
    from .sweeps import SweepConfig, load_config, sweep

    initialize(flags_from_args(args), log=print)  # K processes split the grid (jaxrecon.sweeps.split)
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
    from .signals import Interrupted, handle_signals

    with handle_signals() as request:  # before the heavy imports: a signal during them is handled too
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        if request is not None:
            request.what = getattr(args, "stops_after", "grid point" if args.command == "sweep" else "step")
        from .cache import enable_compilation_cache

        enable_compilation_cache()
        try:
            code = args.func(args) or 0
        except ValueError as e:
            print(f"jaxrecon: error: {e}", file=sys.stderr)
            return 2
        except OSError as e:  # read-only or full disk, a missing file: the path and the reason
            where = f"{e.filename}: " if e.filename else ""
            print(f"jaxrecon: error: {where}{e.strerror or e}", file=sys.stderr)
            return 1
        except Interrupted as e:
            print(f"jaxrecon: {e}", file=sys.stderr)
            return request.exit_code if request is not None and request.exit_code else 130
        except KeyboardInterrupt:  # outside the main thread, where signals are not handled
            print("jaxrecon: interrupted", file=sys.stderr)
            return 130
        if request is not None and request.exit_code:  # stopped early by a signal; finished work is saved
            return request.exit_code
        return code


if __name__ == "__main__":
    sys.exit(main())
