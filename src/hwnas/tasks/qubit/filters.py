"""Readout fidelity and the classical matched-filter discriminator (the non-ML baseline)."""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["MatchedFilter", "assignment_errors", "fidelity"]


def _binary(name: str, values: np.ndarray) -> np.ndarray:
    a = np.asarray(values).reshape(-1)
    if a.size and not np.isin(a, (0, 1)).all():
        raise ValueError(f"{name}: expected binary states 0 (g) / 1 (e), got values {np.unique(a)[:5].tolist()}")
    return a.astype(np.int64)


def assignment_errors(pred: np.ndarray, label: np.ndarray) -> tuple[float, float]:
    """``(P(e|g), P(g|e))``: the share of g shots assigned e and of e shots assigned g."""
    p, y = _binary("pred", pred), _binary("label", label)
    if p.shape != y.shape:
        raise ValueError(f"pred: {p.size} predictions for {y.size} labels")
    if not (y == 0).any() or not (y == 1).any():
        raise ValueError("label: assignment errors need shots of both states (0 and 1)")
    return float((p[y == 0] == 1).mean()), float((p[y == 1] == 0).mean())


def fidelity(pred: np.ndarray, label: np.ndarray) -> float:
    """Readout (assignment) fidelity F = 1 − [P(e|g) + P(g|e)] / 2 of binary predictions against labels."""
    e_g, g_e = assignment_errors(pred, label)
    return 1.0 - 0.5 * (e_g + g_e)


def _best_threshold(scores: np.ndarray, y: np.ndarray) -> float:
    """The threshold t (predict e where score > t) maximizing the fidelity on (scores, y)."""
    order = np.argsort(scores, kind="stable")
    s, ys = scores[order], y[order]
    n_g, n_e = (ys == 0).sum(), (ys == 1).sum()
    # threshold just above s[i]: shots 0..i are called g
    g_below = np.cumsum(ys == 0)
    e_below = np.cumsum(ys == 1)
    fid = 1.0 - 0.5 * ((n_g - g_below) / n_g + e_below / n_e)
    last = np.r_[s[1:] != s[:-1], True]                 # only cut between distinct scores
    fid = np.where(last, fid, -np.inf)
    i = int(np.argmax(fid))
    return float(0.5 * (s[i] + s[i + 1])) if i + 1 < len(s) else float(s[i] + 1.0)


class MatchedFilter:
    """Linear discriminator: score = ⟨kernel, window⟩, state e where score > threshold.

    ``kind="matched"``: the kernel is the difference of the mean e and mean g windows (the optimal linear filter
    for white noise). ``kind="boxcar"``: every sample weighs the same (I and Q integrated over the window), the
    integrated point is projected on the mean difference. The threshold maximizes the fidelity on the training
    shots. Inputs are ``(N, 2·size)`` I-then-Q windows (:func:`readout_window`) or ``(N, 2, size)``.
    """

    def __init__(self, kind: Literal["matched", "boxcar"] = "matched") -> None:
        if kind not in ("matched", "boxcar"):
            raise ValueError(f"kind: must be 'matched' or 'boxcar', got {kind!r}")
        self.kind = kind
        self.kernel: np.ndarray | None = None
        self.threshold: float | None = None

    @staticmethod
    def _flat(x: np.ndarray) -> np.ndarray:
        a = np.asarray(x, dtype=np.float64)
        if a.ndim == 3 and a.shape[1] == 2:
            return a.reshape(len(a), -1)
        if a.ndim != 2 or a.shape[1] % 2:
            raise ValueError(f"x: expected (N, 2·size) I-then-Q windows or (N, 2, size), got shape {a.shape}")
        return a

    def fit(self, x: np.ndarray, label: np.ndarray) -> MatchedFilter:
        """Kernel from the class means of ``x``, threshold maximizing the fidelity on ``(x, label)``."""
        a, y = self._flat(x), _binary("label", label)
        if len(a) != len(y):
            raise ValueError(f"label: {len(y)} labels for {len(a)} shots")
        if not (y == 0).any() or not (y == 1).any():
            raise ValueError("label: fitting needs shots of both states (0 and 1)")
        diff = a[y == 1].mean(axis=0) - a[y == 0].mean(axis=0)
        if self.kind == "boxcar":
            half = a.shape[1] // 2
            diff = np.repeat(diff.reshape(2, half).sum(axis=1), half)
        self.kernel = diff
        self.threshold = _best_threshold(a @ diff, y)
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """Score minus threshold per shot (> 0: e)."""
        if self.kernel is None or self.threshold is None:
            raise RuntimeError("MatchedFilter: call fit() first")
        a = self._flat(x)
        if a.shape[1] != self.kernel.size:
            raise ValueError(f"x: {a.shape[1]} features, the filter was fitted on {self.kernel.size}")
        return a @ self.kernel - self.threshold

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Assigned states, int64 (0 = g, 1 = e)."""
        return (self.decision_function(x) > 0).astype(np.int64)

    def score(self, x: np.ndarray, label: np.ndarray) -> float:
        """Fidelity of :meth:`predict` on ``(x, label)``."""
        return fidelity(self.predict(x), label)
