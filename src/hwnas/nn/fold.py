"""Fold BatchNorm into the preceding QLinear/QConv for inference.

``fold_batchnorm(model)`` returns a copy of ``model`` in which every ``BatchNorm1d/2d`` that directly
follows a :class:`~hwnas.nn.QLinear`/``QConv1d``/``QConv2d`` inside an ``nn.Sequential`` is merged into
that layer (w' = w·γ/√(σ²+ε) per output channel, b' = (b − μ)·γ/√(σ²+ε) + β) and replaced by
``nn.Identity``. The float function is unchanged in eval mode. Fixed-point weight quantizers keep their
relative precision: per output channel, ``i`` and ``f`` shift by round(log2 |scale|) so the scaled weights
keep the same number of significant bits; the bias quantizer is re-initialized from the new bias range.
The returned model is what gets exported: verify it, not the unfolded one.

Convolutions with a fused BatchNorm (``batch_norm=True``, trained fold-aware) are folded exactly: the
returned layer is a plain convolution whose weight and bias are the folded ones, so it computes the same
values bit for bit (its quantizers see the same tensors as the fused layer's in eval mode).
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn

from hwnas.quant import FixedPointQuantizer, QuantizationError

from .layers import QConv1d, QConv2d, QLinear

__all__ = ["fold_batchnorm"]

_FOLDABLE = (QLinear, QConv1d, QConv2d)


@torch.no_grad()
def _fold_pair(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm, where: str) -> None:
    if bn.num_features != layer.weight.shape[0]:
        raise QuantizationError(
            f"{where}: BatchNorm has {bn.num_features} features but the layer before has "
            f"{layer.weight.shape[0]} outputs"
        )
    if bn.running_mean is None or bn.running_var is None:
        raise QuantizationError(f"{where}: BatchNorm without running statistics cannot be folded")
    gamma = bn.weight if bn.affine else torch.ones_like(bn.running_mean)
    beta = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
    scale = gamma / torch.sqrt(bn.running_var + bn.eps)
    shape = (-1,) + (1,) * (layer.weight.dim() - 1)
    layer.weight.mul_(scale.reshape(shape))
    old_bias = layer.bias if layer.bias is not None else torch.zeros_like(scale)
    new_bias = (old_bias - bn.running_mean) * scale + beta
    if layer.bias is None:
        layer.bias = nn.Parameter(new_bias)
    else:
        layer.bias.copy_(new_bias)
    wq = layer.weight_quantizer
    if isinstance(wq, FixedPointQuantizer) and wq.materialized:
        shift = torch.round(torch.log2(scale.abs().clamp_min(1e-30))).reshape(shape)
        if wq.i.shape[0] == scale.shape[0]:  # per-channel or per-parameter: shift each channel
            wq.i.add_(shift.expand_as(wq.i) if wq.i.dim() else shift)
        else:  # per-tensor: follow the largest channel
            wq.i.add_(shift.max())
        wq.i.clamp_(*wq.i_range)
    bq = layer.bias_quantizer
    if isinstance(bq, FixedPointQuantizer) and bq.materialized and bq.init_i is None:
        bq._needs_data_init = True
        bq(layer.bias)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Return a copy of ``model`` with every fused BatchNorm and every (QLinear|QConv → BatchNorm) pair merged."""
    folded = copy.deepcopy(model)
    folded.eval()
    for mod in folded.modules():
        if isinstance(mod, QConv1d | QConv2d):
            mod.fold_batch_norm_()  # exact: fused during training
    for seq_name, seq in folded.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        keys = list(seq._modules.keys())
        for a, b in itertools.pairwise(keys):
            layer, bn = seq._modules[a], seq._modules[b]
            if isinstance(layer, _FOLDABLE) and isinstance(bn, nn.BatchNorm1d | nn.BatchNorm2d):
                _fold_pair(layer, bn, f"{seq_name}.{b}" if seq_name else b)
                seq._modules[b] = nn.Identity()
    return folded
