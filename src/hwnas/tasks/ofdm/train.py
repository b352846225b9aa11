"""Training loop of the neural receiver (:func:`train_receiver`): fresh link batches each step, seeded, resumable.

The receiver trains as the seed's does: every step simulates a new batch of the link's train split (a new
channel per frame; Sionna's CDL draws), so there is no data set in memory and :class:`hwnas.train.Trainer`
(which batches in-memory tensors) does not fit. Per step ``t`` (1-based): ``link.sample(batch_size,
seed=train_batch_seed(seed, t), split="train")`` → ``model(link.receiver_input(batch))`` → binary
cross-entropy with logits against the coded bits on the data REs only (pilot REs are masked out), averaged over
the batch's data bits (the seed's eq. 2), plus the HGQ term ``β·EBOPs + γ·Σbits``
(:func:`hwnas.nn.regularization`, as the trainer adds it) when ``hgq_beta`` is given → Adam (L2 via
``weight_decay``: torch's coupled L2 on the weights, as the seed's "L2 regularization"; bit-widths never
decayed, their learning rate ``bits_lr``, default 10·lr, as in the trainer).

Reproducible: the batches depend only on ``seed`` and the step, the weights' initial values on the model's
construction (:func:`deeprx` seeds them), and nothing else draws random numbers — the same seed gives the same
weights bit for bit (at the same torch thread count: float sums may differ between thread counts).

Validation: a fixed set of frames (:func:`validation_set`, batches of the train split with seeds derived from
``seed``, cached) gives the BCE on data bits [nats], the **BMD rate** ``1 − BCE/ln 2`` [bit per coded bit] — the
bit-metric decoding rate the seed's training maximizes (Böcherer), an achievable-rate lower bound per bit when
the LLRs are used by a bit-metric decoder: 1 for perfect LLRs, 0 for LLRs that say nothing — and the uncoded
BER of the hard decisions.

Checkpoints: every ``checkpoint_every`` steps and at the end, written atomically (a temporary file, then a
rename) in the trainer's digest-checked weights-only format (:data:`hwnas.train.trainer.CHECKPOINT_FORMAT`):
model, optimizer, step, history and the run's settings. ``resume=True`` continues from the checkpoint, and the
result equals an uninterrupted run's bit for bit (tested).
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from hwnas.nn import ebops, regularization
from hwnas.quant import Quantizer
from hwnas.train.trainer import CHECKPOINT_FORMAT, TrainError, load_saved

from .link import OfdmLink

__all__ = [
    "ReceiverHistory",
    "ReceiverRecord",
    "ValidationSet",
    "bmd_rate",
    "train_batch_seed",
    "train_receiver",
    "validate_llrs",
    "validate_receiver",
    "validation_set",
]

_TRAIN_STREAM = 0x7472_6169  # "trai"
_VAL_STREAM = 0x7661_6C69  # "vali"
_SCHEDULES = ("constant", "cosine")
_KIND = "hwnas-receiver-train/1"


def _derive(seed: int, stream: int, index: int) -> int:
    state = np.random.SeedSequence([int(seed), stream, int(index)]).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


def train_batch_seed(seed: int, step: int) -> int:
    """The link seed of training step ``step`` (1-based) of a run seeded ``seed``."""
    return _derive(seed, _TRAIN_STREAM, step)


def bmd_rate(bce_nats: float) -> float:
    """Bit-metric decoding rate per coded bit, ``1 − BCE / ln 2`` (BCE in nats per bit)."""
    return 1.0 - bce_nats / math.log(2.0)


@dataclass
class ValidationSet:
    """Cached validation frames: receiver inputs and coded-bit targets per batch, plus the data-RE mask."""

    inputs: list[torch.Tensor]
    bits: list[torch.Tensor]
    mask: torch.Tensor
    seed: int

    @property
    def frames(self) -> int:
        """Number of frames."""
        return sum(len(x) for x in self.inputs)


def validation_set(link: OfdmLink, frames: int = 256, *, seed: int = 0, batch_size: int = 128,
                   split: str = "train") -> ValidationSet:
    """``frames`` frames of ``split`` (batches seeded from ``seed``, never a training step's seed), cached."""
    for name, v in (("frames", frames), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise TrainError(f"{name}: must be a positive integer, got {v!r}")
    inputs, bits = [], []
    done = index = 0
    while done < frames:
        size = min(batch_size, frames - done)
        batch = link.sample(size, seed=_derive(seed, _VAL_STREAM, index), split=split)
        inputs.append(link.receiver_input(batch))
        bits.append(link.targets(batch)[0])
        done += size
        index += 1
    return ValidationSet(inputs, bits, link.data_mask, seed)


@torch.no_grad()
def validate_receiver(model: nn.Module, val: ValidationSet) -> dict[str, float]:
    """``{"bce", "bmd_rate", "ber"}`` of ``model`` (eval mode, restored afterwards) on a :class:`ValidationSet`."""
    was = model.training
    model.eval()
    loss = errors = count = 0.0
    try:
        for x, b in zip(val.inputs, val.bits, strict=True):
            llr = model(x)[:, :, val.mask]
            t = b[:, :, val.mask]
            loss += float(F.binary_cross_entropy_with_logits(llr, t, reduction="sum"))
            errors += float(((llr > 0).to(t.dtype) != t).sum())
            count += t.numel()
    finally:
        model.train(was)
    bce = loss / count
    return {"bce": bce, "bmd_rate": bmd_rate(bce), "ber": errors / count}


@torch.no_grad()
def validate_llrs(link: OfdmLink, llr_fn: Any, val: ValidationSet, *, split: str = "train") -> dict[str, float]:
    """The :func:`validate_receiver` figures of any LLR function on the frames of ``val`` (simulated again).

    ``llr_fn(batch) -> (B, m, S, F)``, e.g. ``link.ls_lmmse_llr``: the classical receivers on the validation frames.
    """
    loss = errors = count = 0.0
    for index, x in enumerate(val.inputs):
        batch = link.sample(len(x), seed=_derive(val.seed, _VAL_STREAM, index), split=split)
        llr = llr_fn(batch)[:, :, val.mask]
        t = val.bits[index][:, :, val.mask]
        loss += float(F.binary_cross_entropy_with_logits(llr, t, reduction="sum"))
        errors += float(((llr > 0).to(t.dtype) != t).sum())
        count += t.numel()
    bce = loss / count
    return {"bce": bce, "bmd_rate": bmd_rate(bce), "ber": errors / count}


@dataclass
class ReceiverRecord:
    """What the loop measured at one logging step."""

    step: int
    train_loss: float
    """Mean training loss (BCE on data bits, plus the HGQ term if any) over the steps since the previous record."""
    val_bce: float | None
    val_bmd_rate: float | None
    val_ber: float | None
    ebops: float | None
    """EBOPs of the model when it has quantizers (None for a float model)."""


@dataclass
class ReceiverHistory:
    """Records of a :func:`train_receiver` run; ``steps`` is the number of completed steps."""

    records: list[ReceiverRecord] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    """Wall time spent in training steps and validation (summed over resumed sessions)."""

    def column(self, name: str) -> list[Any]:
        """One field of every record, e.g. ``history.column("val_bce")``."""
        return [getattr(r, name) for r in self.records]

    @property
    def final(self) -> ReceiverRecord | None:
        """The last record (None before the first)."""
        return self.records[-1] if self.records else None


def _has_quantizers(model: nn.Module) -> bool:
    return any(isinstance(m, Quantizer) for m in model.modules())


def _optimizer(model: nn.Module, lr: float, bits_lr: float | None, weight_decay: float) -> torch.optim.Optimizer:
    bit_params = [p for q in model.modules() if isinstance(q, Quantizer) for p in q.parameters(recurse=False)]
    bit_ids = {id(p) for p in bit_params}
    weights = [p for p in model.parameters() if id(p) not in bit_ids and p.requires_grad]
    groups = [{"params": weights, "lr": lr, "weight_decay": weight_decay, "base_lr": lr}]
    if bit_params:
        blr = bits_lr if bits_lr is not None else 10 * lr
        groups.append({"params": bit_params, "lr": blr, "weight_decay": 0.0, "base_lr": blr})
    return torch.optim.Adam(groups)


def _save(state: dict[str, Any], path: Path) -> None:
    """``state`` to ``path`` atomically, in the trainer's digest-checked format (``hwnas.train.trainer.load_saved``).

    Written through :func:`hwnas.export.folders.write_file` (a ``.hwnas-tmp-*`` file beside it, then a rename;
    recorded in the folder's manifest when the folder is an hwnas output folder).
    """
    import hashlib

    from hwnas.export.folders import write_file

    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    outer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "sha256": hashlib.sha256(payload).hexdigest(), "payload": payload},
               outer)
    write_file(path, outer.getvalue(), what="checkpoint")


def _check_number(name: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0 \
            or (positive and value <= 0):
        raise TrainError(f"{name}: must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


def _check_int(name: str, value: Any, lo: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise TrainError(f"{name}: must be an integer >= {lo}, got {value!r}")
    return int(value)


def train_receiver(
    model: nn.Module,
    link: OfdmLink,
    *,
    steps: int,
    batch_size: int | None = None,
    lr: float = 1e-3,
    seed: int = 0,
    weight_decay: float = 0.0,
    hgq_beta: float | None = None,
    hgq_gamma: float = 0.0,
    bits_lr: float | None = None,
    lr_schedule: str = "constant",
    val: ValidationSet | None = None,
    val_frames: int = 256,
    val_every: int | None = None,
    progress: bool = True,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 100,
    resume: bool = False,
) -> ReceiverHistory:
    """Train ``model`` (LLRs (B, m, S, F) from receiver inputs) on fresh batches of ``link``; see the module doc.

    Args:
        model: the receiver (LLRs (B, m, S, F) from receiver inputs), trained in place.
        link: the :class:`OfdmLink` whose train split feeds every step.
        steps: optimizer steps in total (a resumed run continues up to this count).
        batch_size: frames per step; default 128 (the seed's) for the ``seed`` preset, 32 otherwise.
        lr: Adam learning rate of the weights.
        lr_schedule: ``"constant"`` or ``"cosine"`` (decay to 1 % of ``lr`` over ``steps``, which then enters the
            checkpoint's settings: a resumed run must keep ``steps``).
        seed: seeds the training batches and the validation set.
        weight_decay: L2 coefficient on the weights (the seed uses L2; its coefficient is not in its text).
        hgq_beta: HGQ's β: ``β·EBOPs`` in the loss (None: no HGQ term; needs learnable bit-widths).
        hgq_gamma: HGQ's γ: ``γ·Σbits`` in the loss (with ``hgq_beta``).
        bits_lr: learning rate of the bit-widths (default 10·lr).
        val: a :class:`ValidationSet` (default: :func:`validation_set` of ``val_frames`` frames from ``seed``).
        val_frames: frames of the default validation set.
        val_every: record (validate) every this many steps (default ``max(1, steps // 10)``) and at the end.
        progress: a tqdm bar with the loss and the last validation BCE.
        checkpoint: file written atomically every ``checkpoint_every`` steps and at the end (None: none).
        checkpoint_every: steps between checkpoints.
        resume: continue from ``checkpoint`` when it exists (settings must match; ``steps`` may grow).

    Returns the :class:`ReceiverHistory` (also of the resumed part). The model ends in eval mode.
    Raises :class:`~hwnas.train.TrainError` (one line, naming the option) for bad settings, a mismatching or
    damaged checkpoint, or a diverging loss.
    """
    steps = _check_int("steps", steps, 0)
    if batch_size is None:
        batch_size = 128 if link.config.preset == "seed" else 32
    batch_size = _check_int("batch_size", batch_size)
    _check_number("lr", lr, positive=True)
    _check_int("seed", seed, 0)
    _check_number("weight_decay", weight_decay)
    _check_number("hgq_gamma", hgq_gamma)
    if hgq_beta is not None:
        _check_number("hgq_beta", hgq_beta)
    if bits_lr is not None:
        _check_number("bits_lr", bits_lr, positive=True)
    if lr_schedule not in _SCHEDULES:
        raise TrainError(f"lr_schedule: unknown {lr_schedule!r}; expected one of {_SCHEDULES}")
    every = max(1, steps // 10) if val_every is None else _check_int("val_every", val_every)
    checkpoint_every = _check_int("checkpoint_every", checkpoint_every)
    if resume and checkpoint is None:
        raise TrainError("resume: no checkpoint file was given")
    learnable = any(isinstance(q, Quantizer) and q.learnable for q in model.modules())
    use_reg = hgq_beta is not None and (hgq_beta > 0 or hgq_gamma > 0)
    if use_reg and not learnable:
        raise TrainError("hgq_beta: the model has no learnable bit-widths (build it with quant='hgq' or learnable "
                         "quantizers), so the HGQ term has nothing to train")
    quantized = _has_quantizers(model)
    if val is None:
        val = validation_set(link, val_frames, seed=seed, batch_size=min(128, val_frames))
    settings = {"kind": _KIND, "batch_size": batch_size, "lr": float(lr), "seed": seed,
                "weight_decay": float(weight_decay), "hgq_beta": hgq_beta, "hgq_gamma": float(hgq_gamma),
                "bits_lr": bits_lr, "lr_schedule": lr_schedule, "val_every": every, "val_seed": val.seed,
                "val_frames": val.frames, "link": link.config.to_dict(),
                "steps": steps if lr_schedule == "cosine" else None}
    settings = json.loads(json.dumps(settings))

    model.eval()
    with torch.no_grad():  # materialize lazily-shaped quantizers (ranges from a first batch), as the trainer does
        model(val.inputs[0][:batch_size])
    opt = _optimizer(model, lr, bits_lr, weight_decay)
    history = ReceiverHistory()
    window = [0.0, 0]  # loss sum, steps since the last record
    path = None if checkpoint is None else Path(checkpoint)
    if resume and path is not None and path.exists():
        state = load_saved(path)
        if not isinstance(state, dict) or state.get("kind") != _KIND:
            raise TrainError(f"resume: {path} is not a receiver training checkpoint; delete it to start over")
        saved = json.loads(state["settings"])
        if saved != settings:
            diff = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
            raise TrainError(f"resume: {path} was written with other settings ({', '.join(diff)}); delete it or "
                             "train with the same settings")
        try:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, ValueError) as err:
            raise TrainError(f"resume: {path} does not fit this model ({str(err).splitlines()[0]}); delete it to "
                             "start over") from err
        h = json.loads(state["history"])
        history = ReceiverHistory([ReceiverRecord(**r) for r in h["records"]], h["steps"], h["seconds"])
        window = [float(state["window_loss"]), int(state["window_steps"])]
    start = history.steps
    if start > steps:
        raise TrainError(f"steps: the checkpoint {path} already holds {start} steps, more than steps={steps}")

    def save() -> None:
        if path is None:
            return
        _save({"kind": _KIND, "settings": json.dumps(settings), "model": model.state_dict(),
               "optimizer": opt.state_dict(), "history": json.dumps({**asdict(history)}),
               "window_loss": window[0], "window_steps": window[1]}, path)

    mask = link.data_mask
    bar = tqdm(range(start + 1, steps + 1), desc="train receiver", disable=not progress, leave=False,
               initial=start, total=steps)
    tick = time.perf_counter()
    last_val = history.final.val_bce if history.final else None
    for step in bar:
        if lr_schedule == "cosine":
            factor = 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (step - 1) / max(steps, 1)))
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * factor
        model.train()
        batch = link.sample(batch_size, seed=train_batch_seed(seed, step), split="train")
        x = link.receiver_input(batch)
        bits = link.targets(batch)[0]
        llr = model(x)
        loss = F.binary_cross_entropy_with_logits(llr[:, :, mask], bits[:, :, mask])
        if use_reg:
            loss = loss + regularization(model, float(hgq_beta or 0.0), hgq_gamma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrainError(f"train: the loss diverged (non-finite) at step {step}; lower lr or hgq_beta")
        window[0] += value
        window[1] += 1
        if step % every == 0 or step == steps:
            v = validate_receiver(model, val)
            with torch.no_grad():
                e = float(ebops(model)) if quantized else None
            history.records.append(ReceiverRecord(step, window[0] / window[1], v["bce"], v["bmd_rate"], v["ber"], e))
            window = [0.0, 0]
            last_val = v["bce"]
        history.steps = step
        if step % checkpoint_every == 0 or step == steps:
            now = time.perf_counter()
            history.seconds += now - tick
            tick = now
            save()
        bar.set_postfix(loss=f"{value:.4f}", val_bce="-" if last_val is None else f"{last_val:.4f}")
    bar.close()
    model.eval()
    return history


def history_rows(history: ReceiverHistory) -> Sequence[dict[str, Any]]:
    """The records as plain dicts (for CSV files)."""
    return [asdict(r) for r in history.records]
