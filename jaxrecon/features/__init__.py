"""Feature maps behind one protocol (see :mod:`jaxrecon.features.base`)."""

from .base import FeatureMap, Target
from .random_features import RandomFeatures

__all__ = ["FeatureMap", "RandomFeatures", "Target"]
