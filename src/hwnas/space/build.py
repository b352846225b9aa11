"""The builder: a :class:`~hwnas.space.Point` becomes an ``nn.Sequential`` of :mod:`hwnas.nn` layers.

Contract (the layer recipe; ``d`` is 1 for ``cnn1d`` and 2 for ``cnn2d``):

* Conv block ``i``: ``QConv{d}d(c_in, filters, kernel, padding=kernel // 2)`` — or, when separable, a depthwise
  ``QConv{d}d(c_in, c_in, kernel, groups=c_in)`` followed by a pointwise ``QConv{d}d(c_in, filters, 1)`` —
  with ``batch_norm=True`` when chosen (a BatchNorm fused into the conv — into the pointwise half of a
  separable block — and trained fold-aware, so the deployed model is the trained one), then ``QActivation``,
  and ``QMaxPool{d}d(2)``/``QAvgPool{d}d(2)`` (window 2 per axis: a power of two, so average pooling stays
  exact). Then ``Flatten``. Hidden dense layer ``j``: ``[Dropout] → QLinear → QActivation``; the classifier:
  ``[Dropout] → QLinear(…, n_classes)`` (logits, no activation). An ``mlp`` on a multi-dimensional input, or
  a CNN with no conv block, starts with ``QActivation("identity")`` carrying the model-input quantizer, then
  ``Flatten``, so the model input is always quantized by the first layer.
* Fixed precision (static fixed-point quantizers, round-to-nearest, saturation, integer bits from the data
  range): weights per output channel at the layer's ``weight_bits`` (both halves of a separable block use the
  block's width); biases per tensor at ``precision.bias_bits``; the model input per tensor at
  ``precision.input_bits`` (signed); every later layer's input per tensor at the previous hidden layer's
  ``act_bits`` (unsigned after ReLU). The pointwise half of a separable block quantizes the depthwise output at
  the block's ``act_bits`` (signed).
* ``precision.one_bit: bipolar``: a width of 1 is a bipolar ±1 quantizer (``{"kind": "bipolar"}``) instead of
  1-bit fixed point: a 1-bit weight is ±1, and a 1-bit ``act_bits`` makes the layer's activation
  ``QActivation("identity")`` and the next layer's input quantizer bipolar, i.e. the activation is sign(x)
  (after ReLU or sigmoid it would be constant, after tanh it is the same). With ``fixed`` (the default) nothing
  changes.
* tanh/sigmoid are exact lookup tables (``mode="table"``): a static signed input quantizer of
  ``precision.table_input_bits`` and an output quantizer at the layer's ``act_bits`` (signed for tanh, unsigned
  for sigmoid); the next layer then has no input quantizer of its own (the table's output is already at the
  chosen width).
* Learned precision: HGQ quantizers (learnable, per parameter) initialized at ``precision.init_bits`` for
  weights and layer inputs, at ``precision.bias_bits`` for biases and ``precision.input_bits`` for the model
  input; tables keep their static input quantizer and learn their output width.
* The model is not run: activation quantizers take their integer bits from the first batch they see, so the
  first forward pass (or the trainer) settles them. With ``seed``, the weights are drawn from
  ``torch.manual_seed(seed)`` without touching the global RNG: same point + same seed → same weights.

With fixed precision a built model satisfies every requirement of :func:`hwnas.export.extract`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

import hwnas.nn as hn

from .point import Point
from .spec import PrecisionConfig

__all__ = ["build_model", "conv_out", "layer_plan", "module_names", "pool_out"]

Factory = Callable[[], nn.Module]


def conv_out(spatial: tuple[int, ...], kernel: int) -> tuple[int, ...]:
    """Spatial size after a stride-1 conv with zero padding ``kernel // 2`` (odd kernels keep the size)."""
    return tuple(n + 2 * (kernel // 2) - kernel + 1 for n in spatial)


def pool_out(spatial: tuple[int, ...]) -> tuple[int, ...]:
    """Spatial size after pooling with window and stride 2 (floor)."""
    return tuple(n // 2 for n in spatial)


class _Quant:
    """Quantizer specs of one precision mode (see the module docstring)."""

    def __init__(self, precision: PrecisionConfig, learned: bool) -> None:
        self.p = precision
        self.learned = learned

    @staticmethod
    def _static(bits: int, granularity: str, signed: bool = True) -> dict[str, Any]:
        return {"bits": int(bits), "learnable": False, "granularity": granularity, "round_mode": "RND",
                "overflow_mode": "SAT", "signed": signed}

    def bipolar(self, bits: int | None) -> bool:
        """Whether a searched width means a bipolar ±1 quantizer (``precision.one_bit: bipolar`` and 1 bit)."""
        return not self.learned and bits == 1 and self.p.one_bit == "bipolar"

    def weight(self, bits: int | None) -> dict[str, Any]:
        if self.learned:
            return {**hn.DEFAULT_WEIGHT, "bits": self.p.init_bits}
        assert bits is not None
        return {"kind": "bipolar"} if self.bipolar(bits) else self._static(bits, "channel")

    def bias(self) -> dict[str, Any]:
        if self.learned:
            return {**hn.DEFAULT_BIAS, "bits": self.p.bias_bits}
        return self._static(self.p.bias_bits, "tensor")

    def act(self, bits: int | None, signed: bool) -> dict[str, Any]:
        if self.learned:
            return {**hn.DEFAULT_ACTIVATION, "bits": self.p.init_bits, "signed": signed}
        assert bits is not None
        return {"kind": "bipolar"} if self.bipolar(bits) else self._static(bits, "tensor", signed)

    def model_input(self) -> dict[str, Any]:
        if self.learned:
            return {**hn.DEFAULT_ACTIVATION, "bits": self.p.input_bits}
        return self._static(self.p.input_bits, "tensor")

    def table_input(self) -> dict[str, Any]:
        return self._static(self.p.table_input_bits, "tensor")


def layer_plan(point: Point, input_shape: tuple[int, ...], n_classes: int,
               precision: PrecisionConfig | None = None) -> list[tuple[str, Factory]]:
    """The model's layers in order as ``(label, factory)``; ``build_model`` calls the factories.

    Labels: ``input``, ``flatten``, ``conv{i}.dw``, ``conv{i}``, ``conv{i}.act``,
    ``conv{i}.pool``, ``dense{j}.dropout``, ``dense{j}``, ``dense{j}.act``, ``classifier.dropout``,
    ``classifier``. Layer ``n`` of the list is module ``str(n)`` of the built ``nn.Sequential``.
    """
    q = _Quant(precision or PrecisionConfig(), point.learned)
    shape = tuple(int(d) for d in input_shape)
    nd = {"cnn1d": 1, "cnn2d": 2}.get(point.family, 0)
    conv_cls = hn.QConv1d if nd == 1 else hn.QConv2d
    plan: list[tuple[str, Factory]] = []
    pending: dict[str, Any] | None = q.model_input()  # input quantizer of the next compute layer

    def w(slot: int) -> int | None:
        return None if point.learned else point.weight_bits[slot]

    def a(slot: int) -> int | None:
        return None if point.learned else point.act_bits[slot]

    def activation(label: str, kind: str, bits: int | None, shape: tuple[int, ...]) -> dict[str, Any] | None:
        """Append the activation (on samples of ``shape``); return the next compute layer's input quantizer."""
        if q.bipolar(bits):  # sign(x) is the activation
            plan.append((f"{label}.act", lambda: hn.QActivation("identity")))
            return q.act(bits, signed=True)
        if kind == "relu":
            plan.append((f"{label}.act", lambda: hn.QActivation("relu")))
            return q.act(bits, signed=False)
        # sized now (not at the first batch) so a freshly built model can be copied
        tin = {**q.table_input(), "element_shape": shape}
        tout = {**q.act(bits, signed=kind == "tanh"), "element_shape": shape}
        plan.append((f"{label}.act", lambda: hn.QActivation(kind, mode="table", input_quantizer=tin,
                                                            output_quantizer=tout)))
        return None

    def flatten_first() -> None:
        nonlocal pending
        iq = None if pending is None else {**pending, "element_shape": shape}
        plan.append(("input", lambda: hn.QActivation("identity", input_quantizer=iq)))
        pending = None

    cin, spatial = (shape[0], shape[1:]) if nd else (0, ())
    if nd:
        for i, b in enumerate(point.conv):
            label, bits_w, bits_a = f"conv{i}", w(i), a(i)
            c, sp, iq = cin, spatial, pending
            if b.separable:
                sp_dw = conv_out(sp, b.kernel)
                plan.append((f"{label}.dw", lambda c=c, sp=sp, iq=iq, b=b, bw=bits_w: conv_cls(
                    c, c, b.kernel, padding=b.kernel // 2, groups=c, input_quantizer=iq,
                    weight_quantizer=q.weight(bw), bias_quantizer=q.bias(), input_shape=(c, *sp))))
                pw_q = q.act(bits_a, signed=True)
                plan.append((label, lambda c=c, sp=sp_dw, iq=pw_q, b=b, bw=bits_w: conv_cls(
                    c, b.filters, 1, input_quantizer=iq, weight_quantizer=q.weight(bw), bias_quantizer=q.bias(),
                    input_shape=(c, *sp), batch_norm=b.batch_norm)))
                spatial = sp_dw
            else:
                plan.append((label, lambda c=c, sp=sp, iq=iq, b=b, bw=bits_w: conv_cls(
                    c, b.filters, b.kernel, padding=b.kernel // 2, input_quantizer=iq,
                    weight_quantizer=q.weight(bw), bias_quantizer=q.bias(), input_shape=(c, *sp),
                    batch_norm=b.batch_norm)))
                spatial = conv_out(sp, b.kernel)
            pending = activation(label, b.activation, bits_a, (b.filters, *spatial))
            if b.pooling != "none":
                pool = {("max", 1): hn.QMaxPool1d, ("max", 2): hn.QMaxPool2d, ("avg", 1): hn.QAvgPool1d,
                        ("avg", 2): hn.QAvgPool2d}[(b.pooling, nd)]
                plan.append((f"{label}.pool", lambda pool=pool: pool(2)))
                spatial = pool_out(spatial)
            cin = b.filters
        if not point.conv:
            flatten_first()
        plan.append(("flatten", hn.Flatten))
        fin = cin * math.prod(spatial)
    else:
        if len(shape) > 1:
            flatten_first()
            plan.append(("flatten", hn.Flatten))
        fin = math.prod(shape)
    hidden = len(point.conv)
    for j, d in enumerate(point.dense):
        label = f"dense{j}"
        if point.dropout:
            plan.append((f"{label}.dropout", lambda: nn.Dropout(point.dropout)))
        iq, bw = pending, w(hidden + j)
        plan.append((label, lambda fi=fin, u=d.units, iq=iq, bw=bw: hn.QLinear(
            fi, u, input_quantizer=iq, weight_quantizer=q.weight(bw), bias_quantizer=q.bias())))
        pending = activation(label, d.activation, a(hidden + j), (d.units,))
        fin = d.units
    if point.dropout:
        plan.append(("classifier.dropout", lambda: nn.Dropout(point.dropout)))
    iq, bw = pending, w(point.hidden_layers)
    plan.append(("classifier", lambda fi=fin, iq=iq, bw=bw: hn.QLinear(
        fi, n_classes, input_quantizer=iq, weight_quantizer=q.weight(bw), bias_quantizer=q.bias())))
    return plan


def module_names(point: Point, input_shape: tuple[int, ...], n_classes: int) -> dict[str, str]:
    """Label (``conv0``, ``conv0.dw``, ``dense1``, ``classifier``, ...) → module name in the built model."""
    return {label: str(n) for n, (label, _) in enumerate(layer_plan(point, input_shape, n_classes))}


def build_model(point: Point, input_shape: tuple[int, ...], n_classes: int, precision: PrecisionConfig | None = None,
                seed: int | None = None) -> nn.Sequential:
    """The ``nn.Sequential`` of ``point`` (module docstring); ``seed`` fixes the initial weights."""
    plan = layer_plan(point, input_shape, n_classes, precision)
    if seed is None:
        return nn.Sequential(*(make() for _, make in plan))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return nn.Sequential(*(make() for _, make in plan))
