"""The weight-sharing supernet of a search space: every point's model runs on slices of one set of weights.

Contract (docs/supernet.md):

* :class:`Supernet` is built from a :class:`hwnas.space.SearchSpace` with fixed precision (:func:`check_space` names
  the key of anything it cannot share: learned precision, searched pooling/batch_norm/separable/activation/
  dropout, task options or training settings, a kernel set whose sizes differ in parity, an empty choice set).
  It holds one float **bank** per weight of the largest model: ``conv{i}`` (and ``conv{i}.dw`` for separable
  blocks) ``[F_max, C_max, K_max…]``, BatchNorm scale/shift, ``dense{j}``, the classifier. A point's layer
  takes the leading ``out`` rows, the leading ``in`` columns and the centred ``k`` taps of its bank (elastic
  width: channel slicing; elastic kernel: centre slicing, then — with ``kernel_transform`` — Once-for-All's
  learned ``k^d × k^d`` transform per slot and kernel size, applied from the largest kernel down). The layer
  right after the flatten (``dense0``, or the classifier of a model without hidden dense layers) has one bank
  per conv depth (its fan-in is ``channels × positions``, and the positions depend on the depth); a
  classifier reading hidden layer ``j`` has a bank per ``j``, so every bank has one producer (channel sorting
  stays exact). Channel-major flattening makes "the first ``c`` channels" the first ``c·positions`` columns.
* Elastic depth: depth ``d`` runs the first ``d`` blocks / hidden layers. Bit-widths are switched, not stored:
  a point's model (``space.build``) carries its own fixed-point quantizers over the shared float weights, so
  every bit-width shares the same float weights (weights are quantized per output channel from the slice on
  every call; activation ranges are measured from data).
* :meth:`Supernet.subnet` gives a :class:`SubNet`: the point's hwnas model whose forward reads the live bank
  slices (``torch.func.functional_call``): gradients through a sub-net land in the supernet's banks.
  :meth:`SubNet.calibrate` copies the slices in, recalibrates BatchNorm statistics (running averages over the
  given batches in training mode, dropout off: statistics depend on every choice, not only the bit-widths, so
  they are re-measured per sub-net as in Once-for-All rather than stored per bit-width) and then the
  activation ranges (:func:`hwnas.quant.calibrate`). :meth:`SubNet.extract` returns a standalone copy:
  an ordinary hwnas model (exportable, verifiable) whose outputs equal the sub-net's.
* :meth:`Supernet.sort_channels` reorders every slot's output channels by the L1 norm of their weights (largest
  first) and permutes every reader of them (and the optimizer's moment estimates) accordingly: the largest
  sub-net computes the same function, and narrower sub-nets keep the most important channels.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from hwnas.errors import HwnasError
from hwnas.space import SearchSpace
from hwnas.space.build import conv_out, pool_out
from hwnas.space.point import Point

__all__ = ["SHARED_VARIABLES", "SubNet", "Supernet", "SupernetError", "check_space"]


class SupernetError(HwnasError, ValueError):
    """A space the supernet cannot share weights over, or a bad supernet setting; the message names the key."""


SHARED_VARIABLES = ("conv_blocks", "dense_layers", "filters", "kernel", "units", "weight_bits", "act_bits")
"""What a point may vary over the shared weights (plus the hardware mapping, which has no weights)."""

_FIXED_FIELDS = ("pooling", "batch_norm", "separable", "activation")


def check_space(space: SearchSpace) -> None:
    """Raise :class:`SupernetError` naming the key when ``space`` has a variable the supernet cannot share."""
    if space.learned:
        raise SupernetError("space.precision.mode: the supernet switches fixed bit-widths (mode: fixed); learned "
                            "(HGQ) precision trains per-parameter widths that cannot be shared between sub-nets")
    if space.task_option_names:
        raise SupernetError("space.task_options: every sub-net of a supernet reads the same data; fix the task "
                            "options in task.options")
    if space.training_names:
        raise SupernetError(f"space.training: the supernet trains once, so training settings "
                            f"({', '.join(space.training_names)}) cannot vary per sub-net; fix them in training")
    for name in space.names:
        field = name.partition(".")[2]
        choices = space.choices(name)
        if not choices:
            raise SupernetError(f"{name}: has no choice")
        if len(choices) > 1 and (field in _FIXED_FIELDS or name == "dropout"):
            key = "space.dropout" if name == "dropout" else f"space.{field}"
            raise SupernetError(f"{key}: the supernet shares weights over depth, widths, kernels and bit-widths; "
                                f"{name} varies ({list(choices)}): fix it to one value")
    kernels = space.choices("conv0.kernel") if space.nd and space.max_conv else ()
    if len({k % 2 for k in kernels}) > 1:
        raise SupernetError(f"space.kernel: {list(kernels)} is not centre-nestable (a kernel is the centre of the "
                            "larger ones only when all sizes are odd or all are even)")


@dataclass(frozen=True)
class _Use:
    """How one parameter of a point's model reads its bank."""

    bank: str
    out: int
    inp: int | None = None  # leading columns (None: a vector)
    kernel: int | None = None  # centred taps per spatial axis (None: no kernel axes)
    transform: str | None = None  # kernel-transform slot (None: none)


def _key(name: str) -> str:
    return name.replace(".", "_")


class Supernet(nn.Module):
    """The shared weights of every point of ``space`` (module docstring).

    Args:
        space: a fixed-precision space (:func:`check_space`).
        kernel_transform: learn Once-for-All's kernel transformation matrices (False: plain centre slicing).
        seed: the banks are initialized from the largest point's model built with this seed.
        cache: how many sub-net models are kept built (least recently used dropped).
    """

    def __init__(self, space: SearchSpace, *, kernel_transform: bool = True, seed: int = 0, cache: int = 16) -> None:
        super().__init__()
        check_space(space)
        self.space = space
        self.nd = space.nd
        self.kernel_transform = bool(kernel_transform)
        self.largest = space.extreme(largest=True)
        self.smallest = space.extreme(largest=False)
        self.banks = nn.ParameterDict()
        self.transforms = nn.ParameterDict()
        self._cache: OrderedDict[Point, nn.Module] = OrderedDict()
        self._cache_size = max(1, int(cache))
        self.conv_depths = tuple(int(d) for d in space.choices("conv_blocks")) if self.nd else (0,)
        self.dense_depths = tuple(int(d) for d in space.choices("dense_layers"))
        shape = space.input_shape
        self.in_channels = shape[0] if self.nd else 0
        names = set(space.names)
        filters = [v for i in range(space.max_conv)
                   for v in space.choices("filters" if "filters" in names else f"conv{i}.filters")]
        f_max = max(filters, default=0)
        u_max = max((v for j in range(space.max_dense) for v in space.choices(f"dense{j}.units")), default=0)
        self.kernels = tuple(sorted(space.choices("conv0.kernel"), reverse=True)) if space.max_conv else ()
        k_max = self.kernels[0] if self.kernels else 0
        self.flat: dict[int, int] = {}  # conv depth -> flattened features of the widest model of that depth
        self.positions: dict[int, int] = {}
        spatial = tuple(shape[1:]) if self.nd else ()
        sizes = {0: spatial}
        for i in range(space.max_conv):
            spatial = conv_out(spatial, k_max)
            if space.choices(f"conv{i}.pooling")[0] != "none":
                spatial = pool_out(spatial)
            sizes[i + 1] = spatial
        for d in self.conv_depths:
            pos = math.prod(sizes[d]) if self.nd else 1
            chans = (f_max if d else self.in_channels) if self.nd else math.prod(shape)
            self.positions[d], self.flat[d] = pos, chans * pos
        self.separable = [bool(space.choices(f"conv{i}.separable")[0]) for i in range(space.max_conv)]
        self.batch_norm = [bool(space.choices(f"conv{i}.batch_norm")[0]) for i in range(space.max_conv)]
        kshape = (k_max,) * self.nd
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            for i in range(space.max_conv):
                cin = self.in_channels if i == 0 else f_max
                if self.separable[i]:
                    self._bank(f"conv{i}.dw.w", (cin, 1, *kshape), fan_in=k_max ** self.nd)
                    self._bank(f"conv{i}.dw.b", (cin,), fan_in=k_max ** self.nd)
                    self._bank(f"conv{i}.w", (f_max, cin, *(1,) * self.nd), fan_in=cin)
                else:
                    self._bank(f"conv{i}.w", (f_max, cin, *kshape), fan_in=cin * k_max ** self.nd)
                self._bank(f"conv{i}.b", (f_max,), fan_in=cin)
                if self.batch_norm[i]:
                    self.banks[_key(f"conv{i}.bn.w")] = nn.Parameter(torch.ones(f_max))
                    self.banks[_key(f"conv{i}.bn.b")] = nn.Parameter(torch.zeros(f_max))
                if self.kernel_transform:
                    for k in self.kernels[1:]:
                        for part in (("dw",) if self.separable[i] else ("",)):
                            name = f"conv{i}.{part}.t{k}" if part else f"conv{i}.t{k}"
                            self.transforms[_key(name)] = nn.Parameter(torch.eye(k ** self.nd))
            for j in range(space.max_dense):
                if j == 0:
                    for d in self.conv_depths:
                        self._bank(f"dense0.w.c{d}", (u_max, self.flat[d]), fan_in=self.flat[d])
                else:
                    self._bank(f"dense{j}.w", (u_max, u_max), fan_in=u_max)
                self._bank(f"dense{j}.b", (u_max,), fan_in=u_max)
            n = space.n_classes
            if 0 in self.dense_depths:
                for d in self.conv_depths:
                    self._bank(f"classifier.w.c{d}", (n, self.flat[d]), fan_in=self.flat[d])
            for e in self.dense_depths:
                if e:
                    self._bank(f"classifier.w.d{e - 1}", (n, u_max), fan_in=u_max)
            self._bank("classifier.b", (n,), fan_in=u_max or self.flat[self.conv_depths[0]])

    # ------------------------------------------------------------------ banks
    def _bank(self, name: str, shape: tuple[int, ...], fan_in: int) -> None:
        bound = 1.0 / math.sqrt(max(1, fan_in))  # torch's default Linear/Conv initialization range
        self.banks[_key(name)] = nn.Parameter(torch.empty(shape).uniform_(-bound, bound))

    def _uses(self, point: Point) -> dict[str, _Use]:
        """Parameter name of ``point``'s model -> how it reads its bank."""
        space = self.space
        names = space.module_names(point)
        uses: dict[str, _Use] = {}
        cin = self.in_channels
        for i, b in enumerate(point.conv):
            conv = names[f"conv{i}"]
            tr = self.kernel_transform
            if b.separable:
                dw = names[f"conv{i}.dw"]
                uses[f"{dw}.weight"] = _Use(f"conv{i}.dw.w", cin, 1, b.kernel, f"conv{i}.dw" if tr else None)
                uses[f"{dw}.bias"] = _Use(f"conv{i}.dw.b", cin)
                uses[f"{conv}.weight"] = _Use(f"conv{i}.w", b.filters, cin)
            else:
                uses[f"{conv}.weight"] = _Use(f"conv{i}.w", b.filters, cin, b.kernel, f"conv{i}" if tr else None)
            uses[f"{conv}.bias"] = _Use(f"conv{i}.b", b.filters)
            if b.batch_norm:
                uses[f"{conv}.bn.weight"] = _Use(f"conv{i}.bn.w", b.filters)
                uses[f"{conv}.bn.bias"] = _Use(f"conv{i}.bn.b", b.filters)
            cin = b.filters
        d = len(point.conv)
        flat = (cin * self.positions[d]) if self.nd else self.flat[0]
        fin = flat
        for j, layer in enumerate(point.dense):
            mod = names[f"dense{j}"]
            uses[f"{mod}.weight"] = _Use(f"dense0.w.c{d}" if j == 0 else f"dense{j}.w", layer.units, fin)
            uses[f"{mod}.bias"] = _Use(f"dense{j}.b", layer.units)
            fin = layer.units
        mod = names["classifier"]
        e = len(point.dense)
        bank = f"classifier.w.d{e - 1}" if e else f"classifier.w.c{d}"
        uses[f"{mod}.weight"] = _Use(bank, space.n_classes, fin)
        uses[f"{mod}.bias"] = _Use("classifier.b", space.n_classes)
        return uses

    def _centre(self, w: torch.Tensor, k: int) -> torch.Tensor:
        big = w.shape[-1]
        if k == big:
            return w
        a = (big - k) // 2
        for axis in range(self.nd):
            w = w.narrow(w.dim() - self.nd + axis, a, k)
        return w

    def _kernel(self, w: torch.Tensor, k: int, transform: str | None) -> torch.Tensor:
        """The ``k``-tap kernel of ``w`` (largest kernel taps): centre slices, transformed from the top down."""
        for kk in self.kernels[1:]:
            if kk < k:
                break
            w = self._centre(w, kk)
            if transform is not None:
                t = self.transforms[_key(f"{transform}.t{kk}")]
                lead = w.shape[:-self.nd]
                w = (w.reshape(*lead, kk ** self.nd) @ t).reshape(*lead, *(kk,) * self.nd)
        return w

    def _slice(self, use: _Use) -> torch.Tensor:
        w = self.banks[_key(use.bank)][:use.out]
        if use.inp is not None:
            w = w[:, :use.inp]
        if use.kernel is not None:
            w = self._kernel(w, use.kernel, use.transform)
        return w

    def weights(self, point: Point) -> dict[str, torch.Tensor]:
        """``point``'s model parameters as slices of the banks (views; differentiable to the banks)."""
        return {name: self._slice(use) for name, use in self._uses(point).items()}

    # ------------------------------------------------------------------ sub-nets
    def _model(self, point: Point, fresh: bool) -> nn.Module:
        """``point``'s model on the banks' device (its quantizers and statistics live there)."""
        device = next(iter(self.banks.values())).device
        if fresh:
            return self.space.build(point, seed=0).to(device)
        model = self._cache.pop(point, None)
        if model is None:
            model = self.space.build(point, seed=0)
        model = model.to(device)
        self._cache[point] = model
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return model

    def subnet(self, point: Point, *, fresh: bool = False) -> SubNet:
        """The sub-net of ``point`` (a point of this supernet's space) over the live banks.

        ``fresh``: a newly built model (activation ranges measured from its first batch), not the cached one.
        """
        self.space.check(point)
        return SubNet(self, point, self._model(point, fresh))

    def forward(self, x: torch.Tensor, point: Point | None = None) -> torch.Tensor:
        """``point``'s output on ``x`` (default: the largest sub-net)."""
        return self.subnet(point if point is not None else self.largest)(x)

    def extract(self, point: Point, calibration: torch.Tensor | Sequence[torch.Tensor], batch_size: int = 256
                ) -> nn.Module:
        """A standalone hwnas model of ``point`` with the shared weights copied and its statistics calibrated."""
        sub = self.subnet(point, fresh=True)
        sub.calibrate(calibration, batch_size=batch_size)
        return sub.extract()

    # ------------------------------------------------------------------ channel sorting
    @torch.no_grad()
    def sort_channels(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Order every slot's output channels by importance (module docstring); the largest sub-net is unchanged."""
        space = self.space

        def permute(name: str, dim: int, perm: torch.Tensor, groups: int | None = None) -> None:
            p = self.banks[_key(name)]
            tensors = [p.data]
            if optimizer is not None:
                state = optimizer.state.get(p, {})
                tensors += [v for v in state.values() if isinstance(v, torch.Tensor) and v.shape == p.shape]
            for t in tensors:
                if groups is None:
                    t.copy_(t.index_select(dim, perm))
                else:  # columns are (channel, position): permute whole channel groups
                    v = t.view(t.shape[0], -1, groups)
                    v.copy_(v.index_select(1, perm))

        def rows(name: str) -> torch.Tensor:
            w = self.banks[_key(name)]
            return w.detach().abs().reshape(w.shape[0], -1).sum(dim=1)

        for i in range(space.max_conv):
            order = torch.argsort(rows(f"conv{i}.w"), descending=True, stable=True)
            for part in ("w", "b", "bn.w", "bn.b"):
                if _key(f"conv{i}.{part}") in self.banks:
                    permute(f"conv{i}.{part}", 0, order)
            if i + 1 < space.max_conv:
                if self.separable[i + 1]:
                    permute(f"conv{i + 1}.dw.w", 0, order)
                    permute(f"conv{i + 1}.dw.b", 0, order)
                permute(f"conv{i + 1}.w", 1, order)
            d = i + 1
            if d in self.conv_depths:
                for bank in (f"dense0.w.c{d}", f"classifier.w.c{d}"):
                    if _key(bank) in self.banks:
                        permute(bank, 1, order, groups=self.positions[d])
        for j in range(space.max_dense):
            heads = [f"dense0.w.c{d}" for d in self.conv_depths] if j == 0 else [f"dense{j}.w"]
            order = torch.argsort(sum(rows(h) for h in heads), descending=True, stable=True)
            for h in heads:
                permute(h, 0, order)
            permute(f"dense{j}.b", 0, order)
            if j + 1 < space.max_dense:
                permute(f"dense{j + 1}.w", 1, order)
            if _key(f"classifier.w.d{j}") in self.banks:
                permute(f"classifier.w.d{j}", 1, order)
        self._cache.clear()  # cached models measured ranges on the old order

    def describe(self) -> str:
        """One line: banks, shared parameters, kernel transforms."""
        n = sum(p.numel() for p in self.banks.values())
        t = sum(p.numel() for p in self.transforms.values())
        return (f"supernet over {self.space.family}: {len(self.banks)} banks, {n:,} shared weights, "
                f"{len(self.transforms)} kernel transforms ({t:,} parameters)")


class SubNet(nn.Module):
    """One point of a :class:`Supernet`, running on the live bank slices (module docstring)."""

    def __init__(self, supernet: Supernet, point: Point, model: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "supernet", supernet)  # not a child: its parameters are the supernet's
        object.__setattr__(self, "model", model)
        self.point = point

    def weights(self) -> dict[str, torch.Tensor]:
        """The sub-net's parameters: slices of the supernet's banks."""
        return self.supernet.weights(self.point)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The point's model on ``x`` with the live bank slices as its parameters."""
        self.model.train(self.training)
        return functional_call(self.model, self.weights(), (x,), strict=False)

    @torch.no_grad()
    def load(self) -> nn.Module:
        """Copy the current slices into the model's own parameters; returns the model."""
        params = dict(self.model.named_parameters())
        for name, value in self.weights().items():
            params[name].copy_(value)
        return self.model

    @torch.no_grad()
    def calibrate(self, data: torch.Tensor | Iterable[torch.Tensor], batch_size: int = 256) -> None:
        """Copy the slices in, re-measure BatchNorm statistics, then the activation ranges (module docstring)."""
        from hwnas.quant import calibrate

        model = self.load()
        batches = list(data.split(batch_size)) if isinstance(data, torch.Tensor) else list(data)
        device = next(iter(self.supernet.banks.values())).device
        batches = [b.to(device) for b in batches]  # where the sub-net runs
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if norms:
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # a cumulative average over the calibration batches
            model.train()
            for m in model.modules():
                if isinstance(m, nn.Dropout):
                    m.eval()
            for xb in batches:
                model(xb)
        calibrate(model, batches)
        model.eval()

    def extract(self) -> nn.Module:
        """A standalone copy of the model with the current slices as its own weights (eval mode)."""
        model = copy.deepcopy(self.load())
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = 0.1
        return model.eval()
