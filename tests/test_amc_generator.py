"""The RadioML-like AMC generator: shapes, determinism, SNR calibration, modulations, channel, cache, errors."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import fft as sfft
from scipy.signal import fftconvolve

from hwnas.tasks import amc
from hwnas.tasks.amc import (
    PRESETS,
    RML2016_CLASSES,
    RML2018_CLASSES,
    AMCError,
    AMCPreset,
    ChannelConfig,
    generate,
    generate_cached,
    generate_components,
    normalize,
)
from hwnas.tasks.amc.channel import apply_channel, buffer_length, fading
from hwnas.tasks.amc.constellations import APSK_RINGS, CONSTELLATIONS
from hwnas.tasks.amc.modulators import CPM_PARAMS, TRANSMITTERS, rrc_response
from hwnas.tasks.amc.streams import Streams

CLEAN18 = AMCPreset("clean2018", RML2018_CLASSES, 1024, (30,), rolloff=0.35, channel=ChannelConfig.off())
CLEAN16 = AMCPreset("clean2016", RML2016_CLASSES, 1024, (30,), rolloff=0.35, channel=ChannelConfig.off())
SPS = 8


def _clean(preset, name, frames=8, seed=3):
    return generate_components(preset, name, 30, frames, seed=seed).signal


def _matched(x, beta=0.35):
    """RRC matched filter (±16 symbols), edges dropped."""
    nh = 32 * SPS
    h = np.real(sfft.fftshift(sfft.ifft(rrc_response(nh, SPS, beta))))
    return fftconvolve(x, h[None, :], mode="same", axes=-1)[:, 20 * SPS: -20 * SPS]


def _symbols(x, beta=0.35):
    """Matched-filtered symbol samples per frame at the phase of maximal energy, each frame scaled to unit power."""
    y = _matched(x, beta)
    out = []
    for frame in y:
        phase = int(np.argmax([np.mean(np.abs(frame[p::SPS]) ** 2) for p in range(SPS)]))
        s = frame[phase::SPS]
        out.append(s / np.sqrt(np.mean(np.abs(s) ** 2)))
    return np.concatenate(out)


# ------------------------------------------------------------------------------------- presets, shapes
def test_presets_match_the_issue():
    p16, p18 = PRESETS["rml2016"], PRESETS["rml2018"]
    assert p16.classes == ("BPSK", "QPSK", "8PSK", "PAM4", "QAM16", "QAM64", "GFSK", "CPFSK", "WBFM", "AM-DSB",
                           "AM-SSB")
    assert (p16.frame_length, p16.snrs, p16.sps, p16.rolloff) == (128, tuple(range(-20, 19, 2)), 8, 0.35)
    assert p18.classes[:4] == ("OOK", "4ASK", "8ASK", "BPSK") and p18.classes[-3:] == ("FM", "GMSK", "OQPSK")
    assert len(p18.classes) == 24 and p18.frame_length == 1024 and p18.snrs == tuple(range(-20, 31, 2))
    assert p18.rolloff == (0.2, 0.5)
    assert p16.channel == ChannelConfig() and ChannelConfig().delays == (0.0, 0.9, 1.7)


def test_shapes_dtypes_and_class_balance():
    data = generate("rml2016", 3, seed=0, progress=False)
    n = 11 * 20 * 3
    assert len(data) == n and data.x.shape == (n, 2, 128) and data.frame_length == 128
    assert data.x.dtype == np.float32 and data.y.dtype == np.int64 and data.snr.dtype == np.int16
    assert data.classes == RML2016_CLASSES
    assert np.all(np.bincount(data.y) == 60)
    pairs, counts = np.unique(np.stack([data.y, data.snr]), axis=1, return_counts=True)
    assert pairs.shape[1] == 220 and np.all(counts == 3)
    assert np.all(np.isfinite(data.x))
    # ordered by class, then SNR ascending
    assert np.all(np.diff(data.y) >= 0) and np.all(np.diff(data.snr[data.y == 0]) >= 0)


def test_rml2018_subset_shapes_and_labels():
    data = generate("rml2018", 2, seed=0, snrs=[30, -20], classes=["OQPSK", "OOK"], progress=False)
    assert data.x.shape == (8, 2, 1024) and data.classes == ("OQPSK", "OOK")
    assert data.snr.tolist() == [-20, -20, 30, 30, -20, -20, 30, 30] and data.y.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


# ----------------------------------------------------------------------------------------- determinism
def test_same_seed_bit_identical_and_seed_matters():
    kw = dict(classes=["QPSK", "WBFM", "GFSK"], snrs=[-4, 10], progress=False)
    a = generate("rml2016", 7, seed=5, **kw)
    b = generate("rml2016", 7, seed=5, **kw)
    c = generate("rml2016", 7, seed=6, **kw)
    assert a.x.tobytes() == b.x.tobytes() and np.array_equal(a.y, b.y) and np.array_equal(a.snr, b.snr)
    assert not np.allclose(a.x, c.x)


def test_subsets_and_prefixes_give_the_same_frames():
    full = generate("rml2016", 6, seed=2, snrs=[0, 8], progress=False)
    one = generate("rml2016", 4, seed=2, snrs=[8], classes=["8PSK"], progress=False)
    sel = (full.y == RML2016_CLASSES.index("8PSK")) & (full.snr == 8)
    assert np.array_equal(full.x[sel][:4], one.x)  # same pair → same frames, fewer frames → a prefix


def test_workers_and_blocks_do_not_change_the_data():
    per_pair = amc.generator.BLOCK + 5  # two blocks per pair
    kw = dict(seed=4, snrs=[2], classes=["BPSK", "AM-SSB"], progress=False)
    a = generate("rml2016", per_pair, workers=1, **kw)
    b = generate("rml2016", per_pair, workers=2, **kw)
    assert a.x.tobytes() == b.x.tobytes()
    assert not np.allclose(a.x[:5], a.x[per_pair - 5: per_pair])  # the second block has its own streams


# --------------------------------------------------------------------------------------- SNR, amplitude
@pytest.mark.parametrize("preset", ["rml2016", "rml2018"])
def test_measured_snr_matches_label(preset):
    p = PRESETS[preset]
    names = p.classes[::3] if preset == "rml2018" else p.classes
    for snr in (-10, 0, 12):
        for name in names:
            c = generate_components(preset, name, snr, 60, seed=11)
            measured = c.measured_snr_db()
            assert abs(np.mean(measured) - snr) < 0.5, (name, snr, np.mean(measured))
            assert abs(np.median(measured) - snr) < 0.5
            assert np.mean(np.abs(measured - snr) < (1.5 if preset == "rml2016" else 0.6)) > 0.95


def test_components_reproduce_generated_frames():
    c = generate_components("rml2016", "QAM64", 6, 5, seed=9)
    d = generate("rml2016", 5, seed=9, classes=["QAM64"], snrs=[6], normalization="none", progress=False)
    x = c.signal + c.noise
    assert np.allclose(d.x[:, 0], x.real, atol=1e-6) and np.allclose(d.x[:, 1], x.imag, atol=1e-6)


def test_rml2016_amplitude_convention():
    snr = 4
    c = generate_components("rml2016", "BPSK", snr, 400, seed=1, amplitude="rml2016")
    noise_power = np.mean(np.abs(c.noise) ** 2)
    assert noise_power == pytest.approx(10 ** (-snr / 5), rel=0.03)  # noise_amp = 10^(-snr/10), E|n|² = amp²
    # unit power before the channel, unnormalized path gains 1, 0.8, 0.3 → mean received power 1.73
    assert np.mean(np.abs(c.signal) ** 2) == pytest.approx(1.73, rel=0.1)


def test_normalizations():
    kw = dict(seed=0, classes=["CPFSK", "QAM16"], snrs=[0], progress=False)
    unit = generate("rml2016", 4, **kw).x.astype(np.float64)
    l1 = generate("rml2016", 4, normalization="rml2016_l1", **kw).x.astype(np.float64)
    raw = generate("rml2016", 4, normalization="none", **kw).x.astype(np.float64)
    assert np.allclose(np.mean(unit[:, 0] ** 2 + unit[:, 1] ** 2, axis=-1), 1.0, atol=1e-5)
    assert np.allclose(np.sum(np.hypot(l1[:, 0], l1[:, 1]), axis=-1), 1.0, atol=1e-5)
    z = raw[:, 0] + 1j * raw[:, 1]
    assert np.allclose(normalize(z, "unit_power"), unit[:, 0] + 1j * unit[:, 1], atol=1e-5)
    assert not np.allclose(np.mean(np.abs(z) ** 2, axis=-1), 1.0, atol=1e-3)


# ------------------------------------------------------------------------------ modulations, clean channel
def test_rrc_is_nyquist():
    for beta in (0.2, 0.35, 0.5):
        h2 = rrc_response(1024, SPS, beta) ** 2
        folded = sum(np.roll(h2, k * 1024 // SPS) for k in range(SPS))
        assert np.allclose(folded, 1.0, atol=1e-12)


def test_qpsk_matched_filter_gives_four_points():
    s = _symbols(_clean(CLEAN18, "QPSK"))
    d = np.abs(s[:, None] - CONSTELLATIONS["QPSK"][None, :])
    assert d.min(axis=1).max() < 0.05
    assert set(d.argmin(axis=1)) == {0, 1, 2, 3}
    assert np.allclose(CONSTELLATIONS["QPSK"], np.exp(1j * np.pi * np.array([1, 3, 5, 7]) / 4))


def test_cross_qam32_has_32_points_and_no_corners():
    alphabet = CONSTELLATIONS["32QAM"]
    grid = alphabet / np.min(np.abs(alphabet.real[alphabet.real != 0]))  # odd-integer coordinates
    assert len(np.unique(np.round(grid, 6))) == 32
    assert np.max(np.abs(grid.real)) == pytest.approx(5) and not np.any((np.abs(grid.real) > 4)
                                                                      & (np.abs(grid.imag) > 4))
    s = _symbols(_clean(CLEAN18, "32QAM", frames=30))
    d = np.abs(s[:, None] - alphabet[None, :])
    assert d.min(axis=1).max() < 0.12  # spacing 0.447
    assert len(np.unique(d.argmin(axis=1))) == 32
    corner = (np.abs(s.real) > 0.9 * np.max(np.abs(s.real))) & (np.abs(s.imag) > 0.9 * np.max(np.abs(s.imag)))
    assert not corner.any()
    assert len(CONSTELLATIONS["128QAM"]) == 128 and len(np.unique(np.round(CONSTELLATIONS["128QAM"], 9))) == 128


@pytest.mark.parametrize(("name", "ratios"), [("16APSK", (2.85,)), ("32APSK", (2.84, 5.27))])
def test_apsk_ring_ratios(name, ratios):
    mags = np.sort(np.abs(_symbols(_clean(CLEAN18, name, frames=20))))
    cuts = np.sort(np.argsort(np.diff(mags))[-len(ratios):]) + 1  # the largest gaps separate the rings
    rings = np.split(mags, cuts)
    measured = [np.mean(r) / np.mean(rings[0]) for r in rings[1:]]
    assert measured == pytest.approx(ratios, rel=0.03)
    counts = [k for k, _, _ in APSK_RINGS[name]]
    assert [len(r) / len(mags) for r in rings] == pytest.approx([k / sum(counts) for k in counts], abs=0.05)
    for big in ("64APSK", "128APSK"):
        radii = np.unique(np.round(np.abs(CONSTELLATIONS[big]), 6))
        assert len(radii) == len(APSK_RINGS[big])


def test_oqpsk_q_is_offset_by_half_a_symbol():
    def eye_phase(branch):  # symbol phase where |branch| is most constant (eye open)
        spread = [np.std(np.abs(branch[p::SPS])) / np.mean(np.abs(branch[p::SPS])) for p in range(SPS)]
        return int(np.argmin(spread)), min(spread)

    for frame in _matched(_clean(CLEAN18, "OQPSK")):  # each frame has its own random timing
        (pi, si), (pq, sq) = eye_phase(frame.real), eye_phase(frame.imag)
        assert (pq - pi) % SPS == SPS // 2 and si < 0.05 and sq < 0.05
    for frame in _matched(_clean(CLEAN18, "QPSK")):
        assert (eye_phase(frame.imag)[0] - eye_phase(frame.real)[0]) % SPS == 0


@pytest.mark.parametrize(("preset", "name"), [(CLEAN16, "GFSK"), (CLEAN16, "CPFSK"), (CLEAN18, "GMSK"),
                                              (CLEAN18, "FM"), (CLEAN16, "WBFM")])
def test_constant_envelope(preset, name):
    x = _clean(preset, name)
    env = np.abs(x)
    assert np.max(np.abs(env / np.mean(env, axis=-1, keepdims=True) - 1)) < 1e-9
    step = np.angle(x[:, 1:] * np.conj(x[:, :-1]))
    expected = {"GFSK": (0.8 / np.pi, 0.35), "CPFSK": (0.5, None), "GMSK": (0.5, 0.3)}  # (h, BT) as documented
    if name in expected:
        h, bt = expected[name]
        assert CPM_PARAMS[name] == pytest.approx(expected[name])
        assert np.max(np.abs(step)) <= np.pi * h / SPS + 1e-9
        if bt is None:  # CPFSK: rectangular frequency pulse → every step is ±πh/sps
            assert np.allclose(np.abs(step), np.pi * h / SPS)
        else:  # Gaussian-filtered: intermediate frequencies occur, the full deviation too (long runs)
            assert np.mean(np.abs(step) < 0.9 * np.pi * h / SPS) > 0.05
            assert np.max(np.abs(step)) > 0.99 * np.pi * h / SPS


def test_am_carrier_and_sidebands():
    def carrier_share(name):
        x = _clean(CLEAN18, name, frames=40)
        return np.mean(np.abs(np.mean(x, axis=-1)) ** 2 / np.mean(np.abs(x) ** 2, axis=-1))

    assert carrier_share("AM-DSB-WC") > 0.8 and carrier_share("AM-SSB-WC") > 0.8
    assert carrier_share("AM-DSB-SC") < 0.2 and carrier_share("AM-SSB-SC") < 0.2
    assert np.max(np.abs(_clean(CLEAN18, "AM-DSB-SC").imag)) < 1e-12  # DSB: real baseband

    def negative_share(name):
        x = _clean(CLEAN18, name, frames=20)
        x = x - np.mean(x, axis=-1, keepdims=True)
        spec = np.abs(sfft.fft(x * np.hanning(x.shape[-1]), axis=-1)) ** 2
        f = sfft.fftfreq(x.shape[-1])
        return spec[:, f < -0.005].sum() / spec[:, f > 0.005].sum()

    assert negative_share("AM-SSB-SC") < 1e-4 and negative_share("AM-SSB-WC") < 1e-4
    assert 0.5 < negative_share("AM-DSB-SC") < 2.0


def test_clean_channel_is_a_random_window_of_the_transmitter():
    p = AMCPreset("c", ("QAM16",), 128, (0,), channel=ChannelConfig.off())
    n, size = 6, buffer_length(128, p.channel, SPS)
    tx = TRANSMITTERS["QAM16"](n, size, SPS, 0.35, Streams(0, 0, 1000, 0))  # block 0 of (QAM16, 0 dB), seed 0
    tx /= np.sqrt(np.mean(np.abs(tx) ** 2, axis=-1, keepdims=True))
    s = generate_components(p, "QAM16", 0, n, seed=0).signal
    starts = []
    for i in range(n):
        (k,) = [k for k in range(size - 127) if np.allclose(tx[i, k: k + 128], s[i], atol=1e-12)]
        starts.append(k)
    assert len(set(starts)) > 1  # random start per frame


def test_rml2018_rolloff_varies_per_frame():
    def excess(rolloff):  # per-frame share of power beyond the Nyquist band, long frames for a steady estimate
        p = AMCPreset("r", ("QPSK",), 8192, (0,), rolloff=rolloff, channel=ChannelConfig.off())
        x = generate_components(p, "QPSK", 0, 40, seed=0).signal
        spec = np.abs(sfft.fft(x * np.hanning(x.shape[-1]), axis=-1)) ** 2
        f = np.abs(sfft.fftfreq(x.shape[-1]))
        return spec[:, (f > 0.5 / SPS) & (f < 0.75 / SPS)].sum(1) / spec.sum(1)

    assert excess(0.2).max() < 0.06 and excess(0.5).min() > 0.07  # the measure separates the two ends
    varying = excess((0.2, 0.5))
    assert varying.min() < 0.05 and varying.max() > 0.08


# ------------------------------------------------------------------------------------------- channel
def test_first_tap_is_rician_k4():
    g = fading(40000, 1, 5e-6, 8, 4.0, np.random.default_rng(0))[:, 0]
    p = np.abs(g) ** 2
    assert np.mean(p) == pytest.approx(1.0, abs=0.02)
    gamma = np.var(p) / np.mean(p) ** 2  # moment estimator of K
    k = np.sqrt(1 - gamma) / (1 - np.sqrt(1 - gamma))
    assert 3.5 < k < 4.6
    r = fading(40000, 1, 5e-6, 8, None, np.random.default_rng(1))[:, 0]
    assert np.mean(np.abs(r) ** 2) == pytest.approx(1.0, abs=0.03)
    assert np.var(np.abs(r) ** 2) == pytest.approx(1.0, abs=0.15)  # Rayleigh: exponential power


def test_channel_applies_rician_first_path():
    cfg = ChannelConfig.off(multipath=True, delays=(0.0,), gains=(1.0,))
    n, length = 20000, 4
    x = np.ones((n, buffer_length(length, cfg, SPS)), dtype=np.complex128)
    y = apply_channel(x, length, cfg, Streams(0, 0, 0, 0))
    p = np.abs(y[:, 0]) ** 2
    gamma = np.var(p) / np.mean(p) ** 2
    assert 3.5 < np.sqrt(1 - gamma) / (1 - np.sqrt(1 - gamma)) < 4.6
    assert np.allclose(y[:, 0], y[:, -1], atol=1e-3)  # 1 Hz Doppler: static over a frame


def test_fading_varies_with_doppler():
    fast = fading(200, 1000, 1e-3, 8, None, np.random.default_rng(0))
    slow = fading(200, 1000, 5e-6, 8, None, np.random.default_rng(0))
    assert np.mean(np.abs(fast[:, -1] - fast[:, 0])) > 0.5 and np.mean(np.abs(slow[:, -1] - slow[:, 0])) < 0.05


def test_multipath_delays_and_cfo():
    # delayed copy: one path with delay 1.5, no fading variation → x(k − 1.5) of the transmit signal
    x = np.exp(2j * np.pi * 0.01 * np.arange(400))[None, :].repeat(3, 0)
    cfg = ChannelConfig.off(multipath=True, delays=(1.5,), gains=(1.0,), rician_k=1e12, doppler_hz=0.0)
    y = apply_channel(x, 64, cfg, Streams(0, 0, 0, 1))
    ratio = y[:, 1:] / y[:, :-1]
    assert np.allclose(ratio, np.exp(2j * np.pi * 0.01), atol=1e-6)
    y2 = apply_channel(x, 64, dataclasses.replace(cfg, delays=(2.0,)), Streams(0, 0, 0, 1))  # same draws
    assert np.allclose(y / y2, np.exp(2j * np.pi * 0.01 * 0.5), atol=1e-6)  # 1.5 samples is half a sample less
    # CFO: a constant input rotates at the walk's frequency, within ±cfo_max_hz
    cfg = ChannelConfig.off(cfo=True)
    y = apply_channel(np.ones((200, 400), complex), 128, cfg, Streams(0, 0, 0, 2))
    freq = np.angle(y[:, 1:] * np.conj(y[:, :-1])).mean(axis=1) / (2 * np.pi) * cfg.sample_rate_hz
    assert np.all(np.abs(freq) <= cfg.cfo_max_hz + 1e-6) and np.std(freq) > 0.3 * cfg.cfo_max_hz / np.sqrt(3)


def test_sro_resamples_smoothly():
    t = np.arange(600)
    x = np.exp(2j * np.pi * 0.05 * t)[None, :].repeat(50, 0)
    cfg = ChannelConfig.off(sro=True, sro_max_hz=2000.0, sro_std_hz=0.0)  # constant rate offset per frame
    y = apply_channel(x, 256, cfg, Streams(0, 0, 0, 3))
    inst = np.angle(y[:, 1:] * np.conj(y[:, :-1])) / (2 * np.pi)  # = 0.05·(1 + r)
    assert np.allclose(inst, inst[:, :1], atol=2e-4)  # only the 1/512-sample phase quantization shows
    r = inst[:, 0] / 0.05 - 1
    assert np.all(np.abs(r) <= 2000 / 200e3 + 1e-6) and np.std(r) > 1e-3


# ---------------------------------------------------------------------------------------------- cache
def test_cache_write_reuse_and_manifest(tmp_path, monkeypatch):
    kw = dict(seed=1, classes=["QPSK", "AM-DSB"], snrs=[0, 10], progress=False)
    a = generate_cached("rml2016", 3, data_dir=tmp_path, **kw)
    folders = [p for p in tmp_path.iterdir()]
    assert len(folders) == 1 and not folders[0].name.startswith(".")
    manifest = json.loads((folders[0] / "manifest.json").read_text())
    opts = manifest["options"]
    assert (opts["preset"], opts["seed"], opts["per_pair"], opts["version"]) == ("rml2016", 1, 3,
                                                                               amc.GENERATOR_VERSION)
    assert opts["normalization"] == "unit_power" and opts["classes"] == ["QPSK", "AM-DSB"]
    assert manifest["counts"]["frames"] == 12 and manifest["counts"]["per_class"] == {"QPSK": 6, "AM-DSB": 6}
    assert np.array_equal(a.x, generate("rml2016", 3, **kw).x)

    def boom(*args, **kwargs):
        raise AssertionError("regenerated although the cache matches")

    monkeypatch.setattr(amc.cache, "generate", boom)
    b = generate_cached("rml2016", 3, data_dir=tmp_path, **kw)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y) and b.classes == a.classes


def test_cache_regenerates_on_mismatch_or_damage(tmp_path, monkeypatch):
    kw = dict(seed=0, classes=["BPSK"], snrs=[4], progress=False)
    a = generate_cached("rml2016", 2, data_dir=tmp_path, **kw)
    (folder,) = tmp_path.iterdir()
    calls = []
    real = amc.cache.generate
    monkeypatch.setattr(amc.cache, "generate", lambda *a_, **k: calls.append(1) or real(*a_, **k))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["options"]["version"] = -1  # written by another generator version
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert np.array_equal(generate_cached("rml2016", 2, data_dir=tmp_path, **kw).x, a.x) and len(calls) == 1
    (folder / "x.npy").write_bytes((folder / "x.npy").read_bytes()[:100])  # truncated
    assert np.array_equal(generate_cached("rml2016", 2, data_dir=tmp_path, **kw).x, a.x) and len(calls) == 2
    generate_cached("rml2016", 2, data_dir=tmp_path, normalization="none", **kw)  # other options: other folder
    assert len(calls) == 3 and len(list(tmp_path.iterdir())) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_cache_write_is_atomic(tmp_path, monkeypatch):
    real_save = np.save

    def failing_save(path, arr, **kw):
        if Path(path).name == "y.npy":
            raise OSError("disk full")
        return real_save(path, arr, **kw)

    monkeypatch.setattr(amc.cache.np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        generate_cached("rml2016", 1, seed=0, data_dir=tmp_path, classes=["BPSK"], snrs=[0], progress=False)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("kwargs", "field"), [
    (dict(preset="rml2099"), "preset"),
    (dict(classes=["QPSK", "FOO"]), "classes"),
    (dict(classes=["16QAM"]), "classes"),  # a 2018 class in the 2016 preset
    (dict(per_pair=0), "per_pair"),
    (dict(normalization="l2"), "normalization"),
    (dict(amplitude="db"), "amplitude"),
    (dict(snrs=[0, 0]), "snrs"),
    (dict(snrs=[1.5]), "snrs"),
    (dict(seed=-1), "seed"),
    (dict(workers=0), "workers"),
])
def test_errors_name_the_field(kwargs, field):
    args = dict(preset="rml2016", per_pair=1, seed=0, progress=False)
    args.update(kwargs)
    with pytest.raises(AMCError, match=f"^{field}:"):
        generate(args.pop("preset"), args.pop("per_pair"), **args)


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(ValueError, match=r"^delays, gains:"):
        ChannelConfig(gains=(1.0, 0.5))
    with pytest.raises(ValueError, match=r"^rician_k:"):
        ChannelConfig(rician_k=-1.0)
    with pytest.raises(ValueError, match=r"^classes:"):
        AMCPreset("x", ("QPSK", "NOPE"), 128, (0,))
    with pytest.raises(ValueError, match=r"^rolloff:"):
        AMCPreset("x", ("QPSK",), 128, (0,), rolloff=(0.5, 0.2))
    with pytest.raises(AMCError, match=r"^per_pair:"):
        generate_cached("rml2016", 0, seed=0, data_dir=tmp_path)
    with pytest.raises(AMCError, match=r"^count:"):
        generate_components("rml2016", "QPSK", 0, 0, seed=0)
