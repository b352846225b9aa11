"""Warm start (search.warm_start: closest): shape keys, the parent rule, weight transfer, a search that uses it."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch

from hwnas.config import ConfigError, hash_payload, load_experiment, parse_experiment
from hwnas.export import load_model, save_model
from hwnas.quant import calibrate
from hwnas.quant.fixed_quantizer import FixedPointQuantizer
from hwnas.search.inherit import ParentCandidate, choose_parent, inherit, shape_key, weight_state
from hwnas.search.objective import TrialContext
from hwnas.search.run import run_search

from .test_search import TINY, complete, write

ONE_SHAPE = TINY.replace("dense_layers: {min: 0, max: 2}", "dense_layers: {min: 1, max: 1}").replace(
    "dense_units: [8, 16, 32]", "dense_units: [16]")


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> TrialContext:
    folder = tmp_path_factory.mktemp("warm")
    return TrialContext.create(load_experiment(write(folder, TINY)), save_models=False)


def point_of(ctx: TrialContext, layers: int, units: int, bits: int, act: int):
    """An MLP point: ``layers`` hidden layers of choice ``units``, every weight at ``bits``, activations ``act``."""
    names = [s.name for s in ctx.space.layout()]
    vec = [0] * len(names)
    for j, name in enumerate(names):
        if name == "dense_layers":
            vec[j] = layers
        elif name.endswith(".units"):
            vec[j] = units
        elif name.endswith("weight_bits"):
            vec[j] = bits
        elif name.endswith("act_bits"):
            vec[j] = act
    return ctx.space.decode(vec)


def test_shape_key_follows_tensor_shapes_not_bit_widths(ctx):
    a = ctx.space.build(point_of(ctx, 1, 1, 6, 6), seed=0)
    b = ctx.space.build(point_of(ctx, 1, 1, 2, 3), seed=1)
    wider = ctx.space.build(point_of(ctx, 1, 2, 6, 6), seed=0)
    deeper = ctx.space.build(point_of(ctx, 2, 1, 6, 6), seed=0)
    assert shape_key(a) == shape_key(b)
    assert len({shape_key(a), shape_key(wider), shape_key(deeper)}) == 3
    assert not any(".weight_quantizer." in k or ".input_quantizer." in k for k in weight_state(a))
    assert {"0.weight", "0.bias", "2.weight", "2.bias"} <= set(weight_state(a))


def test_choose_parent_takes_the_closest_vector_then_the_better_score_then_the_lower_number():
    def cand(number, vector, key="k", score=0.5):
        return ParentCandidate(number, tuple(vector), key, f"/ckpt/{number}", score)

    pool = [cand(0, (1, 4, 4), score=0.9), cand(1, (1, 6, 6), score=0.2), cand(2, (1, 5, 6), score=0.3),
            cand(3, (1, 6, 5), score=0.3), cand(4, (1, 6, 6), key="other", score=1.0)]
    assert choose_parent(pool, "k", (1, 6, 6)).number == 1  # distance 0 beats any score
    assert choose_parent(pool, "k", (1, 5, 5)).number == 2  # 2 and 3 are one step away, equal score: lower number
    assert choose_parent(pool, "k", (1, 4, 5)).number == 0  # one step: 0 (0.9) before 2 (two steps)
    assert choose_parent(pool, "other", (1, 2, 2)).number == 4
    assert choose_parent(pool, "none", (1, 6, 6)) is None
    assert choose_parent([], "k", (1, 6, 6)) is None


def test_inherit_copies_weights_keeps_the_child_bits_and_recalibrates_its_ranges(ctx, tmp_path):
    x = ctx.data.train.x
    parent = ctx.space.build(point_of(ctx, 1, 1, 6, 6), seed=0)
    with torch.no_grad():  # a parent whose hidden activations are far smaller than a fresh model's
        parent[0].weight.mul_(0.01)
        parent[0].bias.zero_()
    calibrate(parent, x[:256])
    ckpt = save_model(parent, tmp_path / "parent.pt", (64,))
    child = ctx.space.build(point_of(ctx, 1, 1, 3, 3), seed=5)
    act = child[2].input_quantizer
    assert isinstance(act, FixedPointQuantizer)
    child(x[:64])  # a fresh model sets its activation range from its own (larger) activations
    fresh_i = act.i.clone()
    inherit(child, ckpt, x[:512])
    for name, tensor in weight_state(parent).items():
        assert torch.equal(weight_state(child)[name], tensor), name
    # the child's own widths: 3-bit weights and activations, not the parent's 6
    for q in (child[0].weight_quantizer, child[2].weight_quantizer, act):
        k, i, f = q.kif()
        assert torch.all(k + i + f <= 3), q.label
    # its activation range comes from the inherited weights (smaller), not from its random initialization
    assert torch.all(act.i < fresh_i)
    settled = act.i.clone()
    calibrate(child, x[:512])
    assert torch.equal(act.i, settled)


def test_inherit_refuses_a_parent_of_other_shapes(ctx, tmp_path):
    parent = ctx.space.build(point_of(ctx, 1, 2, 6, 6), seed=0)
    ckpt = save_model(parent, tmp_path / "wide.pt", (64,))
    child = ctx.space.build(point_of(ctx, 1, 1, 6, 6), seed=0)
    before = {k: v.clone() for k, v in weight_state(child).items()}
    with pytest.raises(ValueError, match=r"warm start from .*wide\.pt.*0\.weight"):
        inherit(child, ckpt, ctx.data.train.x[:64])
    assert all(torch.equal(before[k], v) for k, v in weight_state(child).items())


def test_warm_started_search_records_each_parent_and_is_deterministic(tmp_path):
    text = ONE_SHAPE.replace("search: {strategy: nsga2, n_trials: 5, options: {population_size: 4}}",
                             "search: {strategy: random, n_trials: 4, warm_start: closest}")
    runs = []
    for k in range(2):
        folder = tmp_path / str(k)
        folder.mkdir()
        exp = load_experiment(write(folder, text))
        study = run_search(exp, progress=False).study
        trials = complete(study)
        assert len(trials) == 4
        assert trials[0].user_attrs["warm_start"] is None  # nothing finished before the first trial
        keys = {t.user_attrs["shape_key"] for t in trials}
        assert len(keys) == 1  # one hidden layer of 16 units: every model has the same shapes
        for t in trials[1:]:
            earlier = [ParentCandidate(e.number, tuple(e.user_attrs["vector"]), e.user_attrs["shape_key"],
                                       str(exp.output_dir() / e.user_attrs["checkpoint"]),
                                       e.user_attrs["metrics"]["accuracy"])
                       for e in trials if e.number < t.number]
            expected = choose_parent(earlier, t.user_attrs["shape_key"], t.user_attrs["vector"])
            assert t.user_attrs["warm_start"] == expected.number
            assert load_model(exp.output_dir() / t.user_attrs["checkpoint"]).metadata["warm_start"] == expected.number
        runs.append([(t.params, t.values, t.user_attrs["warm_start"]) for t in study.trials])
    assert runs[0] == runs[1]


def test_warm_start_is_validated_and_left_out_of_the_hash_at_none(tmp_path):
    with pytest.raises(ConfigError, match=r"search\.warm_start"):
        parse_experiment(TINY.replace("search: {strategy: nsga2,", "search: {warm_start: parent, strategy: nsga2,"))
    plain = parse_experiment(TINY)
    none = parse_experiment(TINY.replace("search: {strategy: nsga2,", "search: {warm_start: none, strategy: nsga2,"))
    warm = parse_experiment(TINY.replace("search: {strategy: nsga2,", "search: {warm_start: closest, strategy: nsga2,"))
    assert hash_payload(plain) == hash_payload(none) != hash_payload(warm)
    assert "warm_start" not in hash_payload(none)["search"]


def test_trials_without_saved_models_train_from_scratch(tmp_path):
    exp = load_experiment(write(tmp_path, ONE_SHAPE.replace(
        "search: {strategy: nsga2, n_trials: 5, options: {population_size: 4}}",
        "search: {strategy: random, n_trials: 2, warm_start: closest}")))
    ctx = TrialContext.create(exp, output=Path(tmp_path) / "out", save_models=False)
    from hwnas.search.objective import make_objective

    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(make_objective(ctx), n_trials=2)
    assert [t.user_attrs["warm_start"] for t in study.trials] == [None, None]
