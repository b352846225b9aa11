"""The named baselines of run.baselines: layer shapes and MACs as seed 000 defines them, the guessed QCNN bit
allocation against its Table II cost columns, and bad names rejected with the key named."""

from __future__ import annotations

import json

import pytest
import torch

import hwnas.nn as hn
from hwnas.config import ConfigError, parse_experiment
from hwnas.cost.metrics import model_metrics
from hwnas.tasks.baselines import NAMED, QCNN_BITS, build_named

from .experiments import tiny_mlp

SHAPE = (2, 1024)
# seed 000, Table II: total MACs; BOPs and weight bits of the QCNNs
TABLE2_MACS = {"vgg10-32f-8b": 3_345_408, "qcnn-32f": 3_345_408, "qcnn-64f": 12_864_512}
TABLE2_QCNN = {"qcnn-32f": (65_900_672, 171_152), "qcnn-64f": (243_566_768, 400_588)}


def _weights_only_bits(model: torch.nn.Module) -> int:
    """Σ weight elements × weight bits (the seed's W_bits; hwnas's also counts float biases at 32 bits)."""
    total = 0
    for m in model.modules():
        if isinstance(m, (hn.QConv1d, hn.QLinear)):
            total += m.weight.numel() * int(m.weight_quantizer.element_bits().max())
    return total


@pytest.mark.parametrize("name", sorted(TABLE2_MACS))
def test_table2_mac_counts(name):
    assert model_metrics(build_named(name, SHAPE, 24), SHAPE).macs == TABLE2_MACS[name]


def test_vgg10_layer_shapes_and_output():
    model = build_named("vgg10-32f-8b", SHAPE, 24).eval()
    convs = [m for m in model.modules() if isinstance(m, hn.QConv1d)]
    dense = [m for m in model.modules() if isinstance(m, hn.QLinear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0]) for c in convs] == [(2, 32, 3)] + [(32, 32, 3)] * 6
    assert [(d.in_features, d.out_features) for d in dense] == [(256, 128), (128, 128), (128, 24)]
    assert model(torch.zeros(3, *SHAPE)).shape == (3, 24)
    float_model = build_named("vgg10-float", SHAPE, 24)
    assert model_metrics(float_model, SHAPE).macs == 12_864_512  # 64 filters
    assert all(m.weight_quantizer is None for m in float_model.modules() if isinstance(m, hn.QConv1d))


@pytest.mark.parametrize("name", sorted(TABLE2_QCNN))
def test_qcnn_guess_lands_on_table2_costs(name):
    model = build_named(name, SHAPE, 24)
    m = model_metrics(model, SHAPE)
    bops, wbits = TABLE2_QCNN[name]
    assert abs(m.bops / bops - 1) < 0.01
    assert abs(_weights_only_bits(model) / wbits - 1) < 0.01
    layers = [x for x in model.modules() if isinstance(x, (hn.QConv1d, hn.QLinear))]
    first_w = int(layers[0].weight_quantizer.element_bits().max())
    assert first_w == QCNN_BITS["conv1"][0] and int(layers[-1].weight_quantizer.element_bits().max()) == \
        QCNN_BITS["output"][0]


def test_unknown_or_unfitting_baseline_is_named():
    with pytest.raises(ValueError, match="unknown baseline 'vgg11'"):
        build_named("vgg11", SHAPE, 24)
    with pytest.raises(ValueError, match="input_shape"):
        build_named("qcnn-32f", (2, 100), 24)
    assert set(TABLE2_MACS) < set(NAMED)


def test_run_baselines_config_names_the_key():
    with pytest.raises(ConfigError, match=r"run\.baselines.*unknown baseline 'vgg11'"):
        parse_experiment(tiny_mlp(extra="run: {baselines: [vgg11]}"))
    with pytest.raises(ConfigError, match=r"run\.baselines.*twice"):
        parse_experiment(tiny_mlp(extra="run: {baselines: [qcnn-32f, qcnn-32f]}"))
    assert parse_experiment(tiny_mlp(extra="run: {baselines: [qcnn-32f]}")).run.baselines == ["qcnn-32f"]


def test_synthesis_skips_a_model_above_synth_max_macs_with_the_reason():
    from hwnas.pipeline import synth_too_large

    model = build_named("mlp-32-16-8b", (800,), 2).eval()  # SNAC-Pack's qubit baseline: 26,144 MACs
    model(torch.zeros(1, 800))
    exp = parse_experiment(tiny_mlp())
    assert exp.run.synth_max_macs == 20_000
    reason = synth_too_large(exp, model, (800,))
    assert reason is not None and " nonzero MACs > run.synth_max_macs 20,000: " in reason
    assert 20_000 < int(reason.split()[0].replace(",", "")) <= 26_144  # weights rounding to 0 are free
    assert synth_too_large(parse_experiment(tiny_mlp(extra="run: {synth_max_macs: null}")), model, (800,)) is None
    assert synth_too_large(exp, build_named("mlp-32-16-8b", (64,), 10).eval(), (64,)) is None  # 2,720 MACs


def test_baselines_stage_on_a_small_task_trains_verifies_and_says_why_it_did_not_synthesize(tmp_path):
    from hwnas.cli import main

    path = tmp_path / "exp.yaml"
    path.write_text(tiny_mlp(extra="run: {baselines: [mlp-32-16-8b], verify: [qonnx], verify_samples: 30, "
                                   "synth: auto, synth_max_macs: 100}"))
    assert main(["run", str(path), "--stages", "baselines", "--quiet"]) == 0
    rec = json.loads((tmp_path / "out" / "baselines" / "mlp-32-16-8b.json").read_text())
    assert rec["epochs"] == 1 and 0 < rec["metrics"]["test_accuracy"] <= 1 and rec["estimate"]["rows"]
    assert rec["accuracy"]["samples"] == 30 and rec["accuracy"]["qonnx"] == rec["accuracy"]["torch"]
    # Yosys absent: the reason; present: the model is above run.synth_max_macs
    assert "Yosys is not installed" in rec["synthesis"] or " nonzero MACs > run.synth_max_macs 100" in rec["synthesis"]


def test_a_baseline_that_does_not_fit_the_task_is_one_clear_error_and_writes_nothing(tmp_path, capsys):
    from hwnas.cli import main

    path = tmp_path / "exp.yaml"
    path.write_text(tiny_mlp(extra="run: {baselines: [qcnn-32f]}"))  # a (2, L) AMC model on 64 digits features
    assert main(["run", str(path), "--stages", "baselines", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "run.baselines: 'qcnn-32f' does not fit task 'digits'" in err and "input_shape" in err
    assert not (tmp_path / "out" / "baselines" / "qcnn-32f.json").exists()
