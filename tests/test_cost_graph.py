"""Cost models beyond a chain: data flow, joins (add/concat/global pool), producer widths, chains unchanged."""

from __future__ import annotations

import math
import types

import pytest
import torch
from torch import nn

import hwnas.nn as hn
from hwnas.cost import CostError, estimate, fold_for_throughput, vgg10_amc
from hwnas.cost.graph import describe_model
from hwnas.nn import metrics as nn_metrics

from .graph_models import GRAPH_MODELS, fixed

Q8 = dict(bits=8, learnable=False, granularity="tensor")

# MACs written out by hand: conv = output positions × out_ch × in_ch/groups × kernel elements; dense = in × out
HAND_MACS = {
    "residual1d": (16 * 4 * 2 * 3  # stem, L = 16
                   + 16 * 4 * 4 * 3 + 16 * 4 * 4 * 3  # block1: conv1, conv2 (identity skip)
                   + 16 * 6 * 4 * 3 + 16 * 6 * 6 * 3 + 16 * 6 * 4 * 1  # block2: conv1, conv2, 1×1 skip
                   + 6 * 3),  # head
    "residual2d": (24 * 4 * 2 * 9  # stem, 6×4 positions
                   + 24 * 4 * 4 * 9 * 2  # block 0
                   + 24 * 5 * 4 * 9 + 24 * 5 * 5 * 9 + 24 * 5 * 4  # block 1 with a 1×1 skip
                   + 24 * 2 * 5),  # 1×1 head
    "concat_mlp": 6 * 8 + 8 * 4 + 8 * 3 + 7 * 2,
    "concat_cnn": 8 * 3 * 2 * 3 + 8 * 2 * 2 * 1 + 40 * 3,
}

# the joins: name -> (kind, output elements, producers, width the adders are costed at)
# residual1d: stem acc = ceil(log2 2·3) + 6 + 8 + 1 bias = 18; block1.conv2 acc = ceil(log2 4·3) + 15 = 19;
# block2.conv2 acc = ceil(log2 6·3) + 15 = 20; block2.skip acc = ceil(log2 4) + 15 = 17
JOINS = {
    "residual1d": {"add": ("add", 4 * 16, ("block1.conv2", "act"), 19),
                   "add_1": ("add", 6 * 16, ("block2.conv2", "block2.skip"), 20),
                   "mean": ("gpool", 6, ("block2.act2",), 8)},
    # residual2d: stem acc = ceil(log2 18) + 15 = 20; conv2 accs: ceil(log2 36) + 15 = 21, ceil(log2 45) + 15 = 21
    "residual2d": {"add": ("add", 4 * 6 * 4, ("blocks.0.conv2", "relu"), 21),
                   "add_1": ("add", 5 * 6 * 4, ("blocks.1.conv2", "blocks.1.skip"), 21)},
    # concat_mlp: a acc = ceil(log2 8) + 15 = 18, b.0 acc (through the ReLU) 18
    "concat_mlp": {"cat": ("concat", 7, ("a", "b.1"), 18)},
    # concat_cnn: a acc = ceil(log2 6) + 15 = 18, b acc = ceil(log2 2) + 15 = 16
    "concat_cnn": {"cat": ("concat", 5 * 8, ("a", "b"), 18)},
}


def _model(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    return GRAPH_MODELS[name]()


@pytest.mark.parametrize("name", sorted(GRAPH_MODELS))
def test_macs_equal_a_count_by_hand(name: str) -> None:
    model, shape = _model(name)
    infos = describe_model(model, shape)
    assert sum(li.macs for li in infos) == HAND_MACS[name]
    assert hn.macs(model) == HAND_MACS[name]
    assert estimate(model, "ZCU104", input_shape=shape, kind="hls4ml").totals["macs"] == HAND_MACS[name]
    assert estimate(model, "ZCU104", input_shape=shape, kind="finn").totals["macs"] == HAND_MACS[name]


@pytest.mark.parametrize("name", sorted(GRAPH_MODELS))
def test_join_rows_have_their_elements_and_producers(name: str) -> None:
    model, shape = _model(name)
    infos = {li.name: li for li in describe_model(model, shape)}
    joins = {n: li for n, li in infos.items() if li.kind in ("add", "concat", "gpool")}
    assert set(joins) == set(JOINS[name])
    for n, (kind, elements, inputs, bits) in JOINS[name].items():
        li = joins[n]
        assert (li.kind, li.elements, li.inputs, li.act_bits, li.macs) == (kind, elements, inputs, bits, 0)
        assert li.module is None
    # every producer named is a row (or the model input), and each layer reads its producer, not its predecessor
    for li in infos.values():
        assert all(s == "input" or s in infos for s in li.inputs)
    if name == "residual1d":
        assert infos["mean"].positions == 16 and infos["mean"].in_shape == (6, 16)
        assert infos["block2.skip"].inputs == ("block1.act2",)  # module order would say block2.conv2
        assert infos["add"].out_bits == hn.FLOAT_BITS  # a sum of unquantized accumulators stays unquantized
    hls = {r.name: r for r in estimate(model, "ZCU104", input_shape=shape, kind="hls4ml").rows}
    for n, (kind, elements, _, bits) in JOINS[name].items():
        row = hls[n]
        if kind == "add":
            assert row.extra["adders"] == elements and row.luts == elements * bits and row.cycles == 1
        elif kind == "gpool":
            assert row.extra["adders"] == elements * (16 - 1) and row.luts == elements * 15 * bits
            assert row.cycles == 4  # adder tree over 16 positions
        else:
            assert row.luts == 0 and row.cycles == 0  # wiring


def _without_add(model: nn.Module) -> nn.Module:
    """The same model with every residual block's sum removed (each block returns act2(conv2(...)))."""
    for blk in model.modules():
        if isinstance(blk, hn.QResidualBlock):
            blk.forward = types.MethodType(lambda self, x: self.act2(self.conv2(self.act1(self.conv1(x)))), blk)
    return model


@pytest.mark.parametrize("name", ["residual1d", "residual2d"])
def test_the_residual_add_has_a_cost(name: str) -> None:
    model, shape = _model(name)
    plain, _ = _model(name)
    _without_add(plain)
    assert not any(li.kind == "add" for li in describe_model(plain, shape))
    for kind in ("hls4ml", "finn"):
        with_add = estimate(model, "VU13P", input_shape=shape, kind=kind)
        without = estimate(plain, "VU13P", input_shape=shape, kind=kind)
        adds = [r for r in with_add.rows if r.type in ("Add", "ADD")]
        assert len(adds) == 2 and all(r.luts > 0 and r.cycles > 0 for r in adds)
        assert without.totals["luts"] < with_add.totals["luts"]
        assert without.latency_cycles <= with_add.latency_cycles
    # hls4ml: apart from the adds and the skip convolution, every row is the same
    a = {r.name: r.luts for r in estimate(model, "VU13P", input_shape=shape, kind="hls4ml").rows}
    b = {r.name: r.luts for r in estimate(plain, "VU13P", input_shape=shape, kind="hls4ml").rows}
    assert {n: v for n, v in a.items() if not n.startswith("add") and not n.endswith("skip")} == b


def test_latency_is_the_longest_path() -> None:
    model, shape = _model("residual1d")
    est = estimate(model, "ZCU104", input_shape=shape, kind="hls4ml")
    cyc = {r.name: r.cycles for r in est.rows}
    # block2.skip runs beside block2.conv1 → act1 → conv2, so it is off the critical path
    assert cyc["block2.skip"] < cyc["block2.conv1"] + cyc["block2.act1"] + cyc["block2.conv2"]
    assert est.latency_cycles == sum(cyc.values()) - cyc["block2.skip"]
    model, shape = _model("concat_cnn")
    est = estimate(model, "ZCU104", input_shape=shape, kind="hls4ml")
    cyc = {r.name: r.cycles for r in est.rows}
    assert est.latency_cycles == sum(cyc.values()) - min(cyc["a"], cyc["b"])  # the two convolutions in parallel
    finn = estimate(model, "ZCU104", input_shape=shape, kind="finn")
    fc = {r.name: r.cycles for r in finn.rows}
    assert fc["input:dup"] == 2 * 8  # the model input feeds both convolutions: FINN DuplicateStreams
    assert fc["cat:concat"] == 8  # StreamingConcat: one output vector per position
    branch_a = fc["a:pad"] + fc["a:swg"] + fc["a:mvau"]
    branch_b = fc["b:swg"] + fc["b:mvau"]
    assert finn.latency_cycles == sum(fc.values()) - min(branch_a, branch_b)
    assert finn.initiation_interval == max(fc.values())


def test_finn_join_stages_by_hand() -> None:
    model, shape = _model("residual1d")
    rows = {r.name: r for r in estimate(model, "ZCU104", input_shape=shape, kind="finn").rows}
    assert rows["add:add"].cycles == 16 * 4 and rows["add_1:add"].cycles == 16 * 6  # AddStreams, PE = 1
    assert rows["mean:gpool"].cycles == 16 * 6 + 6  # GlobalAccPool: positions·C/PE + C/PE
    assert rows["mean:gpool"].extra["out_bits"] == 8 + 4  # accumulates 16 values of 8 bits
    assert rows["act:dup"].extra["copies"] == 2 and rows["block1.act2:dup"].extra["copies"] == 2
    assert rows["add:add"].luts > 0 and rows["add:add"].extra["out_bits"] == rows["add:add"].act_bits + 1
    folding, est = fold_for_throughput(model, "ZCU104", shape, target_fps=400_000)
    assert est.throughput >= 400_000 and set(folding) >= {"stem", "block2.skip", "head"}


def test_a_plain_torch_layer_is_an_error_naming_it() -> None:
    model, shape = _model("concat_mlp")
    model.a = nn.Linear(8, 4)
    for kind in ("hls4ml", "finn"):
        with pytest.raises(CostError, match=r"layer a: Linear has no hardware cost model.*hwnas\.nn\.convert"):
            estimate(model, "ZCU104", input_shape=shape, kind=kind)
    model, shape = _model("residual2d")
    model.blocks[1].conv1 = nn.Conv2d(4, 5, 3, padding=1)
    with pytest.raises(CostError, match=r"layer blocks\.1\.conv1: Conv2d"):
        describe_model(model, shape)


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = hn.QLinear(4, 4, input_quantizer=Q8, weight_quantizer=Q8)
        self.b = hn.QLinear(4, 2, input_quantizer=None, weight_quantizer=Q8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        if h.sum() > 0:  # data-dependent control flow
            h = torch.relu(h)
        return self.b(h)


def test_untraceable_forward_is_an_error_but_metrics_fall_back() -> None:
    model = _Untraceable()
    with pytest.raises(CostError, match=r"model _Untraceable: .*torch\.fx"):
        describe_model(model, (4,))
    model(torch.zeros(1, 4))
    assert hn.macs(model) == 4 * 4 + 4 * 2  # module order, as before
    assert hn.layer_costs(model)[1].bops == 8 * 8 * 32  # a's accumulator is unquantized: float


class _Widths(nn.Module):
    """Producer widths on a DAG: head_a reads a (3 bits), head_b reads b (5 bits), join reads a + b (6 bits),
    cat reads torch.cat([a, b]) (5 bits). Module order would charge head_a b's 5 bits."""

    def __init__(self) -> None:
        super().__init__()
        self.a = hn.QLinear(4, 4, input_quantizer=Q8, weight_quantizer=Q8, output_quantizer=fixed(3))
        self.b = hn.QLinear(4, 4, input_quantizer=Q8, weight_quantizer=Q8, output_quantizer=fixed(5))
        self.head_a = hn.QLinear(4, 2, input_quantizer=None, weight_quantizer=Q8, bias_quantizer=None)
        self.head_b = hn.QLinear(4, 2, input_quantizer=None, weight_quantizer=Q8, bias_quantizer=None)
        self.join = hn.QLinear(4, 2, input_quantizer=None, weight_quantizer=Q8, bias_quantizer=None)
        self.cat = hn.QLinear(8, 2, input_quantizer=None, weight_quantizer=Q8, bias_quantizer=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.a(x), self.b(x)
        return self.head_a(a) + self.head_b(b) + self.join(a + b) + self.cat(torch.cat([a, b], dim=1))


def test_metrics_charge_the_producers_width() -> None:
    model = _Widths()
    model(torch.zeros(1, 4))
    bops = {c.name: c.bops for c in hn.layer_costs(model)}
    assert bops == {"a": 16 * 8 * 8, "b": 16 * 8 * 8, "head_a": 8 * 8 * 3, "head_b": 8 * 8 * 5,
                    "join": 8 * 8 * 6, "cat": 16 * 8 * 5}
    infos = {li.name: li for li in describe_model(model, (4,))}
    assert {n: infos[n].act_bits for n in bops} == {"a": 8, "b": 8, "head_a": 3, "head_b": 5, "join": 6, "cat": 5}
    assert hn.bops(model) == sum(bops.values())
    assert hn.ebops(model).item() == pytest.approx(
        sum(m.ebops(torch.tensor(infos[n].act_bits)).item() for n, m in model.named_children()))


def test_ebops_trace_is_cached_per_model_and_rebuilt_on_change() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(hn.QResidualBlock(1, 2, 3, 3), nn.Flatten(), hn.QLinear(3 * 8, 2))
    model(torch.randn(4, 2, 8))
    e = hn.ebops(model)
    flow = nn_metrics._FLOWS[model][1]
    assert flow is not None and any(s.op == "add" for s in flow)
    e.backward()  # differentiable through the DAG walk
    grads = {n: p.grad for n, p in model.named_parameters() if n.endswith(".f")}
    assert grads["2.input_quantizer.f"].abs().sum() > 0 and grads["0.conv2.weight_quantizer.f"].abs().sum() > 0
    hn.ebops(model)
    assert nn_metrics._FLOWS[model][1] is flow  # cached: not traced again
    model[2] = hn.QLinear(3 * 8, 4)  # same name and type: the same flow, read with the new layer
    model(torch.randn(4, 2, 8))
    assert hn.ebops(model).item() == pytest.approx(sum(r.ebops for r in hn.layer_costs(model)))
    assert nn_metrics._FLOWS[model][1] is flow and hn.layer_costs(model)[-1].macs == 24 * 4
    model[2] = nn.Sequential(hn.QLinear(3 * 8, 4), hn.QActivation("relu"))
    model(torch.randn(4, 2, 8))
    hn.ebops(model)
    assert nn_metrics._FLOWS[model][1] is not flow  # structure changed: traced again
    assert [c.name for c in hn.layer_costs(model)][-2:] == ["2.0", "2.1"]
    n = len(nn_metrics._FLOWS)
    del model, e, grads
    import gc

    gc.collect()
    assert len(nn_metrics._FLOWS) < n  # weakly keyed: a dropped model leaves the cache


@pytest.mark.parametrize("name", sorted(GRAPH_MODELS))
def test_metrics_and_cost_graph_agree_on_widths(name: str) -> None:
    model, shape = _model(name)
    infos = {li.name: li for li in describe_model(model, shape)}
    rows = {c.name: c for c in hn.layer_costs(model)}
    assert set(rows) == {n for n, li in infos.items() if isinstance(li.module, hn.QLayer)}
    for n, row in rows.items():
        li = infos[n]
        assert row.bops == li.macs * li.weight_bits * li.act_bits


# --------------------------------------------------------------------------------- chains: figures pinned
def small_net() -> nn.Sequential:
    return nn.Sequential(
        hn.QConv1d(2, 4, 3, padding=1, input_quantizer=Q8, weight_quantizer=Q8, bias_quantizer=None),
        hn.QActivation("relu"), hn.QMaxPool1d(2), nn.Flatten(),
        hn.QLinear(32, 8, input_quantizer=Q8, weight_quantizer=Q8, bias_quantizer=None),
        hn.QActivation("relu"),
        hn.QLinear(8, 4, input_quantizer=Q8, weight_quantizer=Q8, bias_quantizer=None))


def upstream_net() -> nn.Sequential:
    """Layers without input quantizers: the upstream width flows along the chain."""
    torch.manual_seed(1)
    s = dict(bits=6, learnable=False, granularity="tensor")
    return nn.Sequential(
        hn.QConv1d(2, 4, 3, padding=1, input_quantizer=Q8, weight_quantizer=Q8, output_quantizer=s),
        hn.QActivation("relu"), hn.QMaxPool1d(2), nn.Flatten(),
        hn.QLinear(32, 8, input_quantizer=None, weight_quantizer=Q8, bias_quantizer=None, output_quantizer=Q8),
        hn.QLinear(8, 4, input_quantizer=None, weight_quantizer=Q8))


def hgq_net() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(hn.QLinear(16, 32), hn.QActivation("relu"),
                          hn.QLinear(32, 5, input_quantizer=dict(hn.DEFAULT_ACTIVATION, signed=False)))
    model(torch.randn(4, 16))
    with torch.no_grad():
        model[0].weight_quantizer.f[:4].add_(6)
        model[0].input_quantizer.f.add_(5)
    model(torch.randn(4, 16))
    return model


# measured with the module-order code before the data-flow rewrite (/tmp script, same builders)
PINNED = {
    # name: (macs, bops, ebops, weight bits, layer bops, FINN (latency, II, LUT, BRAM18),
    #        hls4ml latency strategy (latency, LUT, DSP), hls4ml distributed arithmetic LUT)
    "small_net": (672, 43008.0, 45440.0, 3008.0, [24576.0, 0.0, 0.0, 16384.0, 0.0, 2048.0], (976, 384, 2307.0, 6.0),
                  (20, 47744.0, 0.0), 41634.1151279205),
    "upstream_net": (672, 38912.0, 39424.0, 2843.0, [24576.0, 0.0, 0.0, 12288.0, 2048.0], (968, 384, 1768.0, 3.0),
                     (19, 39808.0, 0.0), 34465.20557792366),
    "hgq_net": (672, 103424.0, 61414.0, 5475.0, [93184.0, 0.0, 10240.0], (704, 512, 1407.0, 16.0),
                (14, 59028.0, 62.0), 53399.20928127498),
}
BUILDERS = {"small_net": (small_net, (2, 16)), "upstream_net": (upstream_net, (2, 16)), "hgq_net": (hgq_net, (16,))}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_chain_figures_are_unchanged(name: str) -> None:
    build, shape = BUILDERS[name]
    model = build()
    model.eval()(torch.zeros(1, *shape))
    macs, bops, ebops, wbits, layer_bops, finn, hls, da = PINNED[name]
    assert (hn.macs(model), hn.bops(model), hn.ebops(model).item(), hn.weight_bits(model)) == (macs, bops, ebops, wbits)
    assert [c.bops for c in hn.layer_costs(model)] == layer_bops
    f = estimate(model, "ZCU104", input_shape=shape, kind="finn")
    assert (f.latency_cycles, f.initiation_interval, f.totals["luts"], f.totals["bram18"]) == finn
    h = estimate(model, "VU13P", input_shape=shape, kind="hls4ml")
    assert (h.latency_cycles, h.totals["luts"], h.totals["dsps"]) == hls
    d = estimate(model, "VU13P", input_shape=shape, kind="hls4ml", strategy="distributed_arithmetic")
    assert d.totals["luts"] == pytest.approx(da, rel=1e-12)


def test_vgg10_chain_figures_are_unchanged() -> None:
    model = vgg10_amc(filters=32, input_length=256)
    f = estimate(model, "ZCU104", input_shape=(2, 256), kind="finn")
    assert (f.latency_cycles, f.initiation_interval, f.totals["luts"], f.totals["bram18"]) == (927368, 393216, 8380.0,
                                                                                               181.0)
    h = estimate(model, "VU13P", input_shape=(2, 256), kind="hls4ml")
    assert (h.latency_cycles, h.totals["luts"]) == (101, 54983424.0)
    assert math.isclose(hn.ebops(model).item(), 54455040.0)
