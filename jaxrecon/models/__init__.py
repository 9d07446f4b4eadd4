"""Models that produce a target: random-features regression (and networks)."""

from .rf import FitResult, fit, fit_with_info

#: Models a run can fit: random features, or a network trained by full-batch GD (:mod:`.train`).
MODELS = ("rf", "two_layer", "resnet")
NETWORKS = MODELS[1:]
#: Parameters a network's GD trains: the head only, or everything.
TRAIN_SUBSETS = ("head", "all")

__all__ = ["FitResult", "MODELS", "NETWORKS", "TRAIN_SUBSETS", "fit", "fit_with_info"]
