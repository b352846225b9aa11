"""The experiment file: one validated YAML document that names everything a search run needs.

(Skeleton of the schema; the loader with key-path/line errors and the defaults listing live here too.)
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hwnas.space.spec import SpaceConfig

__all__ = [
    "METRICS",
    "Constraint",
    "Experiment",
    "HardwareConfig",
    "Objective",
    "SearchConfig",
    "StorageConfig",
    "TaskConfig",
    "TrainingConfig",
]

METRICS: dict[str, str] = {
    "accuracy": "task metric on the validation split (fidelity for qubit readout), higher is better",
    "test_accuracy": "task metric on the test split",
    "loss": "validation loss",
    "bops": "Σ MACs·b_w·b_a",
    "ebops": "effective BOPs (HGQ)",
    "wbits": "Σ params·bits (pruned elements free)",
    "qa_score": "½·BOPs/BOPs_base + ½·Wbits/Wbits_base (MONAS-LQ), lower is better",
    "macs": "multiply-accumulates per sample",
    "params": "number of parameters",
    "memory_kb": "parameter memory in KiB at the quantized widths",
    "sparsity": "share of pruned (zero-width or zero) weights",
    "luts": "LUTs (hardware model)",
    "ffs": "flip-flops (hardware model)",
    "bram18": "18 Kb block RAMs (hardware model)",
    "uram": "UltraRAMs (hardware model)",
    "dsps": "DSP slices (hardware model)",
    "latency_cycles": "first-sample latency in clock cycles (hardware model)",
    "latency_ms": "first-sample latency in ms at the clock",
    "initiation_interval": "cycles between samples",
    "throughput": "samples per second",
    "energy_mj": "energy per sample in mJ (power model × latency, an estimate)",
    "cpu_latency_ms": "CPU latency from the profiled operator table (hardware.cpu_table)",
}
"""Every metric a trial records, with its meaning; objectives and constraints must name one of them."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskConfig(_Strict):
    """Which task (``hwnas tasks`` lists them) and its options."""

    name: str = Field(description="task name, e.g. amc-rml2016, digits, qubit-readout")
    options: dict[str, Any] = Field(default_factory=dict, description="task options (hwnas tasks <name> lists them)")


class Objective(_Strict):
    """One objective of the search."""

    metric: str = Field(description="a metric name (see METRICS)")
    direction: Literal["minimize", "maximize"] = Field(description="minimize or maximize")


class Constraint(_Strict):
    """A hard budget: the metric must stay within [min, max]; a trial outside is kept but infeasible."""

    metric: str = Field(description="a metric name (see METRICS)")
    max: float | str | None = Field(None, description="upper bound; a string like '50%' is a share of the device")
    min: float | None = Field(None, description="lower bound")


class HardwareConfig(_Strict):
    """The hardware target and the cost model that prices each trial."""

    target: str = Field("XC7Z020", description="device from the catalog (hwnas.cost devices)")
    model: Literal["finn", "hls4ml", "none"] = Field("finn", description="hardware cost model")
    clock_mhz: float | None = Field(None, gt=0, description="clock (default: the device's)")
    cpu_table: str | None = Field(None, description="CPU latency table (JSON) for cpu_latency_ms")


class TrainingConfig(_Strict):
    """The training schedule of every trial (fields of hwnas.train.TrainConfig)."""

    epochs: int = Field(5, ge=1, description="epochs per trial")
    batch_size: int = Field(128, ge=1, description="samples per step")
    lr: float = Field(3e-3, gt=0, description="learning rate")
    optimizer: Literal["adam", "sgd"] = Field("adam", description="optimizer")
    schedule: Literal["constant", "cosine_restarts"] = Field("constant", description="learning-rate schedule")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty")
    patience: int | None = Field(None, ge=1, description="early-stopping patience in epochs")


class SearchConfig(_Strict):
    """The search strategy and its budget."""

    strategy: Literal["nsga2", "random", "tpe", "pso", "monas_lq", "ha_nas"] = Field(
        "nsga2", description="search strategy")
    n_trials: int = Field(20, ge=1, description="trials (full trainings) across all workers")
    population: int = Field(8, ge=2, description="population / swarm size")
    options: dict[str, Any] = Field(default_factory=dict, description="strategy-specific options")


class StorageConfig(_Strict):
    """Where the study lives, so many workers share it and a run can resume."""

    url: str | None = Field(None, description="sqlite:///file.db, journal:///file.log, postgresql://..., "
                            "mysql://...; default: sqlite in the output folder")
    study_name: str | None = Field(None, description="default: the experiment name")
    heartbeat_s: float = Field(30.0, gt=0, description="worker heartbeat; a silent worker's trial becomes FAILED")


class Experiment(_Strict):
    """One experiment file."""

    name: str = Field(description="experiment name (study name and output folder default)")
    seed: int = Field(0, description="seed of everything random")
    output: str | None = Field(None, description="output folder (default runs/<name>)")
    task: TaskConfig
    space: SpaceConfig = Field(default_factory=SpaceConfig)
    objectives: list[Objective] = Field(min_length=1)
    constraints: list[Constraint] = Field(default_factory=list)
    hardware: HardwareConfig = Field(default_factory=HardwareConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
