"""hls4ml export of graphs (residual adds, concatenation, global pooling, dilated convolutions): bit-exact.

Compiling an hls4ml project (g++ -O3 of its whole firmware) costs 7-15 s of CPU, so two projects are compiled
and run (``compile()`` + ``predict()``), whose outputs must equal the NumPy reference :func:`run_reference` and
torch bit for bit: ``residual1d`` of :data:`graph_models.GRAPH_MODELS` as it is (identity and 1×1-conv skips,
dilation 2 in its second block, 1-D global average pooling) and :class:`Graph2d`, one model with the 2-D
graph features (a residual block, channel/spatial/flattened concatenations, a three-operand Add, 2-D global
average and max pooling, an unquantized signed + unsigned sum). Every model of the matrix (and ``graph2d``)
is also exported without compiling — hls4ml builds its ``ModelGraph`` and must keep every type — and every
value the reference reaches on the test inputs must fit the type the lowering gives its layer. (So
``concat_mlp``/``concat_cnn`` are checked at that level; their node kinds are compiled in ``graph2d``, except
the rank-2 concatenation of 1-D feature maps, hls4ml's ``concatenate2d``.)
"""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch
from torch import nn

import hwnas.nn as hn
from hwnas.export import ExportError, extract
from hwnas.export.graph import Add, Conv, Dense, ExportGraph, Flatten, GlobalPool, Pool, Quantize, run_reference
from hwnas.export.hls4ml import export_hls4ml
from hwnas.export.hls4ml_lower import ApType, lower

from .graph_models import ACT, BIAS, GRAPH_MODELS, WEIGHT, _seeded, fixed, inputs

pytest.importorskip("hls4ml")
needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not on PATH (hls4ml's C emulation)")


class Graph2d(nn.Module):
    """Every 2-D graph feature in one model (one compilation).

    ``residual2d``'s stem conv → ReLU → residual block with an identity skip (the unquantized ReLU output read
    by the Add *and* by the first conv's input quantizer; the 1×1-conv skip is compiled in ``residual1d``),
    then two 1×1 convolutions of the block output: ``ya`` (signed, not re-quantized) and ``yb`` (+ ReLU,
    unsigned, another grid); their exact sum ``ya + yb + yb`` (one three-operand Add after
    :func:`equivalent_rewrites`), a Flatten reading a channel concatenation directly, a flattened spatial
    concatenation, 2-D global average pooling (``mean``) and global max pooling (an adaptive max pool +
    Flatten, rewritten to a ``GlobalPool``), joined by a four-way rank-1 concatenation (flattened,
    channels-last-ordered operands) quantized by the head's input quantizer.
    """

    def __init__(self) -> None:
        super().__init__()
        q = dict(input_quantizer=ACT, weight_quantizer=WEIGHT, bias_quantizer=BIAS)
        block = dict(input_quantizer=ACT, activation_quantizer=ACT, weight_quantizer=WEIGHT, bias_quantizer=BIAS)
        self.stem = hn.QConv2d(2, 4, 3, padding=1, **q)
        self.blocks = nn.Sequential(hn.QResidualBlock(2, 4, 4, 3, **block))
        self.a = hn.QConv2d(4, 3, 1, **q)
        self.b = hn.QConv2d(4, 3, 1, input_quantizer=ACT, weight_quantizer=fixed(4), bias_quantizer=fixed(5))
        self.gmax = nn.AdaptiveMaxPool2d(1)
        self.head = hn.QLinear(3 + 3 + 96 + 96, 4, **q, output_quantizer=fixed(10, i=4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(torch.relu(self.stem(x)))
        ya = self.a(h)
        yb = torch.relu(self.b(h))
        s = ya + yb + yb
        f = torch.flatten(torch.cat([s, yb], dim=1), 1)
        w = torch.flatten(torch.cat([ya, yb], dim=3), 1)
        return self.head(torch.cat([s.mean(dim=(2, 3)), torch.flatten(self.gmax(yb), 1), f, w], dim=1))


MODELS = {**GRAPH_MODELS, "graph2d": _seeded(Graph2d, (2, 4, 4))}
EXPECTED = {"residual1d": {"Merge", "GlobalAveragePooling1D", "Conv1D", "Dense"},
            "residual2d": {"Merge", "Conv2D"}, "concat_mlp": {"Concatenate", "Dense"},
            "concat_cnn": {"Concatenate", "Reshape", "Conv1D"},
            "graph2d": {"Merge", "Concatenate", "Reshape", "GlobalAveragePooling2D", "GlobalMaxPooling2D"}}
"""hls4ml layer classes each model must lower to."""


def equivalent_rewrites(graph: ExportGraph) -> ExportGraph:
    """The same function in node forms extraction does not produce, so torch stays the reference.

    ``(a + b) + c`` whose inner sum only the outer Add reads becomes one three-operand Add; a max Pool over the
    whole spatial extent (output 1×1) whose output only a Flatten reads becomes a global max ``GlobalPool``.
    """
    nodes, shapes = list(graph.nodes), list(graph.shapes)
    readers: dict[str, int] = {}
    for node in nodes:
        for t in node.inputs:
            readers[t] = readers.get(t, 0) + 1
    producer = {node.output: j for j, node in enumerate(nodes)}
    drop: set[int] = set()
    for j, node in enumerate(nodes):
        i = producer.get(node.inputs[0]) if node.inputs else None
        if i is None or readers[node.inputs[0]] != 1:
            continue
        inner = nodes[i]
        if isinstance(node, Add) and isinstance(inner, Add):
            nodes[j] = dataclasses.replace(node, inputs=(*inner.inputs, *node.inputs[1:]))
            drop.add(i)
        elif (isinstance(node, Flatten) and isinstance(inner, Pool) and inner.kind == "max"
              and not any(inner.padding) and all(s == 1 for s in shapes[i][1:])):
            nodes[j] = GlobalPool(inner.name, "max", inner.dims, inner.kernel, inputs=inner.inputs, output=node.output)
            drop.add(i)
    keep = [j for j in range(len(nodes)) if j not in drop]
    return dataclasses.replace(graph, nodes=tuple(nodes[j] for j in keep), shapes=tuple(shapes[j] for j in keep))


def build(name: str) -> tuple[nn.Module, tuple[int, ...], ExportGraph]:
    model, shape = MODELS[name]()
    graph = extract(model, shape)
    return model, shape, equivalent_rewrites(graph) if name == "graph2d" else graph


def fits(values: np.ndarray, t: ApType) -> bool:
    """Whether every value is a code of ``t`` (on its grid and inside its range)."""
    codes = np.ldexp(np.asarray(values, dtype=np.float64), t.fractional)
    lo, hi = (-(2.0 ** (t.width - 1)), 2.0 ** (t.width - 1) - 1) if t.signed else (0.0, 2.0**t.width - 1)
    return bool(np.all(codes == np.floor(codes)) and codes.min() >= lo and codes.max() <= hi)


def assert_wired(layers) -> None:
    """Each hls4ml layer reads layers listed before it; merges read two."""
    seen: set[str] = set()
    for layer in layers:
        assert all(name in seen for name in layer.inputs), (layer.name, layer.inputs)
        if layer.attrs["class_name"] in ("Merge", "Concatenate"):
            assert len(layer.attrs["inputs"]) == 2
        seen.add(layer.name)


def assert_bit_exact(model: nn.Module, graph: ExportGraph, shape: tuple[int, ...], path) -> tuple[object, np.ndarray]:
    """Export, compile and run; the outputs equal the reference and torch on every sample."""
    x = inputs(shape)
    project = export_hls4ml(graph, shape, path)
    project.compile()
    got = project.predict(x)
    ref = run_reference(graph, x)
    with torch.no_grad():
        want = model(x).double().numpy()
    assert got.shape == ref.shape == want.shape
    assert int(np.count_nonzero(got != ref)) == 0
    assert int(np.count_nonzero(got != want)) == 0
    result = project.check(x, want)
    assert result.mismatches == 0 and result.max_abs_diff == 0.0 and result.first_layer is None, result
    assert_wired(project.lowered.layers)
    return project, x


# --------------------------------------------------------------------------- every model, no compilation
@pytest.mark.parametrize("name", list(MODELS))
def test_graph_model_lowers_with_types_holding_every_reached_value(tmp_path, name) -> None:
    """Exported without compiling (hls4ml builds the ModelGraph and keeps every type, or the export raises);
    on the test inputs, every tensor the reference computes fits its layer's ``result_t``, every Dense/Conv
    sum before re-quantization its ``accum_t`` and every global average pooling sum its ``accum_t``."""
    _model, shape, graph = build(name)
    project = export_hls4ml(graph, shape, tmp_path / name)
    layers = project.lowered.layers
    assert_wired(layers)
    assert EXPECTED[name] <= {layer.attrs["class_name"] for layer in layers}
    x = inputs(shape)
    value = {node.output: out for node, out in run_reference(graph, x, trace=True)}
    value["input"] = graph.input_format.quantize(x.double().numpy())
    by_name = {node.name: node for node in graph.nodes if isinstance(node, Conv | Dense | GlobalPool)}
    checked = 0
    for layer in layers:
        if layer.kind == "flatten" or (layer.node_index < 0 and layer.kind != "input"):
            continue  # in place, or a step of a cascade
        tensor = "input" if layer.node_index < 0 else graph.nodes[layer.node_index].output
        assert fits(value[tensor], layer.result), (layer.name, layer.result.cpp())
        node = by_name.get(layer.source) if layer.kind.startswith(("conv", "dense", "gavgpool")) else None
        if isinstance(node, Conv | Dense):
            assert fits(value[node.output], layer.types["accum"]), (layer.name, layer.types["accum"].cpp())
        elif isinstance(node, GlobalPool):
            total = value[node.output] * float(np.prod(node.size))
            assert fits(total, layer.types["accum"]), (layer.name, layer.types["accum"].cpp())
        checked += 1
    assert checked >= len(layers) // 2


@pytest.mark.parametrize(("name", "skip", "quantizer"), [
    ("residual1d", "act/relu", "block1.conv1"),
    ("residual2d", "relu/relu", "blocks.0.conv1"),
    ("graph2d", "relu/relu", "blocks.0.conv1"),
])
def test_add_operand_read_by_another_branch_keeps_its_exact_value(name, skip, quantizer) -> None:
    """The identity skip of the first residual block: the unquantized ReLU output is read by the Add *and* by
    the block's first conv through its input quantizer. The quantizer must not become the ReLU's result_t
    (that would round the skip operand): it is its own layer, and the Add reads the exact ReLU output.
    On the test inputs that quantizer does change values, so folding it would show up as mismatches in
    :func:`test_residual1d_with_a_dilated_block_is_bit_exact` and :func:`test_graph2d_is_bit_exact`."""
    _model, shape, graph = build(name)
    lowered = lower(graph, {}, {})
    by_name = {layer.name: layer for layer in lowered.layers}
    relu = next(layer for layer in lowered.layers if layer.source == skip.split("/")[0] and layer.kind == "relu")
    quant = next(layer for layer in lowered.layers if layer.kind == "quant" and layer.source == quantizer)
    add = next(layer for layer in lowered.layers if layer.kind == "add" and relu.name in layer.inputs)
    assert quant.inputs == [relu.name]
    assert relu.result != quant.result and "result_t is" not in relu.note
    assert by_name[add.inputs[0]].kind.startswith("conv")
    steps = {node.output: (node, out) for node, out in run_reference(graph, inputs(shape), trace=True)}
    q_node = next(node for node in graph.nodes if isinstance(node, Quantize) and node.name == quantizer)
    value = steps[skip][1]
    assert np.any(q_node.fmt.quantize(value) != value)


# ------------------------------------------------------------------------------------ compiled, bit-exact
@needs_gxx
def test_residual1d_with_a_dilated_block_is_bit_exact(tmp_path) -> None:
    """``residual1d`` unmodified: its second block's convolutions (dilation 2) are exported as 5-tap kernels
    with zeros between the original taps (hls4ml has no dilated convolution); identity skip, 1×1-conv skip,
    1-D global average pooling."""
    model, shape, graph = build("residual1d")
    assert [n.dilation for n in graph.nodes if isinstance(n, Conv) and n.name.startswith("block2.conv")] == [(2,)] * 2
    project, _ = assert_bit_exact(model, graph, shape, tmp_path / "residual1d")
    dilated = [la for la in project.lowered.layers if la.source in ("block2.conv1", "block2.conv2")]
    assert len(dilated) == 2
    for layer in dilated:
        assert layer.attrs["filt_width"] == 5 and "dilation (2,)" in layer.note
        assert not layer.attrs["weight_data"][1::2].any() and layer.attrs["weight_data"][::2].any()
    kinds = [la.attrs["class_name"] for la in project.lowered.layers]
    assert kinds.count("Merge") == 2 and "GlobalAveragePooling1D" in kinds


@needs_gxx
def test_graph2d_is_bit_exact(tmp_path) -> None:
    model, shape, graph = build("graph2d")
    add3 = next(n for n in graph.nodes if isinstance(n, Add) and len(n.inputs) == 3)  # the rewrites took effect
    assert any(isinstance(n, GlobalPool) and n.kind == "max" for n in graph.nodes)
    project, _ = assert_bit_exact(model, graph, shape, tmp_path / "graph2d")
    layers = project.lowered.layers
    kinds = [la.attrs["class_name"] for la in layers]
    assert kinds.count("Merge") == 3  # the residual add, a three-operand add as a cascade of two
    assert "GlobalAveragePooling2D" in kinds and "GlobalMaxPooling2D" in kinds
    assert [la.attrs["axis"] for la in layers if la.kind == "concat"] == [-1, 2, -1, -1, -1]
    flatten = next(la for la in layers if la.kind == "flatten")
    assert flatten.inputs == ["concat_cat"]
    first, last = (la for la in layers if la.kind == "add" and la.source == add3.name)
    assert last.inputs[0] == first.name
    assert first.result.signed and last.result.signed
    assert "result_t is" not in first.note + last.note  # the exact sum, not re-quantized


# -------------------------------------------------------------------------------------------- refusals
class FlatAdd(nn.Module):
    """A flattened conv output (hls4ml holds it in channels-last order) added to a Dense output (torch order)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = hn.QConv1d(2, 2, 1, input_quantizer=ACT, weight_quantizer=WEIGHT, bias_quantizer=BIAS)
        self.conv = hn.QConv1d(2, 2, 1, input_quantizer=ACT, weight_quantizer=WEIGHT, bias_quantizer=BIAS)
        self.dense = hn.QLinear(8, 8, input_quantizer=ACT, weight_quantizer=WEIGHT, bias_quantizer=BIAS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        return torch.flatten(self.conv(h), 1) + self.dense(torch.flatten(h, 1))


def test_add_of_differently_ordered_operands_is_refused_naming_the_node(tmp_path) -> None:
    torch.manual_seed(5)
    model = FlatAdd().eval()
    with pytest.raises(ExportError, match=r"^add: its operands reach hls4ml in different element orders"):
        export_hls4ml(model, (2, 4), tmp_path / "prj")
    assert not (tmp_path / "prj").exists()
