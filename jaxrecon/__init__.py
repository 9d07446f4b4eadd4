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

# Names are imported on first use (PEP 562), so ``import jaxrecon.cli`` is fast and the command
# line installs its signal handlers before JAX is imported.
_LAZY = {
    "DEFAULT_METHOD": "attack", "METHODS": "attack", "Method": "attack", "method_config": "attack",
    "reconstruct": "attack", "reconstruct_seeds": "attack", "x64": "config", "synthetic": "data",
    "load_dataset": "data.registry", "NetworkFeatures": "features", "RandomFeatures": "features",
    "Target": "features", "network_target": "features", "projector_loss": "loss",
    "span_residuals": "loss", "match": "metrics", "fit": "models", "ReconstructConfig": "runner",
    "run_reconstruction": "runner", "SweepConfig": "sweeps", "read_results": "sweeps", "sweep": "sweeps",
    "estimate_thresholds": "thresholds", "plot_law": "plotting",
}


def __getattr__(name):
    import importlib

    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    try:  # a submodule not imported yet: jaxrecon.attack, jaxrecon.io, ...
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module 'jaxrecon' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "DEFAULT_METHOD", "METHODS", "Method", "NetworkFeatures", "RandomFeatures", "ReconstructConfig",
    "SweepConfig", "Target", "__version__", "estimate_thresholds", "fit", "load_dataset", "match",
    "method_config", "network_target", "plot_law", "projector_loss", "read_results", "reconstruct",
    "reconstruct_seeds", "run_reconstruction", "span_residuals", "sweep", "synthetic", "x64",
]
