"""Task metrics on predicted and true class indices: accuracy, accuracy per SNR, confusion matrix.

Inputs may be NumPy arrays or torch tensors; logits (N, C) are reduced with ``argmax`` over the last
axis, a 1-D array is taken as class indices already.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["accuracy", "accuracy_per_snr", "confusion_matrix", "most_confused", "to_classes"]


def _numpy(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def to_classes(pred: Any) -> np.ndarray:
    """Class indices from logits/probabilities (N, C) or from indices (N,)."""
    p = _numpy(pred)
    if p.ndim == 2:
        return p.argmax(axis=1).astype(np.int64)
    if p.ndim == 1:
        return p.astype(np.int64)
    raise ValueError(f"pred: expected (N,) class indices or (N, C) scores, got shape {p.shape}")


def _pair(pred: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    p, y = to_classes(pred), _numpy(labels).astype(np.int64).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"labels: {y.shape[0]} labels for {p.shape[0]} predictions")
    if y.size == 0:
        raise ValueError("labels: empty")
    return p, y


def accuracy(pred: Any, labels: Any) -> float:
    """Fraction of correct predictions."""
    p, y = _pair(pred, labels)
    return float((p == y).mean())


def accuracy_per_snr(pred: Any, labels: Any, snr: Any) -> dict[int, float]:
    """Accuracy for every SNR value present (keys are the SNRs in dB, rounded to integers, ascending)."""
    p, y = _pair(pred, labels)
    s = np.rint(_numpy(snr).reshape(-1)).astype(np.int64)
    if s.shape != y.shape:
        raise ValueError(f"snr: {s.shape[0]} SNR values for {y.shape[0]} labels")
    correct = p == y
    return {int(v): float(correct[s == v].mean()) for v in np.unique(s)}


def confusion_matrix(pred: Any, labels: Any, n_classes: int | None = None) -> np.ndarray:
    """Counts ``cm[true, predicted]`` (int64, shape (C, C))."""
    p, y = _pair(pred, labels)
    c = int(max(p.max(), y.max()) + 1) if n_classes is None else n_classes
    if p.max() >= c or y.max() >= c or p.min() < 0 or y.min() < 0:
        raise ValueError(f"n_classes: class indices outside 0..{c - 1}")
    return np.bincount(y * c + p, minlength=c * c).reshape(c, c).astype(np.int64)


def most_confused(cm: np.ndarray, classes: tuple[str, ...] | None = None, k: int = 5
                  ) -> list[tuple[str | int, str | int, float]]:
    """The ``k`` unordered class pairs with the highest mutual confusion rate.

    The rate of a pair (a, b) is (cm[a, b] + cm[b, a]) / (n_a + n_b), the share of both classes' frames
    assigned to the other one of the pair. Returns ``(a, b, rate)`` with names when ``classes`` is given.
    """
    cm = np.asarray(cm, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm: expected a square matrix, got shape {cm.shape}")
    if classes is not None and len(classes) != cm.shape[0]:
        raise ValueError(f"classes: {len(classes)} names for a {cm.shape[0]}-class matrix")
    totals = cm.sum(axis=1)
    pairs = []
    for a in range(cm.shape[0]):
        for b in range(a + 1, cm.shape[0]):
            n = totals[a] + totals[b]
            rate = (cm[a, b] + cm[b, a]) / n if n else 0.0
            pairs.append((a, b, float(rate)))
    pairs.sort(key=lambda t: -t[2])
    name = (lambda i: classes[i]) if classes is not None else (lambda i: i)
    return [(name(a), name(b), r) for a, b, r in pairs[:k]]
