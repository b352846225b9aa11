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


def test_stratified_design_crosses_the_joint_columns():
    bounds = [(1, 3), (0, 1), (2, 8), (0, 1)]
    rows = stratified_design(bounds, 6, np.random.default_rng(3), joint=[0, 1])
    assert sorted(map(tuple, rows[:, :2].tolist())) == [(a, b) for a in (1, 2, 3) for b in (0, 1)]
    for j in (2, 3):  # the other columns stay Latin: every value range in equal shares
        n = bounds[j][1] - bounds[j][0] + 1
        assert set(Counter(rows[:, j].tolist()).values()) <= {6 // n, -(-6 // n)}
    rows = stratified_design(bounds, 8, np.random.default_rng(3), joint=[0, 1])
    counts = Counter(map(tuple, rows[:, :2].tolist()))
    assert len(counts) == 6 and sorted(counts.values()) == [1, 1, 1, 1, 2, 2]
    # more combinations than rows: the joint columns stay Latin columns (the same draws as without joint)
    few = stratified_design(bounds, 4, np.random.default_rng(3), joint=[0, 1])
    assert (few == stratified_design(bounds, 4, np.random.default_rng(3))).all()
    # a fixed slot in joint is no combination
    fixed = stratified_design([(2, 2), (0, 1)], 4, np.random.default_rng(0), joint=[0, 1])
    assert (fixed[:, 0] == 2).all() and sorted(fixed[:, 1].tolist()) == [0, 0, 1, 1]


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


def test_factorial_bootstrap_covers_every_depth_combination(sampler):
    assert [sampler.layout[j].name for j in sampler.depth_slots] == ["conv_blocks", "dense_layers"]
    saved = sampler.options
    try:
        sampler.options = saved.model_copy(update={"bootstrap_design": "factorial"})
        sampler._design = None
        rows = [sampler._stratified_vector(sampler.schedule.hpo + i) for i in range(sampler.schedule.warmup)]
    finally:
        sampler.options, sampler._design = saved, None
    depths = Counter((v[sampler.depth_slots[0]], v[sampler.depth_slots[1]]) for v in rows)
    assert set(depths) == {(b, d) for b in (1, 2) for d in (0, 1)}  # 4 combinations in 6 rows
    assert sorted(depths.values()) == [1, 1, 2, 2]
    assert len(set(rows)) == len(rows)


def _gp_data(sampler, n: int = 8):
    from hwnas.search.guided import _Trained

    vecs = list(dict.fromkeys(sampler._random_vector(i) for i in range(80)))
    rng = np.random.default_rng(0)
    data = [_Trained(i, v, {"accuracy": float(rng.uniform(0.3, 0.7)), "bops": float(rng.uniform(1e3, 1e5))}, [])
            for i, v in enumerate(vecs[:n])]
    return data, vecs[n:n + 30]


def test_thompson_draws_are_seeded_joint_posterior_samples(sampler):
    data, cand = _gp_data(sampler)
    saved = sampler.options
    try:
        sampler.options = saved.model_copy(update={"accuracy_acquisition": "thompson"})
        pools = []
        for r in (0, 0, 1):
            pool = {v: {"accuracy": 0.0, "bops": 1e4} for v in [*cand, data[0].vector]}
            sampler._gp_accuracy(data, pool, 1.0, r)
            pools.append(pool)
    finally:
        sampler.options = saved
    first, again, other = pools
    k = sampler.schedule.round_size
    for v, row in first.items():
        assert len(row["accuracy_draws"]) == k
        assert row["accuracy"] == row["accuracy_mean"]  # thompson: no bound applied to the recorded accuracy
        assert row["accuracy_draws"] == again[v]["accuracy_draws"]  # same seed and round: same draws
    assert any(first[v]["accuracy_draws"] != other[v]["accuracy_draws"] for v in cand)  # another round: others
    # at a trained point the posterior is narrow: its draws stay near the mean; away from the data they spread
    at = first[data[0].vector]
    spread = np.std([first[v]["accuracy_draws"][0] - first[v]["accuracy_mean"] for v in cand])
    assert abs(at["accuracy_draws"][0] - at["accuracy_mean"]) <= 3 * at["accuracy_std"] + 1e-9
    assert spread == pytest.approx(np.mean([first[v]["accuracy_std"] for v in cand]), rel=0.6)


def test_thompson_gives_each_training_of_a_round_its_own_draw(sampler):
    from hwnas.search.guided import _Trained

    data, cand = _gp_data(sampler, 4)
    a, b, c = cand[:3]
    row = lambda v, draws, bops=5e3: (v, {"accuracy": 0.5, "bops": bops}, 0.0,  # noqa: E731
                                      {"predicted": {"accuracy": 0.5, "accuracy_draws": draws}, "priced": {}})
    rows = [row(a, [0.95, 0.1]), row(b, [0.1, 0.9]), row(c, [0.5, 0.5])]
    picked = sampler._by_thompson(rows, data, 2)
    assert [p[0] for p in picked] == [a, b]  # a wins draw 0, b wins draw 1
    # a pick joins the front of the next draw at its value in that draw: never chosen twice, and what it
    # dominates there adds nothing
    rows = [row(a, [0.95, 0.95]), row(b, [0.9, 0.9], 2e3), row(c, [0.9, 0.9], 6e3)]
    assert [p[0] for p in sampler._by_thompson(rows, data, 2)] == [a, b]
    rows = [row(a, [0.95, 0.2]), row(c, [0.3, 0.9], 6e3)]  # c is dominated by a in draw 0 only
    assert [p[0] for p in sampler._by_thompson(rows, data, 2)] == [a, c]
    # nothing above the trained front under any draw: no pick (the round then fills by the bound)
    best = [_Trained(9, cand[5], {"accuracy": 0.99, "bops": 1.0}, [])]
    assert sampler._by_thompson([row(a, [0.2, 0.3])], best, 2) == []


def test_thompson_needs_the_gp_accuracy_model():
    from hwnas.config import ConfigError, parse_experiment
    from tests.test_search import MONAS

    text = MONAS.replace("swarm_size: 10}", "swarm_size: 10, accuracy_model: molp, accuracy_acquisition: thompson}")
    with pytest.raises(ConfigError, match=r"search\.options\.accuracy_acquisition.*accuracy_model: gp"):
        parse_experiment(text, source="<t>")
    ok = MONAS.replace("swarm_size: 10}", "swarm_size: 10, accuracy_acquisition: thompson}")
    assert parse_experiment(ok, source="<t>").search.options.accuracy_acquisition == "thompson"


def test_priced_qa_score_measures_the_baseline_once(sampler):
    from hwnas.cost import qa_score
    from hwnas.search.objective import price

    ctx = sampler.ctx
    ctx._baseline_cache = None
    for i in range(3):
        point = ctx.space.decode(list(sampler._random_vector(i)))
        model = ctx.space.build(point, seed=0)
        want = qa_score(model, ctx.input_shape_of(point), baseline=ctx.baseline,
                        baseline_input_shape=tuple(ctx.data.input_shape))
        assert price(point, ctx)["qa_score"] == pytest.approx(want, rel=1e-12)
        assert ctx._baseline_cache is not None and ctx._baseline_cache[0] is ctx.baseline
    first = ctx._baseline_cache[1]
    price(ctx.space.decode(list(sampler._random_vector(9))), ctx)
    assert ctx._baseline_cache[1] is first  # measured once


def _gain(cand_row: np.ndarray, front: np.ndarray, ref: float = 1.1) -> float:
    from hwnas.search.pareto import hypervolume

    r = np.full(2, ref)
    return hypervolume(np.vstack([front, cand_row]), r) - hypervolume(front, r)


def test_expected_gain_matches_monte_carlo_over_the_normal():
    from hwnas.search.guided import _expected_gain

    front = np.array([[0.1, 0.9], [0.3, 0.5], [0.6, 0.2], [0.9, 0.05]])  # (exact cost, loss), scaled
    order = np.argsort(front[:, 0])
    xs, ys = front[order, 0], np.minimum.accumulate(front[order, 1])
    rng = np.random.default_rng(0)
    for x, m, sd in [(0.2, 0.6, 0.1), (0.05, 1.0, 0.3), (0.7, 0.3, 0.05), (0.45, 0.4, 0.0), (1.2, 0.1, 0.1)]:
        want = np.mean([_gain(np.array([[x, loss]]), front) for loss in rng.normal(m, sd, 4000)]) if sd else \
            _gain(np.array([[x, m]]), front)
        got = _expected_gain(x, m, sd, xs, ys, 1.1)
        assert got == pytest.approx(want, abs=3e-3 + 0.03 * want), (x, m, sd)
    assert _expected_gain(0.2, 5.0, 0.0, xs, ys, 1.1) == 0.0  # far worse than the front: nothing
    assert _expected_gain(0.2, 5.0, 2.0, xs, ys, 1.1) > 0.0  # ... unless the doubt reaches the front


def test_expected_improvement_prefers_doubt_that_can_beat_the_front():
    from hwnas.search.guided import expected_improvement_order, improvement_order

    known = np.array([[-0.45, 100.0], [-0.30, 40.0]])  # (−accuracy, BOPs) of trained points
    cand = np.array([[-0.44, 99.0],   # a sure, slightly cheaper copy of the best
                     [-0.40, 120.0]])  # dearer, predicted worse, but very uncertain
    sure = improvement_order(cand, known, 1)
    assert sure == [0]  # on the means only the cheaper copy adds volume
    assert expected_improvement_order(cand, np.array([0.0, 0.0]), 0, known, 1) == [0]
    assert expected_improvement_order(cand, np.array([0.0, 0.15]), 0, known, 1) == [1]
    # a believer batch: the second pick sees the first at its mean; all k come back (fill)
    both = expected_improvement_order(cand, np.array([0.0, 0.15]), 0, known, 2)
    assert both == [1, 0]
    with pytest.raises(ValueError, match="two objectives"):
        expected_improvement_order(np.zeros((2, 3)), np.zeros(2), 0, np.zeros((1, 3)), 1)


def test_upper_bootstrap_bits_stay_in_the_upper_half(sampler):
    saved = sampler.options
    bits = [j for j, s in enumerate(sampler.layout) if s.name.endswith(("weight_bits", "act_bits"))]
    rows = {}
    try:
        for mode in ("full", "upper"):
            sampler.options = saved.model_copy(update={"bootstrap_design": "factorial", "bootstrap_bits": mode})
            sampler._design = None
            rows[mode] = [sampler._stratified_vector(sampler.schedule.hpo + i) for i in range(sampler.schedule.warmup)]
    finally:
        sampler.options, sampler._design = saved, None
    def lowest(vectors):  # the lowest bit-width of the layers the points have (not the filler of absent ones)
        points = [sampler.ctx.space.decode(list(v)) for v in vectors]
        return min(min(*p.weight_bits, *p.act_bits) for p in points)

    assert bits and lowest(rows["full"]) < 5  # 2..8 over six rows: some layer draws from the lower half
    assert lowest(rows["upper"]) >= 5  # the upper half of 2..8
    # the depths are crossed as before
    depth = sampler.depth_slots
    assert {(v[depth[0]], v[depth[1]]) for v in rows["upper"]} == {(b, d) for b in (1, 2) for d in (0, 1)}


def _stage1_study(sampler, accuracies):
    """An in-memory study whose first trials are the stage-1 backbones, one per filter choice, at ``accuracies``."""
    import optuna
    from optuna.trial import create_trial

    from hwnas.search.objective import price

    study = optuna.create_study(directions=["maximize", "minimize"])
    for n, acc in enumerate(accuracies):
        vec = sampler.backbone(n)
        metrics = {**price(sampler.ctx.space.decode(list(vec)), sampler.ctx), "accuracy": acc}
        study.add_trial(create_trial(
            params={name: int(v) for name, v in zip(sampler.names, vec, strict=True)}, distributions=sampler._dists,
            values=[acc, metrics["bops"]], user_attrs={"vector": list(vec), "metrics": metrics, "constraints": []}))
    return study


@pytest.mark.parametrize(("keep", "accuracies", "want"), [
    ("widest", (0.50, 0.49), (1, 1)),  # within 0.02: the wider backbone (filter choice 1) is fixed
    ("close", (0.50, 0.49), (0, 1)),   # within 0.02: both widths stay search values
    ("close", (0.50, 0.40), (0, 0)),   # the wide backbone is clearly worse: dropped
    ("widest", (0.40, 0.50), (1, 1)),
])
def test_stage1_keeps_the_widest_or_every_close_width(sampler, keep, accuracies, want):
    saved = sampler.options
    try:
        sampler.options = saved.model_copy(update={"hpo_keep": keep})
        sampler._fixed = None
        study = _stage1_study(sampler, accuracies)
        assert sampler.schedule.hpo == 2 and len(sampler.filter_slots) == 1
        (slot,) = sampler.filter_slots
        assert sampler._filter_choice(study) == {slot: want}
        # every later vector is clipped into the kept range; the swarm and the neighbours see the same range
        for choice in (0, 1):
            vec = list(sampler.backbone(choice))
            assert sampler.canonical(vec)[slot] == min(max(choice, want[0]), want[1])
    finally:
        sampler.options, sampler._fixed = saved, None


def test_canonical_vectors_stay_within_stage_one_filter_range(tmp_path):
    """Per-layer filters + stage 1: a block the depth does not reach keeps its filter slot in the fixed range."""
    from hwnas.config import parse_experiment
    from hwnas.search.guided import GuidedSampler
    from hwnas.search.objective import TrialContext

    exp = parse_experiment(f"""
name: canon
output: {tmp_path}
task: {{name: digits-image}}
space: {{family: cnn2d, conv_blocks: {{min: 1, max: 2}}, filters: [4, 8], kernel: [3], dense_layers: 0,
        precision: {{weight_bits: [4, 8], act_bits: [4, 8]}}}}
objectives: [{{metric: accuracy, direction: maximize}}, {{metric: bops, direction: minimize}}]
hardware: {{model: none}}
search: {{strategy: monas_lq, n_trials: 40}}
""", source="<test>")
    ctx = TrialContext.create(exp)
    sampler = GuidedSampler(ctx, "monas_lq", exp.search.options, exp.seed)
    layout = [s.name for s in ctx.space.layout()]
    slots = [layout.index("conv0.filters"), layout.index("conv1.filters")]
    sampler._fixed = {j: (1, 1) for j in slots}  # stage 1 kept 8 filters
    vec = [1] + [0] * (len(layout) - 1)  # one block: conv1 is padding
    canon = sampler.canonical(vec)
    assert all(canon[j] == 1 for j in slots)  # inside the swarm's bounds, padding included
    assert ctx.space.decode(list(canon)) == ctx.space.decode(list(sampler.canonical(canon)))
    assert ctx.space.decode(list(canon)).conv[0].filters == 8
