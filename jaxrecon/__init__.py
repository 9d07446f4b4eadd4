"""jaxrecon: reconstructing training data from model parameters, in JAX.

Implements the attack and experiments of "A Law of Data Reconstruction for Random Features
(and Beyond)" (Iurada, Bombari, Tommasi, Mondelli; ICLR 2026, arXiv 2509.22214).

The public API (everything else is importable from its module, see ARCHITECTURE.md):

data and models
    :func:`synthetic` (rows on the sphere, linear labels), :func:`load_dataset` (images),
    :class:`RandomFeatures`, :class:`NetworkFeatures` / :func:`network_target` (networks),
    :func:`fit` (min-norm least squares), :class:`Target` (a feature map and ``theta``)
loss
    :func:`projector_loss`, :func:`span_residuals`
attack
    :func:`reconstruct` (pure), :func:`reconstruct_seeds` (vmapped seeds, compiled chunks),
    :class:`Method`, :func:`method_config`, :data:`METHODS`, :data:`DEFAULT_METHOD`
metrics
    :func:`match` (Hungarian matching, the paper's errors)
experiments
    :class:`ReconstructConfig` / :func:`run_reconstruction` (``jaxrecon reconstruct``),
    :class:`SweepConfig` / :func:`sweep` / :func:`read_results` (``jaxrecon sweep``),
    :func:`estimate_thresholds`, :func:`plot_law`, :func:`x64` (float64 inside a ``with``)
"""

from ._version import __version__
from .attack import DEFAULT_METHOD, METHODS, Method, method_config, reconstruct, reconstruct_seeds
from .config import x64
from .data import synthetic
from .data.registry import load_dataset
from .features import NetworkFeatures, RandomFeatures, Target, network_target
from .loss import projector_loss, span_residuals
from .metrics import match
from .models import fit
from .runner import ReconstructConfig, run_reconstruction
from .sweeps import SweepConfig, read_results, sweep
from .thresholds import estimate_thresholds


def __getattr__(name):  # matplotlib is imported on first use of a plotting function
    if name == "plot_law":
        from .plotting import plot_law

        return plot_law
    raise AttributeError(f"module 'jaxrecon' has no attribute {name!r}")


__all__ = [
    "DEFAULT_METHOD", "METHODS", "Method", "NetworkFeatures", "RandomFeatures", "ReconstructConfig",
    "SweepConfig", "Target", "__version__", "estimate_thresholds", "fit", "load_dataset", "match",
    "method_config", "network_target", "plot_law", "projector_loss", "read_results", "reconstruct",
    "reconstruct_seeds", "run_reconstruction", "span_residuals", "sweep", "synthetic", "x64",
]
