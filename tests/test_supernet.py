"""The weight-sharing supernet (issue 27): shared banks, exact extraction, resumable training, the strategy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from hwnas.config import ConfigError, load_experiment
from hwnas.space import SearchSpace
from hwnas.space.spec import SpaceConfig
from hwnas.supernet import Supernet, SupernetError, SupernetTrainConfig, check_space, train_supernet
from hwnas.supernet.search import crowding_order
from hwnas.supernet.training import load_supernet

CNN = {"family": "cnn1d", "conv_blocks": [1, 2], "filters": [4, 8], "kernel": [3, 5], "pooling": ["max"],
       "batch_norm": [True], "dense_layers": [0, 1], "dense_units": [8, 16],
       "precision": {"weight_bits": [3, 8], "act_bits": [4, 8]}}


def space_of(overrides: dict | None = None, shape: tuple[int, ...] = (2, 16), classes: int = 3) -> SearchSpace:
    return SearchSpace(SpaceConfig.model_validate({**CNN, **(overrides or {})}), shape, classes)


def data(n: int = 96, shape: tuple[int, ...] = (2, 16), classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g)
    y = (x.flatten(1)[:, :classes].argmax(1)).long()  # a learnable rule
    return x, y


def test_subnet_weights_are_slices_of_the_banks_and_gradients_reach_them():
    sn = Supernet(space_of({"kernel": [3]}), seed=0)  # one kernel: no transform, plain views
    point = sn.smallest
    sub = sn.subnet(point)
    storages = {b.untyped_storage().data_ptr() for b in sn.banks.values()}
    for name, w in sub.weights().items():  # views into a bank's memory, not copies
        assert w.untyped_storage().data_ptr() in storages, name
    x, y = data()
    before = {k: v.detach().clone() for k, v in sn.banks.items()}
    opt = torch.optim.SGD(sn.parameters(), lr=0.5)
    torch.nn.functional.cross_entropy(sub(x), y).backward()
    grads = {k: v.grad for k, v in sn.banks.items()}
    # the smallest sub-net (4 filters, kernel 3, one block, no dense layer) only touches the leading slices
    assert grads["conv0_w"][:4].abs().sum() > 0 and grads["conv0_w"][4:].abs().sum() == 0
    assert grads["conv1_w"] is None or grads["conv1_w"].abs().sum() == 0
    opt.step()
    changed = {k for k, v in sn.banks.items() if not torch.equal(v.detach(), before[k])}
    assert "conv0_w" in changed and "conv1_w" not in changed
    assert torch.equal(sn.banks["conv0_w"][4:], before["conv0_w"][4:])


def test_largest_subnet_is_the_plain_model_with_the_banks_as_weights():
    space = space_of()
    sn = Supernet(space, seed=1)
    largest = space.extreme(True)
    plain = space.build(largest, seed=5)
    names = space.module_names(largest)
    bank_of = {f"{names['conv0']}.weight": "conv0_w", f"{names['conv0']}.bias": "conv0_b",
               f"{names['conv0']}.bn.weight": "conv0_bn_w", f"{names['conv0']}.bn.bias": "conv0_bn_b",
               f"{names['conv1']}.weight": "conv1_w", f"{names['conv1']}.bias": "conv1_b",
               f"{names['conv1']}.bn.weight": "conv1_bn_w", f"{names['conv1']}.bn.bias": "conv1_bn_b",
               f"{names['dense0']}.weight": "dense0_w_c2", f"{names['dense0']}.bias": "dense0_b",
               f"{names['classifier']}.weight": "classifier_w_d0", f"{names['classifier']}.bias": "classifier_b"}
    params = dict(plain.named_parameters())
    assert set(params) == set(bank_of)
    with torch.no_grad():
        for name, bank in bank_of.items():
            assert params[name].shape == sn.banks[bank].shape, name
            params[name].copy_(sn.banks[bank])
    x, _ = data(64)
    sub = sn.subnet(largest)
    sub.calibrate(x[:32])
    sub.eval()
    from hwnas.quant import calibrate

    for m in plain.modules():  # the same BatchNorm re-measurement as SubNet.calibrate
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    plain.train()
    with torch.no_grad():
        plain(x[:32])
    calibrate(plain, [x[:32]])
    plain.eval()
    with torch.no_grad():
        assert torch.equal(sub(x), plain(x))


@pytest.mark.parametrize("family", ["cnn1d", "cnn2d", "mlp"])
def test_extraction_preserves_outputs_exactly(family):
    over = {"family": family}
    shape = {"cnn1d": (2, 16), "cnn2d": (1, 8, 8), "mlp": (12,)}[family]
    if family == "cnn2d":
        over.update(separable=[True], share_filters=True)
    if family == "mlp":
        over = {"family": "mlp", "dense_layers": [1, 2], "dense_units": [4, 8]}
    space = space_of(over, shape)
    sn = Supernet(space, seed=2)
    x, y = data(64, shape)
    train_supernet(sn, x, y, SupernetTrainConfig(epochs=2, batch_size=32, warmup_epochs=1))
    rng = np.random.default_rng(0)
    for point in [space.sample(rng) for _ in range(3)] + [sn.smallest]:
        sub = sn.subnet(point)
        sub.calibrate(x[:32])
        sub.eval()
        model = sub.extract()
        with torch.no_grad():
            assert torch.equal(sub(x), model(x))
        for name, w in sub.weights().items():  # the standalone copy holds the bank slices, bit for bit
            assert torch.equal(dict(model.named_parameters())[name], w.detach())
        assert not any(p.data_ptr() == b.data_ptr() for p in model.parameters() for b in sn.banks.values())


def test_extracted_subnet_verifies_bit_exact(tmp_path):
    from hwnas.export.verify import verify_model

    space = space_of()
    sn = Supernet(space, seed=3)
    x, _ = data(64)
    model = sn.extract(space.sample(np.random.default_rng(4)), x[:32])
    report = verify_model(model, x[:32], paths=["reference", "qonnx"], output_dir=tmp_path)
    assert report.passed and not report.failures, report.table()


def test_sorting_channels_keeps_the_largest_subnet_and_permutes_optimizer_moments():
    space = space_of({"dense_layers": [1, 2]})
    sn = Supernet(space, seed=4)
    x, y = data(64)
    opt = torch.optim.Adam(sn.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(sn.subnet(sn.largest, fresh=True)(x), y).backward()
        opt.step()
    sub = sn.subnet(sn.largest)
    sub.calibrate(x[:32])
    sub.eval()
    with torch.no_grad():
        before = sub(x)
    w = sn.banks["conv0_w"]
    norms = w.detach().abs().flatten(1).sum(1)
    moment = opt.state[w]["exp_avg"].clone()
    sn.sort_channels(opt)
    order = torch.argsort(norms, descending=True, stable=True)
    assert torch.equal(opt.state[w]["exp_avg"], moment[order])
    assert (sn.banks["conv0_w"].detach().abs().flatten(1).sum(1).diff() <= 0).all()
    sub = sn.subnet(sn.largest)
    sub.calibrate(x[:32])
    sub.eval()
    with torch.no_grad():
        torch.testing.assert_close(sub(x), before, rtol=1e-4, atol=1e-4)


def test_killed_training_resumes_to_the_same_banks(tmp_path):
    space = space_of()
    x, y = data(64)
    config = SupernetTrainConfig(epochs=3, batch_size=32, warmup_epochs=1, random_subnets=1, seed=7)
    whole = Supernet(space, seed=0)
    train_supernet(whole, x, y, config)
    ckpt = tmp_path / "sn.pt"
    first = Supernet(space, seed=0)
    train_supernet(first, x, y, SupernetTrainConfig(**{**config.__dict__, "epochs": 2}), checkpoint=ckpt)
    resumed = Supernet(space, seed=0)
    history = train_supernet(resumed, x, y, config, checkpoint=ckpt, resume=True)
    assert [e.epoch for e in history.epochs] == [1, 2, 3] and history.sorted_at == 1
    for k, v in whole.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    loaded = Supernet(space, seed=9)
    load_supernet(loaded, ckpt)
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in loaded.state_dict().items())
    with pytest.raises(SupernetError, match="other settings"):
        train_supernet(Supernet(space), x, y, SupernetTrainConfig(**{**config.__dict__, "lr": 0.1}), checkpoint=ckpt,
                       resume=True)
    with pytest.raises(SupernetError, match="another search space"):
        train_supernet(Supernet(space_of({"filters": [4, 6]})), x, y, config, checkpoint=ckpt, resume=True)


@pytest.mark.parametrize(("over", "key"), [
    ({"kernel": [2, 3]}, "space.kernel"),
    ({"pooling": ["max", "avg"]}, "space.pooling"),
    ({"separable": [False, True]}, "space.separable"),
    ({"precision": {"mode": "learned"}}, "space.precision.mode"),
    ({"dropout": [0.0, 0.2]}, "space.dropout"),
])
def test_a_space_the_supernet_cannot_share_is_refused_naming_the_key(over, key):
    with pytest.raises(SupernetError, match=key.replace(".", r"\.")):
        check_space(space_of(over))


def test_crowding_order_puts_the_front_and_its_ends_first():
    losses = np.array([[0.0, 3.0], [1.0, 1.0], [3.0, 0.0], [2.0, 2.0], [0.5, 2.5]])
    order = crowding_order(losses)
    assert set(order[:2]) == {0, 2} and order[-1] == 3


EXP = """\
name: sn
seed: 1
output: out
task: {name: digits-image}
space:
  family: cnn2d
  conv_blocks: {min: 1, max: 2}
  filters: [4, 8]
  kernel: [1, 3]
  batch_norm: [true]
  dense_layers: {min: 0, max: 1}
  dense_units: [16, 32]
  precision: {weight_bits: [2, 8], act_bits: [2, 8]}
objectives:
  - {metric: accuracy, direction: maximize}
  - {metric: bops, direction: minimize}
constraints:
  - {metric: luts, max: 2000}
hardware: {target: xc7z020, model: finn}
training: {epochs: 1, lr: 0.01}
search:
  strategy: supernet
  n_trials: 3
  options: {epochs: 4, subnets: 80, eval_samples: 200, predictor_epochs: 150, population_size: 12, generations: 4,
            finetune_epochs: 1}
"""


def test_supernet_strategy_end_to_end_and_resumed_without_retraining(tmp_path):
    from hwnas.search.run import run_search

    path = tmp_path / "exp.yaml"
    path.write_text(EXP)
    exp = load_experiment(path)
    study = run_search(exp, progress=False).study
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == 3
    folder = tmp_path / "out" / "supernet"
    report = json.loads((folder / "report.json").read_text())
    assert report["evaluate"]["subnets"] == 80 and len(report["train"]["epochs"]) == 4
    assert report["predictor"]["kendall_tau"] > 0  # the shared weights rank sub-nets better than chance
    plan = json.loads((folder / "plan.json").read_text())["entries"]
    feasible = [max(e["constraints"]) <= 0 for e in plan]  # the LUT budget splits the candidates
    assert any(feasible) and not all(feasible) and feasible == sorted(feasible, reverse=True)  # feasible first
    for t in trials:
        entry = plan[t.number]
        assert t.user_attrs["vector"] == entry["vector"]
        sn = t.user_attrs["supernet"]
        assert sn["plan_rank"] == t.number and sn["finetune_epochs"] == 1
        if entry["supernet_accuracy"] is not None:  # evaluated in phase 2: the same extraction, the same figure
            assert sn["supernet_accuracy"] == pytest.approx(entry["supernet_accuracy"], abs=0)
        assert Path(tmp_path / "out" / t.user_attrs["checkpoint"]).is_file()
        assert t.user_attrs["metrics"]["bops"] == pytest.approx(entry["metrics"]["bops"])
        assert max(t.user_attrs["constraints"]) <= 0  # measured front sub-nets keep the exact budget
    stamp = (folder / "supernet.pt").stat().st_mtime_ns
    again = run_search(load_experiment(path), progress=False).study  # finished: nothing retrained, nothing re-run
    assert (folder / "supernet.pt").stat().st_mtime_ns == stamp and len(again.trials) == 3


def test_supernet_options_are_checked_against_the_experiment(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(EXP.replace("  - {metric: bops, direction: minimize}", "  - {metric: test_accuracy, direction: "
                                "maximize}"))
    with pytest.raises(ConfigError, match="test_accuracy"):
        load_experiment(path)
    path.write_text(EXP.replace("training: {epochs: 1, lr: 0.01}", "training: {epochs: 1, kfold: 3}"))
    with pytest.raises(ConfigError, match="kfold"):
        load_experiment(path)
    path.write_text(EXP.replace("generations: 4,", "generations: 4, bogus: 1,"))
    with pytest.raises(ConfigError, match="bogus"):
        load_experiment(path)
