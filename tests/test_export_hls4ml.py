"""hls4ml export: the project's g++ C emulation reproduces the torch model bit for bit."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from torch import nn

import hwnas.nn as hn
from hwnas.export import ExportError, ToolMissingError, extract
from hwnas.export.graph import Conv, Quantize, run_node
from hwnas.export.hls4ml import export_hls4ml, verify_hls4ml
from hwnas.export.hls4ml_lower import ValueRange, _conv_range, lower, undilate

pytest.importorskip("hls4ml")
needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not on PATH (hls4ml's C emulation)")

ROUNDING = ["RND_CONV", "TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_INF", "RND_MIN_INF"]
OVERFLOW = ["SAT", "WRAP", "SAT_SYM", "SAT_ZERO"]


def fixed(bits: int, round_mode: str = "RND_CONV", overflow_mode: str = "SAT", **kw) -> dict:
    return dict(bits=bits, learnable=False, round_mode=round_mode, overflow_mode=overflow_mode, **kw)


def hetero(bits: int, round_mode: str = "RND", overflow_mode: str = "SAT", **kw) -> dict:
    """A per-parameter (HGQ) quantizer: one (k, i, f) per element, randomized by :func:`randomize`."""
    return dict(bits=bits, granularity="parameter", round_mode=round_mode, overflow_mode=overflow_mode, **kw)


def randomize(q, seed: int, *, signs: bool = True, prune: float = 0.1) -> None:
    """Random per-element (k, i, f): ±2 fractional and ±1 integer bits, some unsigned, some pruned (width 0)."""
    g = torch.Generator().manual_seed(seed)
    sd = q.state_dict()
    shape = sd["f"].shape
    sd["f"] = sd["f"] + torch.randint(-2, 3, shape, generator=g).float()
    if signs:
        sd["k"] = (torch.rand(shape, generator=g) < 0.7).float()
        sd["i"] = sd["i"] + torch.randint(-1, 2, shape, generator=g).float()
    dead = torch.rand(shape, generator=g) < prune
    dead.view(-1)[0] = prune > 0  # at least one pruned element
    sd["f"] = torch.where(dead, -sd["k"] - sd["i"], sd["f"])
    q.load_state_dict(sd)


def widths(q) -> torch.Tensor:
    k, i, f = q.kif()
    return k + i + f


def heterogeneous_channels(layer: nn.Module, seed: int) -> None:
    """Scale each output channel's weights by a random power of two, so its quantizer picks its own (i, f)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        scale = torch.exp2(torch.randint(-3, 4, (layer.weight.shape[0],), generator=g).float())
        layer.weight.mul_(scale.view(-1, *([1] * (layer.weight.dim() - 1))))
    layer.quantized_weight()
    assert len(torch.unique(layer.weight_quantizer.kif()[2])) > 1


def stress(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[int, int]]:
    """Per quantizer slot: (ties exactly between two codes, values outside the format) on ``x``.

    Proves the inputs exercise the rounding and overflow modes: an exporter that rounds or saturates
    differently cannot pass on them.
    """
    graph = extract(model, tuple(x.shape[1:]))
    h = x.double().numpy()
    out = {}
    for node in graph.nodes:
        if isinstance(node, Quantize):
            fmt = node.fmt
            alive = fmt.width > 0
            y = np.ldexp(h, fmt.f)
            ties = int(np.count_nonzero(alive & (y - np.floor(y) == 0.5)))
            hi = np.exp2(fmt.i) - np.exp2(-fmt.f.astype(float))
            lo = -fmt.k * np.exp2(fmt.i)
            over = int(np.count_nonzero(alive & ((h > hi) | (h < lo))))
            out[fmt.where] = (ties, over)
        h = run_node(node, h)
    return out


def assert_exact(result, n: int) -> None:
    assert result.skipped is None, result.skipped
    assert result.samples == n
    assert result.mismatches == 0, result
    assert result.max_abs_diff == 0.0 and result.max_lsb == 0.0
    assert result.first_mismatch is None and result.first_layer is None


# ----------------------------------------------------------------------------------------------- models
def dense_model(seed: int = 0) -> tuple[nn.Sequential, torch.Tensor]:
    """Seven Dense layers, each output quantizer with its own rounding mode and an overflow mode, plus
    per-parameter (random k, i, f, pruned) weights and activations and per-channel weights."""
    torch.manual_seed(seed)
    modes = [(r, OVERFLOW[j % 4]) for j, r in enumerate(ROUNDING)]
    layers: list[nn.Module] = []
    n = 12
    for j, (rnd, ovf) in enumerate(modes):
        inq = hetero(6, "RND_CONV", "SAT") if j == 0 else (hetero(5, "TRN", "WRAP", learnable=False)
                                                             if j == 3 else None)
        wq = hetero(4) if j % 2 == 0 else fixed(4, granularity="channel")
        # a narrow integer part where the calibrated range would never overflow on these inputs
        narrow = dict(i=-2) if j in (3, 5, 6) else {}
        outq = fixed(6, rnd, ovf, signed=j != 4, **narrow) if j != 2 else hetero(6, rnd, ovf)
        layers.append(hn.QLinear(n, 10, input_quantizer=inq, weight_quantizer=wq, bias_quantizer=fixed(6),
                                 output_quantizer=outq))
        if j in (1, 5):
            layers.append(hn.QActivation("relu"))
        n = 10
    model = nn.Sequential(*layers)
    model(torch.randn(256, 12))  # activation quantizers take their ranges from the first data
    randomize(model[0].input_quantizer, seed + 1)
    randomize(model[0].weight_quantizer, seed + 2, signs=False)
    randomize(model[3].output_quantizer, seed + 3)  # layer j=2 (after the first ReLU)
    randomize(model[4].input_quantizer, seed + 4)
    heterogeneous_channels(model[1], seed + 5)
    model.eval()
    g = torch.Generator().manual_seed(seed + 6)
    x = torch.cat([torch.randn(100, 12, generator=g), torch.round(torch.randn(100, 12, generator=g) * 16) / 8,
                   torch.randn(100, 12, generator=g) * 6])  # inside the ranges, on the grid, far outside
    return model, x


def conv1d_model(seed: int = 10) -> tuple[nn.Sequential, torch.Tensor]:
    """1-D conv (per-channel weights), ReLU, padded max pool, depthwise conv with dilation 2 (per-element
    weights) and per-channel activations, avg pool, Flatten + Dense with per-element activations, tanh and
    sigmoid tables, Dense."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        hn.QConv1d(2, 6, 5, padding=2, input_quantizer=fixed(7, "RND_CONV", "SAT"),
                   weight_quantizer=fixed(5, granularity="channel"), bias_quantizer=fixed(7)),
        hn.QActivation("relu"),
        hn.QMaxPool1d(3, stride=2, padding=1),
        hn.QConv1d(6, 6, 3, padding=2, dilation=2, groups=6,
                   input_quantizer=fixed(6, "TRN_ZERO", "SAT_SYM", granularity="channel", signed=False),
                   weight_quantizer=hetero(5), bias=False),
        hn.QAvgPool1d(2, output_quantizer=fixed(7, "RND", "SAT")),
        nn.Flatten(),
        hn.QLinear(6 * 4, 12, input_quantizer=hetero(6, "RND_INF", "SAT"), weight_quantizer=hetero(4),
                   bias_quantizer=fixed(6)),
        hn.QActivation("tanh", input_quantizer=fixed(6, "RND_CONV", "SAT"), output_quantizer=fixed(7, "RND", "SAT")),
        hn.QLinear(12, 8, input_quantizer=None, weight_quantizer=fixed(4), bias_quantizer=fixed(6)),
        hn.QActivation("sigmoid", input_quantizer=fixed(7, "TRN", "SAT"),
                       output_quantizer=hetero(6, "RND_MIN_INF", "SAT", signed=False)),
        hn.QLinear(8, 4, input_quantizer=None, weight_quantizer=fixed(5), bias_quantizer=fixed(8),
                   output_quantizer=fixed(10, "RND_ZERO", "WRAP", i=-1)),
    )
    model(torch.randn(256, 2, 16) * 2)
    heterogeneous_channels(model[0], seed + 1)
    randomize(model[3].weight_quantizer, seed + 2, signs=False)
    randomize(model[6].input_quantizer, seed + 3)
    randomize(model[6].weight_quantizer, seed + 4, signs=False)
    randomize(model[9].output_quantizer, seed + 5, signs=False, prune=0.0)
    model.eval()
    g = torch.Generator().manual_seed(seed + 6)
    x = torch.cat([torch.randn(120, 2, 16, generator=g) * 2, torch.round(torch.randn(60, 2, 16, generator=g) * 8) / 4,
                   torch.randn(60, 2, 16, generator=g) * 10])
    return model, x


def conv2d_model(seed: int = 20) -> tuple[nn.Sequential, torch.Tensor]:
    """2-D conv with dilation (2, 1) and per-element input formats, depthwise 2-D conv (stride 2, padding 1),
    max/avg pool 2-D."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        hn.QConv2d(2, 4, 3, padding=(2, 1), dilation=(2, 1), input_quantizer=hetero(7, "RND", "SAT"),
                   weight_quantizer=fixed(5, granularity="channel"), bias_quantizer=fixed(8)),
        hn.QActivation("relu", output_quantizer=fixed(6, "RND_CONV", "SAT", signed=False)),
        hn.QConv2d(4, 4, 3, stride=2, padding=1, groups=4, input_quantizer=None, weight_quantizer=hetero(5),
                   bias_quantizer=fixed(6)),
        hn.QMaxPool2d(3, stride=1, padding=1),
        hn.QAvgPool2d(2, input_quantizer=fixed(6, "TRN", "SAT_ZERO")),
        nn.Flatten(),
        hn.QLinear(4 * 2 * 2, 3, input_quantizer=fixed(8), weight_quantizer=fixed(6), bias=False,
                   output_quantizer=fixed(9, "RND_CONV", "SAT_SYM")),
    )
    model(torch.randn(128, 2, 8, 8))
    randomize(model[0].input_quantizer, seed + 1)
    randomize(model[2].weight_quantizer, seed + 2, signs=False)
    heterogeneous_channels(model[0], seed + 3)
    model.eval()
    g = torch.Generator().manual_seed(seed + 4)
    x = torch.cat([torch.randn(80, 2, 8, 8, generator=g), torch.randn(40, 2, 8, 8, generator=g) * 5])
    return model, x


# ------------------------------------------------------------------------------------------ bit-exact
def test_stress_inputs_hit_every_mode() -> None:
    """The test inputs tie on the grid and overflow at every output quantizer (so the mode grid is real)."""
    model, x = dense_model()
    stats = stress(model, x)
    dense = [j for j, m in enumerate(model) if isinstance(m, hn.QLinear)]
    modes = {(model[j].output_quantizer.round_mode.value, model[j].output_quantizer.overflow_mode.value)
             for j in dense}
    assert {r for r, _ in modes} == set(ROUNDING) and {o for _, o in modes} == set(OVERFLOW)
    for j in dense:
        ties, over = stats[f"{j}.output_quantizer"]
        assert ties > 0 and over > 0, (j, stats)
    w = widths(model[0].input_quantizer)
    assert len(torch.unique(w)) > 3 and (w == 0).any() and (model[0].input_quantizer.kif()[0] == 0).any()
    assert len(torch.unique(widths(model[3].output_quantizer))) > 3


@needs_gxx
def test_dense_model_all_modes_heterogeneous_is_bit_exact(tmp_path) -> None:
    model, x = dense_model()
    result = verify_hls4ml(model, x, tmp_path / "dense", backend="Vitis")
    assert_exact(result, len(x))
    assert result.artefact == str(tmp_path / "dense")


@needs_gxx
def test_conv1d_tables_pools_resource_vivado_is_bit_exact(tmp_path) -> None:
    model, x = conv1d_model()
    stats = stress(model, x)
    assert stats["10.output_quantizer"][1] > 0 and stats["3.input_quantizer"][1] > 0  # wrap and saturation
    result = verify_hls4ml(model, x, tmp_path / "conv1d", backend="Vivado",
                           strategy={"0": "Resource", "6": "Resource"}, reuse_factor={"0": 2, "6": 4, "8": 2})
    assert_exact(result, len(x))
    text = (tmp_path / "conv1d" / "README.md").read_text()
    assert "vivado_hls -f build_prj.tcl" in text and "Resource" in text


@needs_gxx
def test_conv2d_depthwise_model_is_bit_exact() -> None:
    model, x = conv2d_model()
    result = verify_hls4ml(model, x, backend="Vitis", reuse_factor={"0": 2})  # in a temporary folder
    assert_exact(result, len(x))
    assert result.artefact is None


@pytest.mark.parametrize(("layer", "shape"), [
    (lambda: hn.QConv1d(2, 4, 3, dilation=2, input_quantizer=fixed(6), weight_quantizer=fixed(4)), (2, 16)),
    (lambda: hn.QConv2d(2, 3, (3, 2), stride=(1, 2), padding=(2, 1), dilation=(2, 3), input_quantizer=fixed(6),
                        weight_quantizer=hetero(5), bias_quantizer=fixed(6)), (2, 8, 8)),
    (lambda: hn.QConv1d(3, 3, 3, padding=3, dilation=3, groups=3, input_quantizer=fixed(6, signed=False),
                        weight_quantizer=hetero(4), bias=False), (3, 12)),
    (lambda: hn.QConv2d(2, 2, 3, padding=(1, 2), dilation=(1, 2), groups=2, input_quantizer=fixed(6),
                        weight_quantizer=fixed(4, granularity="channel")), (2, 6, 6)),
])
def test_dilated_conv_lowers_to_the_zero_expanded_kernel_with_the_same_types(layer, shape) -> None:
    """hls4ml has no dilated convolution (this used to be refused): the lowering gives it the undilated
    kernel of ``d·(k-1)+1`` taps per axis with zeros between the original taps. Same function (the reference
    of both nodes agrees bit for bit), same interval bounds and grids (the zero taps contribute nothing), same
    weight/accumulator types; the per-element weight format gets width-0 entries. The C emulation is bit-exact
    on dilated layers in :func:`test_conv1d_tables_pools_resource_vivado_is_bit_exact` (depthwise, dilation 2),
    :func:`test_conv2d_depthwise_model_is_bit_exact` (dilation (2, 1)) and, in a residual block, in
    ``test_export_hls4ml_graph.py``."""
    torch.manual_seed(41)
    model = nn.Sequential(layer())
    model(torch.randn(64, *shape) * 2)
    if model[0].weight_quantizer.kif()[2].numel() == model[0].weight.numel():  # per parameter
        randomize(model[0].weight_quantizer, 42, signs=False)
    model.eval()
    graph = extract(model, shape)
    quant, conv = graph.nodes[:2]
    assert isinstance(quant, Quantize) and isinstance(conv, Conv) and any(d > 1 for d in conv.dilation)
    flat = undilate(conv)
    full = tuple(d * (k - 1) + 1 for d, k in zip(conv.dilation, conv.kernel, strict=True))
    assert flat.kernel == full and flat.dilation == (1,) * conv.dims
    assert (flat.stride, flat.padding, flat.groups) == (conv.stride, conv.padding, conv.groups)
    taps = (slice(None), slice(None), *(slice(None, None, d) for d in conv.dilation))
    assert np.array_equal(flat.weight[taps], conv.weight)
    assert np.count_nonzero(flat.weight) == np.count_nonzero(conv.weight)
    wf, fwf = conv.weight_format, flat.weight_format
    for a, b in ((wf.k, fwf.k), (wf.i, fwf.i), (wf.f, fwf.f)):
        assert np.array_equal(b[taps], a)
    inserted = np.ones(full, dtype=bool)
    inserted[taps[2:]] = False
    assert not fwf.width[:, :, inserted].any()  # width 0: a pruned weight
    g = torch.Generator().manual_seed(43)
    x = quant.fmt.quantize(torch.randn(32, *shape, generator=g).double().numpy() * 4)
    assert np.array_equal(run_node(flat, x), run_node(conv, x))
    r = ValueRange.of_format(quant.fmt)
    want, got = _conv_range(conv, r), _conv_range(flat, r)  # torch's dilated interval arithmetic vs the zeros
    for a, b in ((want.lo, got.lo), (want.hi, got.hi), (want.f, got.f)):
        assert np.array_equal(a, b)
    layer_ = next(la for la in lower(graph, {}, {}).layers if la.source == conv.name and la.kind != "quant")
    assert layer_.types["weight"] == ValueRange.of_values(conv.weight).union_type()
    assert layer_.types["accum"] == want.union_type()
    assert layer_.attrs["filt_width"] == full[-1] and (conv.dims == 1 or layer_.attrs["filt_height"] == full[0])
    kernel = layer_.attrs["weight_data"]  # (K..., Cin, Cout), depthwise (K..., C, 1)
    order = (*range(2, 2 + conv.dims), 0, 1) if conv.groups > 1 else (*range(2, 2 + conv.dims), 1, 0)
    assert np.array_equal(kernel, np.transpose(flat.weight, order))
    assert f"dilation {conv.dilation}" in layer_.note and "zero" in layer_.note


# --------------------------------------------------------------------------------------- the project
def small_model() -> nn.Sequential:
    torch.manual_seed(30)
    model = nn.Sequential(
        hn.QLinear(6, 8, input_quantizer=fixed(6), weight_quantizer=fixed(4), bias_quantizer=fixed(6)),
        hn.QActivation("relu"),
        hn.QLinear(8, 3, input_quantizer=fixed(6, signed=False), weight_quantizer=fixed(4), bias=False,
                   output_quantizer=fixed(8)),
    )
    model(torch.randn(64, 6))
    return model.eval()


def test_written_project_is_complete_and_replaces_atomically(tmp_path) -> None:
    model = small_model()
    out = tmp_path / "prj"
    export_hls4ml(model, (6,), out, project_name="stale")  # an earlier hwnas export: replaced whole
    assert (out / "firmware" / "stale.cpp").exists()
    project = export_hls4ml(model, (6,), out, backend="Vivado", strategy="Resource", reuse_factor=2,
                            part="xc7z020clg400-1", clock_period=4.0, project_name="tiny")
    assert project.path == out and not (out / "firmware" / "stale.cpp").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prj"]  # no temporary folder left
    for name in ("build_prj.tcl", "firmware/tiny.cpp", "README.md", "hwnas_precisions.csv", "hls4ml_config.yml"):
        assert (out / name).exists(), name
    readme = (out / "README.md").read_text()
    assert "xc7z020clg400-1" in readme and "4 ns" in readme and "Resource" in readme and "0: 2" in readme
    assert "vivado_hls -f build_prj.tcl" in readme
    assert str(tmp_path / ".prj") not in (out / "hls4ml_config.yml").read_text()
    rows = {r.hls_layer: r for r in project.precisions}
    assert list(rows) == ["hwnas_input", "dense_0", "relu_1", "dense_2"]  # both uniform quantizers folded
    k, i, _ = (int(t.flatten()[0]) for t in model[2].output_quantizer.kif())
    dense = rows["dense_2"]
    assert dense.result == f"ap_fixed<8,{k + i},AP_RND_CONV,AP_SAT>" and dense.reuse_factor == 2
    assert dense.strategy == "Resource" and dense.weight.startswith("ap_fixed<")
    assert rows["relu_1"].result.startswith("ap_ufixed<6,")  # the next layer's unsigned input quantizer
    assert "| 2 | dense_2 | dense |" in project.precision_table()
    defines = (out / "firmware" / "defines.h").read_text()
    assert f"typedef ap_fixed<8,{k + i},AP_RND_CONV,AP_SAT,0> result_t;" in defines


def test_vitis_project_readme(tmp_path) -> None:
    project = export_hls4ml(small_model(), (6,), tmp_path / "v", backend="vitis")
    assert project.backend == "Vitis"
    assert "vitis_hls -f build_prj.tcl" in (tmp_path / "v" / "README.md").read_text()
    assert (tmp_path / "v" / "project.tcl").read_text().count('"vitis"') == 1


@needs_gxx
def test_first_differing_layer_is_reported(tmp_path) -> None:
    model = small_model()
    x = torch.randn(50, 6)
    project = export_hls4ml(model, (6,), tmp_path / "t")
    with torch.no_grad():
        ref = model(x).double().numpy()
    # corrupt the second Dense layer's weights in the hls4ml model, rewrite and rebuild the project
    weight = project.model.graph["dense_2"].get_weights("weight")
    weight.data = weight.data + 0.25
    project.model.write()
    project.compile()
    result = project.check(x, ref)
    assert result.mismatches > 0 and result.first_layer == "2"


def test_failed_export_leaves_the_old_project(tmp_path, monkeypatch) -> None:
    import hwnas.export.hls4ml as mod

    out = tmp_path / "prj"
    export_hls4ml(small_model(), (6,), out, project_name="old")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(mod, "_write_csv", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        export_hls4ml(small_model(), (6,), out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prj"]
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_missing_gxx_is_skipped(tmp_path, monkeypatch) -> None:
    model = small_model()
    project = export_hls4ml(model, (6,), tmp_path / "p")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = verify_hls4ml(model, torch.randn(4, 6))
    assert result.skipped is not None and "g++" in result.skipped and not result.passed
    with pytest.raises(ToolMissingError, match="g\\+\\+"):
        project.compile()


def test_predict_input_shape_is_checked(tmp_path) -> None:
    project = export_hls4ml(small_model(), (6,), tmp_path / "p")
    with pytest.raises(ValueError, match="input: expected samples of shape"):
        project.predict(np.zeros((2, 5)))


# -------------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(("layers", "shape", "kwargs", "message"), [
    (lambda: [hn.QLinear(4, 3, input_quantizer=fixed(6), weight_quantizer=fixed(4))], (4,),
     dict(reuse_factor=5), r"0: reuse factor 5 is not valid .* 12 multiplications"),
    (lambda: [hn.QLinear(4, 3, input_quantizer=fixed(6), weight_quantizer=fixed(4))], (4,),
     dict(strategy="Resource", reuse_factor=6), r"0: reuse factor 6 is not valid .*Resource"),
    (lambda: [hn.QLinear(4, 3, input_quantizer=fixed(6), weight_quantizer=fixed(4))], (4,),
     dict(reuse_factor={"1": 2}), r"reuse_factor: '1' is not a Dense/Conv layer"),
    (lambda: [hn.QLinear(4, 3, input_quantizer=fixed(6), weight_quantizer=fixed(4))], (4,),
     dict(strategy="Fast"), r"strategy: unknown strategy 'Fast'"),
    (lambda: [hn.QLinear(4, 3, input_quantizer=fixed(6), weight_quantizer=fixed(4))], (4,),
     dict(backend="Quartus"), r"backend: unknown backend 'Quartus'"),
    (lambda: [hn.QLinear(4, 3, input_quantizer=fixed(6), weight_quantizer=fixed(4))], (4,),
     dict(io_type="io_stream"), r"io_type: 'io_stream' is not supported"),
    (lambda: [hn.QConv1d(4, 4, 3, groups=2, input_quantizer=fixed(6), weight_quantizer=fixed(4))], (4, 16),
     {}, r"0: grouped convolution \(groups=2"),
    (lambda: [hn.QConv1d(2, 4, 3, groups=2, input_quantizer=fixed(6), weight_quantizer=fixed(4))], (2, 16),
     {}, r"0: depthwise convolution with a channel multiplier"),
    (lambda: [hn.QConv1d(2, 2, 3, groups=2, input_quantizer=fixed(6), weight_quantizer=fixed(4))], (2, 16),
     dict(strategy="Resource"), r"0: hls4ml has no Resource strategy for depthwise"),
    (lambda: [hn.QActivation("identity", input_quantizer=fixed(6)),
              hn.QLinear(16, 4, input_quantizer=None, weight_quantizer=fixed(4))], (2, 16),
     {}, r"1: a Dense on a tensor of shape \(2, 16\)"),
    (lambda: [hn.QLinear(4, 3, input_quantizer=fixed(6), weight_quantizer=fixed(4)),
              hn.QActivation("tanh", input_quantizer=fixed(18), output_quantizer=fixed(8))], (4,),
     {}, r"1: tanh table over a 18-bit input type"),
    (lambda: [hn.QLinear(4, 3, input_quantizer=None, weight_quantizer=fixed(4))], (4,),
     {}, r"0\.input_quantizer: the model input must be quantized"),
])
def test_unsupported_settings_name_the_layer(tmp_path, layers, shape, kwargs, message) -> None:
    torch.manual_seed(40)
    model = nn.Sequential(*layers())
    model(torch.randn(16, *shape))
    out = tmp_path / "prj"
    with pytest.raises(ExportError, match=message):
        export_hls4ml(model, shape, out, **kwargs)
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing half-written
