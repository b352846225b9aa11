"""A compact, seeded classification training loop with the HGQ loss ``CE + β·EBOPs + γ·Σbits``."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from hwnas.nn import ebops, regularization
from hwnas.quant import Quantizer


@dataclass
class FitResult:
    """Per-epoch history of a :func:`fit_classifier` run."""

    loss: list[float] = field(default_factory=list)
    ebops: list[float] = field(default_factory=list)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Top-1 accuracy of ``model`` on (x, y) in eval mode (the mode is restored afterwards)."""
    was = model.training
    model.eval()
    correct = 0
    for s in range(0, len(x), batch_size):
        correct += int((model(x[s:s + batch_size]).argmax(1) == y[s:s + batch_size]).sum())
    model.train(was)
    return correct / len(x)


def fit_classifier(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 30,
    lr: float = 3e-3,
    bits_lr: float | None = None,
    batch_size: int = 64,
    beta: float = 0.0,
    gamma: float = 0.0,
    seed: int = 0,
    progress: bool = False,
) -> FitResult:
    """Train ``model`` with Adam on cross-entropy plus the HGQ resource terms; deterministic per ``seed``.

    Bit-width parameters (the ``i``/``f`` of learnable quantizers) get their own learning rate
    ``bits_lr`` (default ``10 * lr``): they live on a scale of whole bits, weights on a scale of 0.1.
    """
    if not torch.isfinite(x).all():
        raise ValueError("x: training data contains NaN or infinity")
    if len(x) != len(y):
        raise ValueError(f"y: {len(y)} labels for {len(x)} samples")
    gen = torch.Generator().manual_seed(seed)
    bit_params = [p for q in model.modules() if isinstance(q, Quantizer) for p in q.parameters(recurse=False)]
    bit_ids = {id(p) for p in bit_params}
    others = [p for p in model.parameters() if id(p) not in bit_ids]
    groups = [{"params": others, "lr": lr}]
    if bit_params:
        groups.append({"params": bit_params, "lr": 10 * lr if bits_lr is None else bits_lr})
    opt = torch.optim.Adam(groups, fused=True)
    hist = FitResult()
    model.train()
    bar = tqdm(range(epochs), desc="train", disable=not progress, leave=False)
    for _ in bar:
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for s in range(0, len(x), batch_size):
            idx = perm[s:s + batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            if beta or gamma:
                loss = loss + regularization(model, beta, gamma)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        hist.loss.append(total / len(x))
        with torch.no_grad():
            hist.ebops.append(float(ebops(model)))
        bar.set_postfix(loss=f"{hist.loss[-1]:.3f}", ebops=f"{hist.ebops[-1]:.0f}")
    model.eval()
    return hist
