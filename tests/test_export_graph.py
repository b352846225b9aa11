"""The export graph: formats read from the quantizers, the float64 reference equals torch, errors name the layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import hwnas.nn as hn
from hwnas.export import ExportError, extract, float32_exact, run_reference
from hwnas.export.graph import Conv, Dense, Pool, Quantize, Table, value_format
from hwnas.quant.reference import quantize_fixed_np

ROUNDING = ["TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_MIN_INF", "RND_INF", "RND_CONV"]
OVERFLOW = ["WRAP", "SAT", "SAT_ZERO", "SAT_SYM"]


def fixed(bits: int, **kw) -> dict:
    return dict(bits=bits, learnable=False, **kw)


def torch_out(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(x).double().numpy()


def wide_inputs(shape: tuple[int, ...], n: int = 300, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn((n, *shape), generator=g)
    ties = torch.round(torch.randn((n, *shape), generator=g) * 8) / 16  # halves of the grid: rounding ties
    return torch.cat([base, ties, base * 6])


@pytest.mark.parametrize("round_mode", ROUNDING)
@pytest.mark.parametrize("overflow_mode", OVERFLOW)
def test_reference_equals_torch_for_every_mode(round_mode: str, overflow_mode: str) -> None:
    torch.manual_seed(3)
    q = fixed(5, round_mode=round_mode, overflow_mode=overflow_mode)
    model = nn.Sequential(
        hn.QLinear(12, 16, input_quantizer=q, weight_quantizer=dict(bits=4, granularity="parameter"),
                   bias_quantizer=fixed(6)),
        hn.QActivation("relu"),
        hn.QLinear(16, 4, input_quantizer=fixed(4, round_mode=round_mode, overflow_mode=overflow_mode, signed=False),
                   weight_quantizer=fixed(5, granularity="channel"), bias_quantizer=fixed(7),
                   output_quantizer=fixed(6, round_mode=round_mode, overflow_mode=overflow_mode)),
    )
    x = wide_inputs((12,))
    model(x[:128])  # static activation ranges from the first data
    graph = extract(model, (12,))
    assert [type(n).__name__ for n in graph.nodes] == ["Quantize", "Dense", "ReLU", "Quantize", "Dense", "Quantize"]
    assert graph.nodes[0].fmt.round_mode == round_mode and graph.nodes[0].fmt.overflow_mode == overflow_mode
    ref = run_reference(graph, x)
    assert np.array_equal(ref, torch_out(model, x))
    assert float32_exact(graph, x) == []


def test_conv_pool_table_and_heterogeneous_widths_reproduce_torch() -> None:
    torch.manual_seed(5)
    model = nn.Sequential(
        hn.QConv1d(2, 6, 3, padding=1, input_quantizer=fixed(7), weight_quantizer=dict(bits=5, granularity="parameter"),
                   bias_quantizer=fixed(8)),
        hn.QActivation("relu"), hn.QMaxPool1d(2),
        hn.QConv1d(6, 6, 3, padding=1, groups=6, input_quantizer=fixed(6, signed=False), weight_quantizer=fixed(4)),
        hn.QAvgPool1d(2, input_quantizer=fixed(6)),
        nn.Flatten(),
        hn.QLinear(6 * 4, 8, input_quantizer=dict(bits=6, granularity="parameter"), output_quantizer=fixed(8)),
        hn.QActivation("tanh", input_quantizer=fixed(6), output_quantizer=fixed(6, round_mode="RND_CONV")),
        hn.QLinear(8, 3),
    )
    x = wide_inputs((2, 16))
    model(x[:200])
    # random heterogeneous per-parameter widths on the first weight (some pruned)
    q = model[0].weight_quantizer
    with torch.no_grad():
        q.f.copy_(torch.randint(-1, 6, q.f.shape).float())
        qa = model[6].input_quantizer  # and on the dense layer's input, element by element
        qa.f.copy_(torch.randint(0, 6, qa.f.shape).float())
    graph = extract(model, (2, 16))
    kinds = [type(n) for n in graph.nodes]
    assert Conv in kinds and Pool in kinds and Table in kinds and Dense in kinds
    conv = next(n for n in graph.nodes if isinstance(n, Conv))
    assert len(np.unique(conv.weight_format.f)) > 3  # really heterogeneous
    assert np.array_equal(conv.weight, model[0].quantized_weight().detach().double().numpy())
    dense_in = next(n for n in graph.nodes if isinstance(n, Quantize) and n.name == "6")
    assert dense_in.fmt.shape == (24,) and not dense_in.fmt.uniform
    assert np.array_equal(run_reference(graph, x), torch_out(model, x))
    trace = run_reference(graph, x, trace=True)
    assert len(trace) == len(graph.nodes) and trace[-1][1].shape == (len(x), 3)
    assert graph.shapes[-1] == (3,) and graph.output_shape == (3,)


def test_two_dimensional_depthwise_model() -> None:
    torch.manual_seed(6)
    model = nn.Sequential(
        hn.QConv2d(1, 4, 3, padding=1, input_quantizer=fixed(6), weight_quantizer=fixed(4, granularity="channel"),
                   bias_quantizer=fixed(6)),
        hn.QActivation("relu"),
        hn.QConv2d(4, 4, 3, stride=2, padding=1, groups=4, input_quantizer=fixed(5, signed=False),
                   weight_quantizer=fixed(4)),
        hn.QMaxPool2d(2), nn.Flatten(), hn.QLinear(4 * 2 * 2, 3, input_quantizer=fixed(6)),
    )
    x = wide_inputs((1, 8, 8), n=64)
    model(x[:64])
    graph = extract(model, (1, 8, 8))
    assert np.array_equal(run_reference(graph, x), torch_out(model, x))


def test_format_quantize_matches_the_quantizer() -> None:
    torch.manual_seed(1)
    layer = hn.QLinear(10, 4, input_quantizer=dict(bits=5, granularity="parameter", round_mode="RND_INF",
                                                   overflow_mode="SAT_SYM"))
    x = torch.randn(50, 10) * 3
    layer(x)
    graph = extract(nn.Sequential(layer), (10,))
    fmt = graph.input_format
    expected = layer.input_quantizer(x).detach().double().numpy()
    assert np.array_equal(fmt.quantize(x.double().numpy()), expected)
    k, _, f = (t.numpy() for t in layer.input_quantizer.kif())
    assert np.array_equal(fmt.k, np.broadcast_to(k, (10,))) and np.array_equal(fmt.f, np.broadcast_to(f, (10,)))
    assert fmt.transposed((0,)).shape == (10,) and fmt.reshaped((2, 5)).shape == (2, 5)
    assert "heterogeneous" in fmt.describe() or "fixed<" in fmt.describe()


def test_value_format_is_exact_and_minimal() -> None:
    rng = np.random.default_rng(0)
    v = np.concatenate([np.round(rng.normal(size=200) * 64) / 2.0 ** rng.integers(0, 8, 200), [0.0, -1.0, 1.0, -0.5,
                        0.75, -8.0, 7.0, 2.0 ** -9]])
    fmt = value_format(v)
    assert np.array_equal(quantize_fixed_np(v, fmt.k, fmt.i, fmt.f, "TRN", "WRAP"), v)
    nz = v != 0
    assert np.all(fmt.width[~nz] == 0)
    # one fractional bit fewer loses the value; one magnitude bit fewer overflows it
    has_f = nz & (fmt.f > 0)
    less_f = quantize_fixed_np(v, fmt.k, fmt.i + has_f, fmt.f - has_f, "TRN", "SAT")
    assert np.all((less_f != v)[has_f])
    less_i = quantize_fixed_np(v, fmt.k, fmt.i - nz, fmt.f, "TRN", "SAT")
    assert np.all((less_i != v)[nz])
    with pytest.raises(ExportError, match="NaN"):
        value_format(np.array([np.nan]), "w")


def test_float32_exact_reports_the_layer_where_torch_rounds() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(hn.QLinear(64, 3, input_quantizer=fixed(20), weight_quantizer=fixed(20),
                                     bias_quantizer=fixed(20)))
    x = torch.randn(32, 64)
    model(x)
    graph = extract(model, (64,))
    bad = dict(float32_exact(graph, x))
    assert "0" in bad and bad["0"] > 0


def test_errors_name_the_layer_and_setting() -> None:
    with pytest.raises(ExportError, match=r"0\.input_quantizer: the model input must be quantized"):
        extract(nn.Sequential(hn.QLinear(4, 2, input_quantizer=None)), (4,))
    with pytest.raises(ExportError, match=r"0\.weight_quantizer: the weight is not quantized"):
        extract(nn.Sequential(hn.QLinear(4, 2, input_quantizer=fixed(4), weight_quantizer=None)), (4,))
    scaled = nn.Sequential(hn.QLinear(4, 2, input_quantizer=fixed(4), weight_quantizer=dict(kind="scaled", bits=8)))
    with pytest.raises(ExportError, match=r"0\.weight_quantizer: ScaledIntQuantizer .*QONNX"):
        extract(scaled, (4,))
    tanh = nn.Sequential(hn.QLinear(4, 2, input_quantizer=fixed(4)), hn.QActivation("tanh"))
    with pytest.raises(ExportError, match=r"1: tanh in float mode"):
        extract(tanh, (4,))
    avg3 = nn.Sequential(hn.QConv1d(1, 2, 3, input_quantizer=fixed(4)), hn.QAvgPool1d(3))
    with pytest.raises(ExportError, match=r"1: average pooling over 3 elements"):
        extract(avg3, (1, 12))
    bn = nn.Sequential(hn.QConv1d(1, 2, 3, input_quantizer=fixed(4)), nn.BatchNorm1d(2))
    with pytest.raises(ExportError, match=r"1: BatchNorm must be folded"):
        extract(bn, (1, 12))
    with pytest.raises(ExportError, match=r"1: GELU is not supported"):
        extract(nn.Sequential(hn.QLinear(4, 2, input_quantizer=fixed(4)), nn.GELU()), (4,))

    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = hn.QLinear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x) + 1

    with pytest.raises(ExportError, match=r"add: add with a constant operand \(1\) is not supported"):
        extract(Branchy(), (4,))
    with pytest.raises(ExportError, match=r"0: cannot run on input\(s\) of shape \(5,\)"):
        extract(nn.Sequential(hn.QLinear(4, 2, input_quantizer=fixed(4))), (5,))
    good = nn.Sequential(hn.QLinear(4, 2, input_quantizer=fixed(4)))
    graph = extract(good, (4,))
    with pytest.raises(ExportError, match=r"input: expected samples of shape \(4,\)"):
        run_reference(graph, np.zeros((3, 5)))
    with pytest.raises(ExportError, match="NaN"):
        run_reference(graph, np.full((3, 4), np.nan))


def test_negative_widths_are_pruned_elements() -> None:
    torch.manual_seed(8)
    layer = hn.QLinear(6, 3, input_quantizer=dict(bits=4, granularity="parameter"),
                       weight_quantizer=dict(bits=4, granularity="parameter"))
    x = torch.randn(40, 6)
    layer(x)
    with torch.no_grad():  # training can push widths below zero: those elements are pruned (0)
        layer.input_quantizer.f.copy_(torch.tensor([-5.0, -9.0, 2.0, 3.0, -4.0, 1.0]))
        layer.weight_quantizer.f.view(-1)[:6] = -12.0
    model = nn.Sequential(layer).eval()
    graph = extract(model, (6,))
    fmt = graph.input_format
    assert np.all(fmt.width >= 0) and np.count_nonzero(fmt.width == 0) >= 2
    assert np.all((fmt.k == 0) & (fmt.i == 0) & (fmt.f == 0) | (fmt.width > 0))
    assert np.array_equal(run_reference(graph, x), torch_out(model, x))
