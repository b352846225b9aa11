"""QAT overhead: training-step time with per-parameter learnable fixed-point quantization ÷ float step time.

Both variants are the same architecture built from hwnas layers; the float one has every quantizer slot
off, the QAT one has HGQ defaults (learnable per-parameter bit-widths on weights, biases and activations)
and adds β·EBOPs + γ·Σbits to the loss, as real HGQ training does. Each measurement is the median over
repeats of the mean time of ``--steps`` optimizer steps (forward, backward, Adam), all in one process.

    .venv/bin/python bench/qat_overhead.py [--repeats 7] [--steps 20]

The last column repeats the QAT measurement with the quantizer kernels fused by ``torch.compile``
(``hwnas.quant.use_compiled_kernels``); compilation happens during the warm-up steps and is not timed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import hwnas.nn as hn
from hwnas.quant import use_compiled_kernels

OFF = dict(input_quantizer=None, weight_quantizer=None, bias_quantizer=None)


def jet_mlp(quantized: bool) -> nn.Module:
    """HGQ's jet-tagging MLP, 16-64-32-32-5 (seed 001, §5.1)."""
    kw = {} if quantized else OFF
    unsigned = dict(input_quantizer=dict(hn.DEFAULT_ACTIVATION, signed=False)) if quantized else OFF
    return nn.Sequential(
        hn.QLinear(16, 64, **kw), hn.QActivation("relu"),
        hn.QLinear(64, 32, **unsigned), hn.QActivation("relu"),
        hn.QLinear(32, 32, **unsigned), hn.QActivation("relu"),
        hn.QLinear(32, 5, **unsigned),
    )


def amc_cnn(quantized: bool) -> nn.Module:
    """A small 1-D CNN on 2×128 I/Q frames (RadioML 2016 size), 3 conv blocks + 2 dense layers."""
    kw = {} if quantized else OFF
    unsigned = dict(input_quantizer=dict(hn.DEFAULT_ACTIVATION, signed=False)) if quantized else OFF
    return nn.Sequential(
        hn.QConv1d(2, 32, 3, padding=1, **kw), hn.QActivation("relu"), hn.QMaxPool1d(2),
        hn.QConv1d(32, 32, 3, padding=1, **unsigned), hn.QActivation("relu"), hn.QMaxPool1d(2),
        hn.QConv1d(32, 32, 3, padding=1, **unsigned), hn.QActivation("relu"), hn.QMaxPool1d(2),
        hn.Flatten(), hn.QLinear(32 * 16, 64, **unsigned), hn.QActivation("relu"),
        hn.QLinear(64, 11, **unsigned),
    )


def step_time(model: nn.Module, x: torch.Tensor, y: torch.Tensor, hgq: bool, steps: int, repeats: int) -> float:
    """Median over ``repeats`` of the mean seconds per training step."""
    model(x[:2])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)

    def one() -> None:
        loss = F.cross_entropy(model(x), y)
        if hgq:
            loss = loss + hn.regularization(model, 1e-6, 1e-6)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):  # warm-up
        one()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            one()
        times.append((time.perf_counter() - t0) / steps)
    return statistics.median(times)


def main() -> None:
    """Print float and QAT step times and their ratio for each benchmark model."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    torch.manual_seed(0)
    cases: list[tuple[str, Callable[[bool], nn.Module], torch.Tensor, torch.Tensor]] = [
        ("jet MLP 16-64-32-32-5, batch 1024", jet_mlp, torch.randn(1024, 16), torch.randint(0, 5, (1024,))),
        ("jet MLP 16-64-32-32-5, batch 16384", jet_mlp, torch.randn(16384, 16), torch.randint(0, 5, (16384,))),
        ("AMC 1-D CNN 2x128, batch 256", amc_cnn, torch.randn(256, 2, 128), torch.randint(0, 11, (256,))),
    ]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats} x "
          f"{args.steps} steps")
    print(f"{'model':<38}{'float ms':>10}{'QAT ms':>10}{'QAT/float':>11}{'fused ms':>10}{'fused/float':>13}")
    for name, build, x, y in cases:
        torch.manual_seed(0)
        t_float = step_time(build(False), x, y, False, args.steps, args.repeats)
        torch.manual_seed(0)
        use_compiled_kernels(False)
        t_qat = step_time(build(True), x, y, True, args.steps, args.repeats)
        torch.manual_seed(0)
        use_compiled_kernels(True)
        t_fused = step_time(build(True), x, y, True, args.steps, args.repeats)
        use_compiled_kernels(False)
        print(f"{name:<38}{1e3 * t_float:>10.2f}{1e3 * t_qat:>10.2f}{t_qat / t_float:>10.2f}x"
              f"{1e3 * t_fused:>10.2f}{t_fused / t_float:>12.2f}x")


if __name__ == "__main__":
    main()
