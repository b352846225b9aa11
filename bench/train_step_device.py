"""Training-step time per benchmark model on the CPU and, where torch sees one, on a CUDA GPU (``training.device``).

Each model trains through hwnas's own :class:`hwnas.train.Trainer` (``TrainConfig.device``), with HGQ's loss
(β·EBOPs + γ·Σbits) where its bit-widths are learnable, on random data of its input shape: ``--epochs`` epochs of
``--steps`` optimizer steps; the first epoch (warm-up: allocation, cuDNN autotuning) is not counted and the figure is
the median epoch time over the others ÷ steps, so it includes what every real step costs (batch gather, forward,
backward, Adam) plus the per-epoch EBOPs figure. The GPU is synchronized before every clock reading.

    .venv/bin/python bench/train_step_device.py [--epochs 4] [--steps 20] [--threads N]

No figures are recorded in docs/benchmarks.md yet: no GPU was available when this script was written
(docs/cluster.md, "GPU workers").
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import hwnas.nn as hn
from hwnas.tasks.baselines import build_named
from hwnas.train import TrainConfig, Trainer


def jet_mlp() -> nn.Module:
    """HGQ's jet-tagging MLP, 16-64-32-32-5, learnable per-parameter bit-widths (seed 001, §5.1)."""
    unsigned = dict(input_quantizer=dict(hn.DEFAULT_ACTIVATION, signed=False))
    return nn.Sequential(hn.QLinear(16, 64), hn.QActivation("relu"), hn.QLinear(64, 32, **unsigned),
                         hn.QActivation("relu"), hn.QLinear(32, 32, **unsigned), hn.QActivation("relu"),
                         hn.QLinear(32, 5, **unsigned))


def amc_cnn() -> nn.Module:
    """A small HGQ 1-D CNN on 2×128 I/Q frames (RadioML 2016 size), 3 conv blocks + 2 dense layers."""
    unsigned = dict(input_quantizer=dict(hn.DEFAULT_ACTIVATION, signed=False))
    return nn.Sequential(
        hn.QConv1d(2, 32, 3, padding=1), hn.QActivation("relu"), hn.QMaxPool1d(2),
        hn.QConv1d(32, 32, 3, padding=1, **unsigned), hn.QActivation("relu"), hn.QMaxPool1d(2),
        hn.QConv1d(32, 32, 3, padding=1, **unsigned), hn.QActivation("relu"), hn.QMaxPool1d(2),
        hn.Flatten(), hn.QLinear(32 * 16, 64, **unsigned), hn.QActivation("relu"), hn.QLinear(64, 11, **unsigned))


CASES: list[tuple[str, Callable[[], nn.Module], tuple[int, ...], int, int, bool]] = [
    # name, builder, sample shape, classes, batch size, HGQ loss (learnable bits)
    ("jet MLP 16-64-32-32-5 (HGQ)", jet_mlp, (16,), 5, 1024, True),
    ("jet MLP 16-64-32-32-5 (HGQ), batch 16384", jet_mlp, (16,), 5, 16384, True),
    ("AMC 1-D CNN 2x128 (HGQ)", amc_cnn, (2, 128), 11, 256, True),
    ("VGG10-32F/8b 2x1024 (RadioML 2018)", lambda: build_named("vgg10-32f-8b", (2, 1024), 24), (2, 1024), 24, 256,
     False),
    ("qubit MLP 800-32-16-2 (8-bit)", lambda: build_named("mlp-32-16-8b", (800,), 2), (800,), 2, 1024, False),
]


def step_seconds(build: Callable[[], nn.Module], shape: tuple[int, ...], classes: int, batch: int, hgq: bool,
                 device: str, epochs: int, steps: int) -> float:
    """Median seconds per optimizer step over the epochs after the first (module docstring)."""
    torch.manual_seed(0)
    model = build()
    n = batch * steps
    x, y = torch.randn(n, *shape), torch.randint(0, classes, (n,))
    cuda = device.startswith("cuda")
    stamps: list[float] = []

    def clock(*_: object) -> None:
        if cuda:
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    config = TrainConfig(epochs=epochs, batch_size=batch, beta=1e-6 if hgq else 0.0, gamma=1e-6 if hgq else 0.0,
                         progress=False, device=device)
    trainer = Trainer(model, config, on_epoch_end=[clock])
    trainer.fit((x, y))
    epoch_seconds = [b - a for a, b in itertools.pairwise(stamps)]  # epochs 2.. (the first is warm-up)
    return statistics.median(epoch_seconds) / steps


def main() -> None:
    """Print the step time of each benchmark model on each available device."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4, help="epochs per measurement (the first is not counted)")
    ap.add_argument("--steps", type=int, default=20, help="optimizer steps per epoch")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args()
    if args.epochs < 2:
        ap.error("--epochs must be at least 2 (the first one is warm-up)")
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no CUDA GPU visible"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads{gpu}; median of {args.epochs - 1} "
          f"epochs x {args.steps} steps")
    header = f"{'model':<44}{'batch':>7}" + "".join(f"{d + ' ms/step':>16}" for d in devices)
    print(header + (f"{'speed-up':>10}" if len(devices) > 1 else ""))
    for name, build, shape, classes, batch, hgq in CASES:
        times = [step_seconds(build, shape, classes, batch, hgq, d, args.epochs, args.steps) for d in devices]
        line = f"{name:<44}{batch:>7}" + "".join(f"{1e3 * t:>16.2f}" for t in times)
        print(line + (f"{times[0] / times[1]:>9.1f}x" if len(times) > 1 else ""), flush=True)


if __name__ == "__main__":
    main()
