"""Sweeps: the law of data reconstruction as a grid over ``(d, n, p)`` x activation x method x seeds.

A sweep is described by a :class:`SweepConfig` (``config``); every grid point runs all its seeds
as one vmapped, compiled program (``points``); results go to a durable, resumable ``results.csv``
(``store``) in a directory one sweep at a time writes (``lock``); :func:`sweep` runs it all and
reports thresholds and figures (``run``).
"""

from .config import GRID_KEYS, ResolvedSweep, SweepConfig, config_hash, load_config
from .points import (PAD_AUTO_LIMIT, GridPoint, PointOutput, ProgramCache, check_sizes, compiled_program,
                   grid, make_trial, pad_width, point_rows, program_key, run_point, seed_keys)
from .run import plot_dir, report, sweep
from .store import COLUMNS, append_rows, complete_points, prepare_out, read_results, rows_text, table_rows, \
    to_table

__all__ = [
    "COLUMNS", "GRID_KEYS", "PAD_AUTO_LIMIT", "GridPoint", "PointOutput", "ProgramCache", "ResolvedSweep",
    "SweepConfig", "append_rows", "check_sizes", "compiled_program", "complete_points", "config_hash",
    "grid", "load_config", "make_trial", "pad_width", "plot_dir", "point_rows", "prepare_out", "program_key",
    "read_results", "report", "rows_text", "run_point", "seed_keys", "sweep", "table_rows", "to_table",
]
