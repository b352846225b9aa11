"""Local search (seed 004, §3.2): fixed-point QAT per precision pair + iterative magnitude pruning.

For each precision pair ``(total_bits, int_bits)`` — ``ap_fixed<total, int>`` with the sign inside the
integer bits — the float seed model is copied and given static fixed-point quantizers on its weights,
biases and layer inputs, then warmed up for ``warmup_epochs``. Iterative magnitude pruning follows:
each iteration removes ``prune_rate`` of the *remaining* weights of every conv/linear layer (smallest
magnitudes of the last trained weights), trains ``epochs_per_iteration`` epochs with the pruned weights
held at zero, records the metric, the sparsity and the effective BOPs, then rewinds the surviving
weights (and biases) to their post-warm-up values — the lottery-ticket rewind. The best trained weights
per precision are kept. Activations and non-linearities are not touched.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from hwnas.nn import QLayer, set_quantizers
from hwnas.nn.metrics import _walk

from .trainer import TrainConfig, Trainer, TrainError, evaluate

__all__ = ["IterativePruner", "LocalSearchResult", "PrecisionResult", "PruneIteration", "effective_bops",
           "local_search", "to_fixed_point"]


def to_fixed_point(model: nn.Module, total_bits: int, int_bits: int, *, round_mode: str = "RND",
                   overflow_mode: str = "SAT") -> nn.Module:
    """A copy of ``model`` whose weights, biases and layer inputs are static ``ap_fixed<total, int>``."""
    if isinstance(total_bits, bool) or not isinstance(total_bits, int) or not 1 <= total_bits <= 32:
        raise TrainError(f"precision: total bits must be an integer in 1..32, got {total_bits!r}")
    if isinstance(int_bits, bool) or not isinstance(int_bits, int) or not -16 <= int_bits <= total_bits + 16:
        raise TrainError(f"precision: integer bits {int_bits!r} out of range for {total_bits} total bits")
    spec = {"kind": "fixed", "bits": None, "i": int_bits - 1, "f": total_bits - int_bits, "signed": True,
            "learnable": False, "round_mode": round_mode, "overflow_mode": overflow_mode}
    q = copy.deepcopy(model)
    set_quantizers(q, weight=spec, bias=spec, input=spec)
    return q


def _prunable(model: nn.Module) -> list[tuple[str, QLayer]]:
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, QLayer) and isinstance(getattr(m, "weight", None), nn.Parameter)]


class IterativePruner:
    """Per-layer magnitude masks for the conv/linear layers of ``model``, with lottery-ticket rewinding."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.layers = _prunable(model)
        if not self.layers:
            raise TrainError("model: no conv or linear layer to prune")
        self.masks = {name: torch.ones_like(layer.weight) for name, layer in self.layers}
        self.snapshot: dict[str, torch.Tensor] = {}

    def take_snapshot(self) -> None:
        """Remember the current parameters as the rewind point (post-warm-up values)."""
        try:
            state = self.model.state_dict()
        except ValueError as err:  # torch refuses uninitialized (lazily shaped) quantizer tensors
            raise TrainError("model: run one forward pass before taking a snapshot (quantizers are unshaped)") from err
        self.snapshot = {k: v.detach().clone() for k, v in state.items()}

    @torch.no_grad()
    def prune(self, rate: float, scores: dict[str, torch.Tensor] | None = None) -> None:
        """Remove ``rate`` of each layer's remaining weights: those with the smallest score (|weight|)."""
        if not 0.0 < rate < 1.0:
            raise TrainError(f"prune_rate: must be in (0, 1), got {rate!r}")
        for name, layer in self.layers:
            mask = self.masks[name]
            score = (scores[name] if scores is not None else layer.weight.detach()).abs()
            alive = int(mask.sum())
            drop = round(rate * alive)
            if drop == 0:
                continue
            masked = torch.where(mask.bool(), score, torch.full_like(score, float("inf")))
            idx = torch.argsort(masked.flatten(), stable=True)[:drop]
            mask.view(-1)[idx] = 0.0
        self.apply_masks()

    @torch.no_grad()
    def apply_masks(self, *_: Any) -> None:
        """Hold pruned weights at zero (also usable as a trainer ``after_step`` callback)."""
        for name, layer in self.layers:
            layer.weight.mul_(self.masks[name])

    @torch.no_grad()
    def rewind(self) -> None:
        """Reset every parameter and buffer to the snapshot, then re-apply the masks."""
        if not self.snapshot:
            raise TrainError("rewind: no snapshot taken")
        self.model.load_state_dict(self.snapshot)
        self.apply_masks()

    def sparsity(self) -> float:
        """Fraction of prunable weights that are masked."""
        total = sum(m.numel() for m in self.masks.values())
        return 1.0 - sum(float(m.sum()) for m in self.masks.values()) / total

    def weight_scores(self) -> dict[str, torch.Tensor]:
        """The current weights (to rank the next pruning step by the trained magnitudes)."""
        return {name: layer.weight.detach().clone() for name, layer in self.layers}


def effective_bops(model: nn.Module) -> float:
    """Σ over layers of BOPs × the layer's fraction of non-zero quantized weights."""
    total = 0.0
    with torch.no_grad():
        for _, layer, up in _walk(model):
            qw = layer.quantized_weight()
            density = float((qw != 0).float().mean()) if qw is not None else 1.0
            total += layer.bops(up) * density
    return total


@dataclass
class PruneIteration:
    """One IMP iteration: the trained model's metric, sparsity and effective BOPs."""

    iteration: int
    sparsity: float
    metric: float
    effective_bops: float


@dataclass
class PrecisionResult:
    """Everything the local search found for one precision pair."""

    total_bits: int
    int_bits: int
    warmup_metric: float
    iterations: list[PruneIteration]
    best_metric: float
    best_iteration: int  # 0 = the warm-up model
    best_state: dict[str, torch.Tensor] = field(repr=False)


@dataclass
class LocalSearchResult:
    """One :class:`PrecisionResult` per precision pair, in the order given."""

    results: list[PrecisionResult]

    def table(self) -> str:
        """Markdown table: precision, iteration, sparsity, metric, effective BOPs."""
        lines = ["| precision | iteration | sparsity | metric | effective BOPs |", "|---|---:|---:|---:|---:|"]
        for r in self.results:
            lines.append(f"| ap_fixed<{r.total_bits},{r.int_bits}> | warm-up | 0.000 | {r.warmup_metric:.4f} | |")
            for it in r.iterations:
                mark = " (best)" if it.iteration == r.best_iteration else ""
                lines.append(f"| ap_fixed<{r.total_bits},{r.int_bits}> | {it.iteration}{mark} | {it.sparsity:.3f} | "
                             f"{it.metric:.4f} | {it.effective_bops:,.0f} |")
        return "\n".join(lines)


def local_search(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    precisions: list[tuple[int, int]],
    *,
    config: TrainConfig | None = None,
    warmup_epochs: int = 10,
    iterations: int = 5,
    prune_rate: float = 0.2,
    epochs_per_iteration: int = 5,
) -> LocalSearchResult:
    """Run fixed-point QAT + iterative magnitude pruning with rewinding for each precision pair.

    ``model`` is the float seed model (left untouched); ``config`` supplies the optimizer, loss, batch
    size, seed and device (its ``epochs`` is replaced by ``warmup_epochs``/``epochs_per_iteration``). The copies
    train and are scored on ``config.device`` (or where ``model`` is); ``best_state`` holds tensors of that device.
    """
    cfg = config or TrainConfig(progress=False)
    if not precisions:
        raise TrainError("precisions: give at least one (total_bits, int_bits) pair")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise TrainError(f"iterations: must be a positive integer, got {iterations!r}")
    results = []
    for total, integer in precisions:
        torch.manual_seed(cfg.seed)
        qmodel = to_fixed_point(model, total, integer)
        Trainer(qmodel, replace(cfg, epochs=warmup_epochs)).fit(train, val)
        warm_metric = evaluate(qmodel, *val, loss=cfg.loss)[0]
        pruner = IterativePruner(qmodel)
        pruner.take_snapshot()
        best_metric, best_it = warm_metric, 0
        best_state = copy.deepcopy(qmodel.state_dict())
        scores = pruner.weight_scores()
        records = []
        for it in range(1, iterations + 1):
            pruner.prune(prune_rate, scores)
            icfg = replace(cfg, epochs=epochs_per_iteration, seed=cfg.seed + it)
            Trainer(qmodel, icfg, after_step=[pruner.apply_masks]).fit(train, val)
            metric = evaluate(qmodel, *val, loss=cfg.loss)[0]
            records.append(PruneIteration(it, pruner.sparsity(), metric, effective_bops(qmodel)))
            if metric > best_metric:
                best_metric, best_it = metric, it
                best_state = copy.deepcopy(qmodel.state_dict())
            scores = pruner.weight_scores()
            pruner.rewind()
        results.append(PrecisionResult(total, integer, warm_metric, records, best_metric, best_it, best_state))
    return LocalSearchResult(results)
