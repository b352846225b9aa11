"""The Pythia 8 + FastJet jet generator: labels, constituents, determinism, cache and resume, errors, CLI."""

import json
import math
import os

import numpy as np
import pytest

pytest.importorskip("pythia8mc")
pytest.importorskip("fastjet")

from hwnas.cli import main
from hwnas.errors import EXIT_BAD_INPUT, HwnasError
from hwnas.tasks.jets import CLASSES, JetOptions, JetSample, JetsError, generate_jets, jets_cache_folder
from hwnas.tasks.jets import generate as gen

N = 6  # jets per class of the shared sample
EPS = 20  # Pythia events per shard: tiny shards keep the tests quick and exercise several shards per class
FIELDS = ("constituents", "pdg_id", "charge", "n_constituents", "n_total", "jet", "y", "truth_pt", "truth_rap",
          "truth_phi", "truth_mass", "truth_id", "pthat", "shard", "event")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """One generation of all five classes shared by the tests: (data_dir, sample)."""
    data_dir = tmp_path_factory.mktemp("jets")
    return data_dir, generate_jets(N, seed=0, events_per_shard=EPS, data_dir=data_dir, progress=False)


def _subset(sample: JetSample, classes, n):
    """The first ``n`` jets of each of ``classes`` in ``sample``, relabelled in that order, as a dict of arrays."""
    rows = np.concatenate([np.flatnonzero(sample.y == sample.classes.index(c))[:n] for c in classes])
    out = {name: getattr(sample, name)[rows] for name in FIELDS}
    out["y"] = np.repeat(np.arange(len(classes)), n)
    return out


def _assert_same(a: dict, b: JetSample):
    for name in FIELDS:
        x, y = a[name], getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert x.tobytes() == y.tobytes(), name


def _shards(data_dir):
    (folder,) = [p for p in data_dir.iterdir() if p.is_dir()]
    return folder, sorted(p.name for p in folder.iterdir() if p.name.endswith(".npz"))


def test_sample_layout(base):
    _, s = base
    assert s.classes == CLASSES and len(s) == 5 * N
    assert s.constituents.shape == (5 * N, 150, 4) and s.constituents.dtype == np.float64
    assert s.pdg_id.dtype == np.int32 and s.charge.dtype == np.int8 and s.n_constituents.dtype == np.int32
    assert s.jet.shape == (5 * N, 4) and s.y.dtype == np.int64
    assert np.array_equal(s.y, np.repeat(np.arange(5), N))
    for label in range(5):  # (class, shard, event) never repeats: one jet per event
        keys = list(zip(s.shard[s.y == label].tolist(), s.event[s.y == label].tolist(), strict=True))
        assert len(set(keys)) == N and keys == sorted(keys)
    assert s.max_particles == 150


def test_jets_in_window_and_matched(base):
    _, s = base
    assert np.all((s.pt >= 800) & (s.pt < 1200)) and np.all(np.abs(s.eta) < 1.7)
    rap = 0.5 * np.log((s.jet[:, 3] + s.jet[:, 2]) / (s.jet[:, 3] - s.jet[:, 2]))
    dphi = np.angle(np.exp(1j * (s.phi - s.truth_phi)))
    assert np.all(np.hypot(rap - s.truth_rap, dphi) < 0.6)
    ids = np.abs(s.truth_id)
    expected = {"g": {21}, "q": {1, 2, 3}, "w": {24}, "z": {23}, "t": {6}}
    for label, c in enumerate(s.classes):
        assert set(ids[s.y == label].tolist()) <= expected[c], c
    w, z, t = (s.truth_mass[s.y == s.classes.index(c)] for c in "wzt")
    assert np.all(np.abs(w - 80.4) < 21) and np.all(np.abs(z - 91.2) < 25) and np.all(np.abs(t - 173.0) < 14)
    assert np.all(s.truth_pt > 0) and np.all(s.pthat >= 0.8 * 800)


def test_constituents_sorted_padded_and_summing_to_the_jet(base):
    _, s = base
    e = s.constituents[..., 3]
    pt = np.hypot(s.constituents[..., 0], s.constituents[..., 1])
    stored = s.n_constituents
    assert np.array_equal(stored, np.minimum(s.n_total, 150)) and np.all(stored >= 2)
    assert np.array_equal(s.truncated, s.n_total > 150)
    rows = np.arange(150)[None, :] < stored[:, None]
    assert np.all(e[rows] > 0) and np.all(s.pdg_id[rows] != 0)
    assert not np.any(s.constituents[~rows]) and not np.any(s.pdg_id[~rows]) and not np.any(s.charge[~rows])
    assert np.all(np.diff(np.where(rows, pt, -1.0), axis=1) <= 0)  # pT descending, then the padding
    assert not np.any(np.isin(np.abs(s.pdg_id), [12, 14, 16]))  # no neutrinos
    assert np.all(s.charge[s.pdg_id == 22] == 0) and np.all(s.charge[s.pdg_id == 211] == 1)
    assert np.all(s.charge[s.pdg_id == -211] == -1)
    whole = ~s.truncated
    assert whole.mean() > 0.8
    np.testing.assert_allclose(s.constituents[whole].sum(axis=1), s.jet[whole], rtol=1e-9, atol=1e-6)


def test_jet_masses_follow_the_decays(base):
    """Ungroomed mass: contained W/Z/t decays give jets at least about as heavy as the boson or top (the
    underlying event adds mass), and top jets are on average the heaviest. (At pT ~ 1 TeV the ungroomed mass of
    light-quark jets, m ~ 0.1 pT, averages about as much as W/Z jets', so only grooming separates those.)"""
    _, s = base
    mean = {c: float(np.mean(s.mass[s.y == s.classes.index(c)])) for c in s.classes}
    assert mean["t"] > max(mean["q"], mean["w"], mean["z"])
    heavy = np.isin(s.y, [s.classes.index(c) for c in "wzt"])
    ratio = s.mass[heavy] / s.truth_mass[heavy]
    assert np.all(ratio > 0.5) and 0.9 < np.median(ratio) < 1.6
    assert np.all(s.mass[s.y == s.classes.index("t")] > 100)


def test_same_seed_same_bytes_any_workers_and_class_subset(base, tmp_path):
    _, s = base
    again = generate_jets(3, seed=0, classes=("t", "w"), events_per_shard=EPS, data_dir=tmp_path, workers=2,
                          progress=False)
    assert again.classes == ("t", "w")
    _assert_same(_subset(s, ("t", "w"), 3), again)
    other = generate_jets(3, seed=1, classes=("q",), events_per_shard=EPS, progress=False)
    assert other.constituents[:, 0].tobytes() != _subset(s, ("q",), 3)["constituents"][:, 0].tobytes()
    assert gen.pythia_seed(0, "q", 0) != gen.pythia_seed(1, "q", 0)
    assert all(1 <= gen.pythia_seed(seed, c, k) <= 900_000_000 for seed in range(3) for c in CLASSES for k in range(9))


def test_cache_reload_prefix_and_max_particles(base):
    data_dir, s = base
    folder, files = _shards(data_dir)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["options"]["version"] == gen.GENERATOR_VERSION and manifest["options"]["seed"] == 0
    assert folder == jets_cache_folder(data_dir, JetOptions(seed=0, events_per_shard=EPS))
    mtimes = {f: os.stat(folder / f).st_mtime_ns for f in files}
    again = generate_jets(N, seed=0, events_per_shard=EPS, data_dir=data_dir, progress=False)
    _assert_same({name: getattr(s, name) for name in FIELDS}, again)
    small = generate_jets(2, seed=0, events_per_shard=EPS, data_dir=data_dir, max_particles=10, progress=False)
    ref = _subset(s, CLASSES, 2)
    assert np.array_equal(small.constituents, ref["constituents"][:, :10])
    assert np.array_equal(small.n_total, ref["n_total"])
    assert np.array_equal(small.n_constituents, np.minimum(ref["n_total"], 10))
    assert _shards(data_dir)[1] == files and {f: os.stat(folder / f).st_mtime_ns for f in files} == mtimes
    for f in files:  # plain arrays only: every shard loads without pickle
        with np.load(folder / f, allow_pickle=False) as z:
            assert all(z[k].dtype != object for k in z.files)


def test_killed_run_resumes_without_duplicates_or_losses(base, tmp_path, monkeypatch):
    _, s = base
    real = gen._run_shard
    calls = []

    def killed_after_two(task):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append((task.cls, task.index))
        return real(task)

    monkeypatch.setattr(gen, "_run_shard", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        generate_jets(N, seed=0, classes=("q", "w"), events_per_shard=EPS, data_dir=tmp_path, progress=False)
    folder, files = _shards(tmp_path)
    assert files == sorted(f"{c}-{k:05d}.npz" for c, k in calls)
    (folder / ".w-00007.npz.tmp-1-deadbeef").write_bytes(b"PK\x03\x04 half a shard")  # a write cut short
    resumed_calls = []

    def counted(task):
        resumed_calls.append((task.cls, task.index))
        return real(task)

    monkeypatch.setattr(gen, "_run_shard", counted)
    resumed = generate_jets(N, seed=0, classes=("q", "w"), events_per_shard=EPS, data_dir=tmp_path, progress=False)
    _assert_same(_subset(s, ("q", "w"), N), resumed)
    assert not set(resumed_calls) & set(calls)  # finished shards are reused
    # a shard deleted from the middle is made again, identically
    _, files = _shards(tmp_path)
    victim = sorted(f for f in files if f.startswith("q-"))[0]
    os.remove(folder / victim)
    again = generate_jets(N, seed=0, classes=("q", "w"), events_per_shard=EPS, data_dir=tmp_path, progress=False)
    _assert_same(_subset(s, ("q", "w"), N), again)
    assert (folder / victim).exists()


@pytest.mark.parametrize("kwargs, option", [
    ({"n_per_class": 0}, "n_per_class"),
    ({"classes": ("g", "x")}, "classes"),
    ({"classes": ()}, "classes"),
    ({"classes": ("g", "g")}, "classes"),
    ({"radius": 0.0}, "radius"),
    ({"radius": -0.4}, "radius"),
    ({"pt_window": (1200.0, 800.0)}, "pt_window"),
    ({"pt_window": (800.0, 800.0)}, "pt_window"),
    ({"pt_window": (math.nan, 900.0)}, "pt_window"),
    ({"pt_window": 800.0}, "pt_window"),
    ({"eta_max": 0.0}, "eta_max"),
    ({"match_dr": 1.0}, "match_dr"),
    ({"max_particles": 0}, "max_particles"),
    ({"events_per_shard": 0}, "events_per_shard"),
    ({"pthat_min": 900.0}, "pthat_min"),
    ({"workers": 0}, "workers"),
    ({"seed": -1}, "seed"),
    ({"seed": 1.5}, "seed"),
])
def test_bad_options_name_the_option(kwargs, option, tmp_path):
    args = {"n_per_class": 1, "seed": 0, "data_dir": tmp_path, "progress": False, **kwargs}
    with pytest.raises(JetsError) as info:
        generate_jets(args.pop("n_per_class"), **args)
    message = str(info.value)
    assert message.startswith(f"{option}: ") and "\n" not in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, HwnasError)
    assert not list(tmp_path.iterdir())  # nothing written for a refused call


def test_folder_of_other_options_is_refused(tmp_path):
    folder = jets_cache_folder(tmp_path, JetOptions(seed=0, events_per_shard=EPS))
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"options": {"seed": 99}}))
    with pytest.raises(JetsError, match=r"^data_dir: "):
        generate_jets(1, seed=0, events_per_shard=EPS, data_dir=tmp_path, progress=False)


@pytest.mark.parametrize("argv, flag", [
    (["--radius", "0"], "--radius"),
    (["--classes", "g,x"], "--classes"),
    (["--pt-min", "1300"], "--pt-min/--pt-max"),
    (["--per-class", "0"], "--per-class"),
    (["--per-class", "many"], "--per-class"),
    (["--max-particles", "0"], "--max-particles"),
])
def test_cli_bad_input_is_one_line_exit_2(argv, flag, tmp_path, capsys):
    try:
        code = main(["jets", "generate", "--out", str(tmp_path), "--quiet", *argv])
    except SystemExit as stop:  # argparse's own errors (a non-number)
        code = stop.code
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.startswith("hwnas: error: ") and flag in err and "\n" not in err


def test_cli_generate_prints_cache_and_summary(base, capsys):
    data_dir, _ = base
    code = main(["jets", "generate", "--per-class", str(N), "--seed", "0", "--events-per-shard", str(EPS),
                 "--out", str(data_dir), "--workers", "1", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"cache: {_shards(data_dir)[0]}" in out
    for c in CLASSES:
        assert any(line.split()[:2] == [c, str(N)] for line in out.splitlines()), c
