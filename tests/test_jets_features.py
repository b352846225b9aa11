"""Jet features (hwnas.tasks.jets.features): the 16 HLFs against FastJet + fjcontrib, PLF definitions, bad inputs.

The reference is tests/cpp/jets_reference.cc, compiled here with g++ against the headers and libraries that the
`fastjet` wheel ships; a missing compiler or missing headers fail the test (the project's CI has g++).
"""

import math
import shutil
import subprocess
from pathlib import Path

import fastjet
import numpy as np
import pytest

from hwnas.errors import HwnasError
from hwnas.tasks.jets.features import (
    HLF_NAMES,
    PLF_NAMES,
    JetFeatureError,
    hlf_features,
    mmdt_mask,
    plf_features,
)

CPP_SOURCE = Path(__file__).parent / "cpp" / "jets_reference.cc"
RTOL = 1e-6  # relative tolerance against fjcontrib
ATOL = 1e-12  # absolute floor, for values that are exactly 0 (C2, D2, M2, N2 of a two-constituent groomed jet)
MAX_PARTICLES = 150
PION_MASS = 0.13957


# ---------------------------------------------------------------------------------------------------------
# jets


def _four_momenta(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, mass: np.ndarray) -> np.ndarray:
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return np.stack([px, py, pz, np.sqrt(px * px + py * py + pz * pz + mass * mass)], axis=-1)


def _pack(jets: list[np.ndarray], max_particles: int = MAX_PARTICLES) -> tuple[np.ndarray, np.ndarray]:
    """Constituent lists → (n_jets, max_particles, 4) sorted by pT descending, zero-padded, and counts."""
    p = np.zeros((len(jets), max_particles, 4))
    n = np.zeros(len(jets), dtype=np.int64)
    for k, c in enumerate(jets):
        c = c[np.argsort(-np.hypot(c[:, 0], c[:, 1]), kind="stable")]
        p[k, : len(c)] = c
        n[k] = len(c)
    return p, n


def random_jet(rng: np.random.Generator, n: int) -> np.ndarray:
    """A jet-like set of ``n`` constituents: 1-3 hard prongs of collinear fragments plus soft radiation, R = 0.8."""
    pt_jet = rng.uniform(700.0, 1300.0)
    eta0, phi0 = rng.uniform(-2.0, 2.0), rng.uniform(-math.pi, math.pi)
    n_prongs = int(rng.integers(1, 4))
    n_soft = int(rng.integers(0, n // 3 + 1)) if n > n_prongs else 0
    n_hard = n - n_soft
    prong_pt = rng.dirichlet(np.full(n_prongs, 2.0)) * 0.9 * pt_jet
    prong = rng.integers(0, n_prongs, n_hard)
    prong[:n_prongs] = np.arange(min(n_prongs, n_hard))
    radius, angle = rng.uniform(0.0, 0.4, n_prongs), rng.uniform(0.0, 2.0 * math.pi, n_prongs)
    prong_eta, prong_phi = eta0 + radius * np.cos(angle), phi0 + radius * np.sin(angle)
    frac = rng.dirichlet(np.full(n_hard, 0.6))
    hard_pt = np.zeros(n_hard)
    for q in range(n_prongs):
        sel = prong == q
        if sel.any():
            hard_pt[sel] = prong_pt[q] * frac[sel] / frac[sel].sum()
    hard_eta = prong_eta[prong] + rng.normal(0.0, 0.03, n_hard)
    hard_phi = prong_phi[prong] + rng.normal(0.0, 0.03, n_hard)
    soft_r, soft_a = 0.8 * np.sqrt(rng.uniform(0.0, 1.0, n_soft)), rng.uniform(0.0, 2.0 * math.pi, n_soft)
    soft_pt = rng.exponential(0.1 * pt_jet / max(n_soft, 1), n_soft) + 0.05
    pt = np.concatenate([hard_pt, soft_pt]) + 1e-3
    eta = np.concatenate([hard_eta, eta0 + soft_r * np.cos(soft_a)])
    phi = np.concatenate([hard_phi, phi0 + soft_r * np.sin(soft_a)])
    mass = np.where(rng.uniform(size=n) < 0.6, PION_MASS, 0.0)
    return _four_momenta(pt, eta, phi, mass)


def random_jets(seed: int, count: int, lo: int = 5, hi: int = MAX_PARTICLES) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return _pack([random_jet(rng, int(rng.integers(lo, hi + 1))) for _ in range(count)])


def edge_jets() -> list[np.ndarray]:
    """Jets with 1, 2, 3 constituents, a duplicated constituent, one across φ = ±π, one at |η| ≈ 2.5."""
    rng = np.random.default_rng(7)
    one = _four_momenta(np.array([950.0]), np.array([0.3]), np.array([1.0]), np.array([PION_MASS]))
    two = _four_momenta(np.array([600.0, 350.0]), np.array([0.1, 0.25]), np.array([2.0, 2.1]), np.zeros(2))
    three = _four_momenta(
        np.array([500.0, 60.0, 30.0]), np.array([-1.0, -0.8, -1.2]), np.array([0.0, 0.3, -0.2]), np.full(3, PION_MASS)
    )
    dup = random_jet(rng, 40)
    dup = np.concatenate([dup, dup[5:6]])
    across = random_jet(rng, 60)
    pt, phi = np.hypot(across[:, 0], across[:, 1]), np.arctan2(across[:, 1], across[:, 0])
    eta = np.arcsinh(across[:, 2] / pt)
    phi = math.pi - 0.1 + (phi - np.average(phi, weights=pt))
    across = _four_momenta(pt, eta - np.average(eta, weights=pt), phi, np.full(len(pt), PION_MASS))
    forward = random_jet(rng, 80)
    pt = np.hypot(forward[:, 0], forward[:, 1])
    eta = np.arcsinh(forward[:, 2] / pt)
    forward = _four_momenta(
        pt, eta - np.average(eta, weights=pt) + 2.5, np.arctan2(forward[:, 1], forward[:, 0]), np.zeros(len(pt))
    )
    return [one, two, three, dup, across, forward]


@pytest.fixture(scope="module")
def pythia_jets() -> tuple[np.ndarray, np.ndarray]:
    """Hardest anti-kT R = 0.8 jets (pT > 500 GeV) of Pythia 8 W+jet events at pT-hat > 800 GeV, W → hadrons."""
    import pythia8mc

    fastjet._swig.ClusterSequence.set_fastjet_banner_stream(None)
    pythia = pythia8mc.Pythia("", False)
    for setting in (
        "Print:quiet = on",
        "Next:numberCount = 0",
        "Beams:eCM = 13000.",
        "WeakBosonAndParton:qqbar2Wg = on",
        "WeakBosonAndParton:qg2Wq = on",
        "PhaseSpace:pTHatMin = 800.",
        "24:onMode = off",
        "24:onIfAny = 1 2 3 4 5",
        "PartonLevel:MPI = off",
        "Random:setSeed = on",
        "Random:seed = 11",
    ):
        assert pythia.readString(setting), setting
    assert pythia.init()
    jet_def = fastjet.JetDefinition(fastjet.antikt_algorithm, 0.8)
    jets = []
    for _ in range(30):
        if not pythia.next():
            continue
        particles = [
            fastjet.PseudoJet(q.px(), q.py(), q.pz(), q.e()) for q in pythia.event if q.isFinal() and q.isVisible()
        ]
        cs = fastjet.ClusterSequence(particles, jet_def)
        for jet in fastjet.sorted_by_pt(cs.inclusive_jets(500.0))[:2]:
            c = np.array([[q.px(), q.py(), q.pz(), q.E()] for q in jet.constituents()])
            if len(c) <= MAX_PARTICLES:
                jets.append(c)
    assert len(jets) >= 30
    return _pack(jets)


# ---------------------------------------------------------------------------------------------------------
# the FastJet + fjcontrib reference


@pytest.fixture(scope="session")
def reference_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/cpp/jets_reference.cc built once per session into pytest's temporary directory."""
    gxx = shutil.which("g++")
    assert gxx is not None, "g++ not found: it is needed to build the FastJet + fjcontrib reference"
    root = Path(fastjet.__file__).parent
    include, lib = root / "include", root / "lib64"
    for needed in (
        include / "fastjet" / "contrib" / "EnergyCorrelator.hh",
        include / "fastjet" / "contrib" / "ModifiedMassDropTagger.hh",
        lib / "libfastjetcontribfragile.so",
        lib / "libfastjet.so",
    ):
        assert needed.is_file(), f"the fastjet wheel lacks {needed}"
    binary = tmp_path_factory.mktemp("jets_reference") / "jets_reference"
    cmd = [
        gxx,
        "-O2",
        "-std=c++17",
        str(CPP_SOURCE),
        f"-I{include}",
        f"-L{lib}",
        "-lfastjetcontribfragile",
        "-lfastjettools",
        "-lfastjet",
        f"-Wl,-rpath,{lib}",
        "-o",
        str(binary),
    ]
    build = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert build.returncode == 0, f"building the reference failed:\n{build.stderr}"
    return binary


def reference_hlf(binary: Path, p: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 16 HLFs and the groomed constituent counts from FastJet + fjcontrib."""
    lines = [str(len(n))]
    for k in range(len(n)):
        lines.append(str(int(n[k])))
        lines.extend(" ".join(repr(float(v)) for v in row) for row in p[k, : n[k]])
    run = subprocess.run([str(binary)], input="\n".join(lines) + "\n", capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    out = np.array([[float(v) for v in line.split()] for line in run.stdout.splitlines()])
    assert out.shape == (len(n), 17)
    return out[:, :16], out[:, 16].astype(np.int64)


def assert_matches_reference(ours: np.ndarray, ref: np.ndarray) -> float:
    """Every feature within RTOL (ATOL floor), NaN exactly where fjcontrib gives NaN; returns the max rel. deviation."""
    for f, name in enumerate(HLF_NAMES):
        a, b = ours[:, f], ref[:, f]
        assert np.array_equal(np.isnan(a), np.isnan(b)), f"{name}: NaN pattern differs"
        ok = ~np.isnan(b)
        bad = np.abs(a[ok] - b[ok]) > RTOL * np.abs(b[ok]) + ATOL
        assert not bad.any(), f"{name}: {a[ok][bad][:3]} vs fjcontrib {b[ok][bad][:3]}"
    ok = ~np.isnan(ref) & (ref != 0)
    return float(np.max(np.abs(ours[ok] - ref[ok]) / np.abs(ref[ok])))


# ---------------------------------------------------------------------------------------------------------
# HLF tests


def test_hlf_matches_fjcontrib_on_random_and_edge_jets(reference_binary):
    p, n = random_jets(1, 120)
    pe, ne = _pack(edge_jets())
    p, n = np.concatenate([p, pe]), np.concatenate([n, ne])
    ours = hlf_features(p, n)
    ref, groomed = reference_hlf(reference_binary, p, n)
    dev = assert_matches_reference(ours, ref)
    assert dev < 1e-9
    np.testing.assert_array_equal(mmdt_mask(p, n).sum(axis=1), groomed)
    # the edge jets: a lone constituent gives C1 = 0 and NaN ratios (0/0), as in fjcontrib
    one = ours[-6]
    assert one[HLF_NAMES.index("c1_b1_mmdt")] == 0.0 and np.isnan(one[HLF_NAMES.index("c2_b1_mmdt")])
    assert ours[-5, HLF_NAMES.index("d2_b2_mmdt")] == 0.0  # two constituents: e3 = 0


def test_hlf_matches_fjcontrib_on_pythia_jets(reference_binary, pythia_jets):
    p, n = pythia_jets
    ours = hlf_features(p, n)
    ref, groomed = reference_hlf(reference_binary, p, n)
    dev = assert_matches_reference(ours, ref)
    assert dev < 1e-9
    np.testing.assert_array_equal(mmdt_mask(p, n).sum(axis=1), groomed)
    assert np.all(np.isfinite(ours[:, 4:14][groomed > 2]))


def test_hlf_shape_order_and_ungroomed_features():
    assert len(HLF_NAMES) == 16 and HLF_NAMES[0] == "zlogz" and HLF_NAMES[-2:] == ("mass_mmdt", "multiplicity")
    p, n = random_jets(2, 20)
    h = hlf_features(p, n)
    assert h.shape == (20, 16) and h.dtype == np.float64
    np.testing.assert_array_equal(h[:, 15], n)
    pt = np.hypot(p[..., 0], p[..., 1])
    jet = p.sum(axis=1)
    z = pt / np.hypot(jet[:, 0], jet[:, 1])[:, None]
    zlogz = np.array([np.sum(z[k, : n[k]] * np.log(z[k, : n[k]])) for k in range(len(n))])
    np.testing.assert_allclose(h[:, 0], zlogz, rtol=1e-12)
    # groomed mass is at most the jet mass (grooming only removes constituents)
    mass = np.sqrt(np.maximum(jet[:, 3] ** 2 - np.sum(jet[:, :3] ** 2, axis=1), 0.0))
    assert np.all(h[:, 14] <= mass * (1 + 1e-9))
    # an explicit jet four-momentum only changes zlogz
    h2 = hlf_features(p, n, jet=jet * 1.01)
    np.testing.assert_allclose(h2[:, 1:], h[:, 1:], rtol=1e-12)
    assert np.all(h2[:, 0] != h[:, 0])


def test_hlf_invariant_under_azimuthal_rotation_boost_scaling_and_order():
    p, n = random_jets(3, 30)
    h = hlf_features(p, n)
    c, s = math.cos(1.234), math.sin(1.234)
    rot = p.copy()
    rot[..., 0], rot[..., 1] = c * p[..., 0] - s * p[..., 1], s * p[..., 0] + c * p[..., 1]
    np.testing.assert_allclose(hlf_features(rot, n), h, rtol=1e-9, atol=1e-12)
    y = 0.7  # boost along the beam: pT and rapidity differences unchanged
    boost = p.copy()
    boost[..., 2] = math.cosh(y) * p[..., 2] + math.sinh(y) * p[..., 3]
    boost[..., 3] = math.sinh(y) * p[..., 2] + math.cosh(y) * p[..., 3]
    np.testing.assert_allclose(hlf_features(boost, n), h, rtol=1e-8, atol=1e-12)
    scaled = hlf_features(3.0 * p, n)  # dimensionless ratios unchanged, the mass scales
    np.testing.assert_allclose(np.delete(scaled, 14, axis=1), np.delete(h, 14, axis=1), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(scaled[:, 14], 3.0 * h[:, 14], rtol=1e-9)
    rng = np.random.default_rng(0)
    shuffled = p.copy()
    for k in range(len(n)):
        shuffled[k, : n[k]] = p[k, rng.permutation(n[k])]
    np.testing.assert_allclose(hlf_features(shuffled, n), h, rtol=1e-9, atol=1e-12)


def test_mmdt_drops_soft_wide_radiation_and_keeps_two_hard_prongs():
    hard = _four_momenta(np.array([500.0, 450.0]), np.array([0.0, 0.3]), np.array([0.0, 0.0]), np.zeros(2))
    soft = _four_momenta(np.array([5.0, 3.0]), np.array([-0.4, 0.1]), np.array([0.6, -0.7]), np.zeros(2))
    p, n = _pack([np.concatenate([hard, soft])], 6)
    np.testing.assert_array_equal(mmdt_mask(p, n)[0], [True, True, False, False, False, False])
    h = hlf_features(p, n)[0]
    groomed = p[0, :2].sum(axis=0)
    assert h[14] == pytest.approx(math.sqrt(groomed[3] ** 2 - np.sum(groomed[:3] ** 2)), rel=1e-9)
    # one hard core with only soft companions: never passes z > 0.1, the hardest constituent remains
    p1, n1 = _pack([np.concatenate([hard[:1], soft])], 3)
    np.testing.assert_array_equal(mmdt_mask(p1, n1)[0], [True, False, False])


def test_rows_beyond_n_are_ignored():
    p, n = random_jets(4, 10, hi=100)
    garbage = p.copy()
    rows = np.arange(MAX_PARTICLES) >= n[:, None]
    garbage[rows] = 1e3
    np.testing.assert_array_equal(hlf_features(garbage, n), hlf_features(p, n))
    np.testing.assert_array_equal(plf_features(garbage, n), plf_features(p, n))


def test_blocks_of_jets_give_the_same_features(monkeypatch):
    import hwnas.tasks.jets.features as features

    p, n = random_jets(10, 23, lo=2, hi=80)
    h, x, m = hlf_features(p, n), plf_features(p, n, min_pt=1.0), mmdt_mask(p, n)
    monkeypatch.setattr(features, "_JET_CHUNK", 5)
    np.testing.assert_allclose(hlf_features(p, n), h, rtol=1e-13)  # other padding: other summation order
    np.testing.assert_array_equal(plf_features(p, n, min_pt=1.0), x)
    np.testing.assert_array_equal(mmdt_mask(p, n), m)
    bad = p.copy()
    bad[17, 0, 2] = np.inf
    with pytest.raises(JetFeatureError, match="in jet 17"):
        hlf_features(bad, n)


# ---------------------------------------------------------------------------------------------------------
# PLF tests


def _plf(x: np.ndarray, name: str) -> np.ndarray:
    return x[..., PLF_NAMES.index(name)].astype(np.float64)


def test_plf_shape_sorting_padding_and_truncation():
    p, n = random_jets(5, 25, lo=5, hi=120)
    x = plf_features(p, n)
    assert x.shape == (25, 150, 16) and x.dtype == np.float32 and len(PLF_NAMES) == 16
    pt = _plf(x, "pT")
    real = np.arange(150) < n[:, None]
    assert np.all(pt[real] > 0) and np.all(x[~real] == 0)
    assert np.all(np.diff(pt, axis=1) <= 0)
    np.testing.assert_allclose(_plf(x, "px")[real], p[..., 0][real], rtol=1e-6)
    short = plf_features(p, n, n_particles=30)
    assert short.shape == (25, 30, 16)
    np.testing.assert_array_equal(short, x[:, :30])
    wide = plf_features(p[:, :60], np.minimum(n, 60), n_particles=200)
    assert wide.shape == (25, 200, 16) and np.all(wide[:, 60:] == 0)


def test_plf_min_pt_selection():
    p, n = random_jets(6, 25)
    pt_in = np.hypot(p[..., 0], p[..., 1])
    x = plf_features(p, n, min_pt=8.0, n_particles=40)
    pt = _plf(x, "pT")
    kept = np.minimum(np.sum((pt_in >= 8.0) & (np.arange(150) < n[:, None]), axis=1), 40)
    np.testing.assert_array_equal(np.sum(pt > 0, axis=1), kept)
    assert np.all(pt[pt > 0] >= np.float32(8.0))
    # relative features still refer to the whole jet (all constituents)
    e_rel = _plf(plf_features(p, n), "E_rel")
    np.testing.assert_allclose(e_rel.sum(axis=1), 1.0, rtol=1e-5)
    assert np.all(_plf(x, "E_rel").sum(axis=1) <= 1.0 + 1e-5)


def test_plf_matches_scalar_definitions():
    p, n = random_jets(8, 4, lo=20, hi=60)
    x = plf_features(p, n)
    for k in range(len(n)):
        c = p[k, : n[k]]
        jet = c.sum(axis=0)
        jpt = math.hypot(jet[0], jet[1])
        jeta, jphi = math.asinh(jet[2] / jpt), math.atan2(jet[1], jet[0])
        jtheta = math.acos(jet[2] / math.sqrt(jpt**2 + jet[2] ** 2))
        rows = []
        for px, py, pz, e in c:
            pt = math.hypot(px, py)
            eta, phi = math.asinh(pz / pt), math.atan2(py, px)
            dphi = (phi - jphi + math.pi) % (2 * math.pi) - math.pi
            cos_t = pz / math.sqrt(pt * pt + pz * pz)
            rows.append(
                [
                    px,
                    py,
                    pz,
                    e,
                    e / jet[3],
                    pt,
                    pt / jpt,
                    eta,
                    eta - jeta,
                    phi,
                    dphi,
                    math.hypot(eta - jeta, dphi),
                    cos_t,
                    math.cos(math.acos(cos_t) - jtheta),
                ]
            )
        ref = np.array(rows)
        cols = [PLF_NAMES.index(v) for v in PLF_NAMES if v not in ("eta_rot", "phi_rot")]
        np.testing.assert_allclose(x[k, : n[k]][:, cols], ref, rtol=2e-6, atol=2e-6)
        # principal axis from the eigenvectors of the pT-weighted second-moment matrix
        w, d = ref[:, 5], ref[:, [8, 10]]
        _, vecs = np.linalg.eigh((w[:, None, None] * d[:, :, None] * d[:, None, :]).sum(axis=0))
        major = vecs[:, 1]
        if np.sum(w * (d @ major) ** 3) < 0:
            major = -major
        minor = np.array([-major[1], major[0]])
        np.testing.assert_allclose(_plf(x[k, : n[k]], "eta_rot"), d @ major, atol=2e-6)
        np.testing.assert_allclose(_plf(x[k, : n[k]], "phi_rot"), d @ minor, atol=2e-6)


def test_plf_on_pythia_jets(pythia_jets):
    p, n = pythia_jets
    x = plf_features(p, n)
    real = np.arange(150) < n[:, None]
    dr = _plf(x, "deltaR")
    # anti-kT R = 0.8 bounds the (rapidity, φ) distance; ΔR uses the pseudorapidity η, which departs from the
    # rapidity for soft massive hadrons (a 0.3 GeV proton can sit at |η - y| > 1), so bound the hard ones only
    assert dr[real & (_plf(x, "pT") > 2.0)].max() < 0.82
    assert np.all(np.abs(_plf(x, "phi_rel")[real]) <= math.pi)
    np.testing.assert_allclose(_plf(x, "E_rel").sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(_plf(x, "eta_rot") ** 2 + _plf(x, "phi_rot") ** 2, dr**2, atol=1e-5)
    eta_rot, phi_rot, w = _plf(x, "eta_rot"), _plf(x, "phi_rot"), _plf(x, "pT")
    assert np.all(np.sum(w * eta_rot**2, axis=1) >= np.sum(w * phi_rot**2, axis=1) * (1 - 1e-5))
    assert np.all(np.abs(np.sum(w * eta_rot * phi_rot, axis=1)) <= 1e-4 * np.sum(w * dr**2, axis=1))
    assert np.all(np.sum(w * eta_rot**3, axis=1) >= -1e-6)


# ---------------------------------------------------------------------------------------------------------
# bad inputs


GOOD_P, GOOD_N = random_jets(9, 3, hi=20)


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: hlf_features(GOOD_P[0], GOOD_N), "p"),
        (lambda: hlf_features(GOOD_P[..., :3], GOOD_N), "p"),
        (lambda: hlf_features(GOOD_P, GOOD_N[:2]), "n"),
        (lambda: hlf_features(GOOD_P, np.array([1, 2, MAX_PARTICLES + 1])), "n"),
        (lambda: hlf_features(GOOD_P, np.array([1, -1, 3])), "n"),
        (lambda: hlf_features(GOOD_P, np.array([1, 0, 3])), "n"),
        (lambda: hlf_features(GOOD_P, np.array([1.5, 2.0, 3.0])), "n"),
        (lambda: hlf_features(GOOD_P, GOOD_N, jet=np.zeros((3, 3))), "jet"),
        (lambda: hlf_features(np.where(np.arange(4) == 0, np.nan, GOOD_P), GOOD_N), "p"),
        (lambda: plf_features(GOOD_P, GOOD_N, n_particles=0), "n_particles"),
        (lambda: plf_features(GOOD_P, GOOD_N, n_particles=2.5), "n_particles"),
        (lambda: plf_features(GOOD_P, GOOD_N, min_pt=-1.0), "min_pt"),
        (lambda: plf_features(GOOD_P, GOOD_N, min_pt="x"), "min_pt"),
        (lambda: plf_features(GOOD_P, np.array([1, 2, MAX_PARTICLES + 1])), "n"),
        (lambda: mmdt_mask(GOOD_P, GOOD_N, z_cut=0.7), "z_cut"),
    ],
)
def test_bad_inputs_raise_an_error_naming_the_argument(call, argument):
    with pytest.raises(JetFeatureError) as info:
        call()
    assert isinstance(info.value, HwnasError) and isinstance(info.value, ValueError)
    assert str(info.value).startswith(f"{argument}: ") and "\n" not in str(info.value)
    assert info.value.argument == argument


def test_empty_inputs_and_jets_without_constituents_in_plf():
    assert hlf_features(np.zeros((0, 5, 4)), np.zeros(0, dtype=int)).shape == (0, 16)
    x = plf_features(GOOD_P, np.array([0, 3, 0]), n_particles=5)
    assert np.all(x[[0, 2]] == 0) and np.all(x[1, :3, 5] > 0)
