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

    # the seed's scaled-integer PTQ (max-abs scales) has no fixed-point graph, and QONNX takes scaled integers only
    # as chains: every path says why it cannot run (nothing is compiled)
    set_quantizers(scaled, weight=dict(kind="scaled", bits=8, granularity="channel"), bias=None,
                   input=dict(kind="scaled", bits=8))
    calibrate(scaled, x)
    report = verify_model(scaled.eval(), x[:8], paths=["reference", "qonnx", "hls4ml"])
    reasons = {r.path: r.skipped or "" for r in report.results}
    assert all(reasons.values()) and not report.passed
    assert "not expressible" in reasons["hls4ml"] and "ScaledIntQuantizer" in reasons["hls4ml"]  # not powers of two
    assert "not expressible" in reasons["qonnx"] and "chains" in reasons["qonnx"]  # a residual graph, not a chain


# ------------------------------------------------------------------------------------ study command
STUDY = ["--steps", "4", "--batch-size", "8", "--channels", "4", "--blocks", "1", "--frames", "8",
         "--eval-batch", "8", "--ebno", "6", "--groups", "medium", "--qat-steps", "2", "--val-frames", "16",
         "--calibration-frames", "8", "--seed", "3", "--quiet"]


def test_study_command_writes_reproducible_files(tmp_path, capsys) -> None:
    from hwnas.cli import main

    assert main(["receiver", "study", "--out", str(tmp_path / "a"), *STUDY]) == 0
    assert main(["receiver", "study", "--out", str(tmp_path / "b"), *STUDY]) == 0
    out = capsys.readouterr().out
    assert "index.html" in out and "int4 per-channel better than int4 per-tensor" in out
    a, b = tmp_path / "a", tmp_path / "b"
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
