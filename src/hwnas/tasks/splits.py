"""Seeded splits that keep every (class, SNR) pair balanced, as the AMC literature does.

* :func:`split_per_pair` — the Brevitas/FINN RadioML challenge convention: within every (class, SNR)
  pair, a fixed fraction (10 %) of the frames goes to the test set, chosen with a fixed seed.
* :func:`homogeneous_subset` — the MONAS-LQ convention: the same fraction (10 %) of every (class, SNR)
  pair, so the subset keeps the full set's class × SNR distribution.
* :func:`stratified_split` — the same idea for data without SNRs (stratified by class only).

All functions return sorted integer index arrays into the original arrays, so any array aligned with
the labels (frames, SNRs, metadata) can be indexed with them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["homogeneous_subset", "split_per_pair", "stratified_split"]


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name}: must be in (0, 1), got {value}")


def _groups(labels: np.ndarray, snr: np.ndarray | None) -> list[np.ndarray]:
    """Index arrays of every (label, SNR) group, in a fixed (sorted) order."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels: expected a 1-D array of class indices, got shape {labels.shape}")
    if snr is None:
        keys = labels.astype(np.int64)[:, None]
    else:
        snr = np.asarray(snr)
        if snr.shape != labels.shape:
            raise ValueError(f"snr: shape {snr.shape} does not match labels {labels.shape}")
        keys = np.stack([labels.astype(np.int64), np.rint(snr * 1000).astype(np.int64)], axis=1)
    _, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.flatnonzero(np.diff(inverse[order])) + 1
    return np.split(order, bounds)


def _take(groups: list[np.ndarray], fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    picked, rest = [], []
    for idx in groups:
        n = round(fraction * len(idx))
        perm = rng.permutation(idx)
        picked.append(perm[:n])
        rest.append(perm[n:])
    return np.sort(np.concatenate(picked)), np.sort(np.concatenate(rest))


def split_per_pair(labels: np.ndarray, snr: np.ndarray | None, *, test_fraction: float = 0.1,
                   seed: int = 2018) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices: ``round(test_fraction · n)`` frames of every (class, SNR) pair go to test.

    ``snr=None`` stratifies by class only. The default seed (2018) follows the RadioML challenge's
    fixed-seed convention; any seed gives a reproducible split.
    """
    _check_fraction("test_fraction", test_fraction)
    return _take(_groups(labels, snr), test_fraction, np.random.default_rng(seed))[::-1]


def homogeneous_subset(labels: np.ndarray, snr: np.ndarray | None, *, fraction: float = 0.1,
                       seed: int = 0) -> np.ndarray:
    """Indices of ``round(fraction · n)`` frames of every (class, SNR) pair (MONAS-LQ's 10 % subset)."""
    _check_fraction("fraction", fraction)
    return _take(_groups(labels, snr), fraction, np.random.default_rng(seed))[0]


def stratified_split(labels: np.ndarray, fractions: tuple[float, ...], *, seed: int = 0,
                     snr: np.ndarray | None = None) -> list[np.ndarray]:
    """Split into ``len(fractions) + 1`` parts; part ``j`` gets ``fractions[j]`` of every group, the last the rest.

    Parts come in the order of ``fractions``, then the remainder: ``val, test, train = stratified_split(y, (0.1,
    0.2))`` puts 10 % of every class in ``val``, 20 % in ``test`` and the rest in ``train``.
    """
    if not fractions or sum(fractions) >= 1.0:
        raise ValueError(f"fractions: need one or more fractions summing to < 1, got {fractions}")
    for j, f in enumerate(fractions):
        _check_fraction(f"fractions[{j}]", f)
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for idx in _groups(labels, snr):
        perm = rng.permutation(idx)
        start = 0
        for j, f in enumerate(fractions):
            n = round(f * len(idx))
            parts[j].append(perm[start:start + n])
            start += n
        parts[-1].append(perm[start:])
    return [np.sort(np.concatenate(p)) for p in parts]
