"""Experiment files the tests share: one tiny MLP search on digits, varied by keyword (seconds to run)."""

from __future__ import annotations


def tiny_mlp(*, name: str = "tiny", seed: int = 3, units: str = "[8, 16]", dense_min: int = 0, dense_max: int = 1,
             bits: str = "{min: 2, max: 6}", trials: int = 3, strategy: str = "random", extra: str = "") -> str:
    """The YAML text of a tiny search (output folder ``out`` beside the file); ``extra`` is appended as is."""
    return f"""\
name: {name}
seed: {seed}
output: out
task: {{name: digits}}
space:
  family: mlp
  dense_layers: {{min: {dense_min}, max: {dense_max}}}
  dense_units: {units}
  precision: {{weight_bits: {bits}, act_bits: {bits}}}
objectives:
  - {{metric: accuracy, direction: maximize}}
  - {{metric: bops, direction: minimize}}
hardware: {{target: zcu104, model: hls4ml}}
training: {{epochs: 1}}
search: {{strategy: {strategy}, n_trials: {trials}}}
{extra}"""
