"""Neural receiver of seed 002 (hwnas.tasks.ofdm: receiver, train, study): model, training, PTQ, export, study CLI."""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import pytest
import torch

from hwnas.quant import Quantizer
from hwnas.tasks.ofdm.receiver import DeepRx, deeprx
from hwnas.tasks.registry import TaskError

TINY = {"channels": 8, "blocks": 1}


# ------------------------------------------------------------------------------------ model (no Sionna needed)
def test_deeprx_shape_and_float_layers() -> None:
    model = deeprx("small", **TINY)
    assert isinstance(model, DeepRx) and model.input_shape == (5, 14, 24) and model.bits_per_symbol == 4
    x = torch.randn(3, *model.input_shape)
    assert model(x).shape == (3, 4, 14, 24)  # (B, m, S, F): "same" padding everywhere
    assert not any(isinstance(m, Quantizer) for m in model.modules())  # float receiver: no quantizer in any slot
    seed = deeprx("seed")  # Table I: 128 channels, 8 blocks, 3x3, 6 LLR planes (64-QAM)
    assert seed.stem.out_channels == 128 and len(seed.blocks) == 8 and seed.head.out_channels == 6
    assert seed.head.kernel_size == (3, 3)
    # same seed, same initial weights; the global random state is left alone
    state = torch.get_rng_state()
    a, b = deeprx("small", **TINY, seed=3), deeprx("small", **TINY, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    hgq = deeprx("small", **TINY, quant="hgq")
    assert any(isinstance(m, Quantizer) and m.learnable for m in hgq.modules())
    assert hgq(x).shape == (3, 4, 14, 24) and hgq.stem.output_quantizer is not None  # every feature map quantized
    with pytest.raises(TaskError, match="quant"):
        deeprx("small", quant={"weights": {}})
    with pytest.raises(TaskError, match="kernel"):
        deeprx("small", kernel=2)
    from hwnas.tasks import get_task

    with pytest.raises(TaskError, match="hwnas receiver search"):  # an experiment naming it is told where it runs
        get_task("ofdm-receiver")


# ------------------------------------------------------------------------------------ with the link
sionna = pytest.importorskip("sionna")

from hwnas.tasks.ofdm import LinkConfig, OfdmLink  # noqa: E402
from hwnas.tasks.ofdm.train import train_receiver, validate_receiver, validation_set  # noqa: E402
from hwnas.train import TrainError, post_training_quantize  # noqa: E402


@pytest.fixture(scope="module")
def link() -> OfdmLink:
    return OfdmLink("small")


@pytest.fixture(scope="module")
def val(link):
    return validation_set(link, 128, seed=123)


@pytest.fixture(scope="module")
def trained(link, val):
    """A tiny receiver (8 channels, 1 block) trained 150 steps of 16 frames, and its untrained twin."""
    untrained = deeprx(link, **TINY, seed=0).eval()
    model = copy.deepcopy(untrained)
    history = train_receiver(model, link, steps=150, batch_size=16, lr=3e-3, seed=0, val=val, progress=False)
    return untrained, model, history


def test_training_lowers_validation_bce_and_bit_errors(trained, val) -> None:
    untrained, model, history = trained
    before, after = validate_receiver(untrained, val), validate_receiver(model, val)
    assert history.steps == 150 and history.final is not None and history.final.step == 150
    assert after["bce"] < before["bce"] - 0.03  # a real margin: an untrained network sits at ln 2 = 0.693
    assert after["ber"] < before["ber"] - 0.02
    assert after["bmd_rate"] > before["bmd_rate"] and after["bmd_rate"] > 0


def test_same_seed_same_weights_and_exact_resume(link, val, tmp_path) -> None:
    def run(steps: int, ckpt: Path | None = None, resume: bool = False, model=None):
        model = model if model is not None else deeprx(link, **TINY, seed=1)
        h = train_receiver(model, link, steps=steps, batch_size=8, seed=5, val=val, val_every=2, progress=False,
                           checkpoint=ckpt, checkpoint_every=2, resume=resume)
        return model, h

    a, ha = run(6)
    b, hb = run(6)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert ha.records == hb.records
    ckpt = tmp_path / "rx.pt"
    run(4, ckpt)  # "interrupted" after 4 steps
    c, hc = run(6, ckpt, resume=True)  # a fresh model, resumed from the checkpoint
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values(), strict=True))
    assert hc.records == ha.records and hc.steps == 6
    with pytest.raises(TrainError, match="other settings"):
        train_receiver(deeprx(link, **TINY, seed=1), link, steps=6, batch_size=4, seed=5, val=val, val_every=2,
                       progress=False, checkpoint=ckpt, resume=True)


def test_hgq_term_needs_learnable_bits(link, val) -> None:
    hgq = deeprx(link, **TINY, quant="hgq", seed=2)
    h = train_receiver(hgq, link, steps=2, batch_size=4, seed=0, val=val, hgq_beta=1e-6, progress=False)
    assert h.final is not None and h.final.ebops is not None and h.final.ebops > 0
    with pytest.raises(TrainError, match="hgq_beta"):
        train_receiver(deeprx(link, **TINY), link, steps=1, val=val, hgq_beta=1e-6, progress=False)


def test_int8_per_channel_ptq_keeps_llr_signs(trained, val) -> None:
    _, model, _ = trained
    res = post_training_quantize(model, lambda m: validate_receiver(m, val)["bmd_rate"], val.inputs[0],
                                 weight_bits=8, granularity="channel")
    flips = total = 0
    with torch.no_grad():
        for x in val.inputs:
            a, b = model(x)[:, :, val.mask], res.model.eval()(x)[:, :, val.mask]
            flips += int(((a > 0) != (b > 0)).sum())
            total += a.numel()
    assert flips / total < 0.01
    assert abs(res.drop) < 0.01 and res.weight_compression == pytest.approx(4.0)


def test_fixed_point_receiver_verifies_bit_exact() -> None:
    """A fixed-point PTQ receiver (power-of-two scales) on every path that expresses it; scaled-int says why not."""
    from hwnas.export.verify import verify_model
    from hwnas.nn import set_quantizers
    from hwnas.quant import calibrate

    small = OfdmLink(LinkConfig.from_options("small", num_ofdm_symbols=4, pilot_symbols=(1,), n_prb=1))
    x = torch.cat([small.receiver_input(small.sample(8, seed=i, split="train")) for i in range(2)])
    model = deeprx(small, channels=4, blocks=1, seed=0).eval()
    scaled = copy.deepcopy(model)
    set_quantizers(model, weight=dict(kind="fixed", bits=8, granularity="channel", learnable=False),
                   bias=dict(kind="fixed", bits=12, granularity="channel", learnable=False),
                   input=dict(kind="fixed", bits=8, learnable=False, overflow_mode="SAT"))
    calibrate(model, x)
    report = verify_model(model.eval(), x[:8], paths=["reference", "qonnx", "hls4ml"])
    by = {r.path: r for r in report.results}
    assert by["reference"].skipped is None and by["reference"].mismatches == 0
    assert by["qonnx"].skipped is None and by["qonnx"].mismatches == 0, by["qonnx"].skipped
    if by["hls4ml"].skipped is not None:  # only a missing tool may stop it (g++ or the hls4ml package)
        assert "tool missing" in by["hls4ml"].skipped
    else:
        assert by["hls4ml"].mismatches == 0 and by["hls4ml"].error is None
    assert report.passed

    # the seed's scaled-integer PTQ (max-abs scales) has no fixed-point graph: QONNX runs it (its DAG walker, integer
    # outputs), the fixed-point paths say why they cannot (nothing is compiled)
    set_quantizers(scaled, weight=dict(kind="scaled", bits=8, granularity="channel"), bias=None,
                   input=dict(kind="scaled", bits=8))
    set_quantizers(scaled.head, output=dict(kind="scaled", bits=8))
    calibrate(scaled, x)
    report = verify_model(scaled.eval(), x[:8], paths=["reference", "qonnx", "hls4ml"])
    by = {r.path: r for r in report.results}
    assert by["qonnx"].skipped is None and by["qonnx"].mismatches == 0 and report.passed
    assert "not expressible" in by["hls4ml"].skipped and "ScaledIntQuantizer" in by["hls4ml"].skipped
    assert by["reference"].skipped and "ScaledIntQuantizer" in by["reference"].skipped


# ------------------------------------------------------------------------------------ study command
STUDY = ["--steps", "4", "--batch-size", "8", "--channels", "4", "--blocks", "1", "--frames", "8",
         "--eval-batch", "8", "--ebno", "6", "--groups", "medium", "--qat-steps", "2", "--val-frames", "16",
         "--calibration-frames", "8", "--seed", "3", "--quiet"]


@pytest.fixture(scope="module")
def study_a(tmp_path_factory) -> tuple[Path, str]:
    """A tiny study's folder (the search's warm start too) and what the command printed."""
    import contextlib
    import io

    from hwnas.cli import main

    a = tmp_path_factory.mktemp("study") / "a"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["receiver", "study", "--out", str(a), *STUDY]) == 0
    return a, buf.getvalue()


def test_study_command_writes_reproducible_files(study_a, tmp_path, capsys) -> None:
    from hwnas.cli import main

    a, out = study_a
    assert main(["receiver", "study", "--out", str(tmp_path / "b"), *STUDY]) == 0
    assert "index.html" in out and "int4 per-channel better than int4 per-tensor" in out
    b = tmp_path / "b"
    for name in ("curves_medium.csv", "gaps.csv", "sizes.csv", "validation.csv", "training.csv", "qat_training.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    for name in ("bler_medium.png", "index.html", "gaps.md", "sizes.md", "claims.md", "study.json", "float.pt"):
        assert (a / name).stat().st_size > 0, name
    with (a / "curves_medium.csv").open() as fh:
        receivers = [r["receiver"] for r in csv.DictReader(fh)]
    assert receivers == ["float", "fp16", "int8-tensor", "int8-channel", "int4-tensor", "int4-channel",
                         "int8-channel-act8", "qat-int4", "ls-lmmse", "perfect-csi"]
    html = (a / "index.html").read_text()
    assert "data:image/png;base64," in html and "Gaps at BLER" in html
    # a second run into the same folder resumes (loads the float receiver) and writes the same curves
    assert main(["receiver", "study", "--out", str(a), *STUDY]) == 0
    assert (a / "curves_medium.csv").read_bytes() == (b / "curves_medium.csv").read_bytes()
    # a folder holding a file hwnas did not write is refused, and the file is left alone
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main(["receiver", "study", "--out", str(mine), *STUDY]) == 2
    assert (mine / "notes.txt").read_text() == "mine" and len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize(("args", "option"), [
    (["--steps", "-1"], "--steps"),
    (["--steps", "ten"], "--steps"),
    (["--ebno", "10:0:2"], "--ebno"),
    (["--groups", "fast"], "--groups"),
    (["--variants", "int3-channel"], "--variants"),
    (["--preset", "huge"], "--preset"),
    (["--qat-kind", "float"], "--qat-kind"),
    (["--target-bler", "1.5"], "--target-bler"),
    (["--bogus", "1"], "--bogus"),
])
def test_study_bad_options_one_line_exit_2(args, option, tmp_path, capsys) -> None:
    from hwnas.cli import main

    try:
        rc = main(["receiver", "study", "--out", str(tmp_path / "x"), *args])
    except SystemExit as exc:  # argparse's own errors (an unknown option) exit from the parser
        rc = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and option in err[0], err
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------------ search command
SEARCH = ["--trials", "3", "--steps", "2", "--batch-size", "4", "--population", "2", "--select", "2",
          "--weight-bits", "3,8", "--act-bits", "4,8", "--verify-paths", "reference", "--quiet"]


def _trial_rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "trials.csv").open() as fh:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(fh)]


def test_search_warm_start_reproducible_resumable(study_a, tmp_path, capsys, monkeypatch) -> None:
    """Mixed-precision search from the study's float receiver: same seed, same trials; an interrupt resumes."""
    from hwnas.cli import main
    from hwnas.export import load_model
    from hwnas.tasks.ofdm import search as search_mod

    study, _ = study_a
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["receiver", "search", "--study", str(study), "--out", str(a), *SEARCH]) == 0
    rows = _trial_rows(a)
    assert len(rows) == 3 and all(r["state"] == "COMPLETE" for r in rows)
    assert all(r["channels"] == "4" and r["blocks"] == "1" for r in rows)  # the study's receiver, bits searched
    assert all(float(r["bops"]) > 0 and r["bits"].startswith("stem w") for r in rows)
    with (a / "selected.csv").open() as fh:
        selected = list(csv.DictReader(fh))
    assert selected and all(s["verified"] == "reference 0 mismatching" for s in selected)
    with (a / "curves_medium.csv").open() as fh:
        receivers = {r["receiver"] for r in csv.DictReader(fh)}
    assert {"float", "int4-channel", "qat-int4", "ls-lmmse", "perfect-csi"} <= receivers  # the study's, same frames
    assert {f"searched-{s['number']}" for s in selected} <= receivers
    model = load_model(a / selected[0]["model"]).model  # a model file hwnas verify / export read
    assert model(torch.zeros(1, 5, 14, 24)).shape == (1, 4, 14, 24)
    for name in ("front.png", "bler_medium.png", "gaps.md", "search.json", "index.html"):
        assert (a / name).stat().st_size > 0, name

    # an interrupt in the second trial: exit 130, the trial failed; the next run tries its point again first
    real = search_mod.train_receiver
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(search_mod, "train_receiver", interrupted)
    assert main(["receiver", "search", "--study", str(study), "--out", str(b), *SEARCH]) == 130
    monkeypatch.setattr(search_mod, "train_receiver", real)
    assert main(["receiver", "search", "--study", str(study), "--out", str(b), *SEARCH]) == 0
    again = _trial_rows(b)
    assert [r["state"] for r in again] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert again[0] == rows[0]  # same seed, same first trial
    assert again[2]["bits"] == rows[1]["bits"]  # the interrupted point, tried again
    # changed settings in the same folder are refused, naming them; a setting that contradicts the study too
    capsys.readouterr()
    assert main(["receiver", "search", "--study", str(study), "--out", str(a), *SEARCH[:-1], "--steps", "3"]) == 2
    assert main(["receiver", "search", "--study", str(study), "--out", str(tmp_path / "c"), "--seed", "9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "steps" in err[0] and "--seed" in err[1] and not (tmp_path / "c").exists()


@pytest.mark.parametrize(("args", "option"), [
    (["--channels", "0,8"], "--channels"),
    (["--weight-bits", "4,x"], "--weight-bits"),
    (["--sampler", "grid"], "--sampler"),
    (["--verify-paths", "vhdl"], "--verify-paths"),
    (["--study", "/nonexistent/study"], "--study"),
    (["--separable", "maybe"], "--separable"),
])
def test_search_bad_options_one_line_exit_2(args, option, tmp_path, capsys) -> None:
    from hwnas.cli import main

    assert main(["receiver", "search", "--out", str(tmp_path / "x"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and option in err[0], err
    assert not (tmp_path / "x").exists()


def test_layer_quant_mixed_precision() -> None:
    """Per-layer quantizers: each layer's weights and the feature map it produces at its own width."""
    quant = {"weight": {"bits": 8, "learnable": False, "granularity": "channel"}, "bias": None, "input": None,
             "activation": {"bits": 8, "learnable": False}}
    model = deeprx("small", channels=4, blocks=2, quant=quant,
                   layer_quant={"blocks.1": {"weight": {"bits": 3, "learnable": False, "granularity": "channel"},
                                             "activation": {"bits": 5, "learnable": False}}})
    assert model.blocks[0].conv1.weight_quantizer.init_bits == 8
    assert model.blocks[1].conv1.weight_quantizer.init_bits == 3
    assert model.blocks[1].conv1.input_quantizer.init_bits == 8  # reads blocks.0's feature map at its width
    assert model.blocks[1].conv2.input_quantizer.init_bits == 5 and model.head.input_quantizer.init_bits == 5
    with pytest.raises(TaskError, match=r"layer_quant: unknown layer 'blocks\.2'"):
        deeprx("small", channels=4, blocks=2, layer_quant={"blocks.2": {}})
    with pytest.raises(TaskError, match=r"layer_quant\.head: key 'activation'"):
        deeprx("small", channels=4, blocks=2, layer_quant={"head": {"activation": None}})


def test_separable_blocks() -> None:
    """Depthwise-separable residual blocks: k²·C + C² weights per convolution; the reference runs them bit-exactly."""
    from hwnas.export.verify import verify_model
    from hwnas.nn import set_quantizers
    from hwnas.quant import calibrate

    full, sep = deeprx("small", channels=8, blocks=1, seed=0), deeprx("small", channels=8, blocks=1, separable=True)
    count = {m: sum(p.numel() for p in m.blocks.parameters() if p.dim() > 1) for m in (full, sep)}
    assert count[full] == 2 * 9 * 8 * 8 and count[sep] == 2 * (9 * 8 + 8 * 8)
    assert sep.blocks[0].conv1[0].groups == 8 and sep.blocks[0].conv1[1].kernel_size == (1, 1)
    x = torch.randn(4, *sep.input_shape)
    assert sep(x).shape == full(x).shape == (4, 4, 14, 24)
    set_quantizers(sep, weight=dict(kind="fixed", bits=6, granularity="channel", learnable=False),
                   bias=dict(kind="fixed", bits=12, learnable=False), input=dict(kind="fixed", bits=8, learnable=False))
    set_quantizers(sep.stem, output=dict(kind="fixed", bits=8, learnable=False))
    calibrate(sep, x)
    report = verify_model(sep.eval(), x[:2], paths=["reference"])
    assert report.results[0].skipped is None and report.results[0].mismatches == 0
    with pytest.raises(TaskError, match="separable"):
        deeprx("small", separable="yes")
