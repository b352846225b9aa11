"""hwnas.space: points, define-by-run parameters, the integer vector, sampling, counting and the builder."""

import itertools
import json
import math
import re
import warnings

import numpy as np
import optuna
import pytest
import torch
import yaml
from pydantic import ValidationError

import hwnas.nn as hn
from hwnas.cost import finn_estimate, hls4ml_estimate
from hwnas.export import extract
from hwnas.nn import QActivation, QConv1d, QConv2d, QLinear
from hwnas.space import ConvBlock, DenseLayer, LayerMapping, Point, SearchSpace, SpaceConfig, SpaceError

SHAPES = {"cnn1d": (2, 128), "cnn2d": (1, 28, 28), "mlp": (16,)}
CLASSES = {"cnn1d": 11, "cnn2d": 10, "mlp": 5}


def _space(family: str, n_classes: int | None = None, shape: tuple[int, ...] | None = None, shape_of=None,
           **over) -> SearchSpace:
    raw = {
        "family": family,
        "conv_blocks": {"min": 0 if family == "cnn2d" else 1, "max": 3},
        "filters": [4, 6, 8],
        "kernel": [2, 3, 5] if family == "cnn1d" else [1, 3],
        "pooling": ["max", "avg", "none"],
        "activation": ["relu", "tanh", "sigmoid"],
        "batch_norm": [False, True],
        "separable": [False, True],
        "dense_layers": {"min": 0, "max": 2},
        "dense_units": [8, 12],
        "dropout": [0.0, 0.25],
        "precision": {"weight_bits": {"min": 2, "max": 8}, "act_bits": [3, 4, 8]},
    }
    for key, value in over.items():
        raw[key] = value
    cfg = SpaceConfig.model_validate(raw, strict=True)
    return SearchSpace(cfg, shape or SHAPES[family], n_classes or CLASSES[family], shape_of=shape_of)


MAPPINGS = {
    "none": {},
    "finn": {"mapping": {"kind": "finn", "folding": "search"}},
    "hls4ml": {"mapping": {"kind": "hls4ml", "folding": "search", "reuse_factor": [1, 2, 3, 8, 32]}},
}
CASES = [(fam, mp) for fam in SHAPES for mp in MAPPINGS]


def _forward(model: torch.nn.Module, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    model.eval()
    with torch.no_grad():
        return model(torch.randn((4, *shape), generator=g))


# ------------------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize(("family", "mapping"), CASES)
def test_random_points_round_trip(family, mapping):
    space = _space(family, **MAPPINGS[mapping])
    rng = np.random.default_rng(3)
    points = {space.sample(rng) for _ in range(150)}
    assert len(points) > 100  # the sampler explores (and points hash)
    bounds = space.bounds()
    for p in points:
        params = space.params(p)
        assert space.from_params(params) == p
        vec = space.encode(p)
        assert len(vec) == len(bounds) and all(lo <= x <= hi for x, (lo, hi) in zip(vec, bounds, strict=True))
        assert space.decode(vec) == p
        d = p.to_dict()
        assert Point.from_dict(json.loads(json.dumps(d))) == p
        assert Point.from_dict(yaml.safe_load(yaml.safe_dump(d))) == p
        assert space.check(p) is p
        assert isinstance(p.describe(), str) and p.family in p.describe()


@pytest.mark.parametrize(("family", "mapping"), CASES)
def test_every_in_bounds_vector_decodes_and_builds(family, mapping):
    space = _space(family, **MAPPINGS[mapping])
    rng = np.random.default_rng(11)
    shape = SHAPES[family]
    bounds = space.bounds()
    for n in range(25):
        vec = [int(rng.integers(lo, hi + 1)) for lo, hi in bounds]
        if n == 0:
            vec = [lo for lo, _ in bounds]
        elif n == 1:
            vec = [hi for _, hi in bounds]
        p = space.decode(vec)
        space.check(p)
        assert space.decode(space.encode(p)) == p
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # 2-bit weights of tiny layers may round to zero
            y = _forward(space.build(p, seed=n), shape)
        assert y.shape == (4, CLASSES[family]) and torch.isfinite(y).all()


def test_decoding_ignores_padding():
    space = _space("cnn1d")
    layout = [s.name for s in space.layout()]
    assert layout[:2] == ["conv_blocks", "dense_layers"]
    vec = space.encode(space.sample(np.random.default_rng(0)))
    vec[0], vec[1] = 1, 0  # one conv block, no dense layer: everything of conv1.., dense0.. is padding
    p = space.decode(vec)
    lows = space.bounds()
    for n, name in enumerate(layout):
        if name.startswith(("conv1.", "conv2.", "dense0.", "dense1.")):
            other = list(vec)
            other[n] = lows[n][1] if other[n] == lows[n][0] else lows[n][0]
            assert space.decode(other) == p, name


def test_vector_errors_name_the_entry():
    space = _space("mlp")
    vec = space.encode(space.sample(np.random.default_rng(0)))
    with pytest.raises(SpaceError, match=r"vector: expected \d+ entries"):
        space.decode(vec[:-1])
    bad = list(vec)
    bad[0] = 99
    with pytest.raises(SpaceError, match=r"vector\[0\] \(dense_layers\): 99 is outside \[0, 2\]"):
        space.decode(bad)
    bad[0] = 1.5
    with pytest.raises(SpaceError, match=r"vector\[0\] \(dense_layers\): expected an integer"):
        space.decode(bad)
    assert space.decode([float(x) for x in vec]) == space.decode(vec)  # integral floats (PSO positions) are fine


def test_params_errors_name_the_key():
    space = _space("cnn1d")
    p = space.sample(np.random.default_rng(5))
    params = space.params(p)
    missing = dict(params)
    del missing["conv0.kernel"]
    with pytest.raises(SpaceError, match=r"params: missing 'conv0.kernel' \(a choice of space.kernel\)"):
        space.from_params(missing)
    wrong = {**params, "conv0.kernel": 4}
    with pytest.raises(SpaceError, match=r"params\['conv0.kernel'\]: 4 is not a choice of space.kernel \[2, 3, 5\]"):
        space.from_params(wrong)
    extra = {**params, "lr": 0.1}
    with pytest.raises(SpaceError, match="params: \\['lr'\\] are not parameters"):
        space.from_params(extra)
    assert space.from_params(extra, strict=False) == p


def test_check_rejects_points_outside_the_space():
    space = _space("cnn1d", share_filters=True, precision={"per_layer": False, "weight_bits": [2, 4],
                                                            "act_bits": [4, 8]})
    p = Point("cnn1d", (ConvBlock(4, 3), ConvBlock(6, 3)), (), 0.0, False, (4, 4, 4), (8, 8))
    with pytest.raises(SpaceError, match=r"point conv1.filters: 6 .*share_filters"):
        space.check(p)
    p = Point("cnn1d", (ConvBlock(4, 3), ConvBlock(4, 3)), (), 0.0, False, (4, 2, 4), (8, 8))
    with pytest.raises(SpaceError, match=r"point conv1.weight_bits: 2 .*per_layer is off"):
        space.check(p)
    p = Point("cnn1d", (ConvBlock(4, 7),), (), 0.0, False, (4, 4), (8,))
    with pytest.raises(SpaceError, match=r"point conv0.kernel: 7 is not a choice of space.kernel"):
        space.check(p)
    with pytest.raises(SpaceError, match=r"point\.family"):
        space.check(Point("mlp", (), (), 0.0, False, (4,), ()))
    with pytest.raises(SpaceError, match=r"point\.learned"):
        space.check(Point("cnn1d", (ConvBlock(4, 3),), (), 0.0, True))
    mapped = _space("mlp", **MAPPINGS["finn"])
    q = Point("mlp", (), (DenseLayer(8),), 0.0, False, (4, 4), (4,))
    with pytest.raises(SpaceError, match="searches the hardware mapping"):
        mapped.check(q)
    q = Point("mlp", (), (DenseLayer(8),), 0.0, False, (4, 4), (4,),
              (LayerMapping("dense0", pe=3, simd=1), LayerMapping("classifier", pe=1, simd=1)))
    with pytest.raises(SpaceError, match=r"point dense0.pe: 3 does not divide"):
        mapped.check(q)


def test_point_dict_errors_name_the_key():
    good = _space("cnn1d").sample(np.random.default_rng(0)).to_dict()
    bad = json.loads(json.dumps(good))
    bad["conv"][0]["kernel"] = "3"
    with pytest.raises(SpaceError, match=r"point.conv\[0\].kernel: expected an integer"):
        Point.from_dict(bad)
    bad = json.loads(json.dumps(good))
    bad["conv"][0]["colour"] = 1
    with pytest.raises(SpaceError, match=r"point.conv\[0\]: unknown key\(s\) \['colour'\]"):
        Point.from_dict(bad)
    bad = json.loads(json.dumps(good))
    bad["weight_bits"] = bad["weight_bits"][:-1]
    with pytest.raises(SpaceError, match=r"point\.weight_bits/act_bits"):
        Point.from_dict(bad)
    with pytest.raises(SpaceError, match="point: missing key"):
        Point.from_dict({"conv": []})


# ------------------------------------------------------------------------------------------ optuna
@pytest.mark.parametrize(("family", "mapping"), [("cnn1d", "finn"), ("cnn2d", "hls4ml"), ("mlp", "none")])
def test_suggest_with_a_real_study(family, mapping):
    space = _space(family, **MAPPINGS[mapping])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []

    def objective(trial):
        p = space.suggest(trial)
        space.check(p)
        params = space.params(p)
        assert list(params) == list(trial.params)  # exactly the parameters asked for, in order, nothing fixed
        # mapping choices are many-to-one (levels → divisors, reuse → largest divisor): params gives the first
        assert {k: v for k, v in params.items() if not k.endswith(("pe", "simd", "reuse_factor"))} == \
            {k: v for k, v in trial.params.items() if not k.endswith(("pe", "simd", "reuse_factor"))}
        assert space.from_params(trial.params) == p
        n_conv = len(p.conv)
        assert not any(k.startswith(f"conv{n_conv}.") for k in trial.params)  # conditional: only existing layers
        assert not any(k.startswith(f"dense{len(p.dense)}.") for k in trial.params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y = _forward(space.build(p, seed=trial.number), SHAPES[family])
        seen.append(p)
        return float(y.abs().mean())

    study.optimize(objective, n_trials=30)
    assert len(study.trials) == 30 and all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert len(set(seen)) > 20
    # enqueue_trial replays a point exactly
    target = space.sample(np.random.default_rng(9))
    study.enqueue_trial(space.params(target))
    got = []
    study.optimize(lambda t: got.append(space.suggest(t)) or 0.0, n_trials=1)
    assert got == [target]


def test_nsga2_sees_fixed_distributions():
    space = _space("cnn1d", **MAPPINGS["finn"])
    study = optuna.create_study(directions=["minimize", "minimize"],
                                sampler=optuna.samplers.NSGAIISampler(seed=1, population_size=4))
    study.optimize(lambda t: (len(space.suggest(t).conv), 0.0), n_trials=12)
    dists: dict[str, optuna.distributions.BaseDistribution] = {}
    for t in study.trials:
        for k, d in t.distributions.items():
            assert dists.setdefault(k, d) == d, k  # no parameter changes its range between trials


# ------------------------------------------------------------------------------------------ sampling, size
def test_sampling_is_deterministic():
    space = _space("cnn2d", **MAPPINGS["finn"])
    a = [space.sample(np.random.default_rng(42)) for _ in range(3)]
    r1, r2 = np.random.default_rng(7), np.random.default_rng(7)
    assert [space.sample(r1) for _ in range(20)] == [space.sample(r2) for _ in range(20)]
    assert a[0] == a[1] == a[2]


def _enumerate(space: SearchSpace) -> set[Point]:
    ranges = [range(lo, hi + 1) for lo, hi in space.bounds()]
    assert math.prod(len(r) for r in ranges) < 60_000  # keep the test fast
    return {space.decode(list(v)) for v in itertools.product(*ranges)}


@pytest.mark.parametrize("over", [
    {"family": "cnn1d", "conv_blocks": {"min": 0, "max": 2}, "filters": [2, 4], "kernel": [2, 3],
     "pooling": ["max", "none"], "activation": ["relu"], "batch_norm": [True], "separable": [False, True],
     "dense_layers": [0, 1], "dense_units": [3], "precision": {"weight_bits": [2], "act_bits": [4, 8]}},
    {"family": "cnn1d", "conv_blocks": [1, 2], "filters": [4, 6], "share_filters": True, "kernel": [3],
     "pooling": ["max"], "separable": [False], "dense_layers": [0, 1], "dense_units": [6], "dropout": [0.0, 0.1],
     "precision": {"weight_bits": [2, 3], "act_bits": [4]}},
    {"family": "cnn1d", "shape": (2, 4), "conv_blocks": 1, "filters": [2, 4], "kernel": [1], "pooling": ["none"],
     "separable": [False, True], "dense_layers": 0, "precision": {"weight_bits": [2], "act_bits": [4]},
     "mapping": {"kind": "finn", "folding": "search"}},
    {"family": "mlp", "dense_layers": [0, 1], "dense_units": [4, 6], "precision": {"weight_bits": [2], "act_bits": [4]},
     "mapping": {"kind": "finn", "folding": "search"}},
    {"family": "mlp", "dense_layers": [0, 1, 2], "dense_units": [6, 12], "activation": ["relu", "tanh"],
     "dropout": [0.0, 0.5], "precision": {"per_layer": False, "weight_bits": [2, 4, 8], "act_bits": [4, 8]},
     "mapping": {"kind": "hls4ml", "folding": "search", "reuse_factor": [1, 4, 5, 100]}},
    {"family": "mlp", "dense_layers": {"min": 1, "max": 2}, "dense_units": [5, 10], "precision": {"mode": "learned"}},
])
def test_size_counts_the_distinct_points(over):
    over = dict(over)
    family = over.pop("family")
    shape = over.pop("shape", (2, 8) if family == "cnn1d" else None)
    space = _space(family, shape=shape, n_classes=3, **over)
    points = _enumerate(space)
    assert len(points) == space.size()


def test_size_of_monas_lq_space():
    # MONAS-LQ: VGG-like backbone of 1..7 blocks (64 filters, k=3, BN, max pool), 2 hidden dense layers,
    # per-layer weight and activation bits 1..8; the vector is (depth, weight bits, activation bits)
    cfg = SpaceConfig.model_validate({
        "family": "cnn1d", "conv_blocks": {"min": 1, "max": 7}, "filters": 64, "kernel": 3, "pooling": ["max"],
        "batch_norm": [True], "dense_layers": 2, "dense_units": 128,
        "precision": {"weight_bits": {"min": 1, "max": 8}, "act_bits": {"min": 1, "max": 8}},
    }, strict=True)
    space = SearchSpace(cfg, (2, 1024), 24)
    names = [s.name for s in space.layout()]
    convs = [f"conv{i}" for i in range(7)]
    assert names == (["conv_blocks", "dense_layers"] + [f"{c}.weight_bits" for c in convs]
                     + ["dense0.weight_bits", "dense1.weight_bits", "classifier.weight_bits"]
                     + [f"{c}.act_bits" for c in convs] + ["dense0.act_bits", "dense1.act_bits"])
    assert space.bounds()[:2] == [(1, 7), (2, 2)]
    assert all(b == (1, 8) for b in space.bounds()[2:])
    assert space.size() == sum(8 ** (2 * n + 5) for n in range(1, 8))
    p = space.decode([3, 2] + list(range(1, 8)) + [8, 7, 6] + [2] * 7 + [5, 6])
    assert p.weight_bits == (1, 2, 3, 8, 7, 6) and p.act_bits == (2, 2, 2, 5, 6)
    assert [b.filters for b in p.conv] == [64] * 3


# ------------------------------------------------------------------------------------------ builder
def _expected_macs(point: Point, shape: tuple[int, ...], n_classes: int) -> int:
    """MACs computed from the point alone (independently of the builder)."""
    total = 0
    nd = len(shape) - 1 if point.family != "mlp" else 0
    cin, spatial = (shape[0], list(shape[1:])) if nd else (0, [])
    for b in point.conv:
        out = [n + 2 * (b.kernel // 2) - b.kernel + 1 for n in spatial]
        positions = math.prod(out)
        if b.separable:
            total += positions * cin * b.kernel ** nd + positions * cin * b.filters
        else:
            total += positions * cin * b.filters * b.kernel ** nd
        spatial = [n // 2 for n in out] if b.pooling != "none" else out
        cin = b.filters
    fin = cin * math.prod(spatial) if nd else math.prod(shape)
    for d in point.dense:
        total += fin * d.units
        fin = d.units
    return total + fin * n_classes


def _width(q) -> set[int]:
    k, i, f = q.kif()
    return set((k + i + f).flatten().int().tolist())


@pytest.mark.parametrize("family", list(SHAPES))
def test_built_models_have_the_requested_bits_and_export(family):
    space = _space(family, precision={"weight_bits": {"min": 3, "max": 8}, "act_bits": [3, 4, 8], "input_bits": 6,
                                      "bias_bits": 14, "table_input_bits": 7})
    shape = SHAPES[family]
    rng = np.random.default_rng(2)
    for _ in range(12):
        p = space.sample(rng)
        model = space.build(p, seed=0)
        _forward(model, shape)
        assert hn.macs(model) == _expected_macs(p, shape, CLASSES[family])
        assert hn.bops(model) > 0
        names = space.module_names(p)
        mods = dict(model.named_children())
        compute = p.compute_layers()
        assert all(isinstance(mods[names[label]], QLinear | QConv1d | QConv2d) for label in compute)
        # weights: the layer's (block's) bits, per output channel; biases: bias_bits
        for label in compute:
            layer = mods[names[label]]
            slot = label.split(".")[0]
            idx = ([f"conv{i}" for i in range(len(p.conv))] + [f"dense{j}" for j in range(len(p.dense))]
                   + ["classifier"]).index(slot)
            assert _width(layer.weight_quantizer) == {p.weight_bits[idx]}, label
            assert layer.weight_quantizer.kif()[0].numel() == layer.weight.shape[0]  # per channel
            assert _width(layer.bias_quantizer) == {14}
        # activations: the model input at input_bits, each later layer input at the previous layer's act_bits
        hidden = [f"conv{i}" for i in range(len(p.conv))] + [f"dense{j}" for j in range(len(p.dense))]
        first = next(m for m in model if isinstance(m, hn.QLayer))
        assert _width(first.input_quantizer) == {6}
        for n, label in enumerate(hidden):
            act = mods[names[f"{label}.act"]]
            kind = (p.conv[n] if n < len(p.conv) else p.dense[n - len(p.conv)]).activation
            nxt_label = hidden[n + 1] if n + 1 < len(hidden) else "classifier"
            nxt = mods[names[f"{nxt_label}.dw" if f"{nxt_label}.dw" in names else nxt_label]]
            if kind == "relu":
                assert act.mode == "exact"
                assert _width(nxt.input_quantizer) == {p.act_bits[n]}
                assert int(nxt.input_quantizer.kif()[0]) == 0  # unsigned after ReLU
            else:
                assert act.mode == "table" and _width(act.input_quantizer) == {7}
                assert _width(act.output_quantizer) == {p.act_bits[n]}
                assert nxt.input_quantizer is None
            if n < len(p.conv) and p.conv[n].separable:
                assert _width(mods[names[label]].input_quantizer) == {p.act_bits[n]}
        folded = hn.fold_batchnorm(model)
        assert not any(isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d) for m in folded.modules())
        graph = extract(folded, shape)
        assert graph.output_shape == (CLASSES[family],)


def test_builder_layer_recipe():
    space = _space("cnn1d")
    p = Point("cnn1d", (ConvBlock(8, 3, "max", True, False, "relu"), ConvBlock(4, 5, "avg", False, True, "tanh")),
              (DenseLayer(12, "sigmoid"),), 0.25, False, (4, 5, 6, 7), (8, 3, 4))
    model = space.build(p)
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["QConv1d", "QActivation", "QMaxPool1d",
                     "QConv1d", "QConv1d", "QActivation", "QAvgPool1d", "Flatten",
                     "Dropout", "QLinear", "QActivation", "Dropout", "QLinear"]
    assert isinstance(model[0].bn, torch.nn.BatchNorm1d) and model[0].bn.num_features == 8  # fused, trained folded
    dw, pw = model[3], model[4]
    assert dw.bn is None and pw.bn is None  # block 1 has no BatchNorm
    assert dw.groups == 8 == dw.in_channels == dw.out_channels and dw.kernel_size == (5,) and dw.padding == (2,)
    assert pw.kernel_size == (1,) and pw.out_channels == 4
    assert model[9].in_features == 4 * 32 and model[12].out_features == 11
    assert space.module_names(p)["conv1.dw"] == "3" and space.module_names(p)["classifier"] == "12"
    y = _forward(model, (2, 128))
    assert y.shape == (4, 11)


def test_mlp_on_multidimensional_input_quantizes_the_input_first():
    space = _space("mlp", shape=(2, 8))
    p = space.sample(np.random.default_rng(0))
    model = space.build(p)
    assert isinstance(model[0], QActivation) and model[0].kind == "identity" and model[0].input_quantizer is not None
    _forward(model, (2, 8))
    extract(hn.fold_batchnorm(model), (2, 8))


def test_fresh_models_can_be_copied():
    import copy

    space = _space("cnn1d", **MAPPINGS["finn"])
    rng = np.random.default_rng(12)
    for _ in range(10):
        p = space.sample(rng)
        model = space.build(p, seed=0)
        twin = copy.deepcopy(model)  # e.g. one copy per worker, before any data was seen
        assert torch.equal(_forward(model, (2, 128)), _forward(twin, (2, 128)))


def test_build_is_deterministic_per_seed():
    space = _space("cnn2d")
    p = space.sample(np.random.default_rng(4))
    state = torch.random.get_rng_state()
    a, b, c = space.build(p, seed=5), space.build(p, seed=5), space.build(p, seed=6)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is untouched
    pa, pb, pc = (list(m.parameters()) for m in (a, b, c))
    assert all(torch.equal(x, y) for x, y in zip(pa, pb, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(pa, pc, strict=True))
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(a.eval()(x), b.eval()(x))


def test_learned_precision_builds_hgq_quantizers():
    space = _space("cnn1d", precision={"mode": "learned", "init_bits": 6})
    assert not any("bits" in s.name for s in space.layout())
    p = space.sample(np.random.default_rng(1))
    assert p.learned and p.weight_bits == () and p.act_bits == ()
    model = space.build(p, seed=0)
    model.train()
    y = model(torch.randn(8, 2, 128))
    (y.square().mean() + hn.regularization(model, beta=1e-5)).backward()
    layers = [m for m in model if isinstance(m, QLinear | QConv1d)]
    for layer in layers:
        # per-parameter HGQ widths: every element starts with init_bits' fractional bits, its integer bits
        # follow its own magnitude, so the widest element has init_bits (a conv with a fused BatchNorm
        # quantizes its folded weight, scaled by the batch's 1/σ: its integer bits follow that)
        assert layer.weight_quantizer.learnable
        if getattr(layer, "bn", None) is None:
            assert max(_width(layer.weight_quantizer)) == 6
        assert layer.weight_quantizer.kif()[0].shape == layer.weight.shape
        assert layer.weight_quantizer.f.grad is not None
    assert layers[0].input_quantizer.learnable and _width(layers[0].input_quantizer) == {8}  # input_bits
    assert all(m.output_quantizer.learnable for m in model if isinstance(m, QActivation) and m.mode == "table")


def test_mapping_feeds_the_cost_models():
    space = _space("cnn1d", **MAPPINGS["finn"])
    rng = np.random.default_rng(8)
    for _ in range(5):
        p = space.sample(rng)
        model = hn.fold_batchnorm(space.build(p, seed=0))
        folding = space.folding(p)
        assert len(folding) == len(p.compute_layers())
        est = finn_estimate(model, "ZCU104", (2, 128), folding=folding)
        assert est.assumptions["folding"] == {k: (f.pe, f.simd) for k, f in folding.items()}
    space = _space("mlp", **MAPPINGS["hls4ml"])
    for _ in range(5):
        p = space.sample(rng)
        model = space.build(p, seed=0)
        _forward(model, (16,))
        reuse = space.reuse_factors(p)
        mods = dict(model.named_children())
        assert set(reuse) == {space.module_names(p)[label] for label in p.compute_layers()}
        assert all(mods[name].weight.numel() % r == 0 for name, r in reuse.items())
        hls4ml_estimate(model, "VU13P", (16,), reuse_factor=reuse)


def test_folding_levels_reach_every_divisor():
    space = _space("mlp", dense_layers=1, dense_units=[12], **MAPPINGS["finn"])
    levels = space.layout()[[s.name for s in space.layout()].index("dense0.pe")]
    pes = set()
    for lv in range(levels.low, levels.high + 1):
        p = space.from_params({"dense0.pe": lv, "dense0.simd": 0, "classifier.pe": 0, "classifier.simd": 0,
                               **{k: v for k, v in space.params(space.sample(np.random.default_rng(0))).items()
                                  if not k.endswith(("pe", "simd", "reuse_factor"))}})
        pes.add(p.mapping[0].pe)
    assert pes == {1, 2, 3, 4, 6, 12}
    assert space.from_params({**space.params(p), "dense0.pe": 0}).mapping[0].pe == 1  # level 0: fully folded


# ------------------------------------------------------------------------------------------ validation
def test_space_errors_name_the_key():
    cfg = SpaceConfig.model_validate({"family": "cnn1d", "conv_blocks": {"min": 1, "max": 8}}, strict=True)
    with pytest.raises(SpaceError, match=r"space.conv_blocks: up to 8 blocks.*at most 7 pooled blocks fit"):
        SearchSpace(cfg, (2, 128), 11)
    SearchSpace(cfg.model_copy(update={"pooling": ["none"]}), (2, 128), 11)  # no pooling: any depth fits
    with pytest.raises(SpaceError, match=r"space.family: cnn2d needs \(channels, height, width\)"):
        SearchSpace(SpaceConfig(family="cnn2d"), (2, 128), 11)
    with pytest.raises(SpaceError, match=r"space.family: cnn1d needs \(channels, length\)"):
        SearchSpace(SpaceConfig(family="cnn1d"), (16,), 3)
    with pytest.raises(SpaceError, match="input_shape"):
        SearchSpace(SpaceConfig(), (2, 0), 3)
    with pytest.raises(SpaceError, match="n_classes"):
        SearchSpace(SpaceConfig(), (2, 128), 0)
    SearchSpace(SpaceConfig(family="mlp"), (2, 128), 11)  # mlp flattens whatever it gets


@pytest.mark.parametrize(("raw", "loc", "text"), [
    ({"filters": [0, 8]}, ("filters",), ">= 1"),
    ({"kernel": []}, ("kernel",), "at least one choice"),
    ({"conv_blocks": -1}, ("conv_blocks",), ">= 0"),
    ({"dropout": [0.0, 1.0]}, ("dropout",), r"\[0, 1\)"),
    ({"pooling": []}, ("pooling",), "at least one choice"),
    ({"precision": {"weight_bits": [0, 4]}}, ("precision", "weight_bits"), r"in \[1, 32\]"),
    ({"mapping": {"folding": "search"}}, ("mapping",), "needs kind finn"),
    ({"mapping": {"kind": "hls4ml", "reuse_factor": [1, 2]}}, ("mapping",), "only searched with"),
])
def test_config_errors_name_the_field(raw, loc, text):
    with pytest.raises(ValidationError) as info:
        SpaceConfig.model_validate(raw, strict=True)
    err = info.value.errors()[0]
    assert tuple(err["loc"][:len(loc)]) == loc
    assert re.search(text, err["msg"])


# ------------------------------------------------------------------------------------------ task options
def _window_shape(opts):
    """A stand-in for Task.input_shape: an I/Q window of ``size`` samples from ``start`` in a 100-sample trace."""
    start, size = opts["start"], opts["size"]
    if start + size > 100:
        raise ValueError(f"the window {start}+{size} ends past the 100 samples of a trace")
    return (2, size) if opts.get("layout", "flat") == "iq" else (2 * size,)


TASK_OPTIONS = {"start": {"min": 0, "max": 60, "step": 20}, "size": [8, 16, 32], "layout": ["flat"]}


@pytest.mark.parametrize(("family", "mapping"), [("mlp", "hls4ml"), ("mlp", "finn"), ("cnn1d", "finn"),
                                                 ("cnn1d", "none")])
def test_task_options_round_trip_in_both_encodings(family, mapping):
    opts = dict(TASK_OPTIONS, layout=["iq"] if family == "cnn1d" else ["flat"])
    space = _space(family, shape=(2, 8) if family == "cnn1d" else (16,), conv_blocks={"min": 1, "max": 2},
                   task_options=opts, shape_of=_window_shape, **MAPPINGS[mapping])
    layout = [s.name for s in space.layout()]
    # the searched options come last in the vector; a single choice (layout) is fixed and not in it
    assert layout[-2:] == ["task.start", "task.size"] and "task.layout" not in layout
    assert [s.encoding for s in space.layout()[-2:]] == ["index", "index"]
    assert set(space.input_shapes) == {_window_shape({**{"layout": opts["layout"][0]}, "start": 0, "size": s})
                                       for s in (8, 16, 32)}
    rng = np.random.default_rng(5)
    points = {space.sample(rng) for _ in range(80)}
    assert {p.task_option_dict()["size"] for p in points} == {8, 16, 32}
    for p in points:
        assert space.from_params(space.params(p)) == p
        assert space.decode(space.encode(p)) == p
        assert Point.from_dict(json.loads(json.dumps(p.to_dict()))) == p
        assert Point.from_dict(yaml.safe_load(yaml.safe_dump(p.to_dict()))) == p
        assert p.to_dict()["task_options"] == {"layout": opts["layout"][0], "start": p.task_option_dict()["start"],
                                                "size": p.task_option_dict()["size"]}
        assert "task[layout=" in p.describe()
        shape = space.input_shape_of(p)
        assert shape == _window_shape(p.task_option_dict())
        if mapping == "hls4ml":  # the first layer's reuse factor divides its weights on this point's input size
            rf = p.mapping[0].reuse_factor
            assert (math.prod(shape) * (p.dense[0].units if p.dense else CLASSES[family])) % rf == 0
    for p in list(points)[:6]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y = _forward(space.build(p, seed=1), space.input_shape_of(p))
        assert y.shape == (4, CLASSES[family])
    # every in-bounds vector decodes to a valid point of its own input size
    bounds = space.bounds()
    for _ in range(20):
        vec = [int(rng.integers(lo, hi + 1)) for lo, hi in bounds]
        p = space.decode(vec)
        assert space.decode(space.encode(p)) == p and space.input_shape_of(p) == _window_shape(p.task_option_dict())


def test_task_options_in_define_by_run_and_size():
    space = _space("mlp", task_options={"start": [0, 50], "size": [8, 16]}, dense_layers=[0, 1], dense_units=[4],
                   precision={"weight_bits": [2], "act_bits": [4]},
                   mapping={"kind": "hls4ml", "folding": "search", "reuse_factor": [1, 3]}, shape_of=_window_shape)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()

    def objective(trial):
        p = space.suggest(trial)
        assert list(trial.params)[:2] == ["task.start", "task.size"]  # asked first: they fix the input shape
        assert space.from_params(trial.params) == p
        seen.add(p.task_options)
        return 0.0

    study.optimize(objective, n_trials=25)
    assert len(seen) == 4
    dists = {}
    for t in study.trials:
        for k, d in t.distributions.items():
            assert dists.setdefault(k, d) == d, k
    assert dists["task.start"] == optuna.distributions.IntDistribution(0, 50, step=50)
    # the count is exact over the four input sizes (a reuse factor's effective value depends on the layer size)
    assert space.size() == len(_enumerate(space))


def test_task_option_errors_name_the_key():
    cfg = SpaceConfig.model_validate({"family": "mlp", "task_options": {"start": [0, 90], "size": [8, 16]}},
                                     strict=True)
    with pytest.raises(SpaceError, match=r"space.task_options: searching task options needs the task's input shape"):
        SearchSpace(cfg, (16,), 3)
    with pytest.raises(SpaceError, match=r"space.task_options: start 90, size 16: the window 90\+16 ends past"):
        SearchSpace(cfg, (16,), 3, shape_of=_window_shape)
    cnn = SpaceConfig.model_validate({"family": "cnn1d", "conv_blocks": 3, "task_options": {"size": [4, 16]}},
                                     strict=True)
    with pytest.raises(SpaceError, match=r"space.conv_blocks: up to 3 blocks.*\(4,\).*larger inputs in "
                                         r"space.task_options"):
        SearchSpace(cnn, (2, 16), 3, shape_of=lambda o: (2, o["size"]))
    space = SearchSpace(cfg.model_copy(update={"task_options": {"start": [0, 50], "size": [8, 16]}}), (16,), 3,
                        shape_of=_window_shape)
    p = space.sample(np.random.default_rng(0))
    with pytest.raises(SpaceError, match=r"point.task_options: the point has none, the space searches"):
        space.check(Point(p.family, dense=p.dense, weight_bits=p.weight_bits, act_bits=p.act_bits))
    other = Point(p.family, dense=p.dense, weight_bits=p.weight_bits, act_bits=p.act_bits,
                  task_options=(("start", 20), ("size", 8)))
    with pytest.raises(SpaceError, match=r"point task.start: 20 is not a choice of space.task_options.start"):
        space.check(other)
    with pytest.raises(SpaceError, match=r"point.task_options.size: expected a number"):
        Point("mlp", weight_bits=(4,), task_options=(("size", [8]),))
    with pytest.raises(SpaceError, match=r"point.task_options: expected a mapping"):
        Point.from_dict({"family": "mlp", "weight_bits": [4], "task_options": [8]})
    for raw, text in (({"start": {"min": 9, "max": 1}}, r"max \(1\) is below min \(9\)"),
                      ({"start": []}, "at least one choice"), ({"start": 5}, "valid list")):
        with pytest.raises(ValidationError) as info:
            SpaceConfig.model_validate({"task_options": raw}, strict=True)
        errs = info.value.errors()
        assert all(tuple(e["loc"][:2]) == ("task_options", "start") for e in errs)
        assert any(re.search(text, e["msg"]) for e in errs)
