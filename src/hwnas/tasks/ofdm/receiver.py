"""DeepRx-style neural receiver (:func:`deeprx`): a fully convolutional residual CNN from hwnas layers.

The seed paper's receiver (Table I): an input Conv2D 3×3 to ``channels`` feature maps, ``blocks`` residual blocks
of two 3×3 convolutions each, ``channels`` wide, and an output Conv2D 3×3 to ``m`` LLR planes, "same" padding
throughout, on the (B, 2·Nr + 1, S, F) grid of :meth:`OfdmLink.receiver_input` → (B, m, S, F) LLRs (logits,
positive = bit 1: they plug into ``BCEWithLogitsLoss`` and :meth:`OfdmLink.decode` unchanged).

Where it differs from the seed:

* **No normalization.** The seed's residual blocks (as Sionna's neural-receiver tutorial and DeepRx) carry
  LayerNorm over the whole (S, F, C) feature map, kept in float after PTQ. hwnas's :class:`~hwnas.nn.QLayerNorm`
  normalizes the last axis only (hls4ml's algorithm), which on an (N, C, S, F) tensor would normalize each OFDM
  symbol's subcarrier row separately — a different function — so the blocks here have no normalization at all,
  and no option for it: a model that the export paths cannot express is not offered.
* **Post-activation blocks.** The block is hwnas's :class:`~hwnas.nn.QResidualBlock`,
  ``relu(conv2(relu(conv1(x))) + x)`` (exact residual add in fixed point); the seed's (Sionna's) blocks are
  pre-activation, ``x + conv2(relu(LN(conv1(relu(LN(x))))))``. The input convolution has no activation of its
  own (the first block's input and skip read it directly), as in the seed.
* The dilation rate is 1 everywhere (Table I); DeepRx's dilated blocks are not used.

``quant=None`` gives float layers (no quantizer in any slot): the float32 receiver the seed trains, to be
quantized after training (:func:`hwnas.train.post_training_quantize`, :func:`hwnas.nn.set_quantizers`).
``quant`` a dict of quantizer specs (:mod:`hwnas.nn.base`) builds a QAT/HGQ receiver; ``quant="hgq"`` is the
HGQ default (learnable per-parameter fixed point in every slot).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from hwnas.nn import DEFAULT_ACTIVATION, DEFAULT_BIAS, DEFAULT_WEIGHT, QConv2d, QResidualBlock
from hwnas.tasks.registry import TaskError

from .config import LinkConfig
from .link import OfdmLink

__all__ = ["QUANT_KEYS", "DeepRx", "deeprx"]

QUANT_KEYS: tuple[str, ...] = ("input", "weight", "bias", "activation")
"""Keys of ``deeprx(quant=...)``: ``input`` — the network input (the first convolution's input quantizer);
``weight``, ``bias`` — every convolution; ``activation`` — every feature map between layers (the input
convolution's output, the inputs of the block convolutions and of the output convolution, the residual sums)."""

_HGQ: dict[str, Any] = {"input": DEFAULT_ACTIVATION, "weight": DEFAULT_WEIGHT, "bias": DEFAULT_BIAS,
                        "activation": DEFAULT_ACTIVATION}


class DeepRx(nn.Module):
    """Input conv → residual blocks → output conv (module docstring); build it with :func:`deeprx`.

    Attributes:
        input_shape: per-frame input shape ``(2·Nr + 1, S, F)``.
        bits_per_symbol: ``m``, the number of output LLR planes.
        options: the :func:`deeprx` arguments that built it (channels, blocks, kernel, quant as given).
    """

    def __init__(self, in_channels: int, bits_per_symbol: int, grid: tuple[int, int], *, channels: int,
                 blocks: int, kernel: int, quant: Mapping[str, Any] | None,
                 layer_quant: Mapping[str, Mapping[str, Any]] | None = None, separable: bool = False) -> None:
        super().__init__()
        base = dict(quant) if quant is not None else dict.fromkeys(QUANT_KEYS)
        per = dict(layer_quant or {})
        pad = kernel // 2

        def q(layer: str) -> dict[str, Any]:
            return {**base, **per.get(layer, {})}

        def wb(layer: str) -> dict[str, Any]:
            return {"weight_quantizer": q(layer)["weight"], "bias_quantizer": q(layer)["bias"]}

        self.input_shape: tuple[int, int, int] = (in_channels, *grid)
        self.bits_per_symbol = bits_per_symbol
        # the stem's output is read by the first block's convolution *and* its residual add: quantized here, so
        # the add sums two quantized operands (an unquantized accumulator there needs up to 25 significant bits
        # at 8-bit widths, more than QONNX's float32 execution carries exactly)
        self.stem = QConv2d(in_channels, channels, kernel, padding=pad, input_quantizer=q("stem")["input"],
                            output_quantizer=q("stem")["activation"] if blocks else None, **wb("stem"))
        # a layer's "activation" quantizes the feature map it produces; the next layer reads it at that format
        previous = q("stem")["activation"]
        block_list = []
        for i in range(blocks):
            name = f"blocks.{i}"
            block_list.append(QResidualBlock(2, channels, channels, kernel, input_quantizer=previous,
                                             activation_quantizer=q(name)["activation"], separable=separable,
                                             **wb(name)))
            previous = q(name)["activation"]
        self.blocks = nn.Sequential(*block_list)
        self.head = QConv2d(channels, bits_per_symbol, kernel, padding=pad, input_quantizer=previous, **wb("head"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """LLRs (B, m, S, F) of receiver inputs (B, 2·Nr + 1, S, F)."""
        return self.head(self.blocks(self.stem(x)))


def _positive(name: str, value: Any, lo: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise TaskError(f"deeprx option {name}: must be an int >= {lo}, got {value!r}")
    return value


def deeprx(link_or_config: OfdmLink | LinkConfig | str, *, channels: int = 128, blocks: int = 8, kernel: int = 3,
           quant: Mapping[str, Any] | str | None = None,
           layer_quant: Mapping[str, Mapping[str, Any]] | None = None, separable: bool = False,
           seed: int | None = 0) -> DeepRx:
    """The seed's DeepRx-style receiver for a link (an :class:`OfdmLink`, a :class:`LinkConfig` or a preset name).

    Args:
        link_or_config: the link whose grid and modulation set the input planes and the LLR planes.
        channels: width of the input convolution and of every residual block (seed: 128).
        blocks: residual blocks (seed: 8).
        kernel: odd kernel size of every convolution (seed: 3).
        quant: ``None`` (float layers, no quantizers), ``"hgq"`` (HGQ's learnable per-parameter fixed point in
            every slot) or a dict with some of :data:`QUANT_KEYS` → quantizer specs (a missing key is float).
        layer_quant: per-layer overrides of ``quant`` (mixed precision): layer name (``stem``,
            ``blocks.0`` … ``blocks.<blocks-1>``, ``head``) → some of :data:`QUANT_KEYS`. A layer's
            ``activation`` quantizes the feature map it produces (the stem's output, a block's inner feature map
            and residual sum), which the next layer reads at that format; ``input`` belongs to the stem only and
            the head produces LLRs, not an activation.
        separable: depthwise-separable residual blocks (each 3×3 convolution as a depthwise 3×3 and a pointwise
            1×1, :class:`~hwnas.nn.QResidualBlock`'s ``separable``): about ``1/9`` of the block weights and MACs
            at 128 channels. The stem and head stay full convolutions.
        seed: seeds the weight initialization (PyTorch's default schemes) without touching the global random
            state; ``None`` draws from the global generator.

    Returns the :class:`DeepRx` module in training mode. Bad arguments raise :class:`TaskError` naming the option.
    """
    if isinstance(link_or_config, OfdmLink):
        cfg = link_or_config.config
    elif isinstance(link_or_config, LinkConfig):
        cfg = link_or_config
    elif isinstance(link_or_config, str):
        cfg = LinkConfig.from_options(link_or_config)
    else:
        raise TaskError(f"deeprx option link_or_config: an OfdmLink, LinkConfig or preset name, got "
                        f"{type(link_or_config).__name__}")
    _positive("channels", channels)
    _positive("blocks", blocks, 0)
    _positive("kernel", kernel)
    if kernel % 2 == 0:
        raise TaskError(f"deeprx option kernel: must be odd ('same' padding keeps the grid), got {kernel}")
    if quant == "hgq":
        quant = _HGQ
    if quant is not None:
        if not isinstance(quant, Mapping):
            raise TaskError(f"deeprx option quant: None, 'hgq' or a dict of quantizer specs, got {quant!r}")
        unknown = sorted(set(quant) - set(QUANT_KEYS))
        if unknown:
            raise TaskError(f"deeprx option quant: unknown key {unknown[0]!r}; known: {', '.join(QUANT_KEYS)}")
    layers = ("stem", *(f"blocks.{i}" for i in range(blocks)), "head")
    for layer, spec in (layer_quant or {}).items():
        if layer not in layers:
            raise TaskError(f"deeprx option layer_quant: unknown layer {layer!r}; layers: {', '.join(layers)}")
        if not isinstance(spec, Mapping):
            raise TaskError(f"deeprx option layer_quant.{layer}: a dict of quantizer specs, got {spec!r}")
        allowed = {"stem": set(QUANT_KEYS), "head": {"weight", "bias"}}.get(layer, {"weight", "bias", "activation"})
        bad = sorted(set(spec) - allowed)
        if bad:
            raise TaskError(f"deeprx option layer_quant.{layer}: key {bad[0]!r} not allowed there; allowed: "
                            f"{', '.join(k for k in QUANT_KEYS if k in allowed)}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise TaskError(f"deeprx option seed: must be an int >= 0 or None, got {seed!r}")
    if not isinstance(separable, bool):
        raise TaskError(f"deeprx option separable: True or False, got {separable!r}")
    args = dict(channels=channels, blocks=blocks, kernel=kernel, quant=quant, separable=separable,
                layer_quant={k: dict(v) for k, v in layer_quant.items()} if layer_quant else None)
    in_ch = 2 * cfg.num_rx_ant + 1
    grid = (cfg.num_ofdm_symbols, cfg.num_subcarriers)
    try:
        if seed is None:
            model = DeepRx(in_ch, cfg.bits_per_symbol, grid, **args)  # type: ignore[arg-type]
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = DeepRx(in_ch, cfg.bits_per_symbol, grid, **args)  # type: ignore[arg-type]
    except (ValueError, TypeError) as err:  # a quantizer spec hwnas refuses (QuantizationError is a ValueError)
        raise TaskError(f"deeprx option quant: {err}") from err
    model.options = {**args, "quant": None if quant is None else dict(quant)}  # layer_quant: as given
    return model
