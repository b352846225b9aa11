"""The main job until the search exists: HGQ training on scikit-learn's digits, before/after report.

Trains a 64-32-10 MLP whose weights, biases and activations all have learnable per-parameter
fixed-point bit-widths, under the HGQ loss ``CE + β·EBOPs + γ·Σbits``, next to the same network in
float, and prints accuracy, EBOPs and the bit-width distribution before and after training.
"""

from __future__ import annotations

import time

import torch
from torch import nn

import hwnas.nn as hn
from hwnas.quant import calibrate
from hwnas.tasks import load_digits
from hwnas.train import TrainConfig, Trainer, accuracy

__all__ = ["build_mlp", "run_demo"]


def build_mlp(quantized: bool = True) -> nn.Sequential:
    """The demo network: 64 → 32 (ReLU) → 10, HGQ-quantized or float."""
    if not quantized:
        off = dict(input_quantizer=None, weight_quantizer=None, bias_quantizer=None)
        return nn.Sequential(hn.QLinear(64, 32, **off), hn.QActivation("relu"), hn.QLinear(32, 10, **off))
    return nn.Sequential(
        hn.QLinear(64, 32),
        hn.QActivation("relu"),
        hn.QLinear(32, 10, input_quantizer=dict(hn.DEFAULT_ACTIVATION, signed=False)),
    )


def _histogram_lines(hist: dict[int, int], width: int = 40) -> list[str]:
    total = sum(hist.values()) or 1
    peak = max(hist.values(), default=1)
    return [f"    {b:>2} bits {n:>6} ({100 * n / total:5.1f}%) {'#' * max(1, round(width * n / peak))}"
            for b, n in hist.items()]


def _snapshot(model: nn.Module, data, title: str) -> dict:
    acc = accuracy(model, data.x_test, data.y_test)
    snap = {
        "accuracy": acc,
        "ebops": hn.ebops(model).item(),
        "bops": hn.bops(model),
        "weight_bits": hn.weight_bits(model),
        "sparsity": hn.sparsity(model),
        "w_hist": hn.bit_histogram(model, "weight"),
        "a_hist": hn.bit_histogram(model, "activation"),
    }
    print(f"\n== {title} ==")
    print(f"  test accuracy {acc:.4f}   EBOPs {snap['ebops']:,.0f}   BOPs {snap['bops']:,.0f}   "
          f"weight bits {snap['weight_bits']:,.0f}   weight sparsity {snap['sparsity']:.1%}")
    print("  weight/bias bit-widths:")
    print("\n".join(_histogram_lines(snap["w_hist"])))
    print("  activation bit-widths (layer inputs):")
    print("\n".join(_histogram_lines(snap["a_hist"])))
    return snap


def run_demo(epochs: int = 30, beta: float = 3e-6, gamma: float = 1e-6, seed: int = 0,
             progress: bool = True) -> dict:
    """Run the demo and return the before/after figures (also printed)."""
    t0 = time.perf_counter()
    data = load_digits(seed=seed)
    print(f"digits: {len(data.x_train)} train / {len(data.x_test)} test samples, seed {seed}")

    torch.manual_seed(seed)
    ref = build_mlp(quantized=False)
    Trainer(ref, TrainConfig(epochs=epochs, seed=seed, progress=progress)).fit((data.x_train, data.y_train))
    acc_float = accuracy(ref, data.x_test, data.y_test)
    print(f"float reference: test accuracy {acc_float:.4f}")

    torch.manual_seed(seed)
    model = build_mlp()
    model.eval()
    model(data.x_train[:64])  # materialize activation quantizers (ranges from a first batch)
    before = _snapshot(model, data, "HGQ model before training (8-bit initial widths)")
    cfg = TrainConfig(epochs=epochs, beta=beta, gamma=gamma, seed=seed, progress=progress)
    Trainer(model, cfg).fit((data.x_train, data.y_train))
    calibrate(model, data.x_train)
    after = _snapshot(model, data, f"HGQ model after {epochs} epochs (beta={beta:g}, gamma={gamma:g})")

    print("\n  per layer (after):")
    print(f"    {'layer':<6}{'type':<13}{'MACs':>7}{'EBOPs':>10}{'weight bits':>13}{'sparsity':>10}")
    for r in hn.layer_costs(model):
        print(f"    {r.name:<6}{r.type:<13}{r.macs:>7}{r.ebops:>10.0f}{r.weight_bits:>13.0f}{r.sparsity:>10.1%}")
    ratio = before["ebops"] / max(after["ebops"], 1.0)
    print(f"\nEBOPs {before['ebops']:,.0f} -> {after['ebops']:,.0f} ({ratio:.1f}x fewer); "
          f"accuracy {after['accuracy']:.4f} vs float {acc_float:.4f}; {time.perf_counter() - t0:.1f} s")
    return {"float_accuracy": acc_float, "before": before, "after": after}
