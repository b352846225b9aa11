"""Boosted-jet generator (classes g, q, w, z, t): Pythia 8 events at 13 TeV, anti-kT jets from FastJet, truth labels.

Contract: :func:`generate_jets` returns ``n_per_class`` labelled jets per class as a :class:`JetSample`,
byte-identical for a seed whatever ``workers`` is. The work is cut into shards (class × index, a fixed number of
Pythia events each, each with its own derived Pythia seed) written atomically as ``.npz`` into a cache folder named
by a hash of every option that changes the jets; a rerun loads the shards, a killed run resumes from the finished
ones. Physics choices and their reasons: ``docs/tasks_jets.md`` (section "Generator").
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import math
import multiprocessing
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
from tqdm.auto import tqdm

if TYPE_CHECKING:  # imported when jets are generated (the task and features work without them)
    import fastjet
    import pythia8mc

from hwnas.errors import HwnasError, tool_missing

__all__ = [
    "CLASSES",
    "DEFAULT_ETA_MAX",
    "DEFAULT_EVENTS_PER_SHARD",
    "DEFAULT_MATCH_DR",
    "DEFAULT_MAX_PARTICLES",
    "DEFAULT_PT_WINDOW",
    "DEFAULT_RADIUS",
    "GENERATOR_VERSION",
    "MANIFEST",
    "PTHAT_FRACTION",
    "SQRT_S",
    "JetOptions",
    "JetSample",
    "JetsError",
    "generate_jets",
    "jets_cache_folder",
    "pythia_seed",
    "pythia_settings",
]

GENERATOR_VERSION = 1
"""Bumped whenever a change to the generator changes the jets a seed gives (part of the cache key)."""
CLASSES = ("g", "q", "w", "z", "t")
"""Class names in label order: gluon, light quark (u, d, s), W, Z, top."""
SQRT_S = 13000.0
"""Proton-proton centre-of-mass energy in GeV."""
DEFAULT_PT_WINDOW = (800.0, 1200.0)
"""Jet transverse-momentum window ``[pt_min, pt_max)`` in GeV."""
DEFAULT_ETA_MAX = 1.7
"""Jets keep ``|eta| < eta_max``: the whole R = 0.8 cone then lies inside a |eta| < 2.5 tracker."""
DEFAULT_RADIUS = 0.8
"""Anti-kT radius R."""
DEFAULT_MATCH_DR = 0.6
"""Largest rapidity-azimuth distance between the jet axis and the truth parton, boson or top."""
DEFAULT_MAX_PARTICLES = 150
"""Constituent rows per jet (the hardest ones; the rest of a longer jet is dropped, a shorter one zero-padded)."""
DEFAULT_EVENTS_PER_SHARD = 500
"""Pythia events per shard (the unit of seeding, caching and resuming)."""
PTHAT_FRACTION = 0.8
"""Pythia's ``PhaseSpace:pTHatMin`` is ``PTHAT_FRACTION * pt_min`` (see docs/tasks_jets.md for the bias)."""
MANIFEST = "manifest.json"
"""Name of the manifest file in a cache folder."""

_FORMAT = "hwnas-jets-cache"
_LIGHT = (1, 2, 3)
_TARGET = {"w": 24, "z": 23, "t": 6}
_N_QUARKS = {"w": 2, "z": 2, "t": 3}
_NU = (12, 14, 16)
_MAX_EMPTY_SHARDS = 8
_PRIOR_YIELD = 0.3  # jets per event assumed for a class before its first shard is back
_PROCESSES: dict[str, tuple[str, ...]] = {
    "g": ("HardQCD:gg2gg = on", "HardQCD:qqbar2gg = on", "HardQCD:qg2qg = on"),
    "q": ("HardQCD:qg2qg = on", "HardQCD:qq2qq = on", "HardQCD:qqbar2qqbarNew = on", "HardQCD:gg2qqbar = on"),
    "w": ("WeakBosonAndParton:qqbar2Wg = on", "WeakBosonAndParton:qg2Wq = on"),
    "z": ("WeakBosonAndParton:qqbar2gmZg = on", "WeakBosonAndParton:qg2gmZq = on"),
    "t": ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on"),
}
_MASS_RANGES = (  # Breit-Wigner masses within about ten widths of the pole (Pythia's defaults are unbounded above)
    "24:mMin = 60.0", "24:mMax = 101.0", "23:mMin = 66.0", "23:mMax = 116.0", "6:mMin = 159.0", "6:mMax = 187.0",
)
_SHARD_NAME = re.compile(r"^([a-z])-(\d{5})\.npz$")
_RAGGED = ("constituents", "pdg_id", "charge")
_PER_JET = ("n_total", "jet", "truth_pt", "truth_rap", "truth_phi", "truth_mass", "truth_id", "pthat", "event")
_DTYPES = {"constituents": np.float64, "pdg_id": np.int32, "charge": np.int8, "n_total": np.int32,
           "jet": np.float64, "truth_pt": np.float64, "truth_rap": np.float64, "truth_phi": np.float64,
           "truth_mass": np.float64, "truth_id": np.int32,
           "pthat": np.float64, "event": np.int32}



@functools.cache
def _libs() -> tuple[ModuleType, ModuleType]:
    """``(pythia8mc, fastjet)``, imported on first use (FastJet's banner silenced); a JetsError if missing."""
    try:
        import fastjet
        import pythia8mc
    except ImportError as err:
        raise tool_missing(JetsError("generator", f"{err.name} is not installed: pip install 'hwnas[jets]'")) from None
    fastjet._swig.ClusterSequence.set_fastjet_banner_stream(None)  # no FastJet banner on stdout
    return pythia8mc, fastjet


class JetsError(HwnasError, ValueError):
    """Invalid jet-generator input; the message starts with the option's name."""

    def __init__(self, option: str, detail: str) -> None:
        super().__init__(f"{option}: {detail}")
        self.option = option
        self.detail = detail


@dataclass(frozen=True)
class JetOptions:
    """Every option that changes the jets of a shard (validated; the cache key is made from :meth:`key`)."""

    seed: int
    pt_min: float = DEFAULT_PT_WINDOW[0]
    pt_max: float = DEFAULT_PT_WINDOW[1]
    eta_max: float = DEFAULT_ETA_MAX
    radius: float = DEFAULT_RADIUS
    match_dr: float = DEFAULT_MATCH_DR
    events_per_shard: int = DEFAULT_EVENTS_PER_SHARD
    pthat_min: float | None = None
    """Pythia's ``PhaseSpace:pTHatMin`` in GeV; ``None``: ``PTHAT_FRACTION * pt_min``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "seed", _check_int("seed", self.seed, 0))
        lo, hi = _finite("pt_window", self.pt_min), _finite("pt_window", self.pt_max)
        if not 0.0 < lo < hi:
            raise JetsError("pt_window", f"expected 0 < pt_min < pt_max in GeV, got ({lo:g}, {hi:g})")
        if lo >= SQRT_S / 2:
            raise JetsError("pt_window", f"pt_min {lo:g} GeV is beyond the kinematic limit sqrt(s)/2 = "
                            f"{SQRT_S / 2:g} GeV")
        object.__setattr__(self, "pt_min", lo)
        object.__setattr__(self, "pt_max", hi)
        eta = _finite("eta_max", self.eta_max)
        if not 0.0 < eta <= 5.0:
            raise JetsError("eta_max", f"expected 0 < eta_max <= 5, got {eta:g}")
        object.__setattr__(self, "eta_max", eta)
        r = _finite("radius", self.radius)
        if not 0.0 < r <= 1.5:
            raise JetsError("radius", f"expected 0 < R <= 1.5, got {r:g}")
        object.__setattr__(self, "radius", r)
        dr = _finite("match_dr", self.match_dr)
        if not 0.0 < dr <= r:
            raise JetsError("match_dr", f"expected 0 < match_dr <= radius ({r:g}), got {dr:g}")
        object.__setattr__(self, "match_dr", dr)
        object.__setattr__(self, "events_per_shard", _check_int("events_per_shard", self.events_per_shard, 1))
        pthat = PTHAT_FRACTION * lo if self.pthat_min is None else _finite("pthat_min", self.pthat_min)
        if not 0.0 < pthat <= lo:
            raise JetsError("pthat_min", f"expected 0 < pthat_min <= pt_min ({lo:g} GeV), got {pthat:g}")
        object.__setattr__(self, "pthat_min", pthat)

    def key(self) -> dict[str, object]:
        """The options, generator version and library versions, as recorded in the manifest and hashed."""
        return {"format": _FORMAT, "version": GENERATOR_VERSION, "pythia8mc": _version("pythia8mc"),
                "fastjet": _version("fastjet"), "sqrt_s": SQRT_S, "seed": self.seed,
                "pt_window": [self.pt_min, self.pt_max], "eta_max": self.eta_max, "radius": self.radius,
                "match_dr": self.match_dr, "pthat_min": self.pthat_min, "events_per_shard": self.events_per_shard}

    def digest(self) -> str:
        """Hex SHA-256 of :meth:`key` (its first 12 digits name the cache folder)."""
        return hashlib.sha256(json.dumps(self.key(), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True, eq=False)
class JetSample:
    """Labelled jets, ordered by class (in ``classes`` order), then shard, then event.

    ``constituents`` (N, P, 4) float64 px, py, pz, E in GeV, pT-descending, zero rows after the first
    ``n_constituents``; ``pdg_id`` (N, P) int32 and ``charge`` (N, P) int8 (0 in padding); ``n_constituents`` (N,)
    int32 rows holding a constituent, ``min(n_total, P)``; ``n_total`` (N,) int32 constituents of the clustered jet
    (above P only the P hardest are stored); ``jet`` (N, 4) float64 the jet four-momentum (E-scheme sum of all
    ``n_total`` constituents); ``y`` (N,) int64 index into ``classes``; ``truth_pt``, ``truth_rap``, ``truth_phi``,
    ``truth_mass`` (N,) float64 and ``truth_id`` (N,) int32 (PDG) of the matched parton, boson or top; ``pthat``
    (N,) float64 the event's hard-process pT; ``shard``, ``event`` (N,) int32 where the jet came from (unique per
    class).
    """

    constituents: np.ndarray
    pdg_id: np.ndarray
    charge: np.ndarray
    n_constituents: np.ndarray
    n_total: np.ndarray
    jet: np.ndarray
    y: np.ndarray
    truth_pt: np.ndarray
    truth_rap: np.ndarray
    truth_phi: np.ndarray
    truth_mass: np.ndarray
    truth_id: np.ndarray
    pthat: np.ndarray
    shard: np.ndarray
    event: np.ndarray
    classes: tuple[str, ...] = field(default=CLASSES)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        n = len(self.y)
        if self.constituents.ndim != 3 or self.constituents.shape[0] != n or self.constituents.shape[2] != 4:
            raise JetsError("constituents", f"expected shape ({n}, P, 4), got {self.constituents.shape}")
        for name in ("pdg_id", "charge"):
            if getattr(self, name).shape != self.constituents.shape[:2]:
                raise JetsError(name, f"expected shape {self.constituents.shape[:2]}, got {getattr(self, name).shape}")
        if self.jet.shape != (n, 4):
            raise JetsError("jet", f"expected shape ({n}, 4), got {self.jet.shape}")
        for name in ("n_constituents", "n_total", "truth_pt", "truth_rap", "truth_phi", "truth_mass", "truth_id",
                     "pthat", "shard", "event"):
            if getattr(self, name).shape != (n,):
                raise JetsError(name, f"expected shape ({n},), got {getattr(self, name).shape}")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def max_particles(self) -> int:
        """Constituent rows per jet (P)."""
        return int(self.constituents.shape[1])

    @property
    def truncated(self) -> np.ndarray:
        """(N,) bool: the jet has more constituents than ``max_particles`` (the softest ones are not stored)."""
        return self.n_total > self.n_constituents

    @property
    def pt(self) -> np.ndarray:
        """(N,) jet transverse momentum in GeV."""
        return np.hypot(self.jet[:, 0], self.jet[:, 1])

    @property
    def eta(self) -> np.ndarray:
        """(N,) jet pseudorapidity."""
        return np.arcsinh(self.jet[:, 2] / self.pt)

    @property
    def phi(self) -> np.ndarray:
        """(N,) jet azimuth in (-pi, pi]."""
        return np.arctan2(self.jet[:, 1], self.jet[:, 0])

    @property
    def mass(self) -> np.ndarray:
        """(N,) ungroomed jet mass in GeV."""
        m2 = self.jet[:, 3] ** 2 - np.sum(self.jet[:, :3] ** 2, axis=1)
        return np.sqrt(np.maximum(m2, 0.0))


def pythia_settings(cls: str, options: JetOptions, pythia_seed: int) -> tuple[str, ...]:
    """The Pythia ``readString`` lines of one shard of class ``cls``."""
    if cls not in _PROCESSES:
        raise JetsError("classes", f"unknown class {cls!r}; expected some of {', '.join(CLASSES)}")
    return (
        f"Beams:eCM = {SQRT_S:.1f}",
        "Random:setSeed = on",
        f"Random:seed = {pythia_seed}",
        "Print:quiet = on",
        "Next:numberCount = 0",
        "Next:numberShowEvent = 0",
        "Next:numberShowProcess = 0",
        "Next:numberShowInfo = 0",
        "PartonLevel:MPI = on",
        "HadronLevel:all = on",
        f"PhaseSpace:pTHatMin = {options.pthat_min!r}",
        "HardQCD:nQuarkNew = 3",
        "WeakZ0:gmZmode = 2",
        "24:onMode = off",
        "24:onIfAny = 1 2 3 4 5",
        "23:onMode = off",
        "23:onIfAny = 1 2 3 4 5",
        *_MASS_RANGES,
        *_PROCESSES[cls],
    )


def pythia_seed(seed: int, cls: str, shard: int) -> int:
    """Pythia's ``Random:seed`` (1..900,000,000) of shard ``shard`` of class ``cls``."""
    digest = hashlib.sha256(f"hwnas-jets:{seed}:{cls}:{shard}".encode()).digest()
    return 1 + int.from_bytes(digest[:8], "little") % 900_000_000


def jets_cache_folder(data_dir: str | os.PathLike[str], options: JetOptions) -> Path:
    """The cache folder of ``options`` in ``data_dir``: ``jets-seed<seed>-pt<min>-<max>-<hash>``."""
    return Path(data_dir) / (f"jets-seed{options.seed}-pt{options.pt_min:g}-{options.pt_max:g}-"
                             f"{options.digest()[:12]}")


def generate_jets(n_per_class: int, *, seed: int, classes: Sequence[str] | str = CLASSES,
                  pt_window: tuple[float, float] = DEFAULT_PT_WINDOW, eta_max: float = DEFAULT_ETA_MAX,
                  radius: float = DEFAULT_RADIUS, match_dr: float = DEFAULT_MATCH_DR,
                  max_particles: int = DEFAULT_MAX_PARTICLES, events_per_shard: int = DEFAULT_EVENTS_PER_SHARD,
                  pthat_min: float | None = None, workers: int = 1, progress: bool = True,
                  data_dir: str | os.PathLike[str] | None = None) -> JetSample:
    """Generate (or load from the cache) ``n_per_class`` jets of every class in ``classes``.

    Args:
        n_per_class: jets per class (>= 1); a smaller number gives a prefix of each class's jets.
        seed: non-negative integer; the same options give byte-identical arrays whatever ``workers`` is.
        classes: class names out of :data:`CLASSES` (or a comma list); labels index them in the order given,
            and a class's jets do not depend on the other classes asked for.
        pt_window: ``(pt_min, pt_max)`` in GeV; jets keep ``pt_min <= pT < pt_max``.
        eta_max: jets keep ``|eta| < eta_max``.
        radius: anti-kT R.
        match_dr: largest distance in (rapidity, azimuth) from the jet axis to the matched truth object.
        max_particles: constituent rows per jet (does not change the cache; applied when loading).
        events_per_shard: Pythia events per shard (changes which jets a seed gives; part of the cache key).
        pthat_min: Pythia's ``PhaseSpace:pTHatMin`` in GeV (default ``PTHAT_FRACTION * pt_min``).
        workers: processes (>= 1); more than 1 runs shards in a forkserver (or spawn) process pool.
        progress: show a tqdm bar over jets.
        data_dir: folder holding the cache folder (:func:`jets_cache_folder`; created if needed); ``None`` uses a
            temporary folder removed afterwards.

    Raises:
        JetsError: a bad option (the message starts with its name), or a cache folder holding other options.
    """
    n_per_class = _check_int("n_per_class", n_per_class, 1)
    names = _check_classes(classes)
    if isinstance(pt_window, str | bytes) or not isinstance(pt_window, Sequence) or len(pt_window) != 2:
        raise JetsError("pt_window", f"expected (pt_min, pt_max) in GeV, got {pt_window!r}")
    options = JetOptions(seed=seed, pt_min=pt_window[0], pt_max=pt_window[1], eta_max=eta_max, radius=radius,
                         match_dr=match_dr, events_per_shard=events_per_shard, pthat_min=pthat_min)
    max_particles = _check_int("max_particles", max_particles, 1)
    workers = _check_int("workers", workers, 1)
    if data_dir is None:
        with tempfile.TemporaryDirectory(prefix="hwnas-jets-") as tmp:
            return _generate(n_per_class, names, options, max_particles, workers, progress, Path(tmp))
    return _generate(n_per_class, names, options, max_particles, workers, progress, Path(data_dir))


# ----------------------------------------------------------------------------------------------- orchestration


@dataclass(frozen=True)
class _ShardTask:
    cls: str
    index: int
    options: JetOptions
    path: str


def _generate(n: int, classes: tuple[str, ...], options: JetOptions, max_particles: int, workers: int,
              progress: bool, data_dir: Path) -> JetSample:
    folder = jets_cache_folder(data_dir, options)
    _prepare_folder(folder, options)
    _fill(folder, options, classes, n, workers, progress)
    return _assemble(folder, options, classes, n, max_particles)


def _prepare_folder(folder: Path, options: JetOptions) -> None:
    """Create ``folder`` with its manifest, or check that an existing one records ``options``."""
    key = json.loads(json.dumps(options.key()))
    manifest = folder / MANIFEST
    if manifest.exists():
        try:
            recorded = json.loads(manifest.read_text()).get("options")
        except (OSError, ValueError, AttributeError):
            recorded = None
        if recorded != key:
            raise JetsError("data_dir", f"{folder} holds a manifest of other options or an unreadable one; "
                            "remove that folder or choose another data_dir")
        return
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"format": _FORMAT, "options": key, "classes": list(CLASSES),
                       "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                       "files": "<class>-<shard:05d>.npz, one per shard of events_per_shard Pythia events"},
                      indent=1)
    _write_atomic(manifest, lambda f: f.write(text.encode()))


def _scan(folder: Path, options: JetOptions, classes: tuple[str, ...]) -> dict[str, dict[int, int]]:
    """Jets per finished shard file already in ``folder`` (files that do not read back are left out)."""
    known: dict[str, dict[int, int]] = {c: {} for c in classes}
    digest = options.digest()
    for entry in os.scandir(folder):
        m = _SHARD_NAME.match(entry.name)
        if m is None or m.group(1) not in known:
            continue
        count = _shard_count(Path(entry.path), digest, m.group(1), int(m.group(2)))
        if count is not None:
            known[m.group(1)][int(m.group(2))] = count
    return known


def _shard_count(path: Path, digest: str, cls: str, index: int) -> int | None:
    try:
        with np.load(path, allow_pickle=False) as f:
            if str(f["key"]) != digest or str(f["cls"]) != cls or int(f["shard"]) != index:
                return None
            return int(f["n_total"].shape[0])
    except (OSError, ValueError, KeyError, TypeError, EOFError):
        return None


class _SerialExecutor(Executor):
    """Runs each task at submission, in this process (``workers=1``)."""

    def submit(self, fn: Callable[..., tuple[str, int, int]], /, *args: object,  # type: ignore[override]
               **kwargs: object) -> Future[tuple[str, int, int]]:
        future: Future[tuple[str, int, int]] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as err:  # re-raised by future.result()
            future.set_exception(err)
        return future


def _executor(workers: int) -> Executor:
    if workers == 1:
        return _SerialExecutor()
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx)


def _fill(folder: Path, options: JetOptions, classes: tuple[str, ...], n: int, workers: int,
          progress: bool) -> dict[str, dict[int, int]]:
    """Generate the missing shards until every class's first shards hold ``n`` jets; jets per shard."""
    known = _scan(folder, options, classes)
    next_k = dict.fromkeys(classes, 0)
    inflight: dict[Future[tuple[str, int, int]], str] = {}

    def prefix(c: str) -> int:
        return sum(known[c].get(k, 0) for k in range(next_k[c]))

    def wants(c: str) -> bool:
        done = [known[c][k] for k in range(next_k[c]) if k in known[c]]
        if len(done) >= _MAX_EMPTY_SHARDS and not any(done):
            raise JetsError("pt_window", f"no {c} jet in pT [{options.pt_min:g}, {options.pt_max:g}) GeV, "
                            f"|eta| < {options.eta_max:g} in {len(done) * options.events_per_shard} events; "
                            "widen pt_window or eta_max")
        yields = list(known[c].values())
        est = max(np.mean(yields), 0.5) if yields else _PRIOR_YIELD * options.events_per_shard
        pending = sum(1 for cc in inflight.values() if cc == c)
        return prefix(c) + pending * est < n

    bar = tqdm(total=n * len(classes), desc="jets", unit="jet", disable=not progress)
    pool = _executor(workers)
    try:
        while True:
            progressed = True
            while progressed and len(inflight) < workers:
                progressed = False
                for c in classes:
                    if len(inflight) >= workers or not wants(c):
                        continue
                    k = next_k[c]
                    next_k[c] += 1
                    progressed = True
                    if k in known[c]:
                        continue
                    task = _ShardTask(c, k, options, str(folder / _shard_file(c, k)))
                    inflight[pool.submit(_run_shard, task)] = c
            bar.update(sum(min(prefix(c), n) for c in classes) - bar.n)
            if not inflight:
                break
            finished, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            for future in finished:
                del inflight[future]
                c, k, count = future.result()
                known[c][k] = count
    except BaseException:
        for future in inflight:
            future.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        bar.close()
    pool.shutdown(wait=True)
    return known


def _assemble(folder: Path, options: JetOptions, classes: tuple[str, ...], n: int, max_particles: int) -> JetSample:
    """The first ``n`` jets of every class from its shard files, padded to ``max_particles`` rows."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in (*_PER_JET, "shard", "y")}
    ragged: dict[str, list[np.ndarray]] = {name: [] for name in _RAGGED}
    for label, c in enumerate(classes):
        have, k = 0, 0
        while have < n:
            arrays = _load_shard(folder, options, c, k)
            take = min(n - have, len(arrays["n_total"]))
            offsets = np.concatenate([[0], np.cumsum(arrays["n_total"], dtype=np.int64)])
            for name in _PER_JET:
                parts[name].append(arrays[name][:take])
            for name in _RAGGED:
                ragged[name].append(arrays[name][: offsets[take]])
            parts["shard"].append(np.full(take, k, dtype=np.int32))
            parts["y"].append(np.full(take, label, dtype=np.int64))
            have += take
            k += 1
    cat = {name: np.concatenate(v) for name, v in parts.items()}
    flat = {name: np.concatenate(v) for name, v in ragged.items()}
    counts = cat["n_total"].astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    stored = np.minimum(counts, max_particles)
    rows = np.arange(max_particles)
    mask = rows[None, :] < stored[:, None]
    src = (starts[:, None] + rows[None, :])[mask]
    total = len(counts)
    constituents = np.zeros((total, max_particles, 4), dtype=np.float64)
    pdg_id = np.zeros((total, max_particles), dtype=np.int32)
    charge = np.zeros((total, max_particles), dtype=np.int8)
    constituents[mask] = flat["constituents"][src]
    pdg_id[mask] = flat["pdg_id"][src]
    charge[mask] = flat["charge"][src]
    return JetSample(constituents=constituents, pdg_id=pdg_id, charge=charge,
                     n_constituents=stored.astype(np.int32), n_total=cat["n_total"],
                     jet=cat["jet"], y=cat["y"], truth_pt=cat["truth_pt"], truth_rap=cat["truth_rap"],
                     truth_phi=cat["truth_phi"], truth_mass=cat["truth_mass"],
                     truth_id=cat["truth_id"], pthat=cat["pthat"], shard=cat["shard"], event=cat["event"],
                     classes=classes)


def _load_shard(folder: Path, options: JetOptions, cls: str, index: int) -> dict[str, np.ndarray]:
    """The arrays of one shard file, checked; a damaged file is generated again (once)."""
    path = folder / _shard_file(cls, index)
    for attempt in range(2):
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {name: f[name] for name in (*_RAGGED, *_PER_JET, "key", "cls", "shard")}
            _check_shard(arrays, options.digest(), cls, index)
            return arrays
        except (OSError, ValueError, KeyError, TypeError, EOFError) as err:
            if attempt:
                raise JetsError("data_dir", f"shard {path} does not read back after regeneration "
                                f"({type(err).__name__}); remove the folder {folder}") from None
            _run_shard(_ShardTask(cls, index, options, str(path)))
    raise AssertionError("unreachable")  # pragma: no cover


def _check_shard(arrays: dict[str, np.ndarray], digest: str, cls: str, index: int) -> None:
    if str(arrays["key"]) != digest or str(arrays["cls"]) != cls or int(arrays["shard"]) != index:
        raise ValueError("shard of other options")
    for name, dtype in _DTYPES.items():
        if arrays[name].dtype != dtype:
            raise ValueError(f"{name}: dtype {arrays[name].dtype}")
    jets = len(arrays["n_total"])
    total = int(np.sum(arrays["n_total"], dtype=np.int64))
    if arrays["constituents"].shape != (total, 4) or arrays["jet"].shape != (jets, 4):
        raise ValueError("shapes")
    if any(arrays[name].shape != (total,) for name in ("pdg_id", "charge")):
        raise ValueError("shapes")
    if any(arrays[name].shape != (jets,) for name in _PER_JET if name not in ("n_total", "jet")):
        raise ValueError("shapes")


def _shard_file(cls: str, index: int) -> str:
    return f"{cls}-{index:05d}.npz"


def _write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` through a temporary file in its folder renamed into place (never half-written)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# ----------------------------------------------------------------------------------------------------- one shard


@dataclass
class _Truth:
    """A truth object a jet of the class may be matched to: parton (g, q) or boson/top with its decay quarks."""

    pdg: int
    rap: float
    phi: float
    pt: float
    mass: float
    quarks: list[tuple[float, float]]


def _run_shard(task: _ShardTask) -> tuple[str, int, int]:
    """Simulate one shard and write its file atomically; ``(class, index, jets)``."""
    arrays = _simulate(task.cls, task.index, task.options)
    meta = {"key": np.array(task.options.digest()), "cls": np.array(task.cls), "shard": np.array(task.index),
            "pythia_seed": np.array(pythia_seed(task.options.seed, task.cls, task.index)),
            "events": np.array(task.options.events_per_shard)}
    _write_atomic(Path(task.path), lambda f: np.savez(f, allow_pickle=False, **arrays, **meta))
    return task.cls, task.index, int(arrays["n_total"].shape[0])


def _make_pythia(cls: str, index: int, options: JetOptions) -> pythia8mc.Pythia:
    pythia8mc, _ = _libs()
    pythia = pythia8mc.Pythia("", False)
    for line in pythia_settings(cls, options, pythia_seed(options.seed, cls, index)):
        if not pythia.readString(line):
            raise RuntimeError(f"Pythia refused the setting {line!r}")
    if not pythia.init():
        raise RuntimeError(f"Pythia failed to initialise class {cls} (shard {index})")
    return pythia


def _simulate(cls: str, index: int, options: JetOptions) -> dict[str, np.ndarray]:
    """Run ``events_per_shard`` Pythia events of class ``cls``; keep at most one matched jet per event."""
    pythia = _make_pythia(cls, index, options)
    _, fastjet = _libs()
    jet_def = fastjet.JetDefinition(fastjet.antikt_algorithm, options.radius)
    rows: dict[str, list[float | int]] = {name: [] for name in _PER_JET}
    const: list[np.ndarray] = []
    pdg: list[np.ndarray] = []
    charge: list[np.ndarray] = []
    jets4: list[tuple[float, float, float, float]] = []
    for event_index in range(options.events_per_shard):
        if not pythia.next():
            continue
        event = pythia.event
        truths = [t for t in _truth_objects(event, cls) if abs(t.rap) < options.eta_max + options.match_dr]
        if not truths:
            continue
        found = _leading_matched_jet(event, truths, jet_def, options)
        if found is None:
            continue
        jet, truth, particles = found
        p4 = np.array([(p.px(), p.py(), p.pz(), p.e()) for p in particles], dtype=np.float64)
        order = np.argsort(-np.hypot(p4[:, 0], p4[:, 1]), kind="stable")
        const.append(p4[order])
        pdg.append(np.array([p.id() for p in particles], dtype=np.int32)[order])
        charge.append(np.rint([p.charge() for p in particles]).astype(np.int8)[order])
        jets4.append((jet.px(), jet.py(), jet.pz(), jet.e()))
        rows["n_total"].append(len(particles))
        rows["truth_pt"].append(truth.pt)
        rows["truth_rap"].append(truth.rap)
        rows["truth_phi"].append(truth.phi)
        rows["truth_mass"].append(truth.mass)
        rows["truth_id"].append(truth.pdg)
        rows["pthat"].append(pythia.infoPython().pTHat())
        rows["event"].append(event_index)
    out = {name: np.asarray(values, dtype=_DTYPES[name]) for name, values in rows.items() if name != "jet"}
    out["jet"] = np.asarray(jets4, dtype=np.float64).reshape(-1, 4)
    out["constituents"] = np.concatenate(const) if const else np.zeros((0, 4), dtype=np.float64)
    out["pdg_id"] = np.concatenate(pdg) if pdg else np.zeros(0, dtype=np.int32)
    out["charge"] = np.concatenate(charge) if charge else np.zeros(0, dtype=np.int8)
    return out


def _truth_objects(event: pythia8mc.Event, cls: str) -> list[_Truth]:
    """The outgoing hard-process objects a jet of class ``cls`` may come from (see docs/tasks_jets.md)."""
    out = []
    for i in event[3].daughterList():  # the outgoing particles of the 2 -> 2 hard process
        p = event[i]
        a = p.idAbs()
        if (cls == "g" and a == 21) or (cls == "q" and a in _LIGHT):
            out.append(_Truth(p.id(), p.y(), p.phi(), p.pT(), p.m(), []))
        elif cls in _TARGET and a == _TARGET[cls]:
            last = event[p.iBotCopyId()]  # after recoils from the shower, just before the decay
            quarks = _decay_quarks(event, last.index())
            if len(quarks) == _N_QUARKS[cls]:
                out.append(_Truth(last.id(), last.y(), last.phi(), last.pT(), last.m(),
                                  [(event[q].y(), event[q].phi()) for q in quarks]))
    return out


def _decay_quarks(event: pythia8mc.Event, i: int) -> list[int]:
    """Indices of the quarks a resonance decays to, through intermediate W/Z (t -> b W -> b q q')."""
    quarks = []
    for d in event[i].daughterList():
        a = event[d].idAbs()
        if a in (23, 24):
            quarks += _decay_quarks(event, event[d].iBotCopyId())
        elif 1 <= a <= 5:
            quarks.append(d)
    return quarks


def _leading_matched_jet(event: pythia8mc.Event, truths: list[_Truth], jet_def: fastjet.JetDefinition,
                         options: JetOptions) -> tuple[fastjet.PseudoJet, _Truth, list[pythia8mc.Particle]] | None:
    """The highest-pT jet in the window and |eta| range matched to one of ``truths``, with its particles."""
    _, fastjet = _libs()
    particles = event.particles()
    inputs, index = [], []
    for i, p in enumerate(particles):
        if p.isFinal() and p.isVisible():  # every visible final-state particle (no neutrinos)
            inputs.append(fastjet.PseudoJet(p.px(), p.py(), p.pz(), p.e()))
            index.append(i)
    sequence = fastjet.ClusterSequence(inputs, jet_def)
    for jet in fastjet.sorted_by_pt(sequence.inclusive_jets(options.pt_min)):
        if jet.pt() >= options.pt_max or abs(jet.eta()) >= options.eta_max:
            continue
        rap, phi = jet.rap(), jet.phi()
        for truth in truths:
            if _dr(rap, phi, truth.rap, truth.phi) >= options.match_dr:
                continue
            if any(_dr(rap, phi, qy, qphi) >= options.radius for qy, qphi in truth.quarks):
                continue
            members = [particles[index[c.cluster_hist_index()]] for c in jet.constituents()]
            return jet, truth, members
    return None


def _dr(y1: float, phi1: float, y2: float, phi2: float) -> float:
    dphi = abs(phi1 - phi2) % (2 * math.pi)
    dphi = min(dphi, 2 * math.pi - dphi)
    return math.hypot(y1 - y2, dphi)


# -------------------------------------------------------------------------------------------------------- checks


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - installed without metadata
        return "unknown"


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise JetsError(name, f"expected an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise JetsError(name, f"expected an integer >= {minimum}, got {value}")
    return int(value)


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise JetsError(name, f"expected a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise JetsError(name, f"expected a finite number, got {value!r}")
    return float(value)


def _check_classes(classes: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(classes, str):
        classes = [c.strip() for c in classes.split(",") if c.strip()]
    if not isinstance(classes, Iterable):
        raise JetsError("classes", f"expected class names out of {', '.join(CLASSES)}, got {classes!r}")
    names = tuple(classes)
    if not names:
        raise JetsError("classes", f"expected at least one of {', '.join(CLASSES)}")
    for c in names:
        if c not in CLASSES:
            raise JetsError("classes", f"unknown class {c!r}; expected some of {', '.join(CLASSES)}")
    if len(set(names)) != len(names):
        raise JetsError("classes", f"a class is named twice in {', '.join(names)}")
    return names
