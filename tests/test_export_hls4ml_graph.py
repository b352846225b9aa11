"""hls4ml export of graphs (residual adds, concatenation, global pooling): the C emulation is bit-exact.

Every model of :data:`graph_models.GRAPH_MODELS` is exported, compiled with g++ and run (``compile()`` +
``predict()``); its outputs must equal the NumPy reference :func:`run_reference` and torch bit for bit.
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
from hwnas.export.graph import Add, GlobalPool, Quantize, run_reference
from hwnas.export.hls4ml import export_hls4ml
from hwnas.export.hls4ml_lower import lower

from .graph_models import ACT, BIAS, GRAPH_MODELS, WEIGHT, fixed, inputs

pytest.importorskip("hls4ml")
needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not on PATH (hls4ml's C emulation)")


def undilated(model: nn.Module) -> nn.Module:
    """residual1d's second block uses dilation 2, which hls4ml's io_parallel convolutions cannot express
    (see :func:`test_dilated_residual_block_is_refused_naming_the_conv`): the same graph with dilation 1."""
    for conv in (model.block2.conv1, model.block2.conv2):
        conv.dilation, conv.padding = (1,), (1,)
    return model


def build(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    model, shape = GRAPH_MODELS[name]()
    return (undilated(model) if name == "residual1d" else model), shape


def run_project(graph, shape, x, path):
    project = export_hls4ml(graph, shape, path)
    project.compile()
    return project, project.predict(x)


def assert_wired(project) -> None:
    """Each hls4ml layer reads layers listed before it; merges read two."""
    seen: set[str] = set()
    for layer in project.lowered.layers:
        assert all(name in seen for name in layer.inputs), (layer.name, layer.inputs)
        if layer.attrs["class_name"] in ("Merge", "Concatenate"):
            assert len(layer.attrs["inputs"]) == 2
        seen.add(layer.name)


# ------------------------------------------------------------------------------------------ bit-exact
@needs_gxx
@pytest.mark.parametrize("name", list(GRAPH_MODELS))
def test_graph_model_is_bit_exact(tmp_path, name) -> None:
    model, shape = build(name)
    x = inputs(shape)
    graph = extract(model, shape)
    project, got = run_project(graph, shape, x, tmp_path / name)
    ref = run_reference(graph, x)
    with torch.no_grad():
        want = model(x).double().numpy()
    assert got.shape == ref.shape == want.shape
    assert int(np.count_nonzero(got != ref)) == 0
    assert int(np.count_nonzero(got != want)) == 0
    result = project.check(x, want)
    assert result.mismatches == 0 and result.max_abs_diff == 0.0 and result.first_layer is None, result
    assert_wired(project)
    kinds = {layer.attrs["class_name"] for layer in project.lowered.layers}
    expected = {"residual1d": {"Merge", "GlobalAveragePooling1D"}, "residual2d": {"Merge"},
                "concat_mlp": {"Concatenate"}, "concat_cnn": {"Concatenate", "Reshape"}}[name]
    assert expected <= kinds


@pytest.mark.parametrize(("name", "skip", "quantizer"), [
    ("residual1d", "act/relu", "block1.conv1"),
    ("residual2d", "relu/relu", "blocks.0.conv1"),
])
def test_add_operand_read_by_another_branch_keeps_its_exact_value(name, skip, quantizer) -> None:
    """The identity skip of the first residual block: the unquantized ReLU output is read by the Add *and* by
    the block's first conv through its input quantizer. The quantizer must not become the ReLU's result_t
    (that would round the skip operand): it is its own layer, and the Add reads the exact ReLU output.
    On the test inputs that quantizer does change values, so folding it would show up as mismatches in
    :func:`test_graph_model_is_bit_exact`."""
    model, shape = build(name)
    graph = extract(model, shape)
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


class Mixed(nn.Module):
    """An unquantized exact sum of a signed and an unsigned tensor on different grids, a Flatten reading a
    channel Concat directly, a spatial Concat, 2-D global average pooling and a four-way rank-1 Concat (with
    flattened, channels-last-ordered operands) quantized by the head's input quantizer."""

    def __init__(self) -> None:
        super().__init__()
        self.a = hn.QConv2d(2, 3, 3, padding=1, input_quantizer=ACT, weight_quantizer=WEIGHT, bias_quantizer=BIAS)
        self.b = hn.QConv2d(2, 3, 1, input_quantizer=ACT, weight_quantizer=fixed(4), bias_quantizer=fixed(5))
        self.head = hn.QLinear(3 + 3 + 96 + 96, 4, input_quantizer=ACT, weight_quantizer=WEIGHT,
                               bias_quantizer=BIAS, output_quantizer=fixed(10, i=4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ya = self.a(x)
        yb = torch.relu(self.b(x))
        s = ya + yb
        f = torch.flatten(torch.cat([s, yb], dim=1), 1)
        w = torch.flatten(torch.cat([ya, yb], dim=3), 1)
        return self.head(torch.cat([s.mean(dim=(2, 3)), yb.mean(dim=(2, 3)), f, w], dim=1))


@needs_gxx
def test_flatten_of_concat_global_pooling_and_multiway_merges_are_bit_exact(tmp_path) -> None:
    torch.manual_seed(3)
    model = Mixed().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
    shape = (2, 4, 4)
    x = inputs(shape)
    graph = extract(model, shape)
    project, got = run_project(graph, shape, x, tmp_path / "mixed")
    with torch.no_grad():
        want = model(x).double().numpy()
    assert int(np.count_nonzero(got != run_reference(graph, x))) == 0
    assert int(np.count_nonzero(got != want)) == 0
    assert_wired(project)
    layers = project.lowered.layers
    assert [la.attrs["axis"] for la in layers if la.kind == "concat"] == [-1, 2, -1, -1, -1]
    flatten = next(la for la in layers if la.kind == "flatten")
    assert flatten.inputs == ["concat_cat"]
    add = next(la for la in layers if la.kind == "add")
    assert "result_t is" not in add.note and add.result.signed  # the exact sum, not re-quantized
    # nodes extraction does not produce: a three-operand Add and global max pooling (hand-built graph)
    nodes = list(graph.nodes)
    for j, node in enumerate(nodes):
        if isinstance(node, GlobalPool) and node.inputs == ("relu/relu",):
            nodes[j] = dataclasses.replace(node, kind="max")
        elif isinstance(node, Add):
            nodes[j] = dataclasses.replace(node, inputs=(*node.inputs, node.inputs[1]))
    varied = dataclasses.replace(graph, nodes=tuple(nodes))
    project, got = run_project(varied, shape, x, tmp_path / "varied")
    assert int(np.count_nonzero(got != run_reference(varied, x))) == 0
    kinds = [la.attrs["class_name"] for la in project.lowered.layers]
    assert kinds.count("Merge") == 2 and "GlobalMaxPooling2D" in kinds and "GlobalAveragePooling2D" in kinds


# -------------------------------------------------------------------------------------------- refusals
def test_dilated_residual_block_is_refused_naming_the_conv(tmp_path) -> None:
    model, shape = GRAPH_MODELS["residual1d"]()
    with pytest.raises(ExportError, match=r"^block2\.conv1: dilation \(2,\) is not supported"):
        export_hls4ml(model, shape, tmp_path / "prj")
    assert not (tmp_path / "prj").exists()


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
