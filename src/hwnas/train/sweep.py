"""HGQ β-sweeps (seed 001, §5.1.2): one training run traces a whole accuracy–resource Pareto front.

β grows on an exponential schedule from ``beta0`` to ``beta1`` (or is steered by a closed-loop
controller toward a target EBOPs budget) while γ stays small. After every epoch the validation metric
and the model's exact EBOPs are recorded, and the model is checkpointed whenever it is not dominated
by an earlier epoch in (metric ↑, EBOPs ↓); dominated checkpoints are deleted. After training, every
front model is calibrated on train+validation data (integer bits from the data, as deployed) and its
EBOPs and metric recomputed. The result renders as a Markdown table and a Pareto plot (PNG).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwnas.nn import ebops
from hwnas.quant import calibrate

from .trainer import (
    EpochRecord,
    History,
    TrainConfig,
    Trainer,
    TrainError,
    _as_tensors,
    _atomic_save,
    evaluate,
    load_saved,
)

__all__ = ["EbopsController", "ParetoCheckpoint", "SweepResult", "beta_sweep", "exponential_beta"]


def exponential_beta(beta0: float, beta1: float, epochs: int) -> Callable[[int, History], float]:
    """β for epoch ``e`` (0-based): ``beta0 · (beta1/beta0)^(e/(epochs−1))``, from beta0 to beta1."""
    if not (beta0 > 0 and beta1 > 0 and math.isfinite(beta0) and math.isfinite(beta1)):
        raise TrainError(f"beta0/beta1: must be finite and > 0, got {beta0!r}, {beta1!r}")
    span = max(epochs - 1, 1)
    ratio = beta1 / beta0

    def schedule(epoch: int, history: History) -> float:
        return beta0 * ratio ** (min(epoch, span) / span)

    return schedule


@dataclass
class EbopsController:
    """Closed-loop β: after each epoch ``β ← β · clip((EBOPs / target)^gain, 1/max_step, max_step)``.

    Over budget, β grows; under budget, it relaxes so accuracy can recover. The per-epoch change is
    limited to a factor ``max_step`` because bit-widths react to β with a lag of a few epochs: a
    controller that jumps prunes the model before the EBOPs it measures have caught up.
    """

    target: float
    beta_start: float = 1e-6
    gain: float = 0.5
    max_step: float = 2.0
    beta_min: float = 1e-10
    beta_max: float = 1e-1

    def __post_init__(self) -> None:
        if not (self.target > 0 and math.isfinite(self.target)):
            raise TrainError(f"target_ebops: must be finite and > 0, got {self.target!r}")
        if not 0 < self.beta_min <= self.beta_start <= self.beta_max:
            raise TrainError("beta_start: must lie in [beta_min, beta_max] and be > 0")
        if not (self.gain > 0 and self.max_step > 1):
            raise TrainError("gain/max_step: need gain > 0 and max_step > 1")

    def __call__(self, epoch: int, history: History) -> float:
        """β for ``epoch`` given the EBOPs measured after the previous one."""
        if not history.records:
            return self.beta_start
        last = history.records[-1]
        step = (max(last.ebops, 1.0) / self.target) ** self.gain
        beta = last.beta * min(max(step, 1.0 / self.max_step), self.max_step)
        return min(max(beta, self.beta_min), self.beta_max)


@dataclass
class ParetoCheckpoint:
    """One model on the (metric, EBOPs) front."""

    epoch: int
    beta: float
    metric: float
    ebops: float
    path: Path
    metric_calibrated: float | None = None
    ebops_calibrated: float | None = None


@dataclass
class SweepResult:
    """The front (sorted by EBOPs, largest first) and the full training history."""

    checkpoints: list[ParetoCheckpoint]
    history: History
    out_dir: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        """Markdown table of the front: epoch, β, metric and EBOPs before and after calibration."""
        lines = ["| epoch | beta | val metric | EBOPs (training) | val metric (calibrated) | EBOPs (calibrated) |",
                 "|---:|---:|---:|---:|---:|---:|"]
        for c in self.checkpoints:
            mc = "-" if c.metric_calibrated is None else f"{c.metric_calibrated:.4f}"
            ec = "-" if c.ebops_calibrated is None else f"{c.ebops_calibrated:,.0f}"
            lines.append(f"| {c.epoch} | {c.beta:.3g} | {c.metric:.4f} | {c.ebops:,.0f} | {mc} | {ec} |")
        return "\n".join(lines)

    def plot(self, path: str | Path | None = None) -> Path:
        """Write the Pareto plot (every epoch grey, front models highlighted) and return its path."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        path = Path(path) if path is not None else self.out_dir / "pareto.png"
        fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
        recs = [r for r in self.history.records if r.val_metric is not None]
        ax.scatter([r.ebops for r in recs], [r.val_metric for r in recs], s=12, c="0.7", label="every epoch")
        front = sorted(self.checkpoints, key=lambda c: c.ebops)
        ax.plot([c.ebops for c in front], [c.metric for c in front], "o-", c="C0", label="Pareto front")
        if all(c.ebops_calibrated is not None for c in front) and front:
            ax.plot([c.ebops_calibrated for c in front], [c.metric_calibrated for c in front], "s--", c="C3",
                    label="front after calibration")
        ax.set_xscale("log")
        ax.set_xlabel("EBOPs")
        ax.set_ylabel("validation metric")
        ax.set_title("HGQ β-sweep")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
        plt.close(fig)
        return path


class _ParetoTracker:
    """Epoch callback: keep a checkpoint of every non-dominated (metric, EBOPs) model."""

    def __init__(self, out_dir: Path) -> None:
        self.dir = out_dir / "pareto"
        self.front: list[ParetoCheckpoint] = []

    def __call__(self, trainer: Trainer, record: EpochRecord) -> None:
        if record.val_metric is None:
            raise TrainError("val: a β-sweep needs validation data to rank models")
        m, e = record.val_metric, record.ebops
        if any(c.metric >= m and c.ebops <= e for c in self.front):
            return  # dominated (or equal) by an earlier epoch
        path = self.dir / f"epoch_{record.epoch:04d}.pt"
        _atomic_save(trainer.model.state_dict(), path)
        keep = []
        for c in self.front:
            if m >= c.metric and e <= c.ebops:
                c.path.unlink(missing_ok=True)
            else:
                keep.append(c)
        keep.append(ParetoCheckpoint(record.epoch, record.beta, m, e, path))
        self.front = keep


def beta_sweep(
    model: nn.Module,
    train: Any,
    val: Any,
    out_dir: str | Path,
    *,
    config: TrainConfig | None = None,
    beta0: float = 1e-7,
    beta1: float = 1e-4,
    target_ebops: float | None = None,
    calibrate_after: bool = True,
) -> SweepResult:
    """Run one HGQ training with growing β and keep the (metric, EBOPs) Pareto checkpoints.

    ``config`` sets epochs, γ, learning rates, seed (its ``beta`` is ignored). With ``target_ebops`` the
    β schedule is the closed-loop :class:`EbopsController` starting at ``beta0`` instead of the
    exponential ramp. Checkpoints go to ``out_dir/pareto/``; the table to ``out_dir/pareto.md`` and the
    plot to ``out_dir/pareto.png``. Returns the front sorted by EBOPs, largest first.
    """
    cfg = config or TrainConfig(gamma=1e-6)
    out = Path(out_dir)
    x_tr, y_tr = _as_tensors(train, "train")
    x_va, y_va = _as_tensors(val, "val")
    if target_ebops is not None:
        schedule: Callable[[int, History], float] = EbopsController(target_ebops, beta_start=beta0)
    else:
        schedule = exponential_beta(beta0, beta1, cfg.epochs)
    tracker = _ParetoTracker(out)
    history = Trainer(model, cfg, beta_schedule=schedule, on_epoch_end=[tracker]).fit((x_tr, y_tr), (x_va, y_va))
    front = sorted(tracker.front, key=lambda c: -c.ebops)
    if calibrate_after:
        calib_x = torch.cat([x_tr, x_va])
        for c in front:
            probe = copy.deepcopy(model)
            probe.load_state_dict(load_saved(c.path))
            calibrate(probe, calib_x)
            c.metric_calibrated = evaluate(probe, x_va, y_va, loss=cfg.loss)[0]
            with torch.no_grad():
                c.ebops_calibrated = float(ebops(probe))
            _atomic_save(probe.state_dict(), c.path)  # the calibrated model is what gets deployed
    result = SweepResult(front, history, out)
    (out / "pareto.md").write_text(result.table() + "\n")
    result.plot()
    return result
