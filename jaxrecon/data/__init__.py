"""Data: synthetic sphere data (and real-image loaders)."""

from .synthetic import Dataset, project_to_sphere, sphere, synthetic

__all__ = ["Dataset", "project_to_sphere", "sphere", "synthetic"]
