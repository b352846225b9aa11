"""The seed paper's PTQ study of the neural receiver (:func:`run_study`; ``hwnas receiver study``).

Steps, each announced by a progress line:

1. **Float receiver.** :func:`~hwnas.tasks.ofdm.receiver.deeprx` trained with
   :func:`~hwnas.tasks.ofdm.train.train_receiver` (checkpoint ``float.pt`` in the output folder: a second run
   loads it, an interrupted one resumes it; other settings are refused).
2. **PTQ variants** of the trained weights (:func:`hwnas.train.post_training_quantize`, symmetric scaled
   integers, biases in float32 as the seed keeps its non-weight parameters): ``fp16``; ``int8``/``int4``
   per-tensor and per-channel, weights only (the seed's four); ``int8-channel-act8``: int8 per-channel weights
   and int8 per-tensor activations (every layer input, percentile-calibrated on ``calibration_frames`` frames
   of the train split) — beyond the seed.
3. **QAT int4** (beyond the seed): the float receiver fine-tuned ``qat_steps`` steps with int4 per-channel
   weight quantizers (``qat_kind``: ``fixed`` — power-of-two scales, the hardware-mappable kind — or
   ``scaled`` — the PTQ variants' max-abs scales); checkpoint ``qat.pt``.
4. **Curves.** BLER and BER vs Eb/N0 of every receiver plus LS+LMMSE and perfect CSI, per UE speed group, on
   the same frames (common random numbers: :func:`hwnas.tasks.ofdm.bler_curve`'s seeding, each batch simulated
   once and decoded for every receiver).
5. **Files** (in ``out``, an hwnas output folder: :func:`hwnas.export.folders.claim_folder`, never a folder
   holding files hwnas did not write): ``curves_<group>.csv``, ``bler_<group>.png``, ``gaps.csv`` /
   ``gaps.md`` (dB gap at the BLER target of each receiver to float and to LS+LMMSE; empty with the reason where
   a curve does not cross), ``sizes.csv`` / ``sizes.md`` (model size per variant from
   :func:`hwnas.train.size_table`, beside the seed's Table IV), ``validation.csv`` (BMD rate of every receiver,
   the classical ones included, on the validation frames),
   ``claims.md`` (the seed's claims checked on these curves), ``training.csv``, ``qat_training.csv``,
   ``study.json`` (settings, timings) and ``index.html`` (one self-contained page).

Every random draw is seeded from ``seed``: the same options give the same CSV files (at the same torch thread
count). Errors are :class:`StudyError` (an :class:`~hwnas.errors.HwnasError`), one line naming the option.
"""

from __future__ import annotations

import base64
import copy
import csv
import html
import io
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from hwnas.errors import HwnasError

from .config import PRESETS, SPEED_GROUPS, LinkConfig
from .evaluate import CURVE_COLUMNS, Gap, bler_curve, gap_at_bler
from .link import LinkBatch, OfdmLink
from .receiver import DeepRx, deeprx
from .train import (
    ReceiverHistory,
    history_rows,
    train_receiver,
    validate_llrs,
    validate_receiver,
    validation_set,
)

__all__ = [
    "BASELINES",
    "PTQ_VARIANTS",
    "StudyError",
    "StudyOptions",
    "StudyResult",
    "load_receiver",
    "parse_ebno",
    "run_study",
]


class StudyError(HwnasError, ValueError):
    """A bad study option or output folder; the message names the option."""


PTQ_VARIANTS: Mapping[str, dict[str, Any]] = {
    "fp16": {"weight_bits": "fp16", "granularity": "channel"},
    "int8-tensor": {"weight_bits": 8, "granularity": "tensor"},
    "int8-channel": {"weight_bits": 8, "granularity": "channel"},
    "int4-tensor": {"weight_bits": 4, "granularity": "tensor"},
    "int4-channel": {"weight_bits": 4, "granularity": "channel"},
    "int8-channel-act8": {"weight_bits": 8, "granularity": "channel", "activation_bits": 8},
}
"""PTQ variants: keyword arguments of :func:`hwnas.train.post_training_quantize` (symmetric, weights only unless
``activation_bits``)."""

QAT = "qat-int4"
BASELINES: tuple[str, ...] = ("ls-lmmse", "perfect-csi")
"""The classical receivers on every curve: LS + nearest-neighbour interpolation + LMMSE, and perfect CSI."""

SEED_TABLE_IV: Mapping[str, float] = {"float": 1, "fp16": 2, "int8-channel": 4, "int4-channel": 8,
                                      "int8-tensor": 4, "int4-tensor": 8}
"""The seed's Table IV: model size reduction (weights only, approximate)."""

_PRESET_MODEL = {"seed": (128, 8, 128), "small": (96, 2, 16)}
"""Default (channels, blocks, batch_size) per preset: the seed's Table I and batch size; for the quick ``small``
study (2 CPU cores, 30 minutes) a narrower, shallower receiver on smaller batches, the configuration that learned
fastest per second of CPU among those tried (docs/tasks_receiver.md)."""


def parse_ebno(text: str | Sequence[float]) -> tuple[float, ...]:
    """``"0:10:2"`` (start:stop:step, stop included) or ``"0,2,5"`` or a sequence → Eb/N0 points [dB]."""
    if not isinstance(text, str):
        try:
            pts = tuple(float(v) for v in text)
        except (TypeError, ValueError) as err:
            raise StudyError(f"study option ebno (--ebno): numbers expected, got {text!r}") from err
    else:
        try:
            if ":" in text:
                parts = [float(p) for p in text.split(":")]
                if len(parts) != 3 or parts[2] <= 0 or parts[1] < parts[0]:
                    raise ValueError
                start, stop, step = parts
                n = math.floor((stop - start) / step + 1e-9) + 1
                pts = tuple(round(start + i * step, 6) for i in range(n))
            else:
                pts = tuple(float(p) for p in text.split(",") if p.strip())
        except ValueError as err:
            raise StudyError(f"study option ebno (--ebno): expected start:stop:step (step > 0, stop >= start) or a "
                             f"comma list of numbers, got {text!r}") from err
    if not pts or not all(math.isfinite(p) and -20 <= p <= 40 for p in pts):
        raise StudyError(f"study option ebno (--ebno): need finite points in [-20, 40] dB, got {text!r}")
    if len(set(pts)) != len(pts):
        raise StudyError(f"study option ebno (--ebno): a point is repeated in {text!r}")
    return tuple(sorted(pts))


_O = TypeVar("_O")


def _options_from_dict(cls: type[_O], options: Mapping[str, Any], what: str) -> _O:
    """``cls(**options)`` for an options dataclass (:class:`StudyOptions`, the search's options).

    An unknown key is a :class:`StudyError` naming it (``"<what> option <key>: unknown; known: ..."``); the
    values are checked by ``cls`` itself.
    """
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(options) - known)
    if unknown:
        raise StudyError(f"{what} option {unknown[0]}: unknown; known: {', '.join(sorted(known))}")
    return cls(**dict(options))


def _options_to_dict(options: Any) -> dict[str, Any]:
    """JSON-ready settings of an options dataclass (tuples as lists)."""
    return json.loads(json.dumps(asdict(options)))


def _option_checks(options: Any, what: str) -> tuple[Callable[[str, str], StudyError], Callable[[str, int], None]]:
    """The option checks of a ``what`` (``study`` or ``search``) options object.

    ``bad(name, msg)``: the one-line error of option ``name``, naming its command-line flag; ``integer(name, lo)``:
    raise it unless the option is an integer ≥ ``lo``.
    """

    def bad(name: str, msg: str) -> StudyError:
        return StudyError(f"{what} option {name} (--{name.replace('_', '-')}): {msg}")

    def integer(name: str, lo: int) -> None:
        v = getattr(options, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise bad(name, f"must be an integer >= {lo}, got {v!r}")

    return bad, integer


@dataclass(frozen=True)
class StudyOptions:
    """Settings of :func:`run_study` (every field has a default; ``None`` means "the preset's default")."""

    preset: str = "small"
    """Link preset: ``small`` (quick study) or ``seed`` (the paper's link; LDPC decoding ≈ 30 s per 128 frames)."""
    channels: int | None = None
    """Receiver width (default: seed 128, small 96)."""
    blocks: int | None = None
    """Residual blocks (default: seed 8, small 2)."""
    steps: int = 8000
    """Training steps of the float receiver."""
    batch_size: int | None = None
    """Frames per training step (default: seed 128, small 16)."""
    lr: float = 1e-3
    """Adam learning rate."""
    lr_schedule: str = "constant"
    """``constant`` or ``cosine`` (decay to 1 % over ``steps``). Constant is the default: the quick study's receiver
    is still learning when its steps end, and a decayed rate slowed it (docs/tasks_receiver.md)."""
    weight_decay: float = 0.0
    """L2 coefficient (the seed uses L2; its coefficient is not in its text)."""
    val_frames: int = 256
    """Validation frames (train split) for BCE / BMD rate during training and the PTQ metric."""
    calibration_frames: int = 256
    """Train-split frames that calibrate the activation ranges of ``int8-channel-act8``."""
    qat_steps: int = 300
    """Fine-tuning steps of the QAT int4 receiver (0: no QAT receiver)."""
    qat_kind: str = "fixed"
    """``fixed`` (power-of-two per-channel scales) or ``scaled`` (max-abs per-channel scales)."""
    qat_lr: float = 1e-4
    """Adam learning rate of the QAT fine-tuning (constant)."""
    variants: tuple[str, ...] = tuple(PTQ_VARIANTS)
    """PTQ variants to evaluate (a subset of :data:`PTQ_VARIANTS`)."""
    ebno: tuple[float, ...] = (0.0, 2.0, 4.0, 6.0, 8.0, 10.0)
    """Eb/N0 points [dB] (the seed's Fig. 2: 0–10 dB)."""
    groups: tuple[str, ...] = SPEED_GROUPS
    """UE speed groups (one curve file and plot each)."""
    frames: int = 256
    """Frames per Eb/N0 point and group."""
    eval_batch: int = 128
    """Frames per simulated evaluation batch."""
    target_bler: float = 0.1
    """BLER at which gaps are measured (the seed: 10 %)."""
    seed: int = 0
    """Seeds training, validation, calibration and the evaluation frames."""
    threads: int = 1
    """Torch threads during the study (1 is fastest on 2 cores: the link's ops are small)."""

    def __post_init__(self) -> None:
        bad, integer = _option_checks(self, "study")

        if self.preset not in PRESETS:
            raise bad("preset", f"unknown {self.preset!r}; known: {', '.join(PRESETS)}")
        for name in ("channels", "blocks", "batch_size"):
            if getattr(self, name) is not None:
                integer(name, 0 if name == "blocks" else 1)
        for name, lo in (("steps", 0), ("val_frames", 1), ("calibration_frames", 1), ("qat_steps", 0),
                         ("frames", 1), ("eval_batch", 1), ("seed", 0), ("threads", 1)):
            integer(name, lo)
        for name in ("lr", "qat_lr"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
                raise bad(name, f"must be a finite number > 0, got {v!r}")
        v = self.weight_decay
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            raise bad("weight_decay", f"must be a finite number >= 0, got {v!r}")
        if self.lr_schedule not in ("cosine", "constant"):
            raise bad("lr_schedule", f"'cosine' or 'constant', got {self.lr_schedule!r}")
        if self.qat_kind not in ("fixed", "scaled"):
            raise bad("qat_kind", f"'fixed' or 'scaled', got {self.qat_kind!r}")
        if not isinstance(self.target_bler, float | int) or not 0 < self.target_bler < 1:
            raise bad("target_bler", f"must be in (0, 1), got {self.target_bler!r}")
        variants = (self.variants,) if isinstance(self.variants, str) else tuple(self.variants)
        unknown = [v for v in variants if v not in PTQ_VARIANTS]
        if unknown:
            raise bad("variants", f"unknown {unknown[0]!r}; known: {', '.join(PTQ_VARIANTS)}")
        object.__setattr__(self, "variants", tuple(v for v in PTQ_VARIANTS if v in variants))
        groups = (self.groups,) if isinstance(self.groups, str) else tuple(self.groups)
        unknown = [g for g in groups if g not in SPEED_GROUPS]
        if unknown or not groups:
            raise bad("groups", f"unknown {unknown[0]!r}; known: {', '.join(SPEED_GROUPS)}" if unknown
                      else "name at least one speed group")
        object.__setattr__(self, "groups", tuple(g for g in SPEED_GROUPS if g in groups))
        object.__setattr__(self, "ebno", parse_ebno(self.ebno))
        ch, bl, bs = _PRESET_MODEL.get(self.preset, _PRESET_MODEL["seed"])
        for name, default in (("channels", ch), ("blocks", bl), ("batch_size", bs)):
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)

    @classmethod
    def from_dict(cls, options: Mapping[str, Any]) -> StudyOptions:
        """Options from a mapping; an unknown key is a :class:`StudyError` naming it."""
        return _options_from_dict(cls, options, "study")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return _options_to_dict(self)


@dataclass
class StudyResult:
    """What :func:`run_study` measured and wrote."""

    out: Path
    options: StudyOptions
    curves: dict[str, dict[str, list[dict[str, Any]]]]
    """``{group: {receiver: [point, ...]}}``."""
    gaps: list[dict[str, Any]]
    sizes: list[dict[str, Any]]
    ptq: list[dict[str, Any]]
    """Validation BMD rate per receiver (``validation.csv``)."""
    claims: list[dict[str, Any]]
    seconds: dict[str, float]
    files: list[str] = field(default_factory=list)


class _SharedBatches:
    """A link whose ``sample`` is memoized: every receiver of an Eb/N0 point decodes the same simulated batches."""

    def __init__(self, link: OfdmLink) -> None:
        self._link = link
        self._cache: dict[Any, LinkBatch] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._link, name)

    def sample(self, batch_size: int, **kwargs: Any) -> LinkBatch:
        key = (batch_size, *sorted(kwargs.items()))
        if key not in self._cache:
            self._cache[key] = self._link.sample(batch_size, **kwargs)
        return self._cache[key]


def _derived_seed(seed: int, name: str) -> int:
    words = [int(seed), *name.encode()]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _llr_fn(model: nn.Module, link: OfdmLink) -> Callable[[LinkBatch], torch.Tensor]:
    model.eval()

    def fn(batch: LinkBatch) -> torch.Tensor:
        with torch.no_grad():
            return model(link.receiver_input(batch))

    return fn


def _size_summary(name: str, rows: Sequence[Any]) -> dict[str, Any]:
    w = [r for r in rows if r.kind == "weight"]
    weight_bits = sum(r.elements * r.bits_per_element for r in w)
    weight_float = sum(r.float_bits for r in w)
    total = sum(r.bits for r in rows)
    total_float = sum(r.float_bits for r in rows)
    return {
        "receiver": name,
        "weights": sum(r.elements for r in w),
        "weight_bits_per_element": round(weight_bits / max(1, sum(r.elements for r in w)), 4),
        "weight_kib": round(weight_bits / 8192, 3),
        "scale_kib": round(sum(r.overhead_bits for r in rows) / 8192, 3),
        "model_kib": round(total / 8192, 3),
        "weight_reduction": round(weight_float / weight_bits, 3),
        "model_reduction": round(total_float / total, 3),
        "seed_table_iv": SEED_TABLE_IV.get(name, ""),
    }


def _write_csv(rows: Sequence[Mapping[str, Any]], header: Sequence[str]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(header), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k)) for k in header})
    return buf.getvalue().encode()


def _fmt(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def _markdown(rows: Sequence[Mapping[str, Any]], header: Sequence[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(_fmt(row.get(k))) if row.get(k) is not None else "None"
                                       for k in header) + " |")
    return "\n".join(lines) + "\n"


def _gap_rows(curves: Mapping[str, Mapping[str, list[dict[str, Any]]]], target: float) -> list[dict[str, Any]]:
    rows = []
    for group, by_rx in curves.items():
        fl, ls = by_rx.get("float"), by_rx.get("ls-lmmse")
        for name, curve in by_rx.items():
            g_f: Gap | None = gap_at_bler(curve, fl, target) if fl is not None and name != "float" else None
            g_l: Gap | None = gap_at_bler(curve, ls, target) if ls is not None and name != "ls-lmmse" else None
            own = (g_f or g_l)
            reasons: list[str] = []  # one per curve that does not cross, named
            for ref, g in (("float", g_f), ("ls-lmmse", g_l)):
                for part in (g.reason.split("; ") if g is not None and g.reason else []):
                    part = part.replace("curve a:", f"{name}:", 1).replace("curve b:", f"{ref}:", 1)
                    if part not in reasons:
                        reasons.append(part)
            rows.append({
                "group": group, "receiver": name,
                "ebno_at_target_db": None if own is None or own.ebno_a is None else round(own.ebno_a, 3),
                "gap_to_float_db": None if g_f is None or g_f.db is None else round(g_f.db, 3),
                "gap_to_ls_db": None if g_l is None or g_l.db is None else round(g_l.db, 3),
                "reason": "; ".join(reasons),
            })
    return rows


def _claims(gaps: Sequence[Mapping[str, Any]], groups: Sequence[str], variants: Sequence[str]) -> list[dict[str, Any]]:
    """The seed's three claims checked per speed group on the gap table (None: not decidable, with the reason)."""
    by = {(r["group"], r["receiver"]): r for r in gaps}
    out = []
    for group in groups:
        f = by.get((group, "float"))
        if f is not None:
            d = f["gap_to_ls_db"]
            out.append({"claim": "float beats LS+LMMSE at the BLER target", "group": group,
                        "holds": None if d is None else d < 0,
                        "evidence": f"float − LS = {d:+.2f} dB" if d is not None else f["reason"]})
        r = by.get((group, "int8-channel"))
        if r is not None and "int8-channel" in variants:
            d = r["gap_to_float_db"]
            out.append({"claim": "int8 per-channel within 0.5 dB of float", "group": group,
                        "holds": None if d is None else abs(d) <= 0.5,
                        "evidence": f"int8-channel − float = {d:+.2f} dB" if d is not None else r["reason"]})
        a, b = by.get((group, "int4-channel")), by.get((group, "int4-tensor"))
        if a is not None and b is not None:
            xa, xb = a["ebno_at_target_db"], b["ebno_at_target_db"]
            if xa is not None and xb is not None:
                holds, ev = xa < xb, f"int4-channel {xa:.2f} dB vs int4-tensor {xb:.2f} dB"
            elif xa is not None:
                holds, ev = True, f"int4-channel reaches the target at {xa:.2f} dB, int4-tensor does not"
            elif xb is not None:
                holds, ev = False, f"int4-tensor reaches the target at {xb:.2f} dB, int4-channel does not"
            else:
                holds, ev = None, "neither reaches the target in the Eb/N0 range"
            out.append({"claim": "int4 per-channel better than int4 per-tensor", "group": group,
                        "holds": holds, "evidence": ev})
    return out


def _verdicts(claims: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Claims with ``holds`` as ``yes`` / ``no`` / ``undecided`` (for tables)."""
    return [{**c, "holds": {True: "yes", False: "no"}.get(c["holds"], "undecided")} for c in claims]


_STYLE = {"float": ("k", "-", "o"), "ls-lmmse": ("tab:red", "--", "s"), "perfect-csi": ("tab:green", ":", "^"),
          "fp16": ("tab:gray", "-", "x"), "int8-tensor": ("tab:blue", "-.", "v"),
          "int8-channel": ("tab:blue", "-", "D"), "int4-tensor": ("tab:orange", "-.", "v"),
          "int4-channel": ("tab:orange", "-", "D"), "int8-channel-act8": ("tab:purple", "-", "P"),
          QAT: ("tab:brown", "-", "*")}


def _plot(group: str, by_rx: Mapping[str, list[dict[str, Any]]], target: float, title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=110)
    try:
        for name, curve in by_rx.items():
            color, ls, marker = _STYLE.get(name, ("tab:olive", "-", "."))
            x = [r["ebno_db"] for r in curve]
            y = [r["bler"] if r["bler"] > 0 else np.nan for r in curve]
            ax.semilogy(x, y, color=color, linestyle=ls, marker=marker, markersize=4, label=name)
        ax.axhline(target, color="0.6", linewidth=0.8)
        ax.set_xlabel("Eb/N0 [dB]")
        ax.set_ylabel("BLER")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
    finally:
        plt.close(fig)
    return buf.getvalue()


def _html(result: StudyResult, pngs: Mapping[str, bytes], history: ReceiverHistory) -> str:
    o = result.options
    esc = html.escape

    def table(rows: Sequence[Mapping[str, Any]], header: Sequence[str]) -> str:
        head = "".join(f"<th>{esc(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{esc(str(_fmt(r.get(h))))}</td>" for h in header) + "</tr>"
                       for r in rows)
        return f"<table><tr>{head}</tr>{body}</table>"

    settings = [{"setting": k, "value": v} for k, v in o.to_dict().items()]
    final = history.final
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>hwnas neural receiver PTQ study</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;"
        "margin:1em 0}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}img{max-width:100%}</style>",
        "</head><body><h1>Neural receiver PTQ study</h1>",
        f"<p>Preset <b>{esc(o.preset)}</b>; DeepRx-style receiver {o.channels} channels × {o.blocks} blocks; "
        f"{o.steps} training steps of {o.batch_size} frames; {o.frames} frames per Eb/N0 point and group; "
        f"seed {o.seed}. Wall time {result.seconds.get('total', 0):.0f} s "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in result.seconds.items() if k != 'total')}).</p>",
    ]
    if final is not None:
        parts.append(f"<p>Float receiver after {history.steps} steps: validation BCE {final.val_bce:.4f} nats/bit, "
                     f"BMD rate {final.val_bmd_rate:.4f}, uncoded BER {final.val_ber:.4f}.</p>")
    parts += ["<h2>The seed's claims on these curves</h2>",
              table(_verdicts(result.claims), ["claim", "group", "holds", "evidence"]),
              f"<h2>Gaps at BLER {o.target_bler:g}</h2>",
              "<p>Positive: the receiver needs more Eb/N0 than the reference. Empty: a curve does not cross "
              "(reason).</p>",
              table(result.gaps, ["group", "receiver", "ebno_at_target_db", "gap_to_float_db", "gap_to_ls_db",
                                  "reason"]),
              "<h2>Model size (seed Table IV)</h2>",
              table(result.sizes, list(result.sizes[0]) if result.sizes else []),
              "<h2>Validation BMD rate (train-split frames; drop: float minus the receiver)</h2>",
              table(result.ptq, ["receiver", "description", "bmd_rate", "drop"]),
              "<h2>BLER curves</h2>"]
    for group, png in pngs.items():
        data = base64.b64encode(png).decode()
        parts.append(f"<h3>{esc(group)} speed</h3><img alt='BLER {esc(group)}' src='data:image/png;base64,{data}'>")
    parts += ["<h2>Files</h2><ul>"] + [f"<li><a href='{esc(f)}'>{esc(f)}</a></li>" for f in result.files] + ["</ul>"]
    parts += ["<h2>Settings</h2>", table(settings, ["setting", "value"]), "</body></html>"]
    return "\n".join(parts) + "\n"


def run_study(options: StudyOptions | Mapping[str, Any] | None = None, out: str | Path = "runs/receiver-small", *,
              progress: Callable[[str], None] | None = None, bars: bool = False) -> StudyResult:
    """Run the study (module docstring) into the folder ``out``; ``progress(line)`` receives progress lines.

    ``bars`` shows tqdm bars while training. Returns the :class:`StudyResult`.
    """
    from hwnas.export.folders import claim_folder, write_file
    from hwnas.train import TrainError, post_training_quantize, size_table

    opts = options if isinstance(options, StudyOptions) else StudyOptions.from_dict(options or {})
    say = progress or (lambda line: None)
    before = torch.get_num_threads()
    torch.set_num_threads(opts.threads)
    t_start = time.perf_counter()
    seconds: dict[str, float] = {}
    files: list[str] = []
    try:
        folder = claim_folder(out, replace=True, what="study folder")

        def put(name: str, data: bytes | str) -> None:
            write_file(folder / name, data.encode() if isinstance(data, str) else data, what="study file")
            files.append(name)

        link = OfdmLink(LinkConfig.from_options(opts.preset))
        say(f"link {opts.preset}: {link.config.num_ofdm_symbols}×{link.config.num_subcarriers} grid, "
            f"{link.config.modulation}, n={link.n}, k={link.k}")
        val = validation_set(link, opts.val_frames, seed=_derived_seed(opts.seed, "validation"),
                             batch_size=min(128, opts.val_frames))

        baselines_val = {name: validate_llrs(link, fn, val) for name, fn in
                         (("ls-lmmse", link.ls_lmmse_llr), ("perfect-csi", link.perfect_csi_llr))}
        for name, v in baselines_val.items():
            say(f"{name} on the validation frames: BCE {v['bce']:.4f}, BMD rate {v['bmd_rate']:.4f}, uncoded BER "
                f"{v['ber']:.4f}")

        # 1. float receiver -------------------------------------------------------------------------------
        t = time.perf_counter()
        model = deeprx(link, channels=opts.channels, blocks=opts.blocks, seed=opts.seed)
        ckpt = folder / "float.pt"
        say(f"float receiver: {sum(p.numel() for p in model.parameters()):,} parameters, {opts.steps} steps of "
            f"{opts.batch_size} frames" + (" (float.pt found: loaded, resumed if unfinished)" if ckpt.exists() else ""))
        try:
            history = train_receiver(
                model, link, steps=opts.steps, batch_size=opts.batch_size, lr=opts.lr, seed=opts.seed,
                weight_decay=opts.weight_decay, lr_schedule=opts.lr_schedule, val=val,
                checkpoint=ckpt, checkpoint_every=max(1, min(250, opts.steps)), resume=True, progress=bars)
        except TrainError as err:
            if "other settings" in str(err) or "does not fit" in str(err):
                raise StudyError(f"study folder {folder}: float.pt was trained with other options ({err}); choose "
                                 "another --out") from err
            raise
        if ckpt.exists():
            files.append("float.pt")
        seconds["float_training"] = time.perf_counter() - t
        if history.final is not None:
            f = history.final
            say(f"float receiver: step {history.steps}, validation BCE {f.val_bce:.4f}, BMD rate "
                f"{f.val_bmd_rate:.4f}, uncoded BER {f.val_ber:.4f}")
        put("training.csv", _write_csv(history_rows(history), ["step", "train_loss", "val_bce", "val_bmd_rate",
                                                                "val_ber"]))

        # 2. PTQ variants ---------------------------------------------------------------------------------
        t = time.perf_counter()
        receivers: dict[str, nn.Module] = {"float": model}
        ptq_rows: list[dict[str, Any]] = []
        sizes = [_size_summary("float", size_table(model))]

        def metric(m: nn.Module) -> float:
            return validate_receiver(m, val)["bmd_rate"]

        calib: torch.Tensor | None = None
        float_metric = metric(model)
        ptq_rows.append({"receiver": "float", "description": f"float32, {history.steps} steps",
                         "bmd_rate": float_metric, "drop": 0.0})
        for name in opts.variants:
            kw = dict(PTQ_VARIANTS[name])
            if "activation_bits" in kw and calib is None:
                cal = validation_set(link, opts.calibration_frames, seed=_derived_seed(opts.seed, "calibration"),
                                     batch_size=min(128, opts.calibration_frames))
                calib = torch.cat(cal.inputs)
            data = calib if calib is not None else val.inputs[0]
            res = post_training_quantize(model, lambda m: float_metric if m is model else metric(m), data,
                                         calibration_size=len(data), **kw)
            receivers[name] = res.model.eval()
            ptq_rows.append({"receiver": name, "description": res.description, "bmd_rate": res.quant_metric,
                             "drop": res.drop})
            sizes.append(_size_summary(name, res.sizes))
            say(f"PTQ {name}: validation BMD rate {res.float_metric:.4f} -> {res.quant_metric:.4f}")
        seconds["ptq"] = time.perf_counter() - t

        # 3. QAT int4 --------------------------------------------------------------------------------------
        qat_history: ReceiverHistory | None = None
        if opts.qat_steps > 0:
            from hwnas.nn import set_quantizers

            t = time.perf_counter()
            qmodel = copy.deepcopy(model)
            spec: dict[str, Any] = ({"kind": "fixed", "bits": 4, "granularity": "channel", "learnable": False}
                                    if opts.qat_kind == "fixed" else
                                    {"kind": "scaled", "bits": 4, "granularity": "channel"})
            set_quantizers(qmodel, weight=spec, bias=None)
            before_qat = metric(qmodel)
            say(f"QAT int4 ({opts.qat_kind}, weights per-channel): validation BMD rate {before_qat:.4f} before "
                f"fine-tuning; {opts.qat_steps} steps")
            try:
                qat_history = train_receiver(
                    qmodel, link, steps=opts.qat_steps, batch_size=opts.batch_size, lr=opts.qat_lr,
                    seed=_derived_seed(opts.seed, "qat"), val=val, checkpoint=folder / "qat.pt",
                    checkpoint_every=max(1, min(100, opts.qat_steps)), resume=True, progress=bars)
            except TrainError as err:
                if "other settings" in str(err) or "does not fit" in str(err):
                    raise StudyError(f"study folder {folder}: qat.pt was trained with other options ({err}); "
                                     "choose another --out") from err
                raise
            files.append("qat.pt")
            after = metric(qmodel)
            receivers[QAT] = qmodel.eval()
            ptq_rows.append({"receiver": QAT, "description": f"QAT {opts.qat_steps} steps, weights int4 "
                             f"{opts.qat_kind} per-channel", "bmd_rate": after, "drop": float_metric - after})
            sizes.append(_size_summary(QAT, size_table(qmodel)))
            put("qat_training.csv", _write_csv(history_rows(qat_history), ["step", "train_loss", "val_bce",
                                                                            "val_bmd_rate", "val_ber"]))
            say(f"QAT int4: validation BMD rate {after:.4f}")
            seconds["qat"] = time.perf_counter() - t

        for name, v in baselines_val.items():
            ptq_rows.append({"receiver": name, "description": "classical receiver", "bmd_rate": v["bmd_rate"],
                             "drop": float_metric - v["bmd_rate"]})

        # 4. curves ----------------------------------------------------------------------------------------
        t = time.perf_counter()
        fns: dict[str, Callable[[LinkBatch], torch.Tensor]] = {n: _llr_fn(m, link) for n, m in receivers.items()}
        fns["ls-lmmse"] = link.ls_lmmse_llr
        fns["perfect-csi"] = link.perfect_csi_llr
        curves: dict[str, dict[str, list[dict[str, Any]]]] = {}
        pngs: dict[str, bytes] = {}
        for group in opts.groups:
            by_rx: dict[str, list[dict[str, Any]]] = {n: [] for n in fns}
            for ebno in opts.ebno:
                shared = _SharedBatches(link)
                for name, fn in fns.items():
                    row = bler_curve(shared, fn, [ebno], frames=opts.frames,  # type: ignore[arg-type]
                                     batch_size=opts.eval_batch, seed=opts.seed, speed_group=group)[0]
                    by_rx[name].append(row)
                say(f"{group} speed, Eb/N0 {ebno:g} dB, {opts.frames} frames: BLER " +
                    ", ".join(f"{n} {rows[-1]['bler']:.3f}" for n, rows in by_rx.items()))
            curves[group] = by_rx
            put(f"curves_{group}.csv", _curves_csv(by_rx, group))
            pngs[group] = _plot(group, by_rx, opts.target_bler,
                                f"{opts.preset} preset, {group} UE speed ({_speeds(link, group)})")
            put(f"bler_{group}.png", pngs[group])
        seconds["evaluation"] = time.perf_counter() - t

        # 5. tables and pages ------------------------------------------------------------------------------
        gaps = _gap_rows(curves, opts.target_bler)
        claims = _claims(gaps, opts.groups, opts.variants)
        gap_header = ["group", "receiver", "ebno_at_target_db", "gap_to_float_db", "gap_to_ls_db", "reason"]
        put("gaps.csv", _write_csv(gaps, gap_header))
        put("gaps.md", _markdown(gaps, gap_header))
        size_header = list(sizes[0])
        put("sizes.csv", _write_csv(sizes, size_header))
        put("sizes.md", _markdown(sizes, size_header))
        put("validation.csv", _write_csv(ptq_rows, ["receiver", "description", "bmd_rate", "drop"]))
        put("claims.md", _markdown(_verdicts(claims), ["claim", "group", "holds", "evidence"]))
        seconds["total"] = time.perf_counter() - t_start
        result = StudyResult(folder, opts, curves, gaps, sizes, ptq_rows, claims, seconds, files)
        put("study.json", json.dumps({"options": opts.to_dict(), "link": link.config.to_dict(),
                                      "seconds": {k: round(v, 1) for k, v in seconds.items()},
                                      "float_steps": history.steps, "claims": claims, "ptq": ptq_rows},
                                     indent=1, default=str) + "\n")
        files.append("index.html")
        page = _html(result, pngs, history)
        files.pop()
        put("index.html", page)
        say(f"done in {seconds['total']:.0f} s: {folder / 'index.html'}")
        return result
    finally:
        torch.set_num_threads(before)


def _speeds(link: OfdmLink, group: str) -> str:
    lo, hi = link.config.speed_groups[group]
    return f"{lo:g}–{hi:g} m/s"


def _curves_csv(by_rx: Mapping[str, list[dict[str, Any]]], group: str) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["receiver", "group", *CURVE_COLUMNS], lineterminator="\n")
    writer.writeheader()
    for name, rows in by_rx.items():
        for r in rows:
            writer.writerow({"receiver": name, "group": group, **{k: _fmt(r[k]) for k in CURVE_COLUMNS}})
    return buf.getvalue().encode()


def load_receiver(out: str | Path, options: StudyOptions | None = None) -> DeepRx:
    """The float receiver a study trained in ``out`` (its ``float.pt``), for further use."""
    from hwnas.train.trainer import load_saved

    opts = options or StudyOptions()
    state = load_saved(Path(out) / "float.pt")
    model = deeprx(opts.preset, channels=opts.channels, blocks=opts.blocks, seed=None)
    model.load_state_dict(state["model"])
    return model.eval()

