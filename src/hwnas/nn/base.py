"""Shared machinery of the quantized layers: quantizer slots and the cost-reporting contract.

Every layer in :mod:`hwnas.nn` has four quantizer slots — ``input_quantizer``, ``weight_quantizer``,
``bias_quantizer``, ``output_quantizer`` — each independently a fixed-point quantizer (learnable or
static), a scaled-int quantizer, fp16, bipolar ±1, or ``None`` (float, 32 bits). A slot is configured with

* ``None`` — no quantization;
* a :class:`~hwnas.quant.Quantizer` instance (owned by this layer from then on);
* a dict of keyword arguments with an optional ``"kind"``: ``"fixed"`` (default,
  :class:`~hwnas.quant.FixedPointQuantizer`), ``"scaled"`` (:class:`~hwnas.quant.ScaledIntQuantizer`),
  ``"fp16"`` or ``"bipolar"`` (:class:`~hwnas.quant.BipolarQuantizer`, 1-bit ±1, never learnable);
* a zero-argument callable returning a quantizer.

Cost contract (per sample, inference): ``macs()``, ``ebops(upstream_bits)`` (differentiable),
``bops(upstream_bits)``, ``weight_bits()``, ``sparsity()``. ``upstream_bits`` is the width of the
activation reaching the layer when the layer has no input quantizer of its own; model-level helpers in
:mod:`hwnas.nn.metrics` pass it along the data flow (the producer of the layer's input; module order when
the model cannot be traced).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from hwnas.quant import (
    BipolarQuantizer,
    FixedPointQuantizer,
    Float16Quantizer,
    QuantizationError,
    Quantizer,
    ScaledIntQuantizer,
)

__all__ = ["FLOAT_BITS", "QLayer", "QuantizerSpec", "make_quantizer", "module_device"]

FLOAT_BITS = 32.0
"""Bit-width charged for an unquantized (float32) operand."""

QuantizerSpec = Quantizer | dict[str, Any] | Callable[[], Quantizer] | None

_KINDS: dict[str, Callable[..., Quantizer]] = {
    "fixed": FixedPointQuantizer,
    "scaled": ScaledIntQuantizer,
    "fp16": Float16Quantizer,
    "bipolar": BipolarQuantizer,
}


def make_quantizer(spec: QuantizerSpec, *, slot: str, batch_dims: int,
                   element_shape: tuple[int, ...] | None = None) -> Quantizer | None:
    """Build the quantizer for one slot from a spec (see module docstring); ``slot`` names it in errors."""
    if spec is None:
        return None
    if isinstance(spec, Quantizer):
        q = spec
    elif isinstance(spec, dict):
        kwargs = dict(spec)
        kind = kwargs.pop("kind", "fixed")
        if kind not in _KINDS:
            raise QuantizationError(f"{slot}.kind: unknown quantizer kind {kind!r}; expected one of {sorted(_KINDS)}")
        if kind == "fixed":
            kwargs["batch_dims"] = batch_dims
            if element_shape is not None:
                kwargs.setdefault("element_shape", element_shape)
        try:
            q = _KINDS[kind](**kwargs)
        except TypeError as err:
            raise QuantizationError(f"{slot}: {err}") from err
        except QuantizationError as err:
            raise QuantizationError(f"{slot}.{err}") from err
    elif callable(spec):
        q = spec()
        if not isinstance(q, Quantizer):
            raise QuantizationError(f"{slot}: the factory returned {type(q).__name__}, not a Quantizer")
    else:
        raise QuantizationError(f"{slot}: expected None, a Quantizer, a dict or a factory, got {type(spec).__name__}")
    q.batch_dims = batch_dims
    q.label = slot
    if isinstance(q, FixedPointQuantizer):
        if q.materialized:
            q._settle_i()  # the role may have changed since it was built
        elif element_shape is not None and batch_dims == 0:
            q._materialize(element_shape)
    return q


def module_device(module: nn.Module, default: torch.device | None = None) -> torch.device:
    """The device of ``module``'s first materialized parameter or buffer (``default``, else the CPU, without one)."""
    for t in (*module.parameters(), *module.buffers()):
        if not isinstance(t, nn.parameter.UninitializedTensorMixin):
            return t.device
    return default if default is not None else torch.device("cpu")


def bits_of(q: Quantizer | None, element_shape: tuple[int, ...], upstream: torch.Tensor | None = None,
            device: torch.device | None = None) -> torch.Tensor:
    """Per-element bit-widths for an operand of ``element_shape`` produced by ``q``, on ``device`` when given.

    Without a quantizer the operand carries ``upstream`` bits (a scalar) or, failing that, float32's 32.
    (Quantizers without tensors of their own — bipolar, fp16, an uncalibrated scaled one — report CPU scalars:
    ``device``, the layer's, puts every width where the layer computes.)
    """
    if q is None:
        value = upstream if upstream is not None else torch.tensor(FLOAT_BITS, device=device)
    else:
        value = q.element_bits()
    if device is not None:
        value = value.to(device)
    return value.expand(element_shape)


class QLayer(nn.Module):
    """Base of hwnas layers: four quantizer slots plus the cost-reporting interface."""

    input_quantizer: Quantizer | None
    weight_quantizer: Quantizer | None
    bias_quantizer: Quantizer | None
    output_quantizer: Quantizer | None

    def _init_quantizers(
        self,
        input_quantizer: QuantizerSpec,
        weight_quantizer: QuantizerSpec,
        bias_quantizer: QuantizerSpec,
        output_quantizer: QuantizerSpec,
        input_shape: tuple[int, ...] | None = None,
    ) -> None:
        weight = getattr(self, "weight", None)
        bias = getattr(self, "bias", None)
        self.input_shape: tuple[int, ...] | None = input_shape
        self.input_quantizer = make_quantizer(input_quantizer, slot="input_quantizer", batch_dims=1,
                                              element_shape=input_shape)
        self.weight_quantizer = make_quantizer(
            weight_quantizer if weight is not None else None, slot="weight_quantizer", batch_dims=0,
            element_shape=None if weight is None else tuple(weight.shape))
        self.bias_quantizer = make_quantizer(
            bias_quantizer if bias is not None else None, slot="bias_quantizer", batch_dims=0,
            element_shape=None if bias is None else tuple(bias.shape))
        self.output_quantizer = make_quantizer(output_quantizer, slot="output_quantizer", batch_dims=1)
        with torch.no_grad():
            if weight is not None and self.weight_quantizer is not None:
                self.weight_quantizer(self.quantizer_input("weight"))  # initialize ranges from the weight itself
            if bias is not None and self.bias_quantizer is not None:
                self.bias_quantizer(self.quantizer_input("bias"))

    # -------------------------------------------------------------- helpers for subclasses
    def _qin(self, x: torch.Tensor) -> torch.Tensor:
        shape = tuple(x.shape[1:])
        if self.input_shape != shape:
            if self.input_shape is not None and not self._accepts_shape(shape):
                raise QuantizationError(
                    f"{type(self).__name__}: input sample shape {shape} differs from {self.input_shape}, "
                    "the shape its input quantizer (or weight) was built for"
                )
            self.input_shape = shape
        return x if self.input_quantizer is None else self.input_quantizer(x)

    def _accepts_shape(self, shape: tuple[int, ...]) -> bool:
        """Whether a new input sample shape fits the parameters sized for the previous one."""
        if isinstance(self, nn.Linear) and (not shape or shape[-1] != self.in_features):
            return False
        q = self.input_quantizer
        params = None
        if isinstance(q, FixedPointQuantizer) and q.materialized:
            params = q.k
        elif isinstance(q, ScaledIntQuantizer) and q.scale is not None:
            params = q.scale
        if params is None:
            return True
        try:
            return tuple(params.shape) == q.granularity.shape(shape)
        except QuantizationError:
            return False

    def _qout(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.output_quantizer is None else self.output_quantizer(y)

    def quantizer_input(self, kind: str) -> torch.Tensor | None:
        """What the ``kind`` (``"weight"`` or ``"bias"``) quantizer quantizes in eval mode: the parameter itself."""
        return getattr(self, kind, None)

    def _quantize(self, kind: str, value: torch.Tensor | None) -> torch.Tensor | None:
        """``value`` through the ``kind`` (``"weight"``/``"bias"``) quantizer, if there is one."""
        q = getattr(self, f"{kind}_quantizer")
        return value if value is None or q is None else q(value)

    def quantized_weight(self) -> torch.Tensor | None:
        """The weight as the hardware sees it (after the weight quantizer)."""
        return self._quantize("weight", self.quantizer_input("weight"))

    def quantized_bias(self) -> torch.Tensor | None:
        """The bias as the hardware sees it (after the bias quantizer)."""
        return self._quantize("bias", self.quantizer_input("bias"))

    def _require_shape(self) -> tuple[int, ...]:
        if self.input_shape is None:
            raise QuantizationError(
                f"{type(self).__name__}: input shape unknown; run one forward pass (or pass input_shape=...) first"
            )
        return self.input_shape

    # -------------------------------------------------------------- cost contract
    passes_through = False
    """True for layers whose output has the input's type (activations, pooling) when not re-quantized."""

    def output_bits(self, upstream: torch.Tensor | None) -> torch.Tensor | None:
        """Max width of this layer's output as the next layer sees it (None: unknown, i.e. float).

        The output quantizer's width; else, for pass-through layers, the input quantizer's width or
        ``upstream``; else None (an accumulator of unknown width).
        """
        if self.output_quantizer is not None:
            return self.output_quantizer.element_bits().max()
        if not self.passes_through:
            return None
        if self.input_quantizer is not None:
            return self.input_quantizer.element_bits().max()
        return upstream

    def macs(self) -> int:
        """Multiply-accumulates per sample."""
        return 0

    def ebops(self, upstream: torch.Tensor | None = None) -> torch.Tensor:
        """Effective bit operations (HGQ eq. 11) per sample; differentiable in the bit-widths."""
        return torch.zeros((), device=module_device(self))

    def bops(self, upstream: torch.Tensor | None = None) -> float:
        """Bit operations: MACs × weight width × activation width (widest element of each)."""
        return 0.0

    def weight_bits(self) -> float:
        """Σ params × bits over weight and bias; pruned elements are free, float params count 32."""
        total = 0.0
        for name, q in (("weight", self.weight_quantizer), ("bias", self.bias_quantizer)):
            p = getattr(self, name, None)
            if p is None:
                continue
            if q is None:
                total += p.numel() * FLOAT_BITS
            else:
                total += float(q.element_bits().detach().expand(p.shape).sum())
        return total

    def sparsity(self) -> float:
        """Fraction of weight elements that are zero after quantization (0 for layers without weights)."""
        w = getattr(self, "weight", None)
        if w is None:
            return 0.0
        with torch.no_grad():
            qw = self.quantized_weight()
            return float((qw == 0).float().mean())


_SLOTS = ("input_quantizer", "weight_quantizer", "bias_quantizer", "output_quantizer")
_KEEP = object()


def set_quantizers(
    model: nn.Module,
    *,
    input: QuantizerSpec | object = _KEEP,
    weight: QuantizerSpec | object = _KEEP,
    bias: QuantizerSpec | object = _KEEP,
    output: QuantizerSpec | object = _KEEP,
    layers: tuple[type, ...] | None = None,
) -> nn.Module:
    """Give every QLayer of ``model`` (optionally only ``layers`` types) fresh quantizers from specs.

    Each keyword is a spec as in the module docstring (``None`` removes quantization); a slot not named
    keeps its quantizer. Weight and bias quantizers are initialized from the current weights, which makes
    this the one-call post-training quantization of a trained model (activation quantizers then need
    :func:`hwnas.quant.calibrate`). Returns ``model`` (modified in place).
    """
    specs = dict(zip(_SLOTS, (input, weight, bias, output), strict=True))
    device = module_device(model)  # fresh quantizers join the model's device
    for name, layer in model.named_modules():
        if not isinstance(layer, QLayer) or (layers is not None and not isinstance(layer, layers)):
            continue
        for slot, spec in specs.items():
            if spec is _KEEP:
                continue
            param = None
            if slot in ("weight_quantizer", "bias_quantizer"):
                param = getattr(layer, slot.split("_")[0], None)
                if param is None:
                    continue
            label = f"{name}.{slot}" if name else slot
            if param is not None:
                shape: tuple[int, ...] | None = tuple(param.shape)
            else:  # an input quantizer can be sized now if the layer has seen data
                shape = layer.input_shape if slot == "input_quantizer" else None
            q = make_quantizer(spec, slot=label, batch_dims=0 if param is not None else 1,  # type: ignore[arg-type]
                               element_shape=shape)
            if q is not None:
                q.to(device)
            setattr(layer, slot, q)
            if q is not None and param is not None:
                with torch.no_grad():
                    q(layer.quantizer_input(slot.split("_")[0]))  # a fused BatchNorm's folded values
    return model
