"""Warm start (``search.warm_start: closest``): a trial's training starts from a finished trial's weights.

Contract:

* Two models can share weights when their *shape key* is equal (:func:`shape_key`): the names and shapes of
  every state entry outside the quantizers. Bit-widths, folding and other choices that leave every tensor
  shape alone keep the key; a different depth, width, kernel or input length changes it.
* :func:`choose_parent` picks, among finished trials with the child's shape key and a saved model, the one
  whose search vector is closest to the child's (fewest steps summed over the slots — for a model of the same
  shapes these are mostly bit-widths); ties go to the better value of the ranking metric, then to the lower
  trial number. Every choice depends only on the candidates passed in, so one worker (or a fixed set of
  finished trials) always picks the same parent; with several workers the parent depends on which trials
  have finished when a trial starts.
* :func:`inherit` copies the parent's weights, biases and normalization statistics into the child — never its
  quantizer state, since the child has its own bit-widths — and then calibrates the child's data-dependent
  ranges (:func:`hwnas.quant.calibrate`, repeated until the integer bits settle) on training inputs: the
  integer bits a range-tracking activation quantizer took from the child's random initialization would
  otherwise stay (they only grow in training) and could leave a narrow activation with no fractional bits.
  The child is then trained with the experiment's full schedule, as every other trial. Raises
  ``ValueError`` naming the checkpoint when the parent's tensors do not fit the child.

This is Lamarckian inheritance (LEMONADE, Elsken et al. 2019): a lineage accumulates epochs, so with the same
number of trainings a warm-started search ends with better-trained models than one training every trial
from scratch; the benchmark reports both (docs/benchmarks.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = ["ParentCandidate", "choose_parent", "inherit", "shape_key", "weight_state"]


@dataclass(frozen=True)
class ParentCandidate:
    """A finished trial a warm start may start from."""

    number: int
    vector: tuple[int, ...]
    shape_key: str
    checkpoint: str
    score: float
    """The ranking metric, larger is better (a minimized metric enters negated)."""


def _quantizer_prefixes(model: nn.Module) -> tuple[str, ...]:
    from hwnas.quant.base import Quantizer

    return tuple(f"{name}." for name, mod in model.named_modules() if name and isinstance(mod, Quantizer))


def weight_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state entries outside its quantizers (weights, biases, normalization statistics)."""
    skip = _quantizer_prefixes(model)
    return {k: v for k, v in model.state_dict().items() if not k.startswith(skip)}


def shape_key(model: nn.Module) -> str:
    """16 hex digits naming the names and shapes of :func:`weight_state` (equal keys: weights transfer)."""
    rows = [[name, list(t.shape)] for name, t in sorted(weight_state(model).items())]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def choose_parent(candidates: Sequence[ParentCandidate], key: str, vector: Sequence[int]) -> ParentCandidate | None:
    """The candidate with shape key ``key`` closest to ``vector`` (module docstring), or None."""
    same = [c for c in candidates if c.shape_key == key and len(c.vector) == len(vector)]
    if not same:
        return None

    def rank(c: ParentCandidate) -> tuple[int, float, int]:
        steps = sum(abs(int(a) - int(b)) for a, b in zip(c.vector, vector, strict=True))
        return steps, -float(c.score), c.number

    return min(same, key=rank)


def inherit(model: nn.Module, checkpoint: str | Path, calibration_inputs: torch.Tensor) -> None:
    """Load the weights of the model saved at ``checkpoint`` into ``model`` and calibrate its ranges."""
    from hwnas.export import load_model
    from hwnas.quant import calibrate

    parent = weight_state(load_model(checkpoint).model)
    own = weight_state(model)
    wrong = sorted(set(own) ^ set(parent)) + sorted(k for k in own if k in parent and own[k].shape != parent[k].shape)
    if wrong:
        raise ValueError(f"warm start from {checkpoint}: its tensors do not fit this model ({', '.join(wrong[:4])}"
                         f"{' …' if len(wrong) > 4 else ''})")
    with torch.no_grad():
        for name, tensor in own.items():
            tensor.copy_(parent[name])
    # one pass sets every static range from the data (hwnas.quant.calibrate), but a downstream quantizer
    # measured values rounded at the f each batch implied, not at the final f: repeat until the integer bits
    # settle (in practice the second pass confirms the first)
    before = None
    for _ in range(CALIBRATION_PASSES):
        calibrate(model, calibration_inputs)
        now = [t.detach().clone() for name, t in model.state_dict().items() if name.endswith(".i")]
        if before is not None and all(torch.equal(a, b) for a, b in zip(before, now, strict=True)):
            break
        before = now


CALIBRATION_PASSES = 4
"""Most calibration passes :func:`inherit` makes while the integer bits still change."""
