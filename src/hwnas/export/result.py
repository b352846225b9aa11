"""The result every verification path returns: samples, mismatching samples, max difference in LSBs.

Contract: a path executes its exported artefact on a test set and compares with the torch model's output
(float64 values of the float32 forward) element by element; a sample mismatches when any of its outputs
differs. :func:`compare` builds the :class:`PathResult` from both arrays; :func:`skipped` is the result of a
path whose tool is missing (it counts as neither pass nor failure and says why); :func:`failed` the result of a
path whose tool failed inside (:class:`~hwnas.export.errors.ToolFailureError`): a failure, never a pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

__all__ = ["PathResult", "compare", "failed", "output_lsb", "skipped", "top1_of"]


@dataclass(frozen=True)
class PathResult:
    """One verification path on one test set (zero ``mismatches`` is the pass criterion)."""

    path: str
    """``"qonnx"``, ``"hls4ml"``, ``"rtl"`` (or ``"reference"`` for the float64 graph executor)."""
    samples: int
    mismatches: int
    """Samples with at least one output that differs from torch."""
    max_lsb: float
    """Largest |difference| in units of the output's least significant bit."""
    max_abs_diff: float
    first_mismatch: int | None = None
    """Index of the first differing sample (None when all agree)."""
    first_layer: str | None = None
    """The first layer whose output differs, when the path can trace layers (else None)."""
    skipped: str | None = None
    """Why the path did not run (a tool is missing); None when it ran."""
    seconds: float = 0.0
    artefact: str | None = None
    """The exported file or project folder that was executed."""
    error: str | None = None
    """Why the path failed without producing outputs (its tool failed inside); None otherwise."""
    top1: tuple[int, ...] | None = field(default=None, repr=False)
    """The path's top-1 class per sample (classifier outputs (N, C), C > 1); None otherwise. Not in :meth:`as_dict`."""

    @property
    def passed(self) -> bool:
        """Ran and every sample agrees."""
        return self.skipped is None and self.error is None and self.mismatches == 0

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (JSON, tables), without :attr:`top1`."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "top1"}


def output_lsb(reference: np.ndarray, fractional_bits: np.ndarray | int | None = None) -> np.ndarray | float:
    """LSB of each output: ``2**-f`` of the output format when known, else the finest step the values use."""
    if fractional_bits is not None:
        return np.exp2(-np.asarray(fractional_bits, dtype=np.float64))
    ref = np.asarray(reference, dtype=np.float64)
    f = 0
    while f < 80 and np.any(np.mod(np.ldexp(ref, f), 1.0) != 0):
        f += 1
    return 2.0 ** -f


def compare(path: str, reference: np.ndarray, got: np.ndarray, *, lsb: np.ndarray | float | None = None,
            first_layer: str | None = None, seconds: float = 0.0, artefact: str | None = None) -> PathResult:
    """Compare a path's outputs with torch's, sample by sample (first axis)."""
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(got, dtype=np.float64)
    if out.size != ref.size:
        raise ValueError(f"{path}: {out.size} outputs for {ref.size} expected (shapes {out.shape} vs {ref.shape})")
    out = out.reshape(ref.shape)
    diff = np.abs(out - ref)
    diff = np.where(np.isnan(diff), np.inf, diff)
    bad = np.flatnonzero(np.any(diff.reshape(len(ref), -1) != 0, axis=1)) if len(ref) else np.array([], dtype=int)
    step = output_lsb(ref) if lsb is None else lsb
    classes = top1_of(out)
    top1 = None if classes is None else tuple(int(i) for i in classes)
    lsbs = diff / np.broadcast_to(step, diff.shape) if diff.size else np.zeros(0)
    return PathResult(path=path, samples=len(ref), mismatches=int(bad.size),
                      max_lsb=float(lsbs.max()) if lsbs.size else 0.0,
                      max_abs_diff=float(diff.max()) if diff.size else 0.0,
                      first_mismatch=int(bad[0]) if bad.size else None,
                      first_layer=first_layer if bad.size else None, seconds=seconds, artefact=artefact,
                      top1=top1)


def top1_of(outputs: np.ndarray) -> np.ndarray | None:
    """The arg-max class per sample of classifier outputs ``(N, C)`` with ``C > 1``; None for other shapes."""
    out = np.asarray(outputs)
    if out.ndim != 2 or out.shape[1] < 2 or not len(out):
        return None
    return np.argmax(np.where(np.isnan(out), -np.inf, out), axis=1)


def skipped(path: str, reason: str, samples: int = 0) -> PathResult:
    """The result of a path that could not run (its tool is absent)."""
    return PathResult(path=path, samples=samples, mismatches=0, max_lsb=0.0, max_abs_diff=0.0, skipped=reason)


def failed(path: str, error: str, samples: int = 0, seconds: float = 0.0) -> PathResult:
    """The result of a path whose tool failed inside: every sample counts as mismatching, ``error`` says why."""
    return PathResult(path=path, samples=samples, mismatches=samples, max_lsb=0.0, max_abs_diff=0.0,
                      first_mismatch=0 if samples else None, seconds=seconds, error=error)
