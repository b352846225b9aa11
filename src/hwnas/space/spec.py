"""The ``space:`` section of an experiment file: what the search may choose (validated with pydantic).

Every searchable integer is an :data:`IntSpec`: a single value (fixed), a list (a set of choices, e.g.
``[2, 4, 8, 16]``) or a range ``{min: 1, max: 8, step: 1}`` (inclusive). Lists of strings/bools/floats are
sets of choices. Each field's description is its documentation (``hwnas config --defaults`` prints them).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["IntRange", "IntSpec", "MappingConfig", "PrecisionConfig", "SpaceConfig", "int_choices"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IntRange(_Strict):
    """An inclusive integer range ``{min, max, step}``."""

    min: int = Field(description="smallest value")
    max: int = Field(description="largest value (inclusive)")
    step: int = Field(1, ge=1, description="spacing of the values")

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


IntSpec = int | list[int] | IntRange
"""A fixed integer, a set of choices, or an inclusive range."""


def int_choices(spec: IntSpec) -> list[int]:
    """Every value an :data:`IntSpec` allows, ascending, without duplicates."""
    if isinstance(spec, IntRange):
        return list(range(spec.min, spec.max + 1, spec.step))
    if isinstance(spec, int):
        return [spec]
    return sorted(set(spec))


class PrecisionConfig(_Strict):
    """Per-layer weight and activation bit-widths, or learned (HGQ) widths."""

    mode: Literal["fixed", "learned"] = Field(
        "fixed", description="fixed: bits are search variables (static fixed-point quantizers); learned: HGQ "
        "per-parameter widths trained with the EBOPs regularizer (beta)")
    weight_bits: IntSpec = Field(default_factory=lambda: IntRange(min=2, max=8),
                                 description="weight bit-widths to choose from (mode fixed)")
    act_bits: IntSpec = Field(default_factory=lambda: IntRange(min=2, max=8),
                              description="layer-input (activation) bit-widths to choose from (mode fixed)")
    per_layer: bool = Field(True, description="one choice per layer (MONAS-LQ layer-wise bits); false: one for all")
    input_bits: int = Field(8, ge=1, le=32, description="bit-width of the model input quantizer")
    init_bits: int = Field(8, ge=1, le=32, description="initial width of learned quantizers (mode learned)")
    beta: float = Field(1e-5, ge=0, description="EBOPs weight in the loss (mode learned)")
    gamma: float = Field(1e-6, ge=0, description="bit-width L1 weight in the loss (mode learned)")


class MappingConfig(_Strict):
    """How layers map onto hardware parallelism (FINN PE/SIMD or hls4ml reuse factor)."""

    kind: Literal["none", "finn", "hls4ml"] = Field(
        "none", description="none: the hardware model's defaults; finn: PE/SIMD per layer; hls4ml: reuse factor")
    folding: Literal["auto", "search"] = Field(
        "auto", description="auto: the cost model's folding search picks PE/SIMD for target_fps; search: PE and "
        "SIMD per layer are search variables (divisors of the layer's dimensions)")
    target_fps: float | None = Field(None, gt=0, description="throughput the automatic folding must reach")
    reuse_factor: IntSpec = Field(1, description="hls4ml reuse factors to choose from (kind hls4ml)")


class SpaceConfig(_Strict):
    """The architecture, precision and mapping choices of one search."""

    family: Literal["cnn1d", "cnn2d", "mlp"] = Field(
        "cnn1d", description="cnn1d (I/Q frames, RadioML), cnn2d (images) or mlp (feature vectors)")
    conv_blocks: IntSpec = Field(default_factory=lambda: IntRange(min=1, max=4),
                                 description="number of conv blocks (conv -> [BN] -> activation -> [pool])")
    filters: IntSpec = Field(default_factory=lambda: [8, 16, 32, 64], description="filters per conv block")
    share_filters: bool = Field(False, description="one filter count for every block (MONAS-LQ backbone width)")
    kernel: IntSpec = Field(default_factory=lambda: [3, 5], description="kernel sizes per conv block")
    pooling: list[Literal["max", "avg", "none"]] = Field(default_factory=lambda: ["max"],
                                                        description="pooling after each block (window 2)")
    activation: list[Literal["relu", "tanh", "sigmoid"]] = Field(
        default_factory=lambda: ["relu"], description="activation (tanh/sigmoid run as exact lookup tables)")
    batch_norm: list[bool] = Field(default_factory=lambda: [False], description="BatchNorm after each conv")
    separable: list[bool] = Field(default_factory=lambda: [False],
                                  description="depthwise-separable convolutions (depthwise + pointwise)")
    dense_layers: IntSpec = Field(default_factory=lambda: IntRange(min=0, max=2),
                                  description="hidden dense layers before the classifier")
    dense_units: IntSpec = Field(default_factory=lambda: [16, 32, 64, 128], description="units per hidden layer")
    dropout: list[float] = Field(default_factory=lambda: [0.0], description="dropout before each dense layer")
    precision: PrecisionConfig = Field(default_factory=PrecisionConfig, description="bit-widths")
    mapping: MappingConfig = Field(default_factory=MappingConfig, description="hardware mapping")
