"""Models that produce a target: random-features regression (and networks)."""

from .rf import FitResult, fit, fit_with_info

__all__ = ["FitResult", "fit", "fit_with_info"]
