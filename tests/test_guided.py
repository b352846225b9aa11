"""Parts of the predictor-guided samplers that need no training: the stratified bootstrap, point features."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from hwnas.search.guided import point_features, stratified_design
from hwnas.space.point import ConvBlock, DenseLayer, Point


def test_stratified_design_covers_every_value_in_equal_shares():
    bounds = [(1, 3), (0, 1), (2, 8), (5, 5)]
    rows = stratified_design(bounds, 6, np.random.default_rng([0, 2]))
    assert rows.shape == (6, 4)
    for j, (lo, hi) in enumerate(bounds):
        counts = Counter(int(v) for v in rows[:, j])
        assert set(counts) <= set(range(lo, hi + 1))
        n = hi - lo + 1
        if n <= 6:  # every value appears floor(6 / n) or ceil(6 / n) times
            assert set(counts) == set(range(lo, hi + 1))
            assert {c for c in counts.values()} <= {6 // n, -(-6 // n)}
        # one row per stratum: the k-th smallest value lies in stratum k's value range
        for k, v in enumerate(sorted(int(v) - lo for v in rows[:, j])):
            assert k * n // 6 <= v <= -(-(k + 1) * n // 6) - 1
    again = stratified_design(bounds, 6, np.random.default_rng([0, 2]))
    assert (rows == again).all()
    with pytest.raises(ValueError, match="rows"):
        stratified_design(bounds, 0, np.random.default_rng(0))


def test_stratified_design_of_random_ranges_stays_in_bounds():
    rng = np.random.default_rng(5)
    for _ in range(50):
        bounds = [(int(lo), int(lo + w)) for lo, w in zip(rng.integers(0, 5, 6), rng.integers(0, 9, 6), strict=True)]
        rows = stratified_design(bounds, int(rng.integers(1, 20)), rng)
        for j, (lo, hi) in enumerate(bounds):
            assert rows[:, j].min() >= lo and rows[:, j].max() <= hi


def _point(blocks: int, dense: int, w: tuple[int, ...], a: tuple[int, ...]) -> Point:
    return Point(family="cnn1d", conv=tuple(ConvBlock(filters=16, kernel=3) for _ in range(blocks)),
                 dense=tuple(DenseLayer(units=32) for _ in range(dense)), weight_bits=w, act_bits=a)


def test_point_features_read_only_the_layers_a_point_has():
    one = point_features(_point(1, 0, (2, 8), (6,)))
    three = point_features(_point(3, 1, (4, 5, 6, 7, 8), (3, 4, 5, 6)))
    assert len(one) == len(three)
    # depth, then mean log2 filters / units / kernel
    assert one[:5] == [1.0, 0.0, 4.0, 0.0, pytest.approx(np.log2(3))]
    assert three[:4] == [3.0, 1.0, 4.0, 5.0]
    # weight bits min, mean, first, last; activation bits min, mean: of the existing layers only
    assert one[-6:] == [2.0, 5.0, 2.0, 8.0, 6.0, 6.0]
    assert three[-6:] == [4.0, 6.0, 4.0, 8.0, 3.0, 4.5]
    learned = point_features(Point(family="mlp", dense=(DenseLayer(units=8),), learned=True))
    assert len(learned) == len(one) and learned[-6:] == [0.0] * 6




@pytest.fixture(scope="module")
def sampler(tmp_path_factory):
    from hwnas.config import parse_experiment
    from hwnas.search.guided import GuidedSampler
    from hwnas.search.objective import TrialContext
    from tests.test_search import MONAS

    exp = parse_experiment(MONAS, source="<monas>")
    ctx = TrialContext.create(exp, output=tmp_path_factory.mktemp("monas"), save_models=False)
    return GuidedSampler(ctx, "monas_lq", exp.search.options, seed=exp.seed)


def test_front_neighbours_take_the_cheapest_moves_of_every_front_point_first(sampler):
    from hwnas.search.guided import _Trained

    layout = sampler.layout
    bits = [j for j, s in enumerate(layout) if s.name.endswith(("weight_bits", "act_bits"))]
    full = sampler.canonical([s.high for s in layout])  # 2 blocks, 1 dense layer, every bit-width 8
    mid = sampler.canonical([s.high if j not in bits else 5 for j, s in enumerate(layout)])
    worse = sampler.canonical([s.low if j not in bits else 6 for j, s in enumerate(layout)])
    data = [_Trained(0, full, {"accuracy": 0.9, "bops": 100.0}, []),
            _Trained(1, mid, {"accuracy": 0.8, "bops": 40.0}, []),
            _Trained(2, worse, {"accuracy": 0.5, "bops": 50.0}, [])]  # dominated by mid: no neighbours
    near = sampler.front_neighbours(data, 1000)  # every distinct move: far fewer than 1000
    assert 20 < len(near) < 1000 and len(near) == len(set(near))
    assert not {d.vector for d in data} & set(near)
    assert all(sampler.canonical(v) == v for v in near)
    # turns: the most accurate front point's cheapest move, then the next front point's
    assert near[0] == sampler.canonical([v - 1 if j in bits else v for j, v in enumerate(full)])
    assert near[1] == sampler.canonical([v - 1 if j in bits else v for j, v in enumerate(mid)])
    assert near[2] == sampler.canonical([v - 2 if j in bits else v for j, v in enumerate(full)])
    # every neighbour is one move from a front point, never from the dominated one
    def moved(a, b):
        diff = [j for j in range(len(a)) if a[j] != b[j]]
        return diff and (set(diff) <= set(bits) or len(diff) <= 4)  # one slot (+ slots it (de)activates)
    assert all(moved(v, full) or moved(v, mid) for v in near)
    assert sampler.front_neighbours(data, 0) == []
    assert sampler.front_neighbours(data, 5) == near[:5]
    # an infeasible trained point is no front point
    bad = [_Trained(0, full, {"accuracy": 0.9, "bops": 100.0}, [1.0])]
    assert sampler.front_neighbours(bad, 10) == []


@pytest.mark.parametrize("features", ["vector", "summary"])
def test_gp_accuracy_with_a_log_bops_trend_reverts_to_the_accuracy_typical_of_the_cost(sampler, features):
    from hwnas.search.guided import _Trained

    vecs = list(dict.fromkeys(sampler._random_vector(i) for i in range(60)))[:11]
    bops = 2.0 ** np.arange(10, 20)
    data = [_Trained(i, v, {"accuracy": 0.1 + 0.03 * np.log2(b), "bops": float(b)}, [])
            for i, (v, b) in enumerate(zip(vecs[:10], bops, strict=True))]
    cheap = vecs[10]  # priced cheaper than anything trained: 2^8 BOPs, on the line 0.1 + 0.03 * 8 = 0.34
    saved = sampler.options
    try:
        means = {}
        for trend in ("none", "log_bops"):
            sampler.options = saved.model_copy(update={"accuracy_trend": trend, "accuracy_features": features})
            pool = {cheap: {"accuracy": 0.0, "bops": 2.0**8}}
            sampler._gp_accuracy(data, pool, 0.0)
            means[trend] = pool[cheap]["accuracy_mean"]
            assert pool[cheap]["accuracy"] == means[trend] and pool[cheap]["accuracy_molp"] == 0.0
    finally:
        sampler.options = saved
    assert means["log_bops"] == pytest.approx(0.34, abs=0.03)
    assert means["none"] > 0.39  # without the trend it heads back towards the trained mean (0.535)
