"""MOLP: the multi-output learning predictor of MONAS-LQ stage 3 (also HA-NAS's accuracy predictor).

Contract:

* :class:`MultiOutputPredictor` is a torch MLP with a shared trunk (``hidden`` widths, SiLU) and one
  regression head per target (``head_hidden`` → 1), by default ``("accuracy", "bops", "score")``. The
  input is a feature matrix ``x`` of shape ``(samples, features)`` — typically MONAS-LQ's fixed-length
  integer vectors — mapped to [−1, 1] by ``bounds`` when given (one inclusive ``(low, high)`` per
  feature), otherwise standardized with the training mean and standard deviation.
* Each target is standardized with its training mean and standard deviation, after a natural log for
  the targets in ``log_targets`` (default: those of ``bops``, ``ebops``, ``macs``, ``wbits``, ``params``
  among the targets; such targets must be > 0). The loss is Σ weight · MSE over the standardized
  targets (``loss_weights``, 1 each by default); predictions are mapped back to the original units.
* :meth:`fit` splits off ``validation_fraction`` of the samples (seeded shuffle), trains with Adam
  (mini-batches of ``batch_size``, seeded order) for at most ``epochs`` epochs, stops after
  ``patience`` epochs without a better validation loss and keeps the weights of the best epoch. It
  returns a :class:`FitReport` with per-target R² and RMSE (original units) on the held-out part — the
  samples that no gradient step saw, also used for early stopping. Without a held-out part
  (``validation_fraction=0`` or too few samples) it trains all ``epochs`` and reports on the training data.
* ``ensemble=k`` trains k members from seeds derived from ``seed`` (same split, different initial
  weights and batch order); :meth:`predict` returns their mean and, with ``return_std=True``, their
  standard deviation per target (a cheap uncertainty estimate).
* Same data and seed → the same weights and predictions (training runs in float64 inside a forked torch
  RNG: the global torch random state is left untouched). :meth:`save` writes atomically (temporary file,
  then rename); :meth:`load` restores a predictor whose predictions are identical.

Errors name the argument: ``x`` not 2-D, ``y[...]`` of the wrong length, a missing or unknown target,
NaN/infinite values, non-positive values of a log target, ``bounds`` of the wrong length, predicting with
another number of features than fitted with.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

__all__ = ["DEFAULT_LOG_TARGETS", "DEFAULT_TARGETS", "FORMAT", "FitReport", "MultiOutputPredictor"]

DEFAULT_TARGETS: tuple[str, ...] = ("accuracy", "bops", "score")
"""MONAS-LQ's MOLP outputs: accuracy, BOPs and the composite objective."""
DEFAULT_LOG_TARGETS: frozenset[str] = frozenset({"bops", "ebops", "macs", "wbits", "params"})
"""Targets fitted in log space by default (positive counts spanning orders of magnitude)."""
FORMAT = "hwnas.molp/1"
"""Format tag of files written by :meth:`MultiOutputPredictor.save`."""

_DTYPE = torch.float64


@dataclass
class FitReport:
    """What :meth:`MultiOutputPredictor.fit` measured: per-target R² and RMSE on the held-out samples."""

    r2: dict[str, float]
    rmse: dict[str, float]
    split: str
    """``"validation"`` (held-out samples) or ``"train"`` (no held-out part)."""
    n_train: int
    n_validation: int
    epochs: list[int] = field(default_factory=list)
    """Epochs each ensemble member trained (including the patience epochs after its best)."""
    best_epochs: list[int] = field(default_factory=list)
    """The epoch whose weights each member kept."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable copy."""
        return {"r2": dict(self.r2), "rmse": dict(self.rmse), "split": self.split, "n_train": self.n_train,
                "n_validation": self.n_validation, "epochs": list(self.epochs),
                "best_epochs": list(self.best_epochs)}


@dataclass
class _Fitted:
    """Everything :meth:`MultiOutputPredictor.fit` learns (swapped in only once fitting succeeded)."""

    n_features: int
    x_shift: np.ndarray
    x_scale: np.ndarray
    y_mean: np.ndarray
    y_std: np.ndarray
    members: list[nn.Module]


class _Net(nn.Module):
    """Shared trunk, one head per target; output ``(batch, targets)``."""

    def __init__(self, n_in: int, hidden: Sequence[int], head_hidden: int, n_out: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_in
        for h in hidden:
            layers += [nn.Linear(width, h), nn.SiLU()]
            width = h
        self.trunk = nn.Sequential(*layers)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(width, head_hidden), nn.SiLU(), nn.Linear(head_hidden, 1)) for _ in range(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.trunk(x)
        return torch.cat([head(z) for head in self.heads], dim=1)


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _r2(y: np.ndarray, p: np.ndarray) -> float:
    ss_res = float(np.sum((y - p) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot == 0.0:
        return 1.0 if ss_res == 0.0 else 0.0
    return 1.0 - ss_res / ss_tot


class MultiOutputPredictor:
    """Multi-output MLP predictor (shared trunk, one head per target) for architecture metrics.

    Args:
        targets: names of the predicted quantities (the keys of ``y`` and of predictions).
        bounds: optional inclusive ``(low, high)`` per input feature, used to scale inputs to [−1, 1]
            (the search space's integer-vector bounds); ``None``: standardize with training statistics.
        hidden: widths of the shared trunk's layers.
        head_hidden: width of each head's hidden layer.
        log_targets: targets fitted in log space (must be > 0); ``None``: :data:`DEFAULT_LOG_TARGETS`
            among ``targets``.
        loss_weights: weight of each target's loss term (default 1).
        epochs: most training epochs.
        lr: Adam learning rate.
        weight_decay: Adam L2 weight decay.
        batch_size: mini-batch size (``None``: full batch).
        validation_fraction: share of the samples held out for early stopping and the report.
        patience: epochs without a better validation loss before stopping.
        ensemble: members trained from different seeds (mean and std of their predictions).
        seed: seed of the split, the initial weights and the batch order.
        progress: show a tqdm bar over the training epochs.
    """

    def __init__(self, targets: Sequence[str] = DEFAULT_TARGETS, *,
                 bounds: Sequence[tuple[float, float]] | None = None, hidden: Sequence[int] = (64, 64),
                 head_hidden: int = 32, log_targets: Sequence[str] | None = None,
                 loss_weights: Mapping[str, float] | None = None, epochs: int = 1000, lr: float = 3e-3,
                 weight_decay: float = 1e-5, batch_size: int | None = 32, validation_fraction: float = 0.2,
                 patience: int = 100, ensemble: int = 1, seed: int = 0, progress: bool = False) -> None:
        targets = tuple(targets)
        if not targets or any(not isinstance(t, str) or not t for t in targets):
            raise ValueError(f"targets must be a non-empty sequence of names, got {targets!r}")
        if len(set(targets)) != len(targets):
            raise ValueError(f"targets has duplicate names: {targets!r}")
        self.targets = targets
        if log_targets is None:
            self.log_targets = tuple(t for t in targets if t in DEFAULT_LOG_TARGETS)
        else:
            unknown = [t for t in log_targets if t not in targets]
            if unknown:
                raise ValueError(f"log_targets names {unknown} which are not in targets {targets}")
            self.log_targets = tuple(t for t in targets if t in set(log_targets))
        weights = dict(loss_weights or {})
        unknown = [t for t in weights if t not in targets]
        if unknown:
            raise ValueError(f"loss_weights names {unknown} which are not in targets {targets}")
        for t, w in weights.items():
            if not (math.isfinite(float(w)) and float(w) >= 0):
                raise ValueError(f"loss_weights[{t!r}] must be a finite number >= 0, got {w!r}")
        self.loss_weights = {t: float(weights.get(t, 1.0)) for t in targets}
        if sum(self.loss_weights.values()) <= 0:
            raise ValueError("loss_weights are all 0: nothing to train")
        self.bounds: list[tuple[float, float]] | None = None
        if bounds is not None:
            self.bounds = []
            for i, b in enumerate(bounds):
                b = tuple(b)
                if len(b) != 2 or not all(math.isfinite(float(v)) for v in b) or float(b[1]) < float(b[0]):
                    raise ValueError(f"bounds[{i}] must be a finite pair (low, high) with low <= high, got {b!r}")
                self.bounds.append((float(b[0]), float(b[1])))
            if not self.bounds:
                raise ValueError("bounds must have one entry per input feature, got none")
        self.hidden = tuple(_positive_int("hidden[]", h) for h in hidden)
        self.head_hidden = _positive_int("head_hidden", head_hidden)
        self.epochs = _positive_int("epochs", epochs)
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be > 0, got {lr!r}")
        if not (math.isfinite(weight_decay) and weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.batch_size = None if batch_size is None else _positive_int("batch_size", batch_size)
        if not 0.0 <= validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must lie in [0, 1), got {validation_fraction!r}")
        self.validation_fraction = float(validation_fraction)
        self.patience = _positive_int("patience", patience)
        self.ensemble = _positive_int("ensemble", ensemble)
        self.seed = _positive_int("seed", seed, minimum=0)
        self.progress = bool(progress)
        self._fitted: _Fitted | None = None
        self.report: FitReport | None = None

    # -- validation ----------------------------------------------------------------------------------------
    def _check_x(self, data: Any, n_features: int | None, name: str = "x") -> np.ndarray:
        x = np.asarray(data, dtype=float)
        if x.ndim != 2:
            raise ValueError(f"{name} must be 2-D (samples, features), got shape {x.shape}")
        if x.shape[1] == 0:
            raise ValueError(f"{name} has no features (shape {x.shape})")
        if not np.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        if n_features is not None and x.shape[1] != n_features:
            raise ValueError(f"{name} has {x.shape[1]} features but the predictor was fitted on {n_features}")
        if self.bounds is not None and x.shape[1] != len(self.bounds):
            raise ValueError(f"bounds has {len(self.bounds)} entries but {name} has {x.shape[1]} features")
        return x

    def _check_y(self, data: Mapping[str, Any], n: int) -> np.ndarray:
        if not isinstance(data, Mapping):
            raise ValueError(f"y must be a mapping target name -> values, got {type(data).__name__}")
        missing = [t for t in self.targets if t not in data]
        if missing:
            raise ValueError(f"y is missing targets {missing} (targets are {list(self.targets)})")
        extra = [t for t in data if t not in self.targets]
        if extra:
            raise ValueError(f"y has targets {extra} that are not in targets {list(self.targets)}")
        cols = []
        for t in self.targets:
            y = np.asarray(data[t], dtype=float)
            if y.ndim == 2 and y.shape[1] == 1:
                y = y[:, 0]
            if y.ndim != 1:
                raise ValueError(f"y[{t!r}] must be 1-D, got shape {y.shape}")
            if y.shape[0] != n:
                raise ValueError(f"y[{t!r}] has {y.shape[0]} values but x has {n} rows")
            if not np.isfinite(y).all():
                raise ValueError(f"y[{t!r}] contains NaN or infinite values")
            if t in self.log_targets:
                if (y <= 0).any():
                    raise ValueError(f"y[{t!r}] must be > 0 (it is a log target; see log_targets)")
                y = np.log(y)
            cols.append(y)
        return np.stack(cols, axis=1)

    # -- transforms ----------------------------------------------------------------------------------------
    @staticmethod
    def _scale_x(state: _Fitted, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((x - state.x_shift) / state.x_scale, dtype=_DTYPE)

    def _unscale_y(self, state: _Fitted, z: np.ndarray) -> np.ndarray:
        y = z * state.y_std + state.y_mean
        for j, t in enumerate(self.targets):
            if t in self.log_targets:
                y[..., j] = np.exp(y[..., j])
        return y

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit` (or :meth:`load`) has produced weights."""
        return self._fitted is not None

    # -- fitting -------------------------------------------------------------------------------------------
    def fit(self, x: Any, y: Mapping[str, Any]) -> FitReport:
        """Train on ``x`` (samples, features) and ``y`` (target -> values); return the held-out report."""
        targets_in = y
        x = self._check_x(x, None)
        n, d = x.shape
        if n < 2:
            raise ValueError(f"x has {n} rows; fitting needs at least 2 samples")
        y = self._check_y(targets_in, n)
        perm = np.random.default_rng([self.seed, 0]).permutation(n)
        n_val = math.floor(self.validation_fraction * n + 0.5)
        n_val = min(n_val, n - 1)
        val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])

        if self.bounds is not None:
            lo = np.array([b[0] for b in self.bounds])
            hi = np.array([b[1] for b in self.bounds])
            x_shift, x_scale = (lo + hi) / 2, np.where(hi > lo, (hi - lo) / 2, 1.0)
        else:
            x_shift, sd = x[train_idx].mean(axis=0), x[train_idx].std(axis=0)
            x_scale = np.where(sd > 0, sd, 1.0)
        y_mean, sd = y[train_idx].mean(axis=0), y[train_idx].std(axis=0)
        state = _Fitted(n_features=d, x_shift=x_shift, x_scale=x_scale, y_mean=y_mean,
                        y_std=np.where(sd > 0, sd, 1.0), members=[])

        xt = self._scale_x(state, x)
        zt = torch.as_tensor((y - state.y_mean) / state.y_std, dtype=_DTYPE)
        w = torch.tensor([self.loss_weights[t] for t in self.targets], dtype=_DTYPE)
        members, epochs, best_epochs = [], [], []
        bar = tqdm(total=self.ensemble * self.epochs, desc="MOLP fit", disable=not self.progress, leave=False)
        try:
            for k in range(self.ensemble):
                net, ran, best = self._train_member(k, xt, zt, w, train_idx, val_idx, bar)
                members.append(net)
                epochs.append(ran)
                best_epochs.append(best)
        finally:
            bar.close()
        state.members = members

        idx = val_idx if n_val > 0 else train_idx
        pred = self._predict(state, x[idx])[0]
        r2, rmse = {}, {}
        for t in self.targets:
            true = np.asarray(targets_in[t], dtype=float).reshape(-1)[idx]
            r2[t] = _r2(true, pred[t])
            rmse[t] = float(np.sqrt(np.mean((true - pred[t]) ** 2)))
        self._fitted = state
        self.report = FitReport(r2=r2, rmse=rmse, split="validation" if n_val > 0 else "train",
                                n_train=int(train_idx.size), n_validation=int(n_val), epochs=epochs,
                                best_epochs=best_epochs)
        return self.report

    def _train_member(self, k: int, xt: torch.Tensor, zt: torch.Tensor, w: torch.Tensor, train_idx: np.ndarray,
                      val_idx: np.ndarray, bar: Any) -> tuple[_Net, int, int]:
        member_seed = int(np.random.SeedSequence([self.seed, 1, k]).generate_state(1)[0])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(member_seed)
            net = _Net(xt.shape[1], self.hidden, self.head_hidden, len(self.targets)).to(_DTYPE)
        gen = torch.Generator().manual_seed(member_seed)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        tr = torch.as_tensor(train_idx, dtype=torch.long)
        va = torch.as_tensor(val_idx, dtype=torch.long)
        bs = self.batch_size or tr.numel()

        def loss_of(idx: torch.Tensor) -> torch.Tensor:
            err = (net(xt[idx]) - zt[idx]) ** 2
            return (err.mean(dim=0) * w).sum()

        best_loss, best_epoch, best_state = math.inf, 0, copy.deepcopy(net.state_dict())
        ran = 0
        for epoch in range(1, self.epochs + 1):
            net.train()
            order = tr[torch.randperm(tr.numel(), generator=gen)]
            for start in range(0, order.numel(), bs):
                opt.zero_grad(set_to_none=True)
                loss = loss_of(order[start:start + bs])
                loss.backward()
                opt.step()
            ran = epoch
            bar.update(1)
            if va.numel() == 0:
                continue
            net.eval()
            with torch.no_grad():
                vl = float(loss_of(va))
            if not math.isfinite(vl):
                raise FloatingPointError(f"MOLP training diverged (validation loss {vl}) at epoch {epoch}; "
                                         "lower lr")
            if vl < best_loss:
                best_loss, best_epoch, best_state = vl, epoch, copy.deepcopy(net.state_dict())
            elif epoch - best_epoch >= self.patience:
                break
        bar.update(self.epochs - ran)
        if va.numel() > 0:
            net.load_state_dict(best_state)
        else:
            best_epoch = ran
        net.eval()
        return net, ran, best_epoch

    # -- prediction ----------------------------------------------------------------------------------------
    def predict(self, x: Any, *, return_std: bool = False) -> Any:
        """Predicted targets for ``x``: ``{target: array (samples,)}`` (the ensemble mean).

        With ``return_std=True``: a pair ``(mean, std)`` of such dicts (std 0 for a single member).
        """
        if self._fitted is None:
            raise RuntimeError("predict() before fit(): the predictor has no weights")
        x = self._check_x(x, self._fitted.n_features)
        mean, std = self._predict(self._fitted, x)
        return (mean, std) if return_std else mean

    def _predict(self, state: _Fitted, x: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        xt = self._scale_x(state, x)
        with torch.no_grad():
            outs = np.stack([self._unscale_y(state, m(xt).numpy().copy()) for m in state.members])
        mean, std = outs.mean(axis=0), outs.std(axis=0)
        return ({t: mean[:, j].copy() for j, t in enumerate(self.targets)},
                {t: std[:, j].copy() for j, t in enumerate(self.targets)})

    # -- persistence ---------------------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        bounds = None if self.bounds is None else [list(b) for b in self.bounds]
        return {"targets": list(self.targets), "bounds": bounds,
                "hidden": list(self.hidden), "head_hidden": self.head_hidden, "log_targets": list(self.log_targets),
                "loss_weights": dict(self.loss_weights), "epochs": self.epochs, "lr": self.lr,
                "weight_decay": self.weight_decay, "batch_size": self.batch_size,
                "validation_fraction": self.validation_fraction, "patience": self.patience,
                "ensemble": self.ensemble, "seed": self.seed}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write settings, normalization and weights to ``path`` atomically (temporary file, then rename)."""
        st = self._fitted
        if st is None:
            raise RuntimeError("save() before fit(): the predictor has no weights")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "format": FORMAT,
            "config": self._config(),
            "n_features": st.n_features,
            "x_shift": torch.as_tensor(st.x_shift), "x_scale": torch.as_tensor(st.x_scale),
            "y_mean": torch.as_tensor(st.y_mean), "y_std": torch.as_tensor(st.y_std),
            "members": [m.state_dict() for m in st.members],
            "report": None if self.report is None else self.report.to_dict(),
        }
        tmp = path.with_name(path.name + ".tmp")
        try:
            torch.save(data, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> MultiOutputPredictor:
        """Read a file written by :meth:`save` (its predictions are identical to the saved predictor's)."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: no such predictor file")
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ValueError(f"{path}: not a readable predictor file ({err})") from err
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path}: not a {FORMAT} file (write it with MultiOutputPredictor.save)")
        cfg = dict(data["config"])
        bounds = cfg.pop("bounds")
        targets = cfg.pop("targets")
        obj = cls(targets, bounds=None if bounds is None else [tuple(b) for b in bounds], **cfg)
        n_features = int(data["n_features"])
        members: list[nn.Module] = []
        with torch.random.fork_rng(devices=[]):  # module construction draws (discarded) initial weights
            for weights in data["members"]:
                net = _Net(n_features, obj.hidden, obj.head_hidden, len(obj.targets)).to(_DTYPE)
                net.load_state_dict(weights)
                net.eval()
                members.append(net)
        obj._fitted = _Fitted(n_features=n_features, x_shift=data["x_shift"].numpy().copy(),
                              x_scale=data["x_scale"].numpy().copy(), y_mean=data["y_mean"].numpy().copy(),
                              y_std=data["y_std"].numpy().copy(), members=members)
        rep = data.get("report")
        obj.report = None if rep is None else FitReport(**rep)
        return obj
