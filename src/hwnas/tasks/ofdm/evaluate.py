"""BLER/BER curves over Eb/N0 (:func:`bler_curve`), gaps at a BLER target (:func:`gap_at_bler`), CSV files.

Common random numbers: the batches of a curve depend only on ``seed``, the Eb/N0 point, the speed group, the
split and the batch index (and ``batch_size``/``frames``, which set the batch sizes), never on the receiver. Two
receivers evaluated with the same arguments therefore see exactly the same channels, bits and noise, and their
difference is not blurred by sampling noise of the channel draw.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwnas.tasks.registry import TaskError

from .config import SPEED_GROUPS
from .link import LinkBatch, OfdmLink

__all__ = ["CURVE_COLUMNS", "Gap", "batch_seed", "bler_curve", "gap_at_bler", "read_curves_csv", "write_curves_csv"]

CURVE_COLUMNS: tuple[str, ...] = (
    "ebno_db", "ber", "bler", "frames", "bit_errors", "block_errors", "uncoded_ber",
)
"""Keys of one curve point (``uncoded_ber``: hard decisions of the LLRs on the data REs, before decoding)."""


def batch_seed(seed: int, ebno_db: float, speed_group: str | None, index: int, split: str = "test") -> int:
    """The seed of batch ``index`` of an Eb/N0 point (Eb/N0 enters to 0.001 dB)."""
    group = 0 if speed_group is None else 1 + SPEED_GROUPS.index(speed_group)
    point = round(float(ebno_db) * 1000) + 1_000_000_000  # non-negative for SeedSequence
    seq = np.random.SeedSequence([int(seed), point, group, ("train", "test").index(split), int(index)])
    return int(seq.generate_state(1, np.uint64)[0] >> np.uint64(1))


def bler_curve(
    link: OfdmLink,
    llr_fn: Callable[[LinkBatch], torch.Tensor],
    ebno_db: Sequence[float],
    *,
    frames: int,
    batch_size: int,
    seed: int,
    speed_group: str | None = None,
    split: str = "test",
    target_block_errors: int | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Decode ``frames`` frames per Eb/N0 point with the LLRs ``llr_fn(batch)`` (B, m, S, F); one dict per point.

    Each point draws ``ceil(frames / batch_size)`` batches (the last one smaller) with
    ``link.sample(size, seed=batch_seed(seed, ebno, speed_group, i, split), split=split, ebno_db=ebno,
    speed_group=speed_group)``. ``target_block_errors`` stops a point early once that many block errors are
    counted (the frames counted are then a prefix of the full set, the same prefix for every receiver).
    ``progress`` is called with each finished point's dict.
    """
    for name, v in (("frames", frames), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise TaskError(f"bler_curve option {name}: must be an int >= 1, got {v!r}")
    if target_block_errors is not None and (isinstance(target_block_errors, bool) or target_block_errors < 1):
        raise TaskError(f"bler_curve option target_block_errors: must be None or >= 1, got {target_block_errors!r}")
    if speed_group is not None and speed_group not in SPEED_GROUPS:
        raise TaskError(f"bler_curve option speed_group: unknown {speed_group!r}; known: {', '.join(SPEED_GROUPS)}")
    points = [float(e) for e in ebno_db]
    if not points or not all(math.isfinite(e) for e in points):
        raise TaskError(f"bler_curve option ebno_db: need finite Eb/N0 values, got {list(ebno_db)!r}")
    rows: list[dict[str, Any]] = []
    for ebno in points:
        done = bit_err = block_err = coded_err = 0
        index = 0
        while done < frames and (target_block_errors is None or block_err < target_block_errors):
            size = min(batch_size, frames - done)
            batch = link.sample(
                size, seed=batch_seed(seed, ebno, speed_group, index, split), split=split, ebno_db=ebno,
                speed_group=speed_group,
            )
            llr = llr_fn(batch)
            bits, mask = link.targets(batch)
            coded_err += int(((llr.detach().to(bits.device) > 0).to(bits.dtype) != bits)[:, :, mask].sum())
            e_bits, e_blocks = link.errors(batch, link.decode(llr, batch))
            bit_err += e_bits
            block_err += e_blocks
            done += size
            index += 1
        row = {
            "ebno_db": ebno,
            "ber": bit_err / (done * link.k),
            "bler": block_err / done,
            "frames": done,
            "bit_errors": bit_err,
            "block_errors": block_err,
            "uncoded_ber": coded_err / (done * link.n),
        }
        rows.append(row)
        if progress is not None:
            progress(row)
    return rows


@dataclass(frozen=True)
class Gap:
    """Eb/N0 gap of curve A to curve B at a BLER target: ``db = ebno_a - ebno_b`` (positive: A needs more).

    ``db``, ``ebno_a`` or ``ebno_b`` are ``None`` when a curve does not cross the target; ``reason`` says why
    (empty when the gap is known).
    """

    db: float | None
    ebno_a: float | None
    ebno_b: float | None
    target: float
    reason: str = ""


def _crossing(curve: Sequence[Mapping[str, Any]], target: float) -> tuple[float | None, str]:
    pts = sorted((float(r["ebno_db"]), float(r["bler"]), int(r.get("frames", 0) or 0)) for r in curve)
    if not pts:
        return None, "the curve is empty"
    if pts[0][1] <= target:
        return None, f"BLER is already {pts[0][1]:.3g} <= {target:g} at its lowest point {pts[0][0]:g} dB"
    for (x0, b0, _), (x1, b1, n1) in itertools.pairwise(pts):
        if b0 > target >= b1:
            # log-linear interpolation; a point without block errors counts as half an error (1 / (2·frames))
            floor = 0.5 / n1 if n1 > 0 else 1e-6
            l0, l1, lt = math.log10(b0), math.log10(max(b1, floor)), math.log10(target)
            return x0 + (lt - l0) / (l1 - l0) * (x1 - x0), ""
    return None, f"BLER never reaches {target:g} (last point {pts[-1][1]:.3g} at {pts[-1][0]:g} dB)"


def gap_at_bler(
    curve_a: Sequence[Mapping[str, Any]], curve_b: Sequence[Mapping[str, Any]], target: float = 0.1
) -> Gap:
    """Eb/N0 where each curve first falls to ``target`` (log-linear interpolation of BLER) and their difference."""
    if not 0.0 < target < 1.0:
        raise TaskError(f"gap_at_bler option target: must be in (0, 1), got {target!r}")
    xa, ra = _crossing(curve_a, target)
    xb, rb = _crossing(curve_b, target)
    reasons = [f"curve {n}: {r}" for n, r in (("a", ra), ("b", rb)) if r]
    db = xa - xb if xa is not None and xb is not None else None
    return Gap(db=db, ebno_a=xa, ebno_b=xb, target=target, reason="; ".join(reasons))


def write_curves_csv(
    path: str | Path, curves: Mapping[str, Sequence[Mapping[str, Any]]], *, extra: Mapping[str, Any] | None = None
) -> Path:
    """Write ``{receiver: curve}`` as one CSV: ``receiver``, the ``extra`` columns, then :data:`CURVE_COLUMNS`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = dict(extra or {})
    header = ["receiver", *extra, *CURVE_COLUMNS]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        for receiver, curve in curves.items():
            for row in curve:
                writer.writerow({"receiver": receiver, **extra, **{k: row.get(k, "") for k in CURVE_COLUMNS}})
    return path


def read_curves_csv(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Read a :func:`write_curves_csv` file back: ``{receiver: [point dict, ...]}`` (numbers parsed)."""
    out: dict[str, list[dict[str, Any]]] = {}
    with Path(path).open(newline="") as fh:
        for rec in csv.DictReader(fh):
            row: dict[str, Any] = {}
            for key, value in rec.items():
                if key == "receiver":
                    continue
                if key in ("frames", "bit_errors", "block_errors"):
                    row[key] = int(value)
                else:
                    try:
                        row[key] = float(value)
                    except (TypeError, ValueError):
                        row[key] = value
            out.setdefault(rec["receiver"], []).append(row)
    return out
