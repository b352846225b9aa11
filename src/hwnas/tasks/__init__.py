"""Datasets as tasks. For now: scikit-learn's bundled digits (offline); the task registry comes later."""

from .digits import DigitsSplit, load_digits

__all__ = ["DigitsSplit", "load_digits"]
