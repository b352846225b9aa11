"""OFDM SIMO link of the neural-receiver task (hwnas.tasks.ofdm): config, sampling, layout, baselines, BLER."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("sionna")

from hwnas.tasks.ofdm import (
    LinkConfig,
    OfdmLink,
    bler_curve,
    gap_at_bler,
    read_curves_csv,
    write_curves_csv,
)
from hwnas.tasks.registry import TaskError


@pytest.fixture(scope="module")
def link() -> OfdmLink:
    return OfdmLink("small")


def _tensors(batch):
    return {k: v for k, v in vars(batch).items() if isinstance(v, torch.Tensor)}


# ------------------------------------------------------------------------------------ configuration
def test_presets_hold_the_seed_numbers() -> None:
    seed = LinkConfig.from_options("seed")
    assert (seed.carrier_frequency_hz, seed.subcarrier_spacing_hz, seed.num_ofdm_symbols) == (3.5e9, 30e3, 14)
    assert (seed.num_rx_ant, seed.modulation, seed.bits_per_symbol, seed.code_rate) == (2, "64QAM", 6, 0.5)
    assert seed.pilot_symbols == (2, 11)
    assert (seed.train_cdl_models, seed.test_cdl_models) == (("A", "B", "C"), ("D", "E"))
    assert (seed.train_delay_spread_ns, seed.train_speed_mps, seed.train_snr_db) == ((10, 100), (0, 50), (-2, 15))
    assert (seed.test_delay_spread_ns, seed.test_ebno_db) == ((0, 50), (0, 10))
    assert (seed.num_subcarriers, seed.cyclic_prefix_length, seed.n, seed.k) == (132, 9, 9504, 4752)
    small = LinkConfig.from_options("small", test_cdl_models=["cdl-d"], ldpc_iterations=10)
    assert (small.preset, small.n_prb, small.modulation, small.n, small.k) == ("small", 2, "16QAM", 1152, 576)
    assert small.test_cdl_models == ("D",) and small.to_dict()["k"] == 576


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"train_cdl_models": ["A", "F"]}, "train_cdl_models"),
        ({"test_cdl_models": "CDL-X"}, "test_cdl_models"),
        ({"speed_high_mps": (30.0, 500.0)}, "speed_high_mps"),
        ({"train_speed_mps": (-1.0, 5.0)}, "train_speed_mps"),
        ({"modulation": "256QAM"}, "modulation"),
        ({"train_snr_db": (15.0, -2.0)}, "train_snr_db"),
        ({"test_ebno_db": (0.0, float("nan"))}, "test_ebno_db"),
        ({"pilot_symbols": (11, 2)}, "pilot_symbols"),
        ({"n_prb": 40}, "n_prb"),  # 64-QAM: k > 8448, one LDPC code block is too small
        ({"bandwidth": 5}, "bandwidth"),
    ],
)
def test_bad_options_name_the_option(options, name) -> None:
    with pytest.raises(TaskError) as info:
        LinkConfig.from_options("seed", **options)
    msg = str(info.value)
    assert name in msg and "\n" not in msg


def test_bad_sample_options_name_the_option(link) -> None:
    for kwargs, name in [
        ({"cdl_model": "F"}, "cdl_model"),
        ({"speed_group": "warp"}, "speed_group"),
        ({"ebno_db": (10.0, 0.0)}, "ebno_db"),
        ({"split": "val"}, "split"),
        ({"seed": -1}, "seed"),
    ]:
        with pytest.raises(TaskError, match=name):
            link.sample(2, **kwargs)
    with pytest.raises(TaskError, match="preset"):
        LinkConfig.from_options("huge")


# ------------------------------------------------------------------------------------ sampling
def test_same_seed_same_batch_and_global_rng_untouched(link) -> None:
    from sionna.phy import config as sionna_config

    torch_state = torch.get_rng_state()
    sionna_state = sionna_config.torch_rng("cpu").get_state()
    a = link.sample(8, seed=7, split="train")
    b = link.sample(8, seed=7, split="train")
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert torch.equal(sionna_config.torch_rng("cpu").get_state(), sionna_state)
    for key, value in _tensors(a).items():
        assert torch.equal(value, getattr(b, key)), key
    assert a.cdl_model == b.cdl_model and a.seed == 7
    c = link.sample(8, seed=8, split="train")
    assert not torch.equal(a.y, c.y) and not torch.equal(a.b, c.b) and not torch.equal(a.h, c.h)
    # a generator gives one int seed; the batch records it and it reproduces the batch
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    d, e = link.sample(4, seed=g1, split="test"), link.sample(4, seed=g2, split="test")
    assert d.seed == e.seed and torch.equal(d.y, e.y)
    assert torch.equal(link.sample(4, seed=d.seed, split="test").y, d.y)


def test_draws_follow_the_split_ranges(link) -> None:
    cfg = link.config
    tr = link.sample(64, seed=1, split="train")
    assert set(tr.cdl_model) <= {"A", "B", "C"} and len(set(tr.cdl_model)) > 1
    assert tr.delay_spread_ns.min() >= 10 and tr.delay_spread_ns.max() <= 100
    assert tr.speed_mps.min() >= 0 and tr.speed_mps.max() <= 50
    assert tr.snr_db.min() >= -2 and tr.snr_db.max() <= 15
    assert torch.allclose(tr.no, 10 ** (-tr.snr_db / 10), rtol=1e-5)
    te = link.sample(64, seed=1, split="test", speed_group="high")
    assert set(te.cdl_model) <= {"D", "E"} and te.delay_spread_ns.max() <= 50
    assert te.speed_mps.min() >= 30 and te.speed_mps.max() <= 50
    assert te.ebno_db.min() >= 0 and te.ebno_db.max() <= 10
    fixed = link.sample(4, seed=1, split="test", ebno_db=4.0, cdl_model="CDL-E")
    assert fixed.cdl_model == ("E",) * 4 and torch.allclose(fixed.ebno_db, torch.full((4,), 4.0))
    # unit average channel energy per frame (Sionna's normalize_channel); shapes and dtypes
    assert torch.allclose(te.h.abs().square().mean(dim=(1, 2, 3)), torch.ones(64), atol=1e-4)
    B, Nr, S, F = 64, cfg.num_rx_ant, cfg.num_ofdm_symbols, cfg.num_subcarriers
    assert te.y.shape == te.h.shape == (B, Nr, S, F) and te.y.dtype == torch.complex64
    assert te.b.shape == (B, cfg.k) and te.c.shape == (B, cfg.n) and te.no.shape == (B,)


def test_per_frame_delay_spread_scaling_equals_sionna(link) -> None:
    """The link builds CDL with a 1 s delay spread and scales each frame's delays: same as Sionna's own."""
    from hwnas.tasks.ofdm.link import _load_sionna, _sionna_rng

    sn = _load_sionna()
    velocity = torch.tensor([[3.0, -4.0, 1.0], [20.0, 0.0, 0.0]])
    out = []
    for ds in (1.0, 37e-9):
        cdl = sn.CDL("D", ds, 3.5e9, ut_array=link.ut_array, bs_array=link.bs_array, direction="uplink",
                     ut_velocity=velocity, precision="single", device="cpu")
        with _sionna_rng("cpu", 5):
            out.append(cdl(2, 14, link._sampling_frequency))
    assert torch.equal(out[0][0], out[1][0])
    assert torch.allclose(out[0][1] * 37e-9, out[1][1], rtol=1e-6, atol=0)


# ------------------------------------------------------------------------------------ layout
def test_receiver_input_shape_and_finiteness(link) -> None:
    batch = link.sample(6, seed=2, split="train")
    x = link.receiver_input(batch)
    cfg = link.config
    assert x.shape == (6, 2 * cfg.num_rx_ant + 1, cfg.num_ofdm_symbols, cfg.num_subcarriers)
    assert x.dtype == torch.float32 and torch.isfinite(x).all()
    assert torch.equal(x[:, 0], batch.y[:, 0].real) and torch.equal(x[:, cfg.num_rx_ant], batch.y[:, 0].imag)
    assert torch.allclose(x[:, -1], torch.log10(batch.no)[:, None, None].expand(-1, *x.shape[2:]))


def test_targets_decode_round_trip_and_llr_sign(link) -> None:
    batch = link.sample(16, seed=3, split="test", ebno_db=60.0)
    bits, mask = link.targets(batch)
    cfg = link.config
    assert bits.shape == (16, cfg.bits_per_symbol, cfg.num_ofdm_symbols, cfg.num_subcarriers)
    assert mask.shape == (cfg.num_ofdm_symbols, cfg.num_subcarriers) and int(mask.sum()) == cfg.num_data_re
    assert not mask[list(cfg.pilot_symbols)].any() and bits[:, :, ~mask].abs().sum() == 0
    assert torch.equal(link.grid_to_codeword(bits), batch.c)
    llr = 20.0 * (2.0 * bits - 1.0)  # logits: positive means bit 1
    assert link.errors(batch, link.decode(llr, batch)) == (0, 0)
    assert link.errors(batch, link.decode(-llr, batch))[1] == 16
    # the demapper's LLRs have the same sign convention: sigmoid(llr) = P(bit = 1)
    genie = link.perfect_csi_llr(batch)
    assert torch.equal((genie[:, :, mask] > 0).float(), bits[:, :, mask])
    assert genie[:, :, ~mask].abs().sum() == 0


# ------------------------------------------------------------------------------------ baselines and BLER
def test_noise_free_perfect_csi_decodes_without_errors(link) -> None:
    batch = link.sample(64, seed=4, split="test", ebno_db=60.0)
    assert link.errors(batch, link.decode(link.perfect_csi_llr(batch), batch)) == (0, 0)
    low = link.sample(64, seed=4, split="test", ebno_db=60.0, speed_group="low")
    assert link.errors(low, link.decode(link.ls_lmmse_llr(low), low)) == (0, 0)


def test_bler_falls_with_ebno_and_perfect_csi_is_no_worse(link, tmp_path) -> None:
    kw = {"frames": 128, "batch_size": 64, "seed": 0, "speed_group": "medium"}
    seen = []
    ls = bler_curve(link, link.ls_lmmse_llr, [0.0, 15.0], progress=seen.append, **kw)
    genie = bler_curve(link, link.perfect_csi_llr, [0.0, 15.0], **kw)
    assert seen == ls and [r["frames"] for r in ls] == [128, 128]
    assert ls[0]["bler"] > 0.5 and ls[1]["bler"] < 0.1 and ls[0]["ber"] > ls[1]["ber"]
    assert ls[0]["uncoded_ber"] > ls[1]["uncoded_ber"]
    for a, b in zip(genie, ls, strict=True):
        assert a["block_errors"] <= b["block_errors"] and a["bit_errors"] <= b["bit_errors"]
    gap = gap_at_bler(ls, genie)
    assert (gap.db is not None and gap.db >= 0) or gap.reason
    path = write_curves_csv(tmp_path / "c.csv", {"ls": ls, "perfect": genie}, extra={"speed_group": "medium"})
    back = read_curves_csv(path)
    assert back["ls"][1]["block_errors"] == ls[1]["block_errors"] and back["perfect"][0]["speed_group"] == "medium"


def test_gap_at_bler_interpolates_log_linearly() -> None:
    a = [{"ebno_db": 0.0, "bler": 1.0, "frames": 100}, {"ebno_db": 2.0, "bler": 0.01, "frames": 100}]
    b = [{"ebno_db": -1.0, "bler": 1.0, "frames": 100}, {"ebno_db": 1.0, "bler": 0.01, "frames": 100}]
    gap = gap_at_bler(a, b, target=0.1)
    assert math.isclose(gap.ebno_a, 1.0) and math.isclose(gap.ebno_b, 0.0) and math.isclose(gap.db, 1.0)
    flat = [{"ebno_db": 0.0, "bler": 1.0, "frames": 10}, {"ebno_db": 5.0, "bler": 0.5, "frames": 10}]
    none = gap_at_bler(flat, b)
    assert none.db is None and "curve a" in none.reason and "never reaches" in none.reason
