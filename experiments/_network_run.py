"""The command line the paper's network experiments share (``two_layer_multiclass.py``,
``resnet_binary.py``): the same flags over each script's paper and ``--quick`` configs, its data
choice (CIFAR-10 on disk, else a bundled stand-in) and one reconstruction. A helper, not a config."""

from __future__ import annotations

import argparse
import os
from typing import Callable, Optional

from jaxrecon.runner import ReconstructConfig, run_reconstruction

#: The flags that override the script's config when given.
OVERRIDES = ("n", "p_over_dn", "train", "seeds", "steps", "method")


def arguments(argv, description: str, name: str, p_help: str, n_help: Optional[str] = None) -> argparse.Namespace:
    """The flags; ``--out`` defaults to ``benchmarks/results/<name>_quick`` or ``..._full``."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a CPU-sized run (minutes)")
    ap.add_argument("--data-dir", default=None, help="directory holding CIFAR-10 (default: $JAXRECON_DATA)")
    ap.add_argument("--n", type=int, default=None, help=n_help)
    ap.add_argument("--p-over-dn", type=float, default=None, help=p_help)
    ap.add_argument("--train", default=None, choices=["all", "head"])
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--method", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = os.path.join("benchmarks", "results", f"{name}_{'quick' if args.quick else 'full'}")
    return args


def config_of(args, get_config: Callable, choose_data: Callable, log=print) -> ReconstructConfig:
    """The run the flags ask for: ``get_config`` of the size, the data ``choose_data`` picks, and
    the flags given."""
    given = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
    return get_config(args.quick, seed=args.seed, **choose_data(args.data_dir, args.quick, log), **given)


def run(args, cfg: ReconstructConfig) -> None:
    run_reconstruction(cfg, out=args.out, progress=True)
