"""One reconstruction run: its configuration (:mod:`.config`) and the run itself (:mod:`.run`)."""

from .config import (AttackConfig, DataConfig, ModelConfig, ReconstructConfig, ScaleConfig,
                     default_d)
from .run import Problem, build_problem, format_table, load_data, run_reconstruction

__all__ = ["AttackConfig", "DataConfig", "ModelConfig", "Problem", "ReconstructConfig", "ScaleConfig",
           "build_problem", "default_d", "format_table", "load_data", "run_reconstruction"]
