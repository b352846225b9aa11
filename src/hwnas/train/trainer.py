"""The hwnas trainer: one seeded, resumable loop for classification and regression with the HGQ loss.

``Trainer(model, TrainConfig(...)).fit(train, val)`` trains with cross-entropy, BCE on logits/LLRs or
MSE, plus ``β·EBOPs + γ·Σbits`` when the model has learnable bit-widths and ``l1·Σ|w|`` over the weight
matrices and kernels when ``l1`` is set (SNAC-Pack's L1 regularization); Adam or SGD; a constant or
cosine-with-warm-restarts learning rate; early stopping on the validation metric; a progress bar with
the live loss, metric and EBOPs; and an atomic checkpoint after every epoch that ``resume=True`` picks
up exactly (model, optimizer, schedule, early-stopping state and every random-number state), so an
interrupted run finishes with the same weights as an uninterrupted one.

Data are ``(x, y)`` tensors held in memory — the common case for these small models — and are batched
by indexing with a seeded permutation, which on a 2-core CPU beats a ``DataLoader`` (no worker
processes, no per-sample collation). A ``torch.utils.data.Dataset`` is accepted too and is gathered into
tensors once.

Device: with ``TrainConfig.device`` set (``auto``, ``cpu``, ``cuda``, ``cuda:N``;
:func:`hwnas.train.device.resolve_device`) the model is moved there before the first step and stays there after
``fit``; the data are moved there once per ``fit`` (the batch order is drawn on the CPU, so a seed gives the same
order on every device). Without it (None) the model trains where it is. Checkpoints always hold CPU tensors, and a
checkpoint resumes on any device. :func:`evaluate` runs its batches on the model's device.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import random
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from hwnas.errors import HwnasError, first_line
from hwnas.nn import ebops, regularization
from hwnas.quant import Quantizer

from .device import check_device_spec, module_device, resolve_device, to_cpu

__all__ = ["EpochRecord", "History", "TrainConfig", "TrainError", "Trainer", "accuracy", "evaluate"]

_LOSSES = ("ce", "bce", "mse")
_OPTIMIZERS = ("adam", "sgd")
_SCHEDULES = ("constant", "cosine_restarts")


class TrainError(HwnasError, ValueError):
    """Bad training input or configuration; the message names the field."""


@dataclass
class TrainConfig:
    """Everything that decides a training run (all fields have defaults; see each line)."""

    epochs: int = 30
    """Number of passes over the training data."""
    batch_size: int = 64
    """Samples per optimizer step."""
    loss: str = "ce"
    """``ce`` (classification, integer labels), ``bce`` (binary targets in [0, 1] on logits/LLRs) or ``mse``."""
    optimizer: str = "adam"
    """``adam`` or ``sgd`` (with ``momentum``)."""
    lr: float = 3e-3
    """Learning rate of the weights."""
    bits_lr: float | None = None
    """Learning rate of bit-width parameters (default ``10 * lr``: they live on a scale of whole bits)."""
    momentum: float = 0.9
    """SGD momentum."""
    weight_decay: float = 0.0
    """L2 penalty on the weights (never on bit-widths)."""
    l1: float = 0.0
    """L1 penalty: ``l1 · Σ|w|`` over every weight matrix and kernel (parameters with two or more dimensions, so
    not biases, BatchNorm or bit-widths) is added to each batch's loss (Keras' ``kernel_regularizer=l1``)."""
    schedule: str = "constant"
    """``constant`` or ``cosine_restarts`` (SGDR: cosine decay restarted every ``restart_epochs``)."""
    restart_epochs: int = 10
    """First cosine period in epochs."""
    restart_mult: int = 1
    """Each cosine period is this many times longer than the previous one."""
    min_lr_ratio: float = 0.01
    """Cosine floor as a fraction of the learning rate."""
    beta: float = 0.0
    """Weight of EBOPs in the loss (HGQ β); a schedule can change it per epoch."""
    gamma: float = 0.0
    """Weight of the bit-width L1 term (HGQ γ)."""
    patience: int | None = None
    """Stop after this many epochs without improvement of the validation metric (None: never)."""
    min_delta: float = 0.0
    """Smallest change that counts as an improvement."""
    seed: int = 0
    """Seed of shuffling and of every random op during training."""
    progress: bool = True
    """Show a progress bar."""
    threads: int | None = None
    """Torch intra-op threads while fitting (restored afterwards; None: torch's setting, all cores by default).
    Several trainings side by side on one machine (workers): cores ÷ processes. Float sums may differ between
    thread counts, so the same seed reproduces a training bit for bit only at the same count."""
    device: str | None = None
    """Where to train: ``auto`` (CUDA when available, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``; None: where the
    model is. The model stays there after ``fit``. Float sums differ between devices (the same seed reproduces a
    training bit for bit on the same device); fixed-point quantizers give the same codes on every device."""

    def validate(self) -> None:
        """Raise :class:`TrainError` naming the first bad field."""
        def positive_int(name: str) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise TrainError(f"{name}: must be a positive integer, got {v!r}")

        for name in ("epochs", "batch_size", "restart_epochs", "restart_mult"):
            positive_int(name)
        for name, allowed in (("loss", _LOSSES), ("optimizer", _OPTIMIZERS), ("schedule", _SCHEDULES)):
            if getattr(self, name) not in allowed:
                raise TrainError(f"{name}: unknown value {getattr(self, name)!r}; expected one of {allowed}")
        for name in ("lr", "beta", "gamma", "weight_decay", "l1", "min_delta", "momentum"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise TrainError(f"{name}: must be a finite number >= 0, got {v!r}")
        if self.lr <= 0:
            raise TrainError(f"lr: must be > 0, got {self.lr!r}")
        if self.threads is not None:
            positive_int("threads")
        if self.device is not None:
            try:
                check_device_spec(self.device)
            except ValueError as err:
                raise TrainError(f"device: {err}") from None
        if self.bits_lr is not None and not (isinstance(self.bits_lr, int | float) and self.bits_lr > 0):
            raise TrainError(f"bits_lr: must be > 0, got {self.bits_lr!r}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise TrainError(f"min_lr_ratio: must be in [0, 1], got {self.min_lr_ratio!r}")
        if self.patience is not None and (isinstance(self.patience, bool) or not isinstance(self.patience, int)
                                          or self.patience < 1):
            raise TrainError(f"patience: must be a positive integer or None, got {self.patience!r}")


@dataclass
class EpochRecord:
    """What one epoch measured."""

    epoch: int
    train_loss: float
    val_metric: float | None
    val_loss: float | None
    ebops: float
    beta: float
    lr: float


@dataclass
class History:
    """Per-epoch records plus the outcome of early stopping."""

    records: list[EpochRecord] = field(default_factory=list)
    best_epoch: int | None = None
    best_metric: float | None = None
    stopped_early: bool = False

    def column(self, name: str) -> list[Any]:
        """One field of every record, e.g. ``history.column("val_metric")``."""
        return [getattr(r, name) for r in self.records]


def _as_tensors(data: Any, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(data, tuple | list) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = data
    elif isinstance(data, torch.utils.data.Dataset):
        items = [data[i] for i in range(len(data))]  # type: ignore[arg-type]
        x = torch.stack([torch.as_tensor(a) for a, _ in items])
        y = torch.stack([torch.as_tensor(b) for _, b in items])
    else:
        raise TrainError(f"{name}: expected an (x, y) pair of tensors or a Dataset, got {type(data).__name__}")
    if len(x) != len(y):
        raise TrainError(f"{name}: {len(x)} inputs but {len(y)} targets")
    if len(x) == 0:
        raise TrainError(f"{name}: no samples")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise TrainError(f"{name}: inputs contain NaN or infinity")
    if y.is_floating_point() and not bool(torch.isfinite(y).all()):
        raise TrainError(f"{name}: targets contain NaN or infinity")
    return x, y


def _loss_fn(kind: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if kind == "ce":
        return lambda out, y: F.cross_entropy(out, y)
    if kind == "bce":
        return lambda out, y: F.binary_cross_entropy_with_logits(out, y.to(out.dtype))
    return lambda out, y: F.mse_loss(out, y.to(out.dtype))


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "ce",
             batch_size: int = 1024) -> tuple[float, float]:
    """(metric, loss) of ``model`` in eval mode; the metric is accuracy (ce), bit accuracy (bce) or −MSE.

    Every metric is "higher is better". The model's train/eval mode is restored afterwards.
    """
    was = model.training
    model.eval()
    fn = _loss_fn(loss)
    dev = module_device(model)
    total_loss = 0.0
    hits = 0.0
    for s in range(0, len(x), batch_size):
        out = model(x[s:s + batch_size].to(dev))
        yb = y[s:s + batch_size].to(dev)
        total_loss += float(fn(out, yb)) * len(yb)
        if loss == "ce":
            hits += float((out.argmax(1) == yb).sum())
        elif loss == "bce":  # per-sample fraction of correct bits (hard decisions on logits/LLRs)
            hits += float(((out > 0) == (yb > 0.5)).float().reshape(len(yb), -1).mean(1).sum())
    model.train(was)
    mean_loss = total_loss / len(x)
    metric = -mean_loss if loss == "mse" else hits / len(x)
    return metric, mean_loss


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of a classifier in eval mode."""
    return evaluate(model, x, y, loss="ce")[0]


def _rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """The three generators' states as tensors, numbers and tuples (a weights-only checkpoint holds them).

    Training on a CUDA ``device`` adds that device's generator (dropout draws there).
    """
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = (str(name), torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss),
                   float(gauss))
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(state["python"])


def _history_state(history: History) -> dict[str, Any]:
    return {**asdict(history), "records": [asdict(r) for r in history.records]}


def _history_from_state(state: Any) -> History:
    if isinstance(state, History):  # a checkpoint read with trust (written before checkpoints were weights-only)
        return state
    return History(records=[EpochRecord(**r) for r in state["records"]], best_epoch=state["best_epoch"],
                   best_metric=state["best_metric"], stopped_early=state["stopped_early"])


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A trainer checkpoint read weights-only (tensors, numbers, strings, containers: it cannot run code).

    Raises:
        TrainError: naming the file, when it is corrupt or holds anything else (a checkpoint of hwnas before
            checkpoints were weights-only: delete it and the training restarts from its first epoch).
    """
    state = load_saved(path)
    if not isinstance(state, dict) or not {"model", "optimizer", "history", "config"} <= set(state):
        raise TrainError(f"resume: {path} is not a trainer checkpoint; delete it to restart that training from its "
                         "first epoch")
    return state


def load_saved(path: Path) -> Any:
    """What :func:`_atomic_save` wrote to ``path``, digest-checked and read weights-only (TrainError otherwise)."""

    def refuse(why: str) -> TrainError:
        return TrainError(f"resume: {path} {why}; delete it to restart that training from its first epoch")

    try:
        outer = torch.load(path, map_location="cpu", weights_only=True)
        if not (isinstance(outer, dict) and outer.get("format") == CHECKPOINT_FORMAT):
            raise refuse("is not a trainer checkpoint of this hwnas")
        payload = outer.get("payload")
        if not isinstance(payload, bytes) or hashlib.sha256(payload).hexdigest() != outer.get("sha256"):
            raise refuse("is damaged (its SHA-256 does not match)")
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except TrainError:
        raise
    except Exception as err:
        raise refuse(f"is not a readable weights-only trainer checkpoint ({first_line(err)})") from err
    return state


CHECKPOINT_FORMAT = "hwnas-trainer/2"
"""Trainer checkpoints: ``torch.save`` of ``{format, sha256, payload}``, the payload the state's own bytes."""


def _atomic_save(obj: Any, path: Path) -> None:
    """``obj`` into ``path`` atomically, as a digest-checked checkpoint (:func:`load_checkpoint` reads it).

    Tensors on another device are written as CPU tensors (:func:`hwnas.train.device.to_cpu`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(to_cpu(obj), buf)
    payload = buf.getvalue()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save({"format": CHECKPOINT_FORMAT, "sha256": hashlib.sha256(payload).hexdigest(), "payload": payload},
                   tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Trainer:
    """Trains one model under one :class:`TrainConfig`; see the module docstring.

    Args:
        model: the network (hwnas layers or any torch module).
        config: the run's settings (validated here).
        checkpoint_dir: where ``last.pt`` is written after every epoch (None: no checkpoints).
        beta_schedule: optional ``f(epoch, history) -> β`` called before each epoch (overrides
            ``config.beta``); used by β-sweeps and the closed-loop EBOPs controller.
        on_epoch_end: optional callbacks ``f(trainer, record)`` run after each epoch's checkpoint.
        after_step: optional callbacks ``f(trainer)`` run after every optimizer step (e.g. re-applying
            pruning masks).
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig | None = None,
        *,
        checkpoint_dir: str | Path | None = None,
        beta_schedule: Callable[[int, History], float] | None = None,
        on_epoch_end: list[Callable[[Trainer, EpochRecord], None]] | None = None,
        after_step: list[Callable[[Trainer], None]] | None = None,
    ) -> None:
        self.model = model
        self.config = config or TrainConfig()
        self.config.validate()
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.beta_schedule = beta_schedule
        self.on_epoch_end = list(on_epoch_end or [])
        self.after_step = list(after_step or [])
        self.history = History()
        self._loss = _loss_fn(self.config.loss)
        self._optimizer: torch.optim.Optimizer | None = None
        self._l1_params: list[torch.Tensor] = []
        self._generator = torch.Generator().manual_seed(self.config.seed)
        self._stale = 0  # epochs without improvement
        self.beta = self.config.beta
        self.device: torch.device | None = (None if self.config.device is None
                                            else resolve_device(self.config.device, "device"))
        """Where ``fit`` trains (None: where the model is)."""

    # ------------------------------------------------------------------ setup
    def _build_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        bit_params = [p for q in self.model.modules() if isinstance(q, Quantizer)
                      for p in q.parameters(recurse=False)]
        bit_ids = {id(p) for p in bit_params}
        weights = [p for p in self.model.parameters() if id(p) not in bit_ids and p.requires_grad]
        self._l1_params = [p for p in weights if p.dim() > 1]
        groups = [{"params": weights, "lr": cfg.lr, "weight_decay": cfg.weight_decay, "base_lr": cfg.lr}]
        if bit_params:
            blr = cfg.bits_lr if cfg.bits_lr is not None else 10 * cfg.lr
            groups.append({"params": bit_params, "lr": blr, "weight_decay": 0.0, "base_lr": blr})
        if cfg.optimizer == "adam":
            return torch.optim.Adam(groups, fused=True)
        return torch.optim.SGD(groups, momentum=cfg.momentum)

    def _lr_factor(self, epoch: int) -> float:
        """Learning-rate multiplier for ``epoch`` (0-based): constant, or SGDR cosine with restarts."""
        cfg = self.config
        if cfg.schedule == "constant":
            return 1.0
        period, start = cfg.restart_epochs, 0
        while epoch >= start + period:
            start += period
            period *= cfg.restart_mult
        t = (epoch - start) / period
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path | None:
        """``<checkpoint_dir>/last.pt`` or None."""
        return None if self.checkpoint_dir is None else self.checkpoint_dir / "last.pt"

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this run is."""
        assert self._optimizer is not None
        return {
            "model": self.model.state_dict(),
            "optimizer": self._optimizer.state_dict(),
            "history": _history_state(self.history),
            "stale": self._stale,
            "beta": self.beta,
            "generator": self._generator.get_state(),
            "rng": _rng_state(module_device(self.model)),
            "config": asdict(self.config),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (the model must have the same architecture; any device)."""
        saved = {"l1": 0.0, **state.get("config", {})}  # a checkpoint written before l1 existed trained without it
        saved.pop("device", None)  # a checkpoint resumes on any device
        mine = {k: v for k, v in asdict(self.config).items() if k != "device"}
        if saved != mine:
            diff = [k for k in mine if saved.get(k) != mine[k]]
            raise TrainError(f"resume: the checkpoint was written with a different config (fields {diff})")
        self.model.load_state_dict(state["model"])
        self._optimizer = self._build_optimizer()
        self._optimizer.load_state_dict(state["optimizer"])
        self.history = _history_from_state(state["history"])
        self._stale = state["stale"]
        self.beta = state["beta"]
        self._generator.set_state(state["generator"])
        _set_rng_state(state["rng"], module_device(self.model))

    # ------------------------------------------------------------------ loop
    def fit(self, train: Any, val: Any = None, *, resume: bool = False) -> History:
        """Train on ``train`` (an (x, y) pair or Dataset), evaluating on ``val`` after each epoch.

        With ``resume=True`` and a checkpoint in ``checkpoint_dir``, continue from it; the result equals
        an uninterrupted run with the same config and seed. Returns the :class:`History`. With
        ``config.threads`` set, torch runs on that many threads until ``fit`` returns. With ``config.device`` set
        the model is moved there and stays there (module docstring).
        """
        before = torch.get_num_threads()
        if self.config.threads is not None:
            torch.set_num_threads(self.config.threads)
        try:
            return self._fit(train, val, resume)
        finally:
            torch.set_num_threads(before)

    def _fit(self, train: Any, val: Any, resume: bool) -> History:
        cfg = self.config
        x, y = _as_tensors(train, "train")
        val_xy = _as_tensors(val, "val") if val is not None else None
        if cfg.loss == "ce" and y.is_floating_point():
            raise TrainError("train: loss 'ce' needs integer class labels, got floating-point targets")
        if self.device is not None:
            self.model.to(self.device)
        dev = module_device(self.model)
        x, y = x.to(dev), y.to(dev)
        if val_xy is not None:
            val_xy = (val_xy[0].to(dev), val_xy[1].to(dev))
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        random.seed(cfg.seed)
        was = self.model.training
        self.model.eval()  # no BatchNorm statistics updates, no dropout draws
        with torch.no_grad():  # materialize lazily-shaped quantizers (ranges from a first batch)
            self.model(x[:cfg.batch_size])
        self.model.train(was)
        self._optimizer = self._build_optimizer()
        start = 0
        path = self.checkpoint_path
        if resume:
            if path is None:
                raise TrainError("resume: no checkpoint_dir was given")
            if path.exists():
                state = load_checkpoint(path)
                try:
                    self.load_state_dict(state)
                except TrainError:
                    raise
                except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as err:
                    raise TrainError(f"resume: {path} does not fit this training ({err}); delete it to restart "
                                     "that training from its first epoch") from err
                start = len(self.history.records)
        if self.history.stopped_early:
            return self.history
        bar = tqdm(range(start, cfg.epochs), desc="train", disable=not cfg.progress, leave=False,
                   initial=start, total=cfg.epochs)
        for epoch in bar:
            if self.beta_schedule is not None:
                self.beta = float(self.beta_schedule(epoch, self.history))
            record = self._epoch(epoch, x, y, val_xy)
            self.history.records.append(record)
            improved = self._track_best(record)
            if path is not None:
                _atomic_save(self.state_dict(), path)
            for cb in self.on_epoch_end:
                cb(self, record)
            bar.set_postfix(loss=f"{record.train_loss:.4f}",
                            metric="-" if record.val_metric is None else f"{record.val_metric:.4f}",
                            ebops=f"{record.ebops:.0f}")
            if cfg.patience is not None and not improved and self._stale >= cfg.patience:
                self.history.stopped_early = True
                if path is not None:
                    _atomic_save(self.state_dict(), path)
                break
        self.model.eval()
        return self.history

    def _epoch(self, epoch: int, x: torch.Tensor, y: torch.Tensor,
               val_xy: tuple[torch.Tensor, torch.Tensor] | None) -> EpochRecord:
        cfg = self.config
        opt = self._optimizer
        assert opt is not None
        factor = self._lr_factor(epoch)
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * factor
        self.model.train()
        perm = torch.randperm(len(x), generator=self._generator, device="cpu").to(x.device)  # same order anywhere
        total = torch.zeros((), device=x.device)  # accumulated as a tensor: no host sync per step
        use_reg = self.beta > 0 or cfg.gamma > 0
        for s in range(0, len(x), cfg.batch_size):
            idx = perm[s:s + cfg.batch_size]
            loss = self._loss(self.model(x[idx]), y[idx])
            if use_reg:
                loss = loss + regularization(self.model, self.beta, cfg.gamma)
            if cfg.l1 > 0 and self._l1_params:
                loss = loss + cfg.l1 * sum(p.abs().sum() for p in self._l1_params)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for cb in self.after_step:
                cb(self)
            total += loss.detach() * len(idx)
        total = float(total)
        if not math.isfinite(total):
            raise TrainError(f"train: the loss diverged (non-finite) in epoch {epoch}; lower lr or beta")
        val_metric = val_loss = None
        if val_xy is not None:
            val_metric, val_loss = evaluate(self.model, *val_xy, loss=cfg.loss)
        with torch.no_grad():
            e = float(ebops(self.model))
        return EpochRecord(epoch, total / len(x), val_metric, val_loss, e, self.beta,
                           opt.param_groups[0]["lr"])

    def _track_best(self, record: EpochRecord) -> bool:
        if record.val_metric is None:
            return True
        h = self.history
        if h.best_metric is None or record.val_metric > h.best_metric + self.config.min_delta:
            h.best_metric, h.best_epoch = record.val_metric, record.epoch
            self._stale = 0
            return True
        self._stale += 1
        return False
