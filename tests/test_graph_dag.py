"""The export graph as a DAG: extraction by tracing, the reference, the RTL circuit, and the errors.

The consumers' own DAG tests (QONNX, hls4ml, costs) live beside their chain tests; the model matrix is
:mod:`tests.graph_models`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import hwnas.nn as hn
from hwnas.errors import HwnasError
from hwnas.export import ExportError, extract, float32_exact, run_reference
from hwnas.export.graph import INPUT, Add, Concat, Conv, Dense, GlobalPool, Pool, Quantize, ReLU, layers_of

from .graph_models import ACT, GRAPH_MODELS, ResidualCNN1d, _q, fixed, inputs


def torch_out(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(x).double().numpy()


@pytest.mark.parametrize("name", list(GRAPH_MODELS))
def test_reference_equals_torch_bit_for_bit(name: str) -> None:
    model, shape = GRAPH_MODELS[name]()
    graph = extract(model, shape)
    x = inputs(shape)
    assert float32_exact(graph, x) == []  # so torch's float32 forward must match exactly
    ref = run_reference(graph, x)
    assert ref.shape == (len(x), *graph.output_shape)
    assert np.array_equal(ref, torch_out(model, x))
    assert not graph.is_chain
    # a well-formed DAG: every input is the model input or an earlier node's output; unique outputs
    seen = {INPUT}
    for node in graph.nodes:
        assert set(node.inputs) <= seen, node.name
        assert node.output not in seen
        seen.add(node.output)
    assert graph.nodes[-1].output == graph.output


def test_structure_of_the_residual_model() -> None:
    model, shape = GRAPH_MODELS["residual1d"]()
    graph = extract(model, shape)
    adds = [n for n in graph.nodes if isinstance(n, Add)]
    assert [a.name for a in adds] == ["block1.add", "block2.add"] or len(adds) == 2
    assert all(len(a.inputs) == 2 for a in adds)
    # block1's identity skip: the add reads the tensor that also feeds conv1's input quantizer
    skip = adds[0].inputs[1]
    readers = graph.consumers(skip)
    assert adds[0] in readers and any(isinstance(r, Quantize) and r.name == "block1.conv1" for r in readers)
    # block2's skip is a 1x1 convolution
    assert graph.producer(adds[1].inputs[1]).name == "block2.skip"
    pool = next(n for n in graph.nodes if isinstance(n, GlobalPool))
    assert (pool.kind, pool.size) == ("avg", (16,)) and graph.shape_of(pool.output) == (6,)
    # the model input is read by the stem's input quantizer only
    assert [n.name for n in graph.consumers(INPUT)] == ["stem"]
    assert [name for name, _ in layers_of(model)][:3] == ["stem", "act", "block1.conv1"]


def test_concat_axis_and_shapes() -> None:
    model, shape = GRAPH_MODELS["concat_cnn"]()
    graph = extract(model, shape)
    cat = next(n for n in graph.nodes if isinstance(n, Concat))
    assert cat.axis == 0 and graph.shape_of(cat.output) == (5, 8)
    assert [graph.producer(t).name for t in cat.inputs] == ["a", "b"]
    relu = next(n for n in graph.nodes if isinstance(n, ReLU))
    assert relu.inputs == (cat.output,)
    # both branches read the model input through their own (equal) input quantizers
    assert sorted(n.name for n in graph.consumers(INPUT)) == ["a", "b"]


def test_chain_models_extract_as_before() -> None:
    """A Sequential gives the same nodes, names and order as the chain extraction did, now wired by name."""
    model = nn.Sequential(hn.QConv1d(2, 3, 3, **_q()), hn.QActivation("relu"), hn.QMaxPool1d(2), nn.Flatten(),
                          nn.Sequential(hn.QLinear(9, 4, **_q()), nn.Dropout(0.1)), hn.QLinear(4, 2, **_q()))
    graph = extract(model, (2, 8))
    assert graph.is_chain
    got = [(type(n).__name__, n.name, getattr(n, "slot", "")) for n in graph.nodes]
    assert got == [("Quantize", "0", "input"), ("Conv", "0", ""), ("ReLU", "1", ""), ("Pool", "2", ""),
                   ("Flatten", "3", ""), ("Quantize", "4.0", "input"), ("Dense", "4.0", ""),
                   ("Quantize", "5", "input"), ("Dense", "5", "")]
    assert graph.shapes == ((2, 8), (3, 6), (3, 6), (3, 3), (9,), (9,), (4,), (4,), (2,))
    graph.require_chain("test")
    # a single layer is its own model, named by its class
    single = extract(hn.QLinear(3, 2, **_q()), (3,))
    assert [n.name for n in single.nodes] == ["QLinear", "QLinear"]


def test_global_pooling_forms() -> None:
    class Adaptive(nn.Module):
        def __init__(self, keep: bool, adaptive: bool) -> None:
            super().__init__()
            self.conv = hn.QConv2d(1, 2, 3, padding=1, **_q())
            self.pool = nn.AdaptiveAvgPool2d(1) if adaptive else None
            self.keep = keep

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.conv(x)
            return self.pool(h) if self.pool is not None else h.mean(dim=(2, 3), keepdim=self.keep)

    x = inputs((1, 4, 2))
    for keep, adaptive, kind in ((False, False, GlobalPool), (True, False, Pool), (False, True, Pool)):
        model = Adaptive(keep, adaptive).eval()
        graph = extract(model, (1, 4, 2))
        assert isinstance(graph.nodes[-1], kind)
        assert np.array_equal(run_reference(graph, x), torch_out(model, x))
    with pytest.raises(ExportError, match=r"global average pooling over 6 positions divides by a non-power of two"):
        extract(Adaptive(False, False).eval(), (1, 3, 2))
    with pytest.raises(ExportError, match=r"pool: global average pooling over 6 positions"):
        extract(Adaptive(False, True).eval(), (1, 3, 2))


class _Fn(nn.Module):
    """One hwnas layer followed by ``fn(layer(x), x)`` in forward (for the error cases)."""

    def __init__(self, fn, first: nn.Module | None = None) -> None:
        super().__init__()
        self.a = first if first is not None else hn.QLinear(4, 4, **_q())
        self.b = hn.QLinear(4, 4, **_q())
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self, self.a(x), x)


@pytest.mark.parametrize(("fn", "message"), [
    (lambda m, h, x: torch.sigmoid(h), r"sigmoid: .*sigmoid is not supported by the fixed-point exporters "
                                       r"\(supported between layers: x \+ y"),
    (lambda m, h, x: h * 2, r"mul: .*mul is not supported"),
    (lambda m, h, x: h[:, :2], r"getitem: indexing or slicing a tensor is not supported"),
    (lambda m, h, x: h + m.b(h)[:, :1], r"getitem: indexing or slicing"),
    (lambda m, h, x: torch.cat([h, h], dim=0), r"cat: concatenation along the batch axis is not supported"),
    (lambda m, h, x: m.a(h), r"a: the layer is called twice in forward \(shared weights\)"),
    (lambda m, h, x: h + x, r"add: .*the model input must be quantized|a.input_quantizer|add"),
    (lambda m, h, x: (h if h.sum() > 0 else x), r"_Fn: its forward cannot be traced by torch.fx"),
    (lambda m, h, x: (h, x), r"_Fn: forward must return one tensor"),
    (lambda m, h, x: h.view(-1, 2, 2), r"view: Tensor.view to per-sample shape \(2, 2\) is not supported"),
])
def test_unsupported_operations_name_the_node(fn, message: str) -> None:
    with pytest.raises(ExportError, match=message) as info:
        extract(_Fn(fn).eval(), (4,))
    assert isinstance(info.value, HwnasError) and "\n" not in str(info.value)


def test_input_rules_and_broadcasting() -> None:
    # the input read by an add directly: not quantized
    class Raw(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = hn.QLinear(4, 4, **_q())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x) + x

    with pytest.raises(ExportError, match=r"add.input_quantizer: the model input must be quantized"):
        extract(Raw().eval(), (4,))

    class TwoFormats(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = hn.QLinear(4, 3, **_q())
            self.b = hn.QLinear(4, 3, **_q(input_quantizer=fixed(6, i=2)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x) + self.b(x)

    with pytest.raises(ExportError, match=r"b.input_quantizer: the model input is read by several layers whose "
                                          r"input quantizers differ"):
        extract(TwoFormats().eval(), (4,))

    class Broadcast(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = hn.QLinear(4, 3, **_q())
            self.b = hn.QLinear(4, 1, **_q())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x) + self.b(x)

    with pytest.raises(ExportError, match=r"add: adding tensors of shapes \(3,\) and \(1,\) \(broadcasting\)"):
        extract(Broadcast().eval(), (4,))


def test_plain_torch_layers_are_refused_naming_them() -> None:
    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = hn.QLinear(4, 4, **_q())
            self.proj = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.a(x)
            return h + self.proj(h)

    with pytest.raises(ExportError, match=r"proj: Linear is not supported by the fixed-point exporters"):
        extract(Mixed().eval(), (4,))
    with pytest.raises(ExportError, match=r"norm: (nn\.)?LayerNorm"):
        extract(_seq_with_norm(), (4,))


def _seq_with_norm() -> nn.Module:
    from collections import OrderedDict

    return nn.Sequential(OrderedDict([("a", hn.QLinear(4, 4, **_q())), ("norm", nn.LayerNorm(4))]))


def test_dead_branches_are_dropped() -> None:
    class Dead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = hn.QLinear(4, 3, **_q())
            self.unused = hn.QLinear(4, 3, **_q())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.unused(x)
            return self.a(x)

    graph = extract(Dead().eval(), (4,))
    assert graph.layers() == ["a"] and graph.is_chain


@pytest.mark.parametrize("name", list(GRAPH_MODELS))
def test_rtl_circuit_is_bit_exact(name: str) -> None:
    """alkaid's circuit, traced from the graph (not from torch), computes the reference exactly on every sample."""
    pytest.importorskip("alkaid")
    from alkaid.trace import trace

    from hwnas.export.alkaid_plugin import trace_hwnas

    model, shape = GRAPH_MODELS[name]()
    graph = extract(model, shape)
    inp, out, _ = trace_hwnas(model, shape, graph=graph)
    comb = trace(inp, out)
    x = inputs(shape, n=32)
    got = comb.predict(graph.input_format.quantize(x.double().numpy()).reshape(len(x), -1))
    ref = run_reference(graph, x).reshape(len(x), -1)
    assert got.shape == ref.shape and np.array_equal(got, ref)


def test_rtl_verilator_runs_a_concat_model(tmp_path) -> None:
    """The Verilog of a DAG model, built with Verilator and simulated: zero mismatches against torch.

    (The residual models' Verilator builds take 40 s and more; bench/graph_paths.py runs them.)
    """
    from hwnas.export.rtl import verify_rtl

    model, shape = GRAPH_MODELS["concat_mlp"]()
    result = verify_rtl(model, inputs(shape, n=32), tmp_path / "concat_mlp")
    if result.skipped is not None:
        pytest.skip(result.skipped)
    assert result.mismatches == 0 and result.samples == 64, result


def test_residual_model_trains_and_metrics_are_finite() -> None:
    """A residual model is an ordinary hwnas model: it trains (gradients reach every layer) and has costs."""
    torch.manual_seed(0)
    model = ResidualCNN1d()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = inputs((2, 16), n=16)
    loss = model(x).pow(2).mean()
    loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "weight" in n)
    opt.step()
    assert hn.macs(model) > 0 and np.isfinite(float(hn.ebops(model)))
    assert ACT["bits"] == 8
    assert any(isinstance(n, Conv) for n in extract(model.eval(), (2, 16)).nodes)
    assert any(isinstance(n, Dense) for n in extract(model.eval(), (2, 16)).nodes)
