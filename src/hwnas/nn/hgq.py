"""HGQ from a fixed-precision model: :func:`to_learnable` turns static fixed-point quantizers into learnable ones.

A model searched with fixed layer-wise bit-widths (static :class:`~hwnas.quant.FixedPointQuantizer`: weights per
channel, activations per tensor, ...) has no bit-width to train. :func:`to_learnable` returns a copy in which
every such quantizer is a learnable per-parameter HGQ quantizer (as :data:`~hwnas.nn.DEFAULT_WEIGHT` /
:data:`~hwnas.nn.DEFAULT_ACTIVATION`, but keeping the static quantizer's sign, rounding and overflow modes)
that starts at the static quantizer's current format, element by element, so an HGQ training (e.g. the
``beta_sweep`` local search) refines the searched layer-wise bits from exactly the searched model.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from hwnas.quant import FixedPointQuantizer
from hwnas.quant.fixed import sign_mode
from hwnas.quant.granularity import PerParameter
from hwnas.quant.modes import OverflowMode

from .activation import QActivation
from .base import _SLOTS, QLayer
from .normalization import QSoftmax

__all__ = ["to_learnable"]


def _is_static_fixed(q: object) -> bool:
    return isinstance(q, FixedPointQuantizer) and not q.learnable


def _must_stay_static(layer: QLayer, slot: str) -> bool:
    """Slots whose layer requires a static quantizer (a finite lookup table indexed by the quantized input)."""
    if slot != "input_quantizer":
        return False
    return isinstance(layer, QSoftmax) or (isinstance(layer, QActivation) and layer.mode == "table")


def _output_shape(layer: QLayer, where: str) -> tuple[int, ...]:
    """The sample shape reaching ``layer``'s output quantizer: one forward pass of zeros (eval, no grad)."""
    shape = layer.input_shape
    if shape is None:
        raise ValueError(f"{where}: the layer's input shape is unknown; run the model on data once before "
                         "to_learnable")
    ref = next((t for t in (*layer.parameters(), *layer.buffers())
                if not isinstance(t, nn.parameter.UninitializedTensorMixin)), None)
    dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.get_default_dtype()
    device = ref.device if ref is not None else None
    seen: dict[str, tuple[int, ...]] = {}
    quantizers = [m for m in layer.modules() if isinstance(m, FixedPointQuantizer)]
    checked = [q._checked for q in quantizers]

    def record(mod: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        seen.setdefault("shape", tuple(args[0].shape[mod.batch_dims:]))

    handle = layer.output_quantizer.register_forward_pre_hook(record)  # type: ignore[union-attr]
    try:
        with torch.no_grad():
            layer(torch.zeros((1, *shape), dtype=dtype, device=device))
    finally:
        handle.remove()
        for q, c in zip(quantizers, checked, strict=True):
            q._checked = c
    if "shape" not in seen:
        raise ValueError(f"{where}: the output quantizer was not reached by a forward pass of the layer")
    return seen["shape"]


def _to_convert(layer: QLayer) -> list[str]:
    """The slots of ``layer`` that :func:`to_learnable` converts."""
    return [s for s in _SLOTS if _is_static_fixed(getattr(layer, s, None)) and not _must_stay_static(layer, s)]


def _require_ready(old: FixedPointQuantizer, where: str) -> None:
    if not old.materialized or getattr(old, "_needs_data_init", False):
        raise ValueError(f"{where}: the static quantizer has not seen data yet (its integer bits are not set); run "
                         "the model on data once (eval mode) before to_learnable")


def _learnable_copy(old: FixedPointQuantizer, shape: tuple[int, ...], where: str) -> FixedPointQuantizer:
    """A learnable per-parameter quantizer of element shape ``shape`` at ``old``'s (k, i, f), element by element."""
    _require_ready(old, where)
    if old.k.dim() != len(shape):
        raise ValueError(f"{where}: the quantizer's parameters have shape {tuple(old.k.shape)}, which does not "
                         f"broadcast to its element shape {shape}")
    if old.batch_dims == 0 and old.init_i is None and old.overflow_mode is OverflowMode.SAT_SYM:
        raise ValueError(f"{where}: a static SAT_SYM weight/bias quantizer cannot be made learnable exactly: it "
                         "saturates a value that rounds to the most negative code -2^i (SAT_SYM never uses it), "
                         "while a learnable weight quantizer's integer bits follow the value and it only rounds; "
                         "use SAT, or give the quantizer i=...")
    k, i, f = (t.detach().expand(shape).clone() for t in old.kif())
    f_range = (min(old.f_range[0], int(f.min())), max(old.f_range[1], int(f.max())))
    i_range = (min(old.i_range[0], int(i.min())), max(old.i_range[1], int(i.max())))
    new = FixedPointQuantizer(
        bits=old.init_bits, i=old.init_i, f=old.init_f, signed=old.signed, round_mode=old.round_mode,
        overflow_mode=old.overflow_mode.value, granularity=PerParameter(), learnable=True, f_range=f_range,
        i_range=i_range, element_shape=shape, batch_dims=old.batch_dims,
    ).to(device=old.k.device, dtype=old.k.dtype)
    with torch.no_grad():
        new.k.copy_(k)
        new.i.copy_(i)
        new.f.copy_(f)
    new._needs_data_init = False
    new._k_mode = sign_mode(new.k)
    new._checked = old._checked
    new.label = getattr(old, "label", where)
    return new


def _check_param(layer: QLayer, kind: str, old: FixedPointQuantizer, new: FixedPointQuantizer, where: str) -> None:
    """Raise unless ``new`` quantizes the layer's current weight/bias exactly as ``old`` does."""
    value = layer.quantizer_input(kind)
    assert value is not None
    with torch.no_grad():
        ref = old(value)
        got = new(value)
    if torch.equal(ref, got):
        return
    bad = int((ref != got).sum())
    why = ""
    if bool((new.k == 0).any()) and bool((value < 0).any()):
        why = (": its format is unsigned and clips the negative values to 0, while a learnable weight quantizer's "
               "integer bits follow the value and it only rounds (it never clips)")
    raise ValueError(f"{where}: cannot be made learnable exactly ({bad} of {ref.numel()} {kind} values would "
                     f"change){why}")


def to_learnable(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose static fixed-point quantizers are learnable per-parameter HGQ quantizers.

    What is converted: every static (``learnable=False``) :class:`~hwnas.quant.FixedPointQuantizer` in the
    input, weight, bias and output slots of every :class:`~hwnas.nn.QLayer` (compute layers, activations,
    pooling, normalization). Each becomes a ``FixedPointQuantizer(granularity="parameter", learnable=True)``
    with the static one's sign (``signed``), rounding and overflow modes, given ``i``/``f``/``bits`` and
    ``f_range``/``i_range`` (widened where the current format lies outside them), whose ``k``, ``i`` and ``f``
    are the static quantizer's current values broadcast to one value per element. Weight and bias quantizers
    then follow HGQ's rule: ``f`` is trained per element and ``i`` is re-derived from the weight on every call
    (unless the static quantizer had a given ``i``); SAT-mode activation quantizers train ``i`` too, WRAP-mode
    ones track it from the data.

    What is left as it is: float slots (``None``), quantizers that are already learnable, scaled-integer (PTQ),
    fp16 and bipolar (±1, a fixed 1 bit) quantizers, and the static input quantizer a lookup-table layer requires
    (``QSoftmax``, a ``QActivation`` in ``mode="table"``: the table is indexed by that fixed input format).

    Exactness: in eval mode the converted model computes bit for bit the outputs of ``model`` on any data
    (saturating inputs included). An activation quantizer applies the same (k, i, f) per element, and a weight
    quantizer rounds at the same ``f`` with integer bits that hold every element (the static quantizer's
    per-group ``i`` held every element too, so it only rounded; where ``i_range`` capped it, both saturate at
    the same bound). Two weight/bias configurations cannot be reproduced by a learnable weight quantizer,
    whose integer bits follow the value and which therefore only rounds, never clips; they raise
    ``ValueError`` naming the layer and slot instead of silently changing the numbers:

    * overflow mode ``SAT_SYM`` with integer bits derived from the weight (no given ``i``): the static
      quantizer saturates a value that rounds to exactly ``-2^i``, the code SAT_SYM never uses (refused
      whatever the current values, since training would reach it);
    * an unsigned (``k = 0``) format over negative values, which the static quantizer clips to 0 (every
      converted weight/bias quantizer is checked on the layer's current value, which catches this).

    The cost figures differ: per-element widths count only the bits each element needs, so EBOPs and weight
    bits of the converted model are at most the original's. In training mode the models differ by design
    (static activation ranges grow with the data; learnable ones are trained).

    ``model`` must have run a forward pass on data (its activation quantizers take their ranges from the
    first batch; a ``ValueError`` names a slot that has not). ``model`` itself is not changed.
    """
    for name, layer in model.named_modules():  # before copying: an unmaterialized quantizer cannot be copied
        if isinstance(layer, QLayer):
            for slot in _to_convert(layer):
                _require_ready(getattr(layer, slot), f"{name}.{slot}" if name else slot)
    converted = copy.deepcopy(model)
    modes = [(m, m.training) for m in converted.modules()]
    converted.eval()
    done: dict[int, FixedPointQuantizer] = {}
    try:
        for name, layer in converted.named_modules():
            if not isinstance(layer, QLayer):
                continue
            todo = _to_convert(layer)
            if not todo:
                continue
            prefix = f"{name}." if name else ""
            out_shape = _output_shape(layer, prefix + "output_quantizer") if "output_quantizer" in todo else None
            for slot in todo:
                where = prefix + slot
                old = getattr(layer, slot)
                if slot in ("weight_quantizer", "bias_quantizer"):
                    kind = slot.split("_")[0]
                    value = layer.quantizer_input(kind)
                    if value is None:
                        continue
                    with torch.no_grad():
                        old(value)  # the current range of the current value (what an eval forward uses)
                    shape: tuple[int, ...] | None = tuple(value.shape)
                elif slot == "input_quantizer":
                    shape = layer.input_shape
                    if shape is None:
                        raise ValueError(f"{where}: the layer's input shape is unknown; run the model on data once "
                                         "before to_learnable")
                else:
                    shape = out_shape
                assert shape is not None
                new = done.get(id(old))
                if new is None or tuple(new.k.shape) != tuple(shape):
                    new = _learnable_copy(old, tuple(shape), where)
                    if slot in ("weight_quantizer", "bias_quantizer"):
                        _check_param(layer, slot.split("_")[0], old, new, where)
                    done[id(old)] = new
                setattr(layer, slot, new)
    finally:
        for m, training in modes:
            m.training = training
        for layer in converted.modules():  # the new quantizers take their layer's train/eval mode
            if isinstance(layer, QLayer):
                for slot in _SLOTS:
                    q = getattr(layer, slot, None)
                    if q is not None and any(q is n for n in done.values()):
                        q.train(layer.training)
    return converted
