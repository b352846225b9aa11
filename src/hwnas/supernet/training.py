"""Training a supernet once: the sandwich rule with in-place distillation, resumable epoch by epoch.

Contract (docs/supernet.md):

* :func:`train_supernet` runs ``warmup_epochs`` epochs of the largest sub-net alone (cross-entropy), then — with
  ``sort_channels`` — orders the channels by importance once (:meth:`Supernet.sort_channels`, optimizer moments
  permuted along), then the remaining epochs with the **sandwich rule**: per batch the largest sub-net
  (cross-entropy on the labels), the smallest and ``random_subnets`` uniformly drawn sub-nets (with ``distill``:
  in-place distillation, the KL divergence to the largest sub-net's detached soft predictions, as BigNAS; else
  cross-entropy) accumulate their gradients into one optimizer step on the shared banks.
* Determinism: step ``s`` draws its random sub-nets from ``numpy.random.default_rng([seed, s])`` and seeds torch
  with ``(seed, s)`` inside a forked RNG (dropout), the batch order of epoch ``e`` comes from ``(seed, e)``, and
  every sub-net of a step is built fresh (activation ranges from the step's batch), so the state after an epoch is
  the banks and the optimizer alone. With ``checkpoint`` that state is saved atomically after every epoch
  (digest-checked, weights-only, :func:`hwnas.train.trainer.load_saved`); ``resume`` continues from it and ends
  with the same banks as an uninterrupted run. A checkpoint of other settings (except ``epochs``, which may grow)
  or of another space is refused with an error naming it.
* Device: with ``device`` set (``auto``, ``cpu``, ``cuda``, ``cuda:N``) the supernet is moved there and trains there
  (batches moved per step; the batch order and sub-net draws come from CPU generators, so they are the same on
  every device); the checkpoint holds CPU tensors and resumes on any device.
* Returns a :class:`SupernetHistory`: per epoch the mean loss of the largest sub-net, the seconds, the sub-nets
  trained; a non-finite loss raises :class:`SupernetError`.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .model import Supernet, SupernetError

__all__ = ["SupernetHistory", "SupernetTrainConfig", "space_digest", "train_supernet"]

FORMAT = "hwnas-supernet/1"


@dataclass
class SupernetTrainConfig:
    """The supernet's training settings (the experiment's ``training`` section gives lr, batch size, optimizer)."""

    epochs: int = 10
    warmup_epochs: int = 1
    random_subnets: int = 2
    distill: bool = True
    sort_channels: bool = True
    batch_size: int = 64
    lr: float = 3e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0
    threads: int | None = None
    device: str | None = None
    """Where to train (``auto``, ``cpu``, ``cuda``, ``cuda:N``; None: where the supernet is)."""

    def validate(self) -> None:
        """Raise :class:`SupernetError` naming the first bad field."""
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise SupernetError(f"{name}: must be a positive integer, got {v!r}")
        for name in ("warmup_epochs", "random_subnets"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise SupernetError(f"{name}: must be an integer >= 0, got {v!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise SupernetError(f"lr: must be > 0, got {self.lr!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise SupernetError(f"optimizer: expected adam or sgd, got {self.optimizer!r}")
        if self.device is not None:
            from hwnas.train.device import check_device_spec

            try:
                check_device_spec(self.device)
            except ValueError as err:
                raise SupernetError(f"device: {err}") from None


@dataclass
class SupernetEpoch:
    """One epoch of supernet training."""

    epoch: int
    loss: float
    """Mean cross-entropy of the largest sub-net."""
    seconds: float
    subnets: int
    """Sub-net forward/backward passes in the epoch."""
    phase: str
    """``warmup`` (largest only) or ``sandwich``."""


@dataclass
class SupernetHistory:
    """Every epoch so far (resumed runs include the earlier ones)."""

    epochs: list[SupernetEpoch] = field(default_factory=list)
    sorted_at: int | None = None
    """The epoch before which the channels were sorted (None: never)."""

    @property
    def seconds(self) -> float:
        """Training seconds over every epoch."""
        return float(sum(e.seconds for e in self.epochs))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {"epochs": [asdict(e) for e in self.epochs], "sorted_at": self.sorted_at, "seconds": self.seconds}


def space_digest(supernet: Supernet) -> str:
    """SHA-256 of the supernet's bank shapes and settings: a checkpoint of another space is refused."""
    shapes = {k: list(v.shape) for k, v in supernet.state_dict().items()}
    payload = {"shapes": shapes, "space": supernet.space.cfg.model_dump(mode="json"),
               "input": list(supernet.space.input_shape), "classes": supernet.space.n_classes}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _optimizer(supernet: Supernet, config: SupernetTrainConfig) -> torch.optim.Optimizer:
    params = list(supernet.parameters())
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def _settings(config: SupernetTrainConfig) -> dict[str, Any]:
    d = asdict(config)
    d.pop("epochs")
    d.pop("threads")
    d.pop("device")  # a checkpoint resumes on any device
    return d


def train_supernet(supernet: Supernet, x: torch.Tensor, y: torch.Tensor, config: SupernetTrainConfig, *,
                   checkpoint: Path | None = None, resume: bool = False, progress: bool = False) -> SupernetHistory:
    """Train ``supernet`` on ``(x, y)`` (module docstring)."""
    from hwnas.nn.base import module_device
    from hwnas.train.device import resolve_device
    from hwnas.train.trainer import _atomic_save, load_saved

    config.validate()
    if len(x) != len(y) or len(x) == 0:
        raise SupernetError(f"training data: {len(x)} inputs and {len(y)} labels (need as many, at least one)")
    dev = module_device(supernet) if config.device is None else resolve_device(config.device, "device")
    supernet.to(dev)
    digest = space_digest(supernet)
    opt = _optimizer(supernet, config)
    history = SupernetHistory()
    start = 0
    if checkpoint is not None and resume and Path(checkpoint).is_file():
        state = load_saved(Path(checkpoint))
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise SupernetError(f"resume: {checkpoint} is not a supernet checkpoint; delete it to train again")
        if state["digest"] != digest:
            raise SupernetError(f"resume: {checkpoint} belongs to another search space; delete it to train again")
        if state["settings"] != _settings(config):
            changed = sorted(k for k, v in _settings(config).items() if state["settings"].get(k) != v)
            raise SupernetError(f"resume: {checkpoint} was trained with other settings ({', '.join(changed)}); "
                                "delete it to train again")
        supernet.load_state_dict(state["banks"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["epoch"])
        history = SupernetHistory([SupernetEpoch(**e) for e in state["history"]["epochs"]],
                                  state["history"]["sorted_at"])
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(int(config.threads))
    n = len(x)
    steps_per_epoch = math.ceil(n / config.batch_size)
    bar = tqdm(total=config.epochs * steps_per_epoch, initial=start * steps_per_epoch, desc="supernet",
               unit="step", disable=not progress, leave=False)
    space = supernet.space
    try:
        with torch.random.fork_rng(devices=[dev.index] if dev.type == "cuda" else []):
            for epoch in range(start, config.epochs):
                warm = epoch < config.warmup_epochs
                if not warm and config.sort_channels and history.sorted_at is None:
                    supernet.sort_channels(opt)
                    history.sorted_at = epoch
                t0 = time.perf_counter()
                gen = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
                order = torch.randperm(n, generator=gen)
                total, count, passes = 0.0, 0, 0
                supernet.train()
                for b in range(steps_per_epoch):
                    step = epoch * steps_per_epoch + b
                    idx = order[b * config.batch_size:(b + 1) * config.batch_size]
                    xb, yb = x[idx].to(dev), y[idx].to(dev)
                    torch.manual_seed((config.seed * 1_000_003 + step) % 2**63)
                    opt.zero_grad(set_to_none=True)
                    logits = supernet.subnet(supernet.largest, fresh=True)(xb)
                    loss = F.cross_entropy(logits, yb)
                    loss.backward()
                    passes += 1
                    if not math.isfinite(float(loss.detach())):
                        raise SupernetError(f"supernet training diverged at epoch {epoch + 1}, step {b + 1} "
                                            f"(loss {float(loss.detach())}); lower training.lr")
                    if not warm:
                        soft = F.softmax(logits.detach(), dim=1)
                        rng = np.random.default_rng([config.seed, step])
                        others = [supernet.smallest] + [space.sample(rng) for _ in range(config.random_subnets)]
                        for point in others:
                            out = supernet.subnet(point, fresh=True)(xb)
                            if config.distill:
                                sub = F.kl_div(F.log_softmax(out, dim=1), soft, reduction="batchmean")
                            else:
                                sub = F.cross_entropy(out, yb)
                            sub.backward()
                            passes += 1
                    opt.step()
                    total += float(loss.detach()) * len(idx)
                    count += len(idx)
                    bar.update(1)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{total / count:.4f}", refresh=False)
                history.epochs.append(SupernetEpoch(epoch + 1, total / count, time.perf_counter() - t0, passes,
                                                    "warmup" if warm else "sandwich"))
                if checkpoint is not None:
                    _atomic_save({"format": FORMAT, "digest": digest, "settings": _settings(config),
                                  "banks": supernet.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch + 1,
                                  "history": history.to_dict()}, Path(checkpoint))
    finally:
        bar.close()
        torch.set_num_threads(threads)
    return history


def load_supernet(supernet: Supernet, checkpoint: Path) -> SupernetHistory:
    """Load the banks of a finished (or partial) training from ``checkpoint`` into ``supernet``."""
    from hwnas.train.trainer import load_saved

    state = load_saved(Path(checkpoint))
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise SupernetError(f"{checkpoint}: not a supernet checkpoint")
    if state["digest"] != space_digest(supernet):
        raise SupernetError(f"{checkpoint}: belongs to another search space")
    supernet.load_state_dict(state["banks"])
    return SupernetHistory([SupernetEpoch(**e) for e in state["history"]["epochs"]], state["history"]["sorted_at"])
