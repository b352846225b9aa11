"""``calibrate(model, data)``: measure the ranges every quantizer in a model needs, on real data."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from .base import Quantizer
from .modes import QuantizationError

__all__ = ["calibrate", "label_quantizers"]


def label_quantizers(model: nn.Module) -> dict[str, Quantizer]:
    """Name every quantizer after its place in ``model`` (used in warnings and errors) and return them."""
    found: dict[str, Quantizer] = {}
    for name, mod in model.named_modules():
        if isinstance(mod, Quantizer):
            mod.label = name or type(mod).__name__
            found[name] = mod
    return found


def _batches(data: torch.Tensor | Iterable, batch_size: int) -> Iterable[torch.Tensor]:
    if isinstance(data, torch.Tensor):
        for start in range(0, len(data), batch_size):
            yield data[start:start + batch_size]
        return
    for batch in data:
        if isinstance(batch, list | tuple):
            batch = batch[0]
        if not isinstance(batch, torch.Tensor):
            raise QuantizationError(f"data: batches must be tensors or (x, y) tuples, got {type(batch).__name__}")
        yield batch


def calibrate(
    model: nn.Module,
    data: torch.Tensor | Iterable,
    *,
    batch_size: int = 512,
    max_batches: int | None = None,
    progress: bool = False,
) -> dict[str, Quantizer]:
    """Run ``data`` through ``model`` once and set every quantizer's data-dependent range.

    ``data`` is a tensor of inputs (split into ``batch_size`` chunks) or an iterable of input batches or
    ``(x, y)`` tuples (a DataLoader). While calibrating, quantizers record statistics and pass values
    rounded but unclipped, so downstream layers see the true ranges. Fixed-point quantizers in WRAP mode
    (and static ones without a given ``i``) get the smallest integer bits that never overflow on the data;
    ``signed="auto"`` quantizers get their sign bit; scaled-int activation quantizers get scales.

    The model's train/eval mode is restored afterwards. If anything fails (NaN in the data, a shape
    error) no quantizer is changed. Returns the quantizers by module name. Batches run on the model's device
    (that of its first materialized parameter or buffer).
    """
    quantizers = label_quantizers(model)
    device = next((t.device for t in (*model.parameters(), *model.buffers())
                   if not isinstance(t, nn.parameter.UninitializedTensorMixin)), None)
    was_training = model.training
    model.eval()
    for q in quantizers.values():
        q.begin_calibration()
    seen = 0
    try:
        with torch.no_grad():
            it = _batches(data, batch_size)
            for n, xb in enumerate(tqdm(it, desc="calibrate", disable=not progress, leave=False)):
                if max_batches is not None and n >= max_batches:
                    break
                model(xb if device is None else xb.to(device))
                seen += 1
        if seen == 0:
            raise QuantizationError("data: calibration data is empty")
    except BaseException:
        for q in quantizers.values():
            q.calibrating = False
            Quantizer.end_calibration(q)  # leave calibration mode without applying statistics
        model.train(was_training)
        raise
    for q in quantizers.values():
        q.end_calibration()
    model.train(was_training)
    return quantizers
