"""Training. For now a compact classification loop with the HGQ loss; the full trainer comes later."""

from .basic import FitResult, accuracy, fit_classifier

__all__ = ["FitResult", "accuracy", "fit_classifier"]
