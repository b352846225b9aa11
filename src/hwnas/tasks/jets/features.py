"""Jet-tagging features of the hls4ml LHC jet dataset, computed from jet constituents.

Contract: ``p`` is (n_jets, max_particles, 4) float (px, py, pz, E) in GeV, constituents sorted by pT
descending and zero-padded; ``n`` is (n_jets,) int, the number of real constituents per jet (rows at and
beyond ``n`` are ignored); ``jet`` (optional) is (n_jets, 4), the jet four-momentum (default: the sum of
the constituents). :func:`hlf_features` returns the 16 high-level features (n_jets, 16) float64 in
:data:`HLF_NAMES` order, :func:`plf_features` the 16 per-particle features (n_jets, n_particles, 16)
float32 in :data:`PLF_NAMES` order, :func:`mmdt_mask` the constituents kept by the mMDT groomer. All are
vectorized in NumPy and cross-checked against FastJet + fjcontrib. Definitions and sources:
``docs/tasks_jets.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from hwnas.errors import HwnasError

__all__ = [
    "HLF_NAMES",
    "MMDT_ZCUT",
    "PLF_NAMES",
    "JetFeatureError",
    "hlf_features",
    "mmdt_mask",
    "plf_features",
]

HLF_NAMES: tuple[str, ...] = (
    "zlogz",
    "c1_b0_mmdt",
    "c1_b1_mmdt",
    "c1_b2_mmdt",
    "c2_b1_mmdt",
    "c2_b2_mmdt",
    "d2_b1_mmdt",
    "d2_b2_mmdt",
    "d2_a1_b1_mmdt",
    "d2_a1_b2_mmdt",
    "m2_b1_mmdt",
    "m2_b2_mmdt",
    "n2_b1_mmdt",
    "n2_b2_mmdt",
    "mass_mmdt",
    "multiplicity",
)
"""The 16 high-level features, in the column order of the hls4ml jet dataset."""

PLF_NAMES: tuple[str, ...] = (
    "px",
    "py",
    "pz",
    "E",
    "E_rel",
    "pT",
    "pT_rel",
    "eta",
    "eta_rel",
    "eta_rot",
    "phi",
    "phi_rel",
    "phi_rot",
    "deltaR",
    "cos_theta",
    "cos_theta_rel",
)
"""The 16 per-particle features, in the column order of the hls4ml 150-particle dataset."""

MMDT_ZCUT = 0.1
"""The modified-mass-drop symmetry cut z_cut of the dataset."""

_TWO_PI = 2.0 * math.pi
_MAX_RAP = 1e5  # FastJet's PseudoJet::_MaxRap, the rapidity given to a massless particle along the beam
_CHUNK = 1 << 19  # elements per temporary array in the vectorized loops (4 MiB of float64)
_JET_CHUNK = 4096  # jets per block in the public functions (bounds their memory)


class JetFeatureError(HwnasError, ValueError):
    """Bad input to the jet feature extraction; the message starts with the argument's name.

    Same ``"<argument>: <detail>"`` form and attributes as the generator's ``JetsError`` (both derive from
    :class:`~hwnas.errors.HwnasError` and ``ValueError``); kept separate so that this module never imports
    the generator.
    """

    def __init__(self, argument: str, detail: str) -> None:
        super().__init__(f"{argument}: {detail}")
        self.argument = argument
        self.detail = detail


# ---------------------------------------------------------------------------------------------------------
# input checks


def _check_inputs(
    p: np.ndarray, n: np.ndarray, jet: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Checked shapes and counts: (p as an array, int64 counts, jet as a float64 array or None)."""
    p = np.asarray(p)
    if p.ndim != 3 or p.shape[2] != 4:
        raise JetFeatureError("p", f"expected shape (n_jets, max_particles, 4), got {p.shape}")
    if not (np.issubdtype(p.dtype, np.floating) or np.issubdtype(p.dtype, np.integer)):
        raise JetFeatureError("p", f"expected a real-valued array, got dtype {p.dtype}")
    n_arr = np.asarray(n)
    if n_arr.shape != (p.shape[0],):
        raise JetFeatureError("n", f"expected shape (n_jets,) = ({p.shape[0]},), got {n_arr.shape}")
    if n_arr.size and not np.issubdtype(n_arr.dtype, np.integer):
        if not (np.issubdtype(n_arr.dtype, np.floating) and np.all(n_arr == np.round(n_arr))):
            raise JetFeatureError("n", f"expected integer constituent counts, got dtype {n_arr.dtype}")
    n_int = n_arr.astype(np.int64)
    if n_int.size and n_int.min() < 0:
        raise JetFeatureError("n", f"expected counts >= 0, got {n_int.min()} for jet {int(np.argmin(n_int))}")
    if n_int.size and n_int.max() > p.shape[1]:
        k = int(np.argmax(n_int))
        raise JetFeatureError("n", f"expected counts <= max_particles = {p.shape[1]}, got {n_int[k]} for jet {k}")
    if jet is not None:
        jet = np.asarray(jet, dtype=np.float64)
        if jet.shape != (p.shape[0], 4):
            raise JetFeatureError("jet", f"expected shape (n_jets, 4) = ({p.shape[0]}, 4), got {jet.shape}")
        if not np.all(np.isfinite(jet)):
            raise JetFeatureError("jet", "non-finite four-momentum component")
    return p, n_int, jet


def _chunks(p: np.ndarray, n: np.ndarray, jet: np.ndarray | None) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
    """Per block of at most :data:`_JET_CHUNK` jets: (rows, float64 constituents with zeroed padding, jets)."""
    rows_pad = np.arange(p.shape[1])
    for lo in range(0, p.shape[0], _JET_CHUNK):
        rows = slice(lo, min(p.shape[0], lo + _JET_CHUNK))
        valid = rows_pad < n[rows, None]
        p64 = np.where(valid[:, :, None], p[rows].astype(np.float64, copy=False), 0.0)
        finite = np.all(np.isfinite(p64), axis=(1, 2))
        if not finite.all():
            raise JetFeatureError("p", f"non-finite four-momentum component in jet {lo + int(np.argmin(finite))}")
        yield rows, p64, (p64.sum(axis=1) if jet is None else jet[rows])


# ---------------------------------------------------------------------------------------------------------
# kinematics with FastJet's conventions


def _rap_phi(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rapidity and azimuth in [0, 2π) of four-momenta ``p[..., 4]``, as FastJet's ``PseudoJet`` sets them."""
    px, py, pz, e = p[..., 0], p[..., 1], p[..., 2], p[..., 3]
    kt2 = px * px + py * py
    phi = np.where(kt2 == 0.0, 0.0, np.arctan2(py, px))
    phi = np.where(phi < 0.0, phi + _TWO_PI, phi)
    phi = np.where(phi >= _TWO_PI, phi - _TWO_PI, phi)
    m2 = (e + pz) * (e - pz) - kt2
    e_plus_pz = e + np.abs(pz)
    with np.errstate(divide="ignore", invalid="ignore"):
        rap = 0.5 * np.log((kt2 + np.maximum(m2, 0.0)) / (e_plus_pz * e_plus_pz))
    rap = np.where(pz > 0.0, -rap, rap)
    on_beam = (e == np.abs(pz)) & (kt2 == 0.0)
    rap = np.where(on_beam, np.where(pz >= 0.0, _MAX_RAP + np.abs(pz), -(_MAX_RAP + np.abs(pz))), rap)
    return rap, phi


def _dist2(rap_a: np.ndarray, phi_a: np.ndarray, rap_b: np.ndarray, phi_b: np.ndarray) -> np.ndarray:
    """Squared (rapidity, azimuth) distance, broadcast; FastJet's ``PseudoJet::squared_distance``."""
    dphi = np.abs(phi_a - phi_b)
    np.minimum(dphi, _TWO_PI - dphi, out=dphi)  # = FastJet's "if (dphi > pi) dphi = twopi - dphi"
    drap = rap_a - rap_b
    dphi *= dphi
    drap *= drap
    dphi += drap
    return dphi


def _signed_mass(p: np.ndarray) -> np.ndarray:
    """Mass of four-momenta ``p[..., 4]``, negative for space-like ones (FastJet's ``PseudoJet::m``)."""
    px, py, pz, e = p[..., 0], p[..., 1], p[..., 2], p[..., 3]
    m2 = (e + pz) * (e - pz) - (px * px + py * py)
    return np.copysign(np.sqrt(np.abs(m2)), m2)


# ---------------------------------------------------------------------------------------------------------
# Cambridge/Aachen clustering and the modified mass-drop tagger


def _ca_mmdt_block(p: np.ndarray, counts: np.ndarray, z_cut: float) -> tuple[np.ndarray, np.ndarray]:
    """The modified mass-drop tagger on jets sorted by ``counts`` descending: kept mask (B, M), groomed (B, 4).

    C/A with an unbounded radius (all constituents end in one tree, as fjcontrib's default reclustering
    ``Recluster(cambridge_algorithm, JetDefinition::max_allowable_R)``): repeatedly merge the closest pair in
    (rapidity, azimuth), E-scheme. Each cluster keeps its nearest neighbour, rescanned only when that
    neighbour was merged, so one merge costs O(B·M); the arrays are compacted to the live clusters whenever
    half of their slots are dead. Then the mMDT walk: from the root, a splitting with
    min(pT1, pT2)/(pT1 + pT2) > z_cut stops the recursion, else it follows the parent with the larger pT;
    reaching a single constituent returns it (grooming mode).
    """
    n_jets, m = p.shape[:2]
    rap, phi = _rap_phi(p)
    pen = np.where(np.arange(m) < counts[:, None], 0.0, np.inf)  # added to distances: inf for dead slots
    nn_d = np.empty((n_jets, m))
    nn_j = np.empty((n_jets, m), dtype=np.int64)
    diag = np.arange(m)
    step = max(1, _CHUNK // (m * m))
    for lo in range(0, n_jets, step):
        hi = min(n_jets, lo + step)
        d = _dist2(rap[lo:hi, :, None], phi[lo:hi, :, None], rap[lo:hi, None, :], phi[lo:hi, None, :])
        d += pen[lo:hi, :, None]
        d += pen[lo:hi, None, :]
        d[:, diag, diag] = np.inf
        nn_j[lo:hi] = np.argmin(d, axis=2)
        nn_d[lo:hi] = np.take_along_axis(d, nn_j[lo:hi, :, None], axis=2)[:, :, 0]
    nn_j[pen > 0.0] = -1
    mom = p.copy()
    node = np.broadcast_to(diag, (n_jets, m)).copy()  # tree node held by each slot; leaves are 0..m-1
    n_int = max(m - 1, 1)
    par1 = np.zeros((n_jets, n_int), dtype=np.int64)  # parents of internal node m + s
    par2 = np.zeros((n_jets, n_int), dtype=np.int64)
    node_mom = np.zeros((n_jets, m + n_int, 4))
    node_mom[:, :m] = p
    merges = np.maximum(counts - 1, 0)
    width = m
    for s in range(int(merges.max(initial=0))):
        k = int(np.count_nonzero(merges > s))  # jets still merging: a prefix, since counts are sorted
        rap, phi, pen, nn_d, nn_j, node, mom = rap[:k], phi[:k], pen[:k], nn_d[:k], nn_j[:k], node[:k], mom[:k]
        r = np.arange(k)
        live = int(counts[0]) - s  # clusters left in the largest jet
        if width > 32 and 2 * live <= width:
            order = np.argsort(pen > 0.0, axis=1, kind="stable")[:, :live]
            inv = np.full((k, width + 1), -1, dtype=np.int64)
            inv[r[:, None], order] = np.arange(live)
            nn_j = np.take_along_axis(inv[r[:, None], nn_j], order, axis=1)  # nn_j = -1 reads inv[:, -1]
            rap, phi, pen, nn_d, node = (np.take_along_axis(x, order, axis=1) for x in (rap, phi, pen, nn_d, node))
            mom = np.take_along_axis(mom, order[:, :, None], axis=1)
            width = live
        i = np.argmin(nn_d, axis=1)
        j = nn_j[r, i]
        a = np.minimum(i, j)
        b = np.maximum(i, j)
        na, nb = node[r, a], node[r, b]
        par1[r, s] = np.minimum(na, nb)  # FastJet's parent1 is the lower history index
        par2[r, s] = np.maximum(na, nb)
        new = mom[r, a] + mom[r, b]
        mom[r, a] = new
        node_mom[r, m + s] = new
        node[r, a] = m + s
        pen[r, b] = np.inf
        nn_d[r, b] = np.inf
        nn_j[r, b] = -1
        ra, pa = _rap_phi(new)
        rap[r, a] = ra
        phi[r, a] = pa
        d = _dist2(ra[:, None], pa[:, None], rap, phi)
        d += pen
        d[r, a] = np.inf
        rescan = nn_j == a[:, None]
        rescan |= nn_j == b[:, None]
        upd = d < nn_d
        np.copyto(nn_d, d, where=upd)
        np.copyto(nn_j, a[:, None], where=upd)
        ja = np.argmin(d, axis=1)
        nn_j[r, a] = ja
        nn_d[r, a] = d[r, ja]
        rescan[r, a] = False
        rb, rk = np.nonzero(rescan)
        if rb.size:
            dd = _dist2(rap[rb, rk][:, None], phi[rb, rk][:, None], rap[rb], phi[rb])
            dd += pen[rb]
            q = np.arange(rb.size)
            dd[q, rk] = np.inf
            jj = np.argmin(dd, axis=1)
            nn_j[rb, rk] = jj
            nn_d[rb, rk] = dd[q, jj]
    # mMDT walk down the C/A tree
    node_kt2 = node_mom[..., 0] ** 2 + node_mom[..., 1] ** 2
    cur = np.where(counts >= 2, m + counts - 2, 0)
    done = cur < m
    while not done.all():
        act = np.flatnonzero(~done)
        s_act = cur[act] - m
        p1, p2 = par1[act, s_act], par2[act, s_act]
        k1, k2 = node_kt2[act, p1], node_kt2[act, p2]
        pt1, pt2 = np.sqrt(k1), np.sqrt(k2)
        with np.errstate(divide="ignore", invalid="ignore"):
            tagged = np.minimum(pt1, pt2) / (pt1 + pt2) > z_cut
        nxt = np.where(k1 < k2, p2, p1)
        cur[act[~tagged]] = nxt[~tagged]
        done[act] = tagged | (cur[act] < m)
    # the constituents below the kept node
    inside = np.zeros((n_jets, m + n_int), dtype=bool)
    rows = np.arange(n_jets)
    inside[rows, cur] = True
    for s in range(int(merges.max(initial=0)) - 1, -1, -1):
        f = inside[:, m + s]
        inside[rows, par1[:, s]] |= f
        inside[rows, par2[:, s]] |= f
    return inside[:, :m] & (np.arange(m) < counts[:, None]), node_mom[rows, cur]


def _mmdt(p: np.ndarray, n: np.ndarray, z_cut: float) -> tuple[np.ndarray, np.ndarray]:
    """Kept mask (n_jets, max_particles) and groomed four-momenta (n_jets, 4); jets processed in blocks."""
    n_jets, m_all = p.shape[:2]
    mask = np.zeros((n_jets, m_all), dtype=bool)
    groomed = np.zeros((n_jets, 4))
    order = np.argsort(-n, kind="stable")
    start = 0
    while start < n_jets:
        m = max(int(n[order[start]]), 1)
        size = max(1, min(2048, (1 << 16) // m))
        idx = order[start : start + size]
        mk, g = _ca_mmdt_block(p[idx, :m], n[idx], z_cut)
        mask[idx, :m] = mk
        groomed[idx] = g
        start += size
    return mask, groomed


def mmdt_mask(p: np.ndarray, n: np.ndarray, *, z_cut: float = MMDT_ZCUT) -> np.ndarray:
    """The constituents kept by the modified mass-drop tagger: bool (n_jets, max_particles).

    Cambridge/Aachen reclustering of each jet's constituents into one tree (unbounded radius, E-scheme,
    FastJet rapidity/azimuth distance), then fjcontrib's ``ModifiedMassDropTagger(z_cut)`` in grooming
    mode: symmetry measure scalar_z = min(pT1, pT2)/(pT1 + pT2) > ``z_cut``, no mass-drop condition
    (mu = ∞), recursion into the larger-pT branch; a jet that never passes keeps its hardest constituent.
    """
    p, n_int, _ = _check_inputs(p, n, None)
    if not (0.0 <= float(z_cut) < 0.5):
        raise JetFeatureError("z_cut", f"expected 0 <= z_cut < 0.5, got {z_cut!r}")
    mask = np.zeros(p.shape[:2], dtype=bool)
    for rows, p64, _ in _chunks(p, n_int, None):
        mask[rows] = _mmdt(p64, n_int[rows], float(z_cut))[0]
    return mask


# ---------------------------------------------------------------------------------------------------------
# energy correlation functions


def _ecf_block(rap: np.ndarray, phi: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Normalized correlators of a block of jets (B, M) with momentum fractions ``z`` (0 for padding).

    Returns (B, 9): e2^(0), e2^(1), e2^(2); e3^(1), e3^(2) (product of the three pairwise angles);
    e3[min]^(1), e3[min]^(2) (the smallest angle: ECFG with v = 1); e3[min2]^(1), e3[min2]^(2) (the product
    of the two smallest: ECFG with v = 2). angle^(β) = ΔR^β, ΔR² the (rapidity, azimuth) distance.
    e2 = zᵀAz/2 and e3 = trace((A·diag z)³)/6 (the diagonal of A is 0); the generalized e3 sums run over
    i < j < k in a loop over the middle index j, vectorized over (jets, i < j, k > j).
    """
    d2 = _dist2(rap[:, :, None], phi[:, :, None], rap[:, None, :], phi[:, None, :])
    a1 = np.sqrt(d2)
    out = np.zeros((z.shape[0], 9))
    sz = z.sum(axis=1)
    out[:, 0] = 0.5 * (sz * sz - np.einsum("bi,bi->b", z, z))
    for col, a in ((1, a1), (2, d2)):
        w = a * z[:, None, :]  # W_ij = A_ij z_j
        out[:, col] = 0.5 * np.einsum("bi,bi->b", z, w.sum(axis=2))
        out[:, col + 2] = np.einsum("bij,bji->b", np.matmul(w, w), w) / 6.0
    if z.shape[1] >= 3:
        out[:, 5:9] = _triple_minima(a1, z)
    return out


def _triple_minima(a1: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Σ_{i<j<k} z_i z_j z_k f(ΔR_ij, ΔR_ik, ΔR_jk) for f = min, min², (product of two smallest), its square.

    For a fixed middle index j, with a_i = ΔR_ij (i < j), c_k = ΔR_jk (k > j), b_ik = ΔR_ik: the smallest
    angle is min(b, min(a, c)), the product of the two smallest is min(b·min(a, c), a·c).
    """
    n_jets, m = z.shape
    most = max(j * (m - j - 1) for j in range(m))
    buf = np.empty(n_jets * 4 * most)
    buf_ac = np.empty(n_jets * most)
    buf_b = np.empty(n_jets * most)
    acc = np.zeros((n_jets, 4))
    for j in range(1, m - 1):
        nk = m - j - 1
        size = n_jets * j * nk
        # [:, 0] smallest angle, [:, 1] product of the two smallest, [:, 2:4] their squares (β = 2)
        s = buf[: 4 * size].reshape(n_jets, 4, j, nk)
        ac = buf_ac[:size].reshape(n_jets, j, nk)
        b = buf_b[:size].reshape(n_jets, j, nk)
        np.copyto(b, a1[:, :j, j + 1 :])  # contiguous: faster elementwise work below
        a = a1[:, :j, j]
        c = a1[:, j, j + 1 :]
        lo = s[:, 1]
        np.minimum(a[:, :, None], c[:, None, :], out=lo)
        np.minimum(b, lo, out=s[:, 0])
        np.multiply(lo, b, out=lo)
        np.einsum("bi,bk->bik", a, c, out=ac)
        np.minimum(lo, ac, out=lo)
        np.multiply(s[:, :2], s[:, :2], out=s[:, 2:])
        sums = np.matmul(s.reshape(n_jets, 4 * j, nk), z[:, j + 1 :, None]).reshape(n_jets, 4, j)
        acc += np.einsum("bxi,bi->bx", sums, z[:, :j]) * z[:, j, None]
    return acc[:, [0, 2, 1, 3]]  # min^(1), min^(2), min2^(1), min2^(2)


def _ecfs(rap: np.ndarray, phi: np.ndarray, pt: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The correlators of :func:`_ecf_block` for the constituents in ``mask`` of every jet: (n_jets, 9)."""
    n_jets = pt.shape[0]
    counts = mask.sum(axis=1)
    # compact each jet's kept constituents to the front, keeping their order
    front = np.argsort(~mask, axis=1, kind="stable")
    order = np.argsort(-counts, kind="stable")
    out = np.zeros((n_jets, 9))
    start = 0
    while start < n_jets:
        m = max(int(counts[order[start]]), 1)
        size = max(1, min(1024, (1 << 16) // max(1, (m - 1) * (m - 1))))
        idx = order[start : start + size]
        cols = front[idx, :m]
        keep = np.take_along_axis(mask[idx], cols, axis=1)
        ptk = np.where(keep, np.take_along_axis(pt[idx], cols, axis=1), 0.0)
        z = ptk / ptk.sum(axis=1, keepdims=True)
        out[idx] = _ecf_block(
            np.where(keep, np.take_along_axis(rap[idx], cols, axis=1), 0.0),
            np.where(keep, np.take_along_axis(phi[idx], cols, axis=1), 0.0),
            z,
        )
        start += size
    return out


# ---------------------------------------------------------------------------------------------------------
# public feature functions


def hlf_features(p: np.ndarray, n: np.ndarray, *, jet: np.ndarray | None = None) -> np.ndarray:
    """The 16 high-level features (n_jets, 16) float64 in :data:`HLF_NAMES` order.

    ``zlogz`` = Σ z_i ln z_i over all (ungroomed) constituents, z_i = pT_i / pT_jet; ``multiplicity`` = ``n``
    (ungroomed). The ``*_mmdt`` features are computed on the constituents kept by :func:`mmdt_mask`
    (z_cut = 0.1): fjcontrib's ``EnergyCorrelatorC1/C2/D2/GeneralizedD2/M2/N2`` with the pt_R measure
    (pT_i and the (rapidity, azimuth) distance ΔR_ij), and the groomed jet's mass. Ratios whose
    denominator vanishes (a groomed jet of one constituent) are NaN, as in fjcontrib. Every jet needs
    ``n >= 1``. ``jet`` overrides the jet four-momentum used for pT_jet (default: sum of the constituents).
    """
    p, n_int, jet = _check_inputs(p, n, jet)
    if n_int.size and n_int.min() < 1:
        raise JetFeatureError("n", f"every jet needs a constituent, got 0 for jet {int(np.argmin(n_int))}")
    out = np.zeros((p.shape[0], len(HLF_NAMES)))
    for rows, p64, jet64 in _chunks(p, n_int, jet):
        out[rows] = _hlf_block(p64, n_int[rows], jet64)
    return out


def _hlf_block(p64: np.ndarray, n_int: np.ndarray, jet64: np.ndarray) -> np.ndarray:
    """The (B, 16) high-level features of a block of jets."""
    out = np.zeros((p64.shape[0], len(HLF_NAMES)))
    pt = np.hypot(p64[..., 0], p64[..., 1])
    pt_jet = np.hypot(jet64[:, 0], jet64[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        zz = pt / pt_jet[:, None]
        out[:, 0] = np.where(zz > 0.0, zz * np.log(np.where(zz > 0.0, zz, 1.0)), 0.0).sum(axis=1)
    mask, groomed = _mmdt(p64, n_int, MMDT_ZCUT)
    rap, phi = _rap_phi(p64)
    e = _ecfs(rap, phi, pt, mask)
    e2_0, e2_1, e2_2, e3_1, e3_2, em_1, em_2, ep_1, ep_2 = e.T
    with np.errstate(divide="ignore", invalid="ignore"):
        out[:, 1] = e2_0  # C1^(0) = e2^(0)
        out[:, 2] = e2_1
        out[:, 3] = e2_2
        out[:, 4] = e3_1 / (e2_1 * e2_1)  # C2 = e3 / e2^2
        out[:, 5] = e3_2 / (e2_2 * e2_2)
        out[:, 6] = e3_1 / (e2_1 * e2_1 * e2_1)  # D2 = e3 / e2^3
        out[:, 7] = e3_2 / (e2_2 * e2_2 * e2_2)
        out[:, 8] = e3_1 / np.power(e2_1, 3.0)  # D2^(α=1, β) = e3^(1) / (e2^(β))^(3/β)
        out[:, 9] = e3_1 / np.power(e2_2, 1.5)
        out[:, 10] = em_1 / e2_1  # M2 = 1e3 / 1e2
        out[:, 11] = em_2 / e2_2
        out[:, 12] = ep_1 / (e2_1 * e2_1)  # N2 = 2e3 / (1e2)^2
        out[:, 13] = ep_2 / (e2_2 * e2_2)
    out[:, 14] = _signed_mass(groomed)
    out[:, 15] = n_int
    return out


def plf_features(
    p: np.ndarray,
    n: np.ndarray,
    *,
    n_particles: int = 150,
    min_pt: float = 0.0,
    jet: np.ndarray | None = None,
) -> np.ndarray:
    """The 16 per-particle features (n_jets, n_particles, 16) float32 in :data:`PLF_NAMES` order.

    Constituents with pT < ``min_pt`` are dropped, the rest sorted by pT descending and cut or zero-padded
    to ``n_particles`` rows (padding rows are all zeros). The jet (``jet``, default the sum of all ``n``
    constituents) gives E_jet, pT_jet, η_jet, φ_jet, θ_jet and the principal axis. η is the pseudorapidity,
    φ ∈ (−π, π]; η_rel = η − η_jet, φ_rel = φ − φ_jet wrapped to (−π, π], ΔR = √(η_rel² + φ_rel²),
    cos θ = pz/|p|, cos θ_rel = cos(θ − θ_jet). (η_rot, φ_rot) = (η_rel, φ_rel) rotated by the proper
    rotation that puts the major principal axis of the pT-weighted second moments of all constituents'
    (η_rel, φ_rel) (taken about the jet axis) on +η_rot, the sign chosen so that Σ pT η_rot³ >= 0.
    """
    if isinstance(n_particles, bool) or not isinstance(n_particles, (int, np.integer)) or n_particles < 1:
        raise JetFeatureError("n_particles", f"expected an integer >= 1, got {n_particles!r}")
    try:
        min_pt_f = float(min_pt)
    except (TypeError, ValueError):
        raise JetFeatureError("min_pt", f"expected a number >= 0 (GeV), got {min_pt!r}") from None
    if not (min_pt_f >= 0.0 and math.isfinite(min_pt_f)):
        raise JetFeatureError("min_pt", f"expected a finite number >= 0 (GeV), got {min_pt!r}")
    p, n_int, jet = _check_inputs(p, n, jet)
    out = np.zeros((p.shape[0], int(n_particles), len(PLF_NAMES)), dtype=np.float32)
    if p.shape[1] == 0:
        return out
    for rows, p64, jet64 in _chunks(p, n_int, jet):
        _plf_block(p64, n_int[rows], jet64, min_pt_f, out[rows])
    return out


def _plf_block(p64: np.ndarray, n_int: np.ndarray, jet64: np.ndarray, min_pt: float, out: np.ndarray) -> None:
    """Fills ``out`` (B, n_particles, 16) with the per-particle features of a block of jets."""
    n_particles, m_all = out.shape[1], p64.shape[1]
    valid = np.arange(m_all) < n_int[:, None]
    pt_all = np.hypot(p64[..., 0], p64[..., 1])

    # jet quantities
    jpx, jpy, jpz, je = jet64.T
    jpt = np.hypot(jpx, jpy)
    jp = np.sqrt(jpt * jpt + jpz * jpz)
    with np.errstate(divide="ignore", invalid="ignore"):
        jeta = np.arcsinh(jpz / jpt)
        jtheta = np.arccos(np.clip(np.where(jp > 0.0, jpz / jp, 1.0), -1.0, 1.0))
    jphi = np.arctan2(jpy, jpx)

    def eta_phi_rel(q: np.ndarray, qpt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        with np.errstate(divide="ignore", invalid="ignore"):
            eta = np.arcsinh(q[..., 2] / qpt)
        phi = np.arctan2(q[..., 1], q[..., 0])
        phi = np.where(phi == -math.pi, math.pi, phi)
        d = phi - jphi[:, None]
        phi_rel = math.pi - np.remainder(math.pi - d, _TWO_PI)
        return eta, phi, eta - jeta[:, None], phi_rel

    # principal axis from all constituents, pT-weighted second moments about the jet axis
    _, _, er_all, pr_all = eta_phi_rel(p64, np.where(valid, pt_all, 1.0))
    w = np.where(valid, pt_all, 0.0)
    er_all = np.where(valid, er_all, 0.0)
    pr_all = np.where(valid, pr_all, 0.0)
    c_ee = (w * er_all * er_all).sum(axis=1)
    c_pp = (w * pr_all * pr_all).sum(axis=1)
    c_ep = (w * er_all * pr_all).sum(axis=1)
    alpha = 0.5 * np.arctan2(2.0 * c_ep, c_ee - c_pp)
    ca, sa = np.cos(alpha), np.sin(alpha)
    skew = (w * (er_all * ca[:, None] + pr_all * sa[:, None]) ** 3).sum(axis=1)
    flip = np.where(skew < 0.0, -1.0, 1.0)
    ca, sa = ca * flip, sa * flip

    # selection, ordering and truncation
    keep = valid & (pt_all >= min_pt)
    key = np.where(keep, -pt_all, np.inf)
    k = min(n_particles, m_all)
    order = np.argsort(key, axis=1, kind="stable")[:, :k]
    sel = np.take_along_axis(keep, order, axis=1)
    q = np.take_along_axis(p64, order[:, :, None], axis=1)
    qpt = np.take_along_axis(pt_all, order, axis=1)
    eta, phi, eta_rel, phi_rel = eta_phi_rel(q, np.where(sel, qpt, 1.0))
    pmag = np.sqrt(qpt * qpt + q[..., 2] * q[..., 2])
    with np.errstate(divide="ignore", invalid="ignore"):
        cos_theta = np.where(pmag > 0.0, q[..., 2] / np.where(pmag > 0.0, pmag, 1.0), 0.0)
        e_rel = q[..., 3] / je[:, None]
        pt_rel = qpt / jpt[:, None]
    theta = np.arccos(np.clip(cos_theta, -1.0, 1.0))
    feats = np.stack(
        [
            q[..., 0],
            q[..., 1],
            q[..., 2],
            q[..., 3],
            e_rel,
            qpt,
            pt_rel,
            eta,
            eta_rel,
            eta_rel * ca[:, None] + phi_rel * sa[:, None],
            phi,
            phi_rel,
            -eta_rel * sa[:, None] + phi_rel * ca[:, None],
            np.sqrt(eta_rel * eta_rel + phi_rel * phi_rel),
            cos_theta,
            np.cos(theta - jtheta[:, None]),
        ],
        axis=-1,
    )
    out[:, :k] = np.where(sel[:, :, None], feats, 0.0)
