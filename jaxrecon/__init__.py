"""jaxrecon: reconstructing training data from model parameters, in JAX.

Implements the attack and experiments of "A Law of Data Reconstruction for Random Features
(and Beyond)" (Iurada, Bombari, Tommasi, Mondelli; ICLR 2026, arXiv 2509.22214).
"""

from ._version import __version__
from .activations import ACTIVATIONS, get_activation, surrogate_relu
from .data import Dataset, project_to_sphere, sphere, synthetic
from .features import FeatureMap, NetworkFeatures, RandomFeatures, Target, network_target
from .loss import (ResidualLinearization, factor_kernel, projector_loss, projector_residual, report_loss,
                   residual_linearization, span_residuals)
from .metrics import Match, error_abs, error_sign, match
from .models import FitResult, fit, fit_with_info
from .scale import block_size_for, parse_bytes
from .reconstruct import (DEFAULT_METHOD, METHODS, MethodConfig, ReconResult, method_config,
                          reconstruct, reconstruct_seeds)
from .sweeps import SweepConfig, read_results, sweep  # jr.sweep: the function; jr.sweeps: the package
from .thresholds import estimate_thresholds

_PLOTTING = ("plot_all", "plot_collapse", "plot_law", "plot_residuals")


def __getattr__(name):  # matplotlib is imported on first use of a plotting function
    if name in _PLOTTING:
        from . import plotting

        return getattr(plotting, name)
    raise AttributeError(f"module 'jaxrecon' has no attribute {name!r}")


__all__ = [
    "ACTIVATIONS", "DEFAULT_METHOD", "Dataset", "FeatureMap", "FitResult", "METHODS", "Match",
    "MethodConfig", "NetworkFeatures", "network_target", "RandomFeatures", "ReconResult", "Target", "__version__", "error_abs", "error_sign",
    "factor_kernel", "fit", "fit_with_info", "get_activation", "match", "method_config",
    "project_to_sphere", "projector_loss", "projector_residual", "reconstruct", "reconstruct_seeds",
    "report_loss", "ResidualLinearization", "residual_linearization", "span_residuals", "sphere", "surrogate_relu", "synthetic",
    "SweepConfig", "block_size_for", "estimate_thresholds", "parse_bytes", "read_results", "sweep", *_PLOTTING,
]
