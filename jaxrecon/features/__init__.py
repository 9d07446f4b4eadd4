"""Feature maps behind one protocol (see :mod:`jaxrecon.features.base`)."""

from .base import FeatureMap, FeatureMapBase, Target
from .network import NetworkFeatures, network_target
from .random_features import RandomFeatures

__all__ = ["FeatureMap", "FeatureMapBase", "NetworkFeatures", "RandomFeatures", "Target", "network_target"]
