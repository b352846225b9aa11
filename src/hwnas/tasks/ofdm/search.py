"""Architecture and mixed-precision search of the neural receiver (:func:`run_search`; ``hwnas receiver search``).

The receiver's trials train on link batches generated per step, so they do not go through ``hwnas run`` (whose
tasks are in-memory data sets); this is the same multi-objective search on the receiver's own loop:

* **Point.** ``channels``, ``blocks`` and ``separable`` of :func:`~hwnas.tasks.ofdm.receiver.deeprx` (from the
  option lists),
  and per layer (``stem``, ``blocks.<i>``, ``head``) a weight width from ``weight_bits`` and, except the head, an
  activation width from ``act_bits`` (the feature map the layer produces). Quantizers are static fixed point
  (power-of-two scales, round to nearest, saturation; weights per output channel, activations per tensor, integer
  bits from the data first seen), the input at ``input_bits``, biases at ``bias_bits``: every point is a model the
  fixed-point export paths express (QONNX, hls4ml, RTL).
* **Warm start** (``study``: a ``hwnas receiver study`` folder): channels and blocks are the study's float
  receiver's, every trial starts from its weights (quantization-aware fine-tuning), and the validation frames,
  evaluation frames, Eb/N0 points and seed are the study's — so the searched receivers' BMD rates compare with the
  study's ``validation.csv`` and their BLER curves are drawn on the study's (same frames: common random numbers).
  Without it each trial trains from scratch.
* **Trial.** :func:`~hwnas.tasks.ofdm.train.train_receiver` for ``steps`` steps (seed ``seed + number``), then
  objectives: validation **BMD rate** (maximized; the bit-metric decoding rate on the fixed validation frames)
  and **BOPs** per frame (minimized; :func:`hwnas.nn.bops`), optional constraint ``max_bops``. The trained model is
  saved (``trials/<n>/model.hwnas``: :func:`hwnas.export.save_model` of the ``stem → blocks → head`` chain, which
  ``hwnas verify`` / ``hwnas export`` read).
* **Sampler** (Optuna, seeded): ``nsga2`` (population ``population``), ``tpe`` or ``random``; the study is a SQLite
  file in the output folder (:func:`hwnas.search.storage.resolve_storage`). A second run resumes: finished trials
  count toward ``trials``; a trial an interrupt (or ``kill``) cut short is failed and its point tried again first.
* **Front and curves.** The Pareto front of the finished trials; ``select`` of its models, spread from the most
  accurate to the cheapest, get BLER/BER curves per speed group beside LS+LMMSE and perfect CSI (and the study's
  receivers), gaps at the target BLER, and (``verify_paths``) a bit-exact check of their export paths.

Files in ``out`` (an hwnas output folder): ``trials.csv``, ``front.csv``, ``front.png``, ``curves_<group>.csv``,
``bler_<group>.png``, ``gaps.csv`` / ``gaps.md``, ``selected.csv``, ``search.json`` (settings, timings),
``index.html``, ``study.db`` and ``trials/<n>/model.hwnas``. Errors are :class:`~hwnas.tasks.ofdm.study.StudyError`
(one line naming the option). See ``docs/tasks_receiver.md``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import PRESETS, SPEED_GROUPS, LinkConfig
from .evaluate import bler_curve, read_curves_csv
from .link import OfdmLink
from .receiver import DeepRx, deeprx
from .study import (
    StudyError,
    _curves_csv,
    _derived_seed,
    _gap_rows,
    _llr_fn,
    _markdown,
    _option_checks,
    _options_from_dict,
    _options_to_dict,
    _plot,
    _SharedBatches,
    _speeds,
    _write_csv,
    parse_ebno,
)
from .train import train_receiver, validate_receiver, validation_set

__all__ = ["SAMPLERS", "ReceiverSearchOptions", "ReceiverSearchResult", "layer_names", "point_quant", "run_search"]

SAMPLERS: tuple[str, ...] = ("nsga2", "tpe", "random")

_STUDY_FIELDS = ("preset", "seed", "val_frames", "ebno", "groups", "frames", "eval_batch", "target_bler")
"""Settings a warm-started search takes from its study (so its validation and curves are the study's frames)."""

_DEFAULTS = {"preset": "small", "seed": 0, "val_frames": 256, "ebno": (0.0, 2.0, 4.0, 6.0, 8.0, 10.0),
             "groups": SPEED_GROUPS, "frames": 256, "eval_batch": 128, "target_bler": 0.1}


def _ints(name: str, value: Any, lo: int, hi: int) -> tuple[int, ...]:
    vals = (value,) if isinstance(value, int) and not isinstance(value, bool) else tuple(value)
    if not vals or any(isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi for v in vals):
        raise StudyError(f"search option {name} (--{name.replace('_', '-')}): integers in [{lo}, {hi}], got {value!r}")
    if len(set(vals)) != len(vals):
        raise StudyError(f"search option {name} (--{name.replace('_', '-')}): a value is repeated in {value!r}")
    return tuple(sorted(vals))


@dataclass(frozen=True)
class ReceiverSearchOptions:
    """Settings of :func:`run_search` (``None``: the preset's default, or the study's with ``study``)."""

    study: str | None = None
    """A ``hwnas receiver study`` folder: warm start from its float receiver, its frames and settings."""
    preset: str | None = None
    """Link preset (default small; with ``study``: the study's)."""
    trials: int = 12
    """Finished trials to reach (a resumed search counts the earlier ones)."""
    sampler: str = "nsga2"
    """``nsga2``, ``tpe`` or ``random`` (Optuna's samplers, seeded)."""
    population: int = 6
    """NSGA-II population size."""
    steps: int = 300
    """Training steps per trial (from scratch, or fine-tuning with ``study``)."""
    batch_size: int = 16
    """Frames per training step."""
    lr: float | None = None
    """Adam learning rate (default: 1e-3 from scratch, 1e-4 fine-tuning)."""
    channels: tuple[int, ...] = (32, 64, 96)
    """Receiver widths to choose from (ignored with ``study``: its receiver's width)."""
    blocks: tuple[int, ...] = (1, 2)
    """Residual block counts to choose from (ignored with ``study``)."""
    separable: tuple[bool, ...] = (False,)
    """Block kinds to choose from: ``False`` full 3×3 convolutions, ``True`` depthwise-separable (ignored with
    ``study``: its receiver's full convolutions)."""
    weight_bits: tuple[int, ...] = (3, 4, 5, 6, 8)
    """Weight widths per layer."""
    act_bits: tuple[int, ...] = (4, 6, 8)
    """Activation widths per layer (the feature map a layer produces)."""
    input_bits: int = 10
    """Width of the receiver input (received grid and noise power)."""
    bias_bits: int = 16
    """Width of every bias."""
    max_bops: float | None = None
    """Constraint: BOPs per frame at most this (None: no constraint)."""
    select: int = 3
    """Front models that get BLER curves (spread from the most accurate to the cheapest)."""
    verify_paths: tuple[str, ...] = ("reference", "qonnx")
    """Export paths each selected model is verified on (bit-exact; empty: none)."""
    verify_frames: int = 2
    """Frames each verification runs."""
    val_frames: int | None = None
    """Validation frames (BMD rate objective); default 256."""
    ebno: tuple[float, ...] | str | None = None
    """Eb/N0 points of the curves (default 0:10:2)."""
    groups: tuple[str, ...] | None = None
    """Speed groups of the curves (default all)."""
    frames: int | None = None
    """Frames per curve point (default 256)."""
    eval_batch: int | None = None
    """Frames per simulated evaluation batch (default 128)."""
    target_bler: float | None = None
    """BLER of the gap table (default 0.1)."""
    seed: int | None = None
    """Seeds the sampler, the trials (seed + trial number), validation and evaluation frames (default 0)."""
    threads: int = 1
    """Torch threads."""

    def __post_init__(self) -> None:
        bad, integer = _option_checks(self, "search")

        if self.preset is not None and self.preset not in PRESETS:
            raise bad("preset", f"unknown {self.preset!r}; known: {', '.join(PRESETS)}")
        if self.sampler not in SAMPLERS:
            raise bad("sampler", f"unknown {self.sampler!r}; known: {', '.join(SAMPLERS)}")
        for name, lo in (("trials", 1), ("population", 2), ("steps", 0), ("batch_size", 1), ("input_bits", 2),
                         ("bias_bits", 2), ("select", 1), ("verify_frames", 1), ("threads", 1)):
            integer(name, lo)
        for name, lo in (("val_frames", 1), ("frames", 1), ("eval_batch", 1), ("seed", 0)):
            if getattr(self, name) is not None:
                integer(name, lo)
        object.__setattr__(self, "channels", _ints("channels", self.channels, 1, 1024))
        object.__setattr__(self, "blocks", _ints("blocks", self.blocks, 0, 32))
        sep = (self.separable,) if isinstance(self.separable, bool) else tuple(self.separable)
        if not sep or any(not isinstance(v, bool) for v in sep) or len(set(sep)) != len(sep):
            raise bad("separable", f"distinct true/false values, got {self.separable!r}")
        object.__setattr__(self, "separable", tuple(sorted(sep)))
        object.__setattr__(self, "weight_bits", _ints("weight_bits", self.weight_bits, 2, 16))
        object.__setattr__(self, "act_bits", _ints("act_bits", self.act_bits, 2, 16))
        for name in ("lr", "max_bops", "target_bler"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
                                  or v <= 0):
                raise bad(name, f"must be a finite number > 0, got {v!r}")
        if self.target_bler is not None and not self.target_bler < 1:
            raise bad("target_bler", f"must be in (0, 1), got {self.target_bler!r}")
        if self.ebno is not None:
            try:
                object.__setattr__(self, "ebno", parse_ebno(self.ebno))
            except StudyError as err:
                raise bad("ebno", str(err).split(": ", 1)[-1]) from None
        if self.groups is not None:
            groups = (self.groups,) if isinstance(self.groups, str) else tuple(self.groups)
            unknown = [g for g in groups if g not in SPEED_GROUPS]
            if unknown or not groups:
                raise bad("groups", f"unknown {unknown[0]!r}; known: {', '.join(SPEED_GROUPS)}" if unknown
                          else "name at least one speed group")
            object.__setattr__(self, "groups", tuple(g for g in SPEED_GROUPS if g in groups))
        from hwnas.export.paths import names

        paths = (self.verify_paths,) if isinstance(self.verify_paths, str) else tuple(self.verify_paths)
        unknown = [p for p in paths if p not in names()]
        if unknown:
            raise bad("verify_paths", f"unknown path {unknown[0]!r}; known: {', '.join(names())}")
        object.__setattr__(self, "verify_paths", paths)

    @classmethod
    def from_dict(cls, options: Mapping[str, Any]) -> ReceiverSearchOptions:
        """Options from a mapping; an unknown key is a :class:`StudyError` naming it."""
        return _options_from_dict(cls, options, "search")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return _options_to_dict(self)

    def resolved(self) -> ReceiverSearchOptions:
        """The options with every ``None`` setting filled: from the study (``study``) or the defaults.

        A setting given here that differs from the study's is a :class:`StudyError` (the study's frames are
        what makes the figures comparable).
        """
        return self._resolved(_study_settings(Path(self.study)) if self.study is not None else None)

    def _resolved(self, study: Mapping[str, Any] | None) -> ReceiverSearchOptions:
        """:meth:`resolved` with the study's record (:func:`_study_settings` of ``study``) already read."""
        fill: dict[str, Any] = dict(_DEFAULTS)
        if study is not None:
            for name in _STUDY_FIELDS:
                mine, theirs = getattr(self, name), study["options"][name]
                if isinstance(theirs, list):
                    theirs = tuple(theirs)
                if mine is not None and mine != theirs:
                    raise StudyError(f"search option {name} (--{name.replace('_', '-')}): {mine!r} differs from the "
                                     f"study's {theirs!r} ({self.study}); leave it out to use the study's")
                fill[name] = theirs
        changes = {name: fill[name] for name in _STUDY_FIELDS if getattr(self, name) is None}
        return ReceiverSearchOptions(**{**asdict(self), **changes})


def _study_settings(folder: Path) -> dict[str, Any]:
    path = folder / "study.json"
    if not (folder / "float.pt").is_file() or not path.is_file():
        raise StudyError(f"search option study (--study): {folder} holds no finished receiver study (study.json and "
                         "float.pt); run `hwnas receiver study --out` there first")
    try:
        data = json.loads(path.read_text())
        int(data["options"]["channels"]), int(data["options"]["blocks"])  # present in every study.json
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise StudyError(f"search option study (--study): {path} is not a study record ({err})") from None
    return data


@dataclass
class ReceiverSearchResult:
    """What :func:`run_search` measured and wrote."""

    out: Path
    options: ReceiverSearchOptions
    trials: list[dict[str, Any]]
    """Every trial (``trials.csv``)."""
    front: list[dict[str, Any]]
    """The Pareto front (``front.csv``), by BOPs."""
    selected: list[dict[str, Any]]
    """The front models that got curves (``selected.csv``)."""
    curves: dict[str, dict[str, list[dict[str, Any]]]]
    gaps: list[dict[str, Any]]
    seconds: dict[str, float]


def layer_names(blocks: int) -> tuple[str, ...]:
    """The receiver's layers in data-flow order: ``stem``, ``blocks.0`` …, ``head``."""
    return ("stem", *(f"blocks.{i}" for i in range(blocks)), "head")


def _static(bits: int, granularity: str) -> dict[str, Any]:
    return {"kind": "fixed", "bits": int(bits), "learnable": False, "granularity": granularity, "round_mode": "RND",
            "overflow_mode": "SAT", "signed": True}


def point_quant(point: Mapping[str, Any], *, input_bits: int, bias_bits: int) -> tuple[dict[str, Any],
                                                                                       dict[str, dict[str, Any]]]:
    """``(quant, layer_quant)`` of :func:`deeprx` for a search point (``blocks``, ``w_<layer>``, ``a_<layer>``)."""
    quant = {"input": _static(input_bits, "tensor"), "bias": _static(bias_bits, "tensor"), "weight": None,
             "activation": None}
    per: dict[str, dict[str, Any]] = {}
    for layer in layer_names(int(point["blocks"])):
        spec = {"weight": _static(point[f"w_{layer}"], "channel")}
        if layer != "head":
            spec["activation"] = _static(point[f"a_{layer}"], "tensor")
        per[layer] = spec
    return quant, per


def _describe(point: Mapping[str, Any]) -> str:
    parts = []
    for layer in layer_names(int(point["blocks"])):
        a = point.get(f"a_{layer}")
        parts.append(f"{layer} w{point[f'w_{layer}']}" + (f"/a{a}" if a is not None else ""))
    return ", ".join(parts)


def _front(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Non-dominated feasible rows (BMD rate up, BOPs down), sorted by BOPs."""
    ok = [r for r in rows if r["state"] == "COMPLETE" and r.get("feasible", True)]
    front = [r for r in ok if not any(
        (o["bmd_rate"] >= r["bmd_rate"] and o["bops"] <= r["bops"]) and
        (o["bmd_rate"] > r["bmd_rate"] or o["bops"] < r["bops"]) for o in ok)]
    return sorted(front, key=lambda r: (r["bops"], -r["bmd_rate"], r["number"]))


def _spread(front: Sequence[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """``k`` front rows spread evenly by index, most accurate first (the two ends always in)."""
    if len(front) <= k:
        chosen = list(front)
    else:
        idx = sorted({round(i * (len(front) - 1) / (k - 1)) for i in range(k)}) if k > 1 else [len(front) - 1]
        chosen = [front[i] for i in idx]
    return sorted(chosen, key=lambda r: -r["bmd_rate"])


def _sampler(opts: ReceiverSearchOptions, seed: int) -> Any:
    import optuna

    if opts.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=opts.population, seed=seed)
    if opts.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def _suggest(trial: Any, opts: ReceiverSearchOptions, fixed: Mapping[str, int] | None) -> dict[str, Any]:
    if fixed is not None:
        point: dict[str, Any] = {**fixed, "separable": False}
    else:
        point = {"channels": trial.suggest_categorical("channels", list(opts.channels)),
                 "blocks": trial.suggest_categorical("blocks", list(opts.blocks)),
                 "separable": (trial.suggest_categorical("separable", list(opts.separable))
                               if len(opts.separable) > 1 else opts.separable[0])}
    for layer in layer_names(point["blocks"]):
        point[f"w_{layer}"] = trial.suggest_categorical(f"w_{layer}", list(opts.weight_bits))
        if layer != "head":
            point[f"a_{layer}"] = trial.suggest_categorical(f"a_{layer}", list(opts.act_bits))
    return point


def _chain(model: DeepRx) -> nn.Sequential:
    """The receiver as the ``stem → blocks → head`` chain its forward is (what model files hold)."""
    return nn.Sequential(model.stem, model.blocks, model.head)


def _row(trial: Any) -> dict[str, Any]:
    a = trial.user_attrs
    point = a.get("point") or {}
    return {"number": trial.number, "state": trial.state.name, "channels": point.get("channels"),
            "blocks": point.get("blocks"), "separable": point.get("separable", False),
            "bits": _describe(point) if point else "",
            "bmd_rate": a.get("bmd_rate"), "ber": a.get("ber"), "bops": a.get("bops"), "macs": a.get("macs"),
            "weight_kib": a.get("weight_kib"), "feasible": a.get("feasible", True), "seconds": a.get("seconds"),
            "model": a.get("model", ""), "error": a.get("error", "")}


_TRIAL_HEADER = ["number", "state", "channels", "blocks", "separable", "bits", "bmd_rate", "ber", "bops", "macs",
                 "weight_kib", "feasible", "seconds", "model", "error"]


def run_search(options: ReceiverSearchOptions | Mapping[str, Any] | None = None,
               out: str | Path = "runs/receiver-search", *, progress: Callable[[str], None] | None = None,
               bars: bool = False) -> ReceiverSearchResult:
    """Run (or resume) the search (module docstring) into ``out``; ``progress(line)`` receives progress lines."""
    import optuna

    from hwnas.export import save_model
    from hwnas.export.folders import claim_folder, record, recording, write_file
    from hwnas.nn import bops, macs, weight_bits
    from hwnas.runpaths import run_lock
    from hwnas.search.storage import resolve_storage
    from hwnas.train import TrainError
    from hwnas.train.trainer import load_saved

    given = options if isinstance(options, ReceiverSearchOptions) else ReceiverSearchOptions.from_dict(options or {})
    study_data = _study_settings(Path(given.study)) if given.study is not None else None  # read once
    opts = given._resolved(study_data)
    say = progress or (lambda line: None)
    before_threads = torch.get_num_threads()
    torch.set_num_threads(opts.threads)
    t_start = time.perf_counter()
    seconds: dict[str, float] = {}
    try:
        folder = claim_folder(out, replace=True, what="search folder")
        with run_lock(folder), recording(folder):
            def put(name: str, data: bytes | str) -> None:
                write_file(folder / name, data.encode() if isinstance(data, str) else data, what="search file")

            assert opts.preset is not None and opts.seed is not None and opts.val_frames is not None
            link = OfdmLink(LinkConfig.from_options(opts.preset))
            val = validation_set(link, opts.val_frames, seed=_derived_seed(opts.seed, "validation"),
                                 batch_size=min(128, opts.val_frames))
            fixed: dict[str, int] | None = None
            float_state: dict[str, Any] | None = None
            if study_data is not None:
                fixed = {"channels": int(study_data["options"]["channels"]),
                         "blocks": int(study_data["options"]["blocks"])}
                float_state = load_saved(Path(opts.study) / "float.pt")["model"]  # type: ignore[arg-type]
            lr = opts.lr if opts.lr is not None else (1e-4 if fixed else 1e-3)
            say(f"link {opts.preset}: {link.config.num_ofdm_symbols}×{link.config.num_subcarriers} grid, "
                f"{link.config.modulation}; {opts.val_frames} validation frames; " +
                (f"warm start from {opts.study} ({fixed['channels']} channels, {fixed['blocks']} blocks)"
                 if fixed else "trials train from scratch"))

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            storage = resolve_storage(None, folder)
            record(folder, [f.name for f in folder.iterdir() if f.name.startswith("study.db")])  # ours, at once
            study = optuna.create_study(study_name="receiver-search", storage=storage,
                                        directions=["maximize", "minimize"], load_if_exists=True,
                                        sampler=_sampler(opts, opts.seed))
            settings = {k: v for k, v in opts.to_dict().items() if k not in ("trials", "select", "verify_paths",
                                                                              "verify_frames", "threads")}
            recorded = study.user_attrs.get("settings")
            if recorded is None:
                study.set_user_attr("settings", settings)
            elif recorded != settings:
                changed = sorted(k for k in set(recorded) | set(settings) if recorded.get(k) != settings.get(k))
                raise StudyError(f"search folder {folder}: its study was run with other settings ({', '.join(changed)}"
                                 "); choose another --out or the same settings")
            # a trial cut short (interrupt, kill) is failed and its point asked again first
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                study.tell(t.number, state=optuna.trial.TrialState.FAIL)
                if t.params:
                    study.enqueue_trial(t.params, skip_if_exists=False)
                say(f"trial {t.number} was cut short by an earlier run: failed, its point is tried again")

            def done() -> int:
                return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))

            t = time.perf_counter()
            while done() < opts.trials:
                with warnings.catch_warnings():  # heartbeats (the storage's) are for Study.optimize's workers
                    warnings.simplefilter("ignore", UserWarning)
                    trial = study.ask()
                t_trial = time.perf_counter()
                point = _suggest(trial, opts, fixed)
                trial.set_user_attr("point", point)
                quant, per = point_quant(point, input_bits=opts.input_bits, bias_bits=opts.bias_bits)
                model = deeprx(link, channels=point["channels"], blocks=point["blocks"], quant=quant,
                               layer_quant=per, separable=point["separable"], seed=opts.seed + trial.number)
                if float_state is not None:
                    keys = model.load_state_dict(float_state, strict=False)  # the quantizers start fresh
                    if keys.unexpected_keys:
                        raise StudyError(f"search option study (--study): its float.pt does not fit the receiver "
                                         f"({keys.unexpected_keys[0]})")
                try:
                    train_receiver(model, link, steps=opts.steps, batch_size=opts.batch_size, lr=lr,
                                   seed=opts.seed + trial.number, val=val, progress=bars)
                    figures = validate_receiver(model, val)
                    if not all(math.isfinite(v) for v in figures.values()):
                        raise TrainError(f"validation figures are not finite: {figures}")
                except TrainError as err:
                    trial.set_user_attr("error", str(err))
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    say(f"trial {trial.number} failed: {err}")
                    continue
                except BaseException:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    study.enqueue_trial(trial.params, skip_if_exists=False)
                    raise
                model.eval()
                cost = float(bops(model))
                feasible = opts.max_bops is None or cost <= opts.max_bops
                name = f"trials/{trial.number}/model.hwnas"
                save_model(_chain(model), folder / name, model.input_shape, test_inputs=val.inputs[0][:4],
                           metadata={"task": "ofdm-receiver", "preset": opts.preset, "point": point,
                                     "bmd_rate": figures["bmd_rate"]})
                record(folder, ["trials", f"trials/{trial.number}", name])
                for key, value in (("bmd_rate", figures["bmd_rate"]), ("ber", figures["ber"]), ("bops", cost),
                                   ("macs", int(macs(model))),
                                   ("weight_kib", round(float(weight_bits(model)) / 8192, 3)),
                                   ("feasible", feasible), ("model", name),
                                   ("seconds", round(time.perf_counter() - t_trial, 1))):
                    trial.set_user_attr(key, value)
                if opts.max_bops is not None:  # Optuna's constraint record (<= 0 feasible): NSGA-II/TPE read it
                    trial.set_constraint("max_bops", cost - opts.max_bops)
                study.tell(trial, [figures["bmd_rate"], cost])
                say(f"trial {trial.number} ({done()}/{opts.trials}): {point['channels']} ch × {point['blocks']} "
                    f"{'separable ' if point['separable'] else ''}blocks, {_describe(point)}: BMD rate "
                    f"{figures['bmd_rate']:.4f}, {cost / 1e9:.3f} GBOPs/frame"
                    f"{'' if feasible else ' (over max_bops)'} [{time.perf_counter() - t_trial:.0f} s]")
            seconds["trials"] = time.perf_counter() - t

            rows = [_row(tr) for tr in study.get_trials(deepcopy=False)]
            put("trials.csv", _write_csv(rows, _TRIAL_HEADER))
            front = _front(rows)
            put("front.csv", _write_csv(front, _TRIAL_HEADER))
            reference = _study_points(study_data, rows)
            put("front.png", _front_plot(rows, front, reference, opts))
            selected = _spread(front, opts.select)
            say(f"front: {len(front)} of {sum(r['state'] == 'COMPLETE' for r in rows)} finished trials; curves for "
                + ", ".join(f"trial {r['number']}" for r in selected))

            # verification of the selected models --------------------------------------------------------------
            t = time.perf_counter()
            from hwnas.export import load_model
            from hwnas.export.verify import verify_model

            receivers: dict[str, nn.Module] = {}
            for r in selected:
                bundle = load_model(folder / r["model"])
                receivers[f"searched-{r['number']}"] = bundle.model.eval()
                if opts.verify_paths:
                    x = torch.cat(val.inputs)[:opts.verify_frames]
                    report = verify_model(bundle.model.eval(), x, paths=list(opts.verify_paths))
                    r["verified"] = "; ".join(
                        f"{p.path} " + (f"{p.mismatches} mismatching" if p.skipped is None and p.error is None
                                        else f"not run ({p.skipped or p.error})") for p in report.results)
                    say(f"trial {r['number']} verified: {r['verified']}")
            seconds["verification"] = time.perf_counter() - t

            # curves ------------------------------------------------------------------------------------------
            t = time.perf_counter()
            assert opts.groups is not None and opts.ebno is not None and opts.frames is not None
            assert opts.eval_batch is not None and opts.target_bler is not None
            fns: dict[str, Callable[[Any], torch.Tensor]] = {n: _llr_fn(m, link) for n, m in receivers.items()}
            fns["ls-lmmse"] = link.ls_lmmse_llr
            fns["perfect-csi"] = link.perfect_csi_llr
            curves: dict[str, dict[str, list[dict[str, Any]]]] = {}
            pngs: dict[str, bytes] = {}
            for group in opts.groups:
                by_rx: dict[str, list[dict[str, Any]]] = {}
                if study_data is not None:  # the study's receivers, on the same frames
                    theirs = read_curves_csv(Path(opts.study) / f"curves_{group}.csv")  # type: ignore[arg-type]
                    by_rx.update({n: c for n, c in theirs.items() if n not in fns})
                by_rx.update({n: [] for n in fns})
                for ebno in opts.ebno:
                    shared = _SharedBatches(link)
                    for name, fn in fns.items():
                        by_rx[name].append(bler_curve(shared, fn, [ebno], frames=opts.frames,  # type: ignore[arg-type]
                                                      batch_size=opts.eval_batch, seed=opts.seed,
                                                      speed_group=group)[0])
                    say(f"{group} speed, Eb/N0 {ebno:g} dB: BLER " +
                        ", ".join(f"{n} {by_rx[n][-1]['bler']:.3f}" for n in fns))
                if study_data is not None:
                    _check_same_frames(by_rx, group, opts.study)  # type: ignore[arg-type]
                curves[group] = by_rx
                put(f"curves_{group}.csv", _curves_csv(by_rx, group))
                pngs[group] = _plot(group, by_rx, opts.target_bler,
                                    f"{opts.preset} preset, {group} UE speed ({_speeds(link, group)}): searched")
                put(f"bler_{group}.png", pngs[group])
            seconds["evaluation"] = time.perf_counter() - t

            gaps = [g for g in _gap_rows(curves, opts.target_bler)
                    if g["receiver"].startswith("searched-") or g["receiver"] in ("float", "int8-channel",
                                                                                  "int4-channel", "qat-int4")]
            gap_header = ["group", "receiver", "ebno_at_target_db", "gap_to_float_db", "gap_to_ls_db", "reason"]
            put("gaps.csv", _write_csv(gaps, gap_header))
            put("gaps.md", _markdown(gaps, gap_header))
            sel_header = [*_TRIAL_HEADER[:12], "model", "verified"]
            put("selected.csv", _write_csv(selected, sel_header))
            seconds["total"] = time.perf_counter() - t_start
            result = ReceiverSearchResult(folder, opts, rows, front, selected, curves, gaps, seconds)
            put("search.json", json.dumps({"options": opts.to_dict(), "link": link.config.to_dict(),
                                           "seconds": {k: round(v, 1) for k, v in seconds.items()},
                                           "reference": reference, "selected": selected},
                                          indent=1, default=str) + "\n")
            put("index.html", _html(result, pngs, front_png=(folder / "front.png").read_bytes()))
            say(f"done in {seconds['total']:.0f} s: {folder / 'index.html'}")
            return result
    finally:
        torch.set_num_threads(before_threads)


def _check_same_frames(by_rx: Mapping[str, list[dict[str, Any]]], group: str, study: str) -> None:
    """The classical receivers' curves equal the study's: the same frames were decoded (else a clear error)."""
    theirs = read_curves_csv(Path(study) / f"curves_{group}.csv").get("ls-lmmse")
    if theirs is None:
        return
    mine = by_rx["ls-lmmse"]
    if [r["block_errors"] for r in theirs] != [r["block_errors"] for r in mine]:
        raise StudyError(f"search option study (--study): LS+LMMSE's block errors in {group} differ from the study's "
                         f"curves_{group}.csv ({[r['block_errors'] for r in theirs]} vs "
                         f"{[r['block_errors'] for r in mine]}): not the same frames (other hwnas or Sionna versions?)")


def _study_points(study_data: Mapping[str, Any] | None, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The study's receivers as (BMD rate, BOPs) points: float 32×32 bits, weight-only PTQ/QAT w×32 per MAC.

    The MACs are the trials' (``rows``): a warm-started search's trials all have the study's channels and
    blocks (full convolutions), and MACs count dense multiplications whatever the quantizers. The search loop
    ends only after a finished trial, and every finished trial records its MACs.
    """
    if study_data is None:
        return []
    n_macs = next(int(r["macs"]) for r in rows if r["state"] == "COMPLETE" and r.get("macs") is not None)
    width = {"float": 32, "fp16": 16, "int8-tensor": 8, "int8-channel": 8, "int4-tensor": 4, "int4-channel": 4,
             "qat-int4": 4, "int8-channel-act8": 8}
    acts = {"int8-channel-act8": 8, "fp16": 16}
    out = []
    for row in study_data.get("ptq", []):
        name = row.get("receiver")
        if name in width:
            out.append({"receiver": name, "bmd_rate": float(row["bmd_rate"]),
                        "bops": float(n_macs * width[name] * acts.get(name, 32))})
    return out


def _front_plot(rows: Sequence[dict[str, Any]], front: Sequence[dict[str, Any]],
                reference: Sequence[dict[str, Any]], opts: ReceiverSearchOptions) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=110)
    try:
        done = [r for r in rows if r["state"] == "COMPLETE"]
        ax.scatter([r["bops"] / 1e9 for r in done], [r["bmd_rate"] for r in done], s=14, color="0.6",
                   label="trials")
        ax.plot([r["bops"] / 1e9 for r in front], [r["bmd_rate"] for r in front], "o-", color="tab:red",
                markersize=5, label="Pareto front")
        for p in reference:
            ax.scatter([p["bops"] / 1e9], [p["bmd_rate"]], marker="D", s=26, label=f"study: {p['receiver']}")
        if opts.max_bops is not None:
            ax.axvline(opts.max_bops / 1e9, color="0.5", linestyle="--", linewidth=0.8, label="max_bops")
        ax.set_xscale("log")
        ax.set_xlabel("GBOPs per frame")
        ax.set_ylabel("validation BMD rate [bit/bit]")
        ax.set_title("receiver search: accuracy vs cost")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
    finally:
        plt.close(fig)
    return buf.getvalue()


def _html(result: ReceiverSearchResult, pngs: Mapping[str, bytes], *, front_png: bytes) -> str:
    def table(rows: Sequence[Mapping[str, Any]], header: Sequence[str]) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(r.get(h)))}</td>" for h in header) + "</tr>"
                       for r in rows)
        return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'

    def img(data: bytes, alt: str) -> str:
        return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'

    o = result.options
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>hwnas receiver search</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:1em auto;padding:0 1em}"
        ".scroll{overflow-x:auto}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}img{max-width:100%}</style></head><body>",
        "<h1>Neural receiver: architecture and mixed-precision search</h1>",
        f"<p>Preset {html.escape(str(o.preset))}, {len(result.trials)} trials ({o.sampler}, seed {o.seed}), "
        f"{o.steps} steps each" + (f", fine-tuned from the float receiver of {html.escape(str(o.study))}"
                                   if o.study else ", from scratch") +
        f"; objectives: validation BMD rate on {o.val_frames} frames (max) and BOPs per frame (min). "
        f"Run time {result.seconds.get('total', 0):.0f} s.</p>",
        "<h2>Pareto front</h2>", img(front_png, "front"),
        table(result.front, ["number", "channels", "blocks", "bits", "bmd_rate", "bops", "weight_kib", "model"]),
        "<h2>Selected models</h2>",
        table(result.selected, ["number", "channels", "blocks", "bits", "bmd_rate", "bops", "verified"]),
        f"<h2>Gaps at BLER {o.target_bler:g}</h2>",
        table(result.gaps, ["group", "receiver", "ebno_at_target_db", "gap_to_float_db", "gap_to_ls_db", "reason"]),
        "<h2>BLER curves</h2>", *(img(p, g) for g, p in pngs.items()),
        "<h2>All trials</h2>", table(result.trials, _TRIAL_HEADER),
        "<p>Files: <a href='trials.csv'>trials.csv</a>, <a href='front.csv'>front.csv</a>, "
        "<a href='gaps.csv'>gaps.csv</a>, <a href='selected.csv'>selected.csv</a>, "
        "<a href='search.json'>search.json</a>.</p></body></html>",
    ]
    return "\n".join(parts)


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if abs(v) >= 1e6:
            return f"{v / 1e9:.3f} G"
        return f"{v:.4g}"
    return str(v)
