"""HGQ on generated jets (seed 001 §5): the 16-64-32-32-5 MLP, one β-sweep, its accuracy-EBOPs front, RTL
exports verified bit for bit and synthesized with Yosys (UltraScale+), LUTs vs EBOPs beside LUT ≈ EBOPs^0.985.

Also prints the data's realism checks: groomed-mass medians per class, and the float MLP's test accuracy (the
seed's Keras-style baseline) on the same jets. Results: docs/tasks_jets.md and docs/reproductions.md.

    OMP_NUM_THREADS=1 .venv/bin/python bench/jets_hgq.py --per-class 6000 --epochs 300 --out runs/jets-hgq
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


def _hgq_mlp(n_in: int, n_out: int, widths: tuple[int, ...], init_bits: int, input_bits: int) -> nn.Sequential:
    import hwnas.nn as hn

    layers: list[nn.Module] = []
    inq = {**hn.DEFAULT_ACTIVATION, "bits": input_bits}
    fin = n_in
    for w in (*widths, n_out):
        layers.append(hn.QLinear(fin, w, input_quantizer=inq, weight_quantizer={**hn.DEFAULT_WEIGHT, "bits": init_bits},
                                 bias_quantizer={**hn.DEFAULT_BIAS}))
        if w != n_out:
            layers.append(hn.QActivation("relu"))
        inq = {**hn.DEFAULT_ACTIVATION, "bits": init_bits, "signed": False}
        fin = w
    return nn.Sequential(*layers)


def _float_mlp(n_in: int, n_out: int, widths: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    fin = n_in
    for w in widths:
        layers += [nn.Linear(fin, w), nn.ReLU()]
        fin = w
    return nn.Sequential(*layers, nn.Linear(fin, n_out))


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _train_float(data, epochs: int, seed: int) -> tuple[float, float]:
    torch.manual_seed(seed)
    m = _float_mlp(data.input_shape[0], data.n_classes, (64, 32, 32))
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    x, y = data.train.pair
    best = (-1.0, 0.0)
    for _ in range(epochs):
        m.train()
        perm = torch.randperm(len(y))
        for i in range(0, len(y), 256):
            b = perm[i:i + 256]
            opt.zero_grad()
            nn.functional.cross_entropy(m(x[b]), y[b]).backward()
            opt.step()
        va = _accuracy(m, *data.val.pair)
        if va > best[0]:
            best = (va, _accuracy(m, *data.test.pair))
    return best


def _groomed_mass(data) -> dict[str, list[float]]:
    """Median and histogram mode of mass_mmdt per class, read back from the task's (standardized) features."""
    from hwnas.tasks.jets.features import HLF_NAMES

    k = HLF_NAMES.index("mass_mmdt")
    stats = data.info["standardization"]
    x = torch.cat([data.train.x, data.val.x, data.test.x])[:, k].double().numpy()
    y = torch.cat([data.train.y, data.val.y, data.test.y]).numpy()
    mass = x * stats["std"][k] + stats["mean"][k]
    out = {}
    for label, c in enumerate(data.classes):
        v = mass[y == label]
        hist, edges = np.histogram(v, bins=np.arange(0, 300, 10))
        out[c] = [float(np.median(v)), float(edges[hist.argmax()] + 5)]
    return out


def plot(summary: dict, path: Path, min_acc: float = 0.5) -> None:
    """LUTs (Yosys) vs EBOPs of the synthesized front models, the power law fitted over the models above
    ``min_acc`` test accuracy, and the seed's EBOPs^0.985."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in summary["rows"] if r.get("luts")]
    fit = [r for r in ok if r["test"] > min_acc]
    if len(fit) < 2:
        return
    e = np.array([r["ebops"] for r in ok], dtype=float)
    lut = np.array([r["luts"] for r in ok], dtype=float)
    b, la = np.polyfit(np.log([r["ebops"] for r in fit]), np.log([r["luts"] for r in fit]), 1)
    grid = np.geomspace(e.min() / 1.5, e.max() * 1.5, 50)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.loglog(e, lut, "o", color="#d9480f", label="HGQ front models, Yosys (xcup)")
    ax.loglog(grid, math.exp(la) * grid ** b, "-", color="#1c7ed6",
              label=f"fit (acc > {min_acc}) {math.exp(la):.3g}·EBOPs^{b:.3f}")
    ax.loglog(grid, grid ** 0.985, "--", color="gray", label="seed 001: EBOPs^0.985")
    for r in ok:
        ax.annotate(f"{r['test']:.3f}", (r["ebops"], r["luts"]), textcoords="offset points", xytext=(4, -10),
                    fontsize=7)
    ax.set_xlabel("EBOPs")
    ax.set_ylabel("LUTs")
    ax.set_title(f"jets-hlf 16-64-32-32-5, {summary['per_class']} jets/class (labels: test accuracy)", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-class", type=int, default=6000)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--float-epochs", type=int, default=60)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--synth", type=int, default=8, help="front models to export and synthesize")
    ap.add_argument("--verify", type=int, default=3, help="of those, verified in Verilator (rtl path)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--data", default="runs/jets-data")
    ap.add_argument("--out", default="runs/jets-hgq")
    ap.add_argument("--fit-min-acc", type=float, default=0.5,
                    help="second fit only over models above this test accuracy (collapsed models excluded)")
    ap.add_argument("--replot", action="store_true", help="only redraw lut_vs_ebops.png from OUT/summary.json")
    a = ap.parse_args()
    if a.replot:
        plot(json.loads((Path(a.out) / "summary.json").read_text()), Path(a.out) / "lut_vs_ebops.png", a.fit_min_acc)
        return

    from hwnas.cost.metrics import model_metrics
    from hwnas.export.rtl import export_rtl
    from hwnas.export.synth import synthesize
    from hwnas.export.verify import verify_model
    from hwnas.tasks import get_task
    from hwnas.train import TrainConfig, beta_sweep
    from hwnas.train.trainer import load_saved

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    task = get_task("jets-hlf")
    opts = task.options(n_per_class=a.per_class, data_dir=a.data, workers=a.workers, progress=True)
    data = task.load(seed=a.seed, **{k: v for k, v in opts.items()})
    t_data = time.time() - t0
    print(f"data: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test jets, "
          f"{data.info['dropped']} dropped (groomed to one constituent), {t_data:.0f} s", flush=True)
    peaks = _groomed_mass(data)
    print("groomed mass per class (median, histogram mode) [GeV]:",
          {c: [round(v, 1) for v in p] for c, p in peaks.items()}, flush=True)

    t1 = time.time()
    fl_val, fl_test = _train_float(data, a.float_epochs, a.seed)
    print(f"float 16-64-32-32-5: val {fl_val:.4f} test {fl_test:.4f} ({time.time() - t1:.0f} s)", flush=True)

    torch.manual_seed(a.seed)
    model = _hgq_mlp(16, data.n_classes, (64, 32, 32), init_bits=8, input_bits=12)
    cfg = TrainConfig(epochs=a.epochs, batch_size=a.batch, lr=3e-3, gamma=2e-8, seed=a.seed, progress=False)
    t2 = time.time()
    res = beta_sweep(model, data.train.pair, data.val.pair, out / "sweep", config=cfg, beta0=5e-7, beta1=1e-3)
    t_sweep = time.time() - t2
    front = [c for c in res.checkpoints if c.ebops_calibrated and c.ebops_calibrated > 0]
    print(f"beta sweep: {a.epochs} epochs in {t_sweep:.0f} s, front of {len(front)} models", flush=True)

    pick = front
    if len(front) > a.synth:
        idx = np.unique(np.round(np.linspace(0, len(front) - 1, a.synth)).astype(int))
        pick = [front[i] for i in idx]
    rows = []
    for n, c in enumerate(pick):
        m = copy.deepcopy(model)
        m.load_state_dict(load_saved(c.path))
        m.eval()
        test_acc = _accuracy(m, *data.test.pair)
        eb = model_metrics(m, (16,)).ebops
        row = {"epoch": c.epoch, "beta": c.beta, "val": c.metric_calibrated, "test": test_acc, "ebops": eb}
        work = out / f"model{n}"
        try:
            if n < a.verify:
                rep = verify_model(m, data.test.x[:500], paths=["rtl"], output_dir=work / "verify")
                row["rtl_mismatches"] = sum(r.mismatches for r in rep.ran if r.path != "reference")
                row["verified"] = rep.passed
            proj = export_rtl(m, (16,), work / "rtl", latency_cutoff=5.0)
            s = synthesize(proj, target="ZCU104", progress=False, timeout_s=1800)
            row["luts"] = s.estimate.total("luts")
            row["ffs"] = s.estimate.total("ffs")
        except Exception as err:  # recorded, not hidden: the row says what failed
            row["error"] = f"{type(err).__name__}: {err}"
        rows.append(row)
        print(json.dumps(row), flush=True)

    synthesized = [r for r in rows if r.get("luts")]
    for label, ok in (("all synthesized", synthesized),
                      (f"test accuracy > {a.fit_min_acc}", [r for r in synthesized if r["test"] > a.fit_min_acc])):
        if len(ok) < 2:
            continue
        lx = np.log([r["ebops"] for r in ok])
        ly = np.log([r["luts"] for r in ok])
        b, la = np.polyfit(lx, ly, 1)
        ratio = [r["luts"] / r["ebops"] ** 0.985 for r in ok]
        print(f"fit ({label}, {len(ok)} models): LUT = {math.exp(la):.3g} * EBOPs^{b:.3f}; LUT / EBOPs^0.985 "
              f"(seed 001) from {min(ratio):.2f} to {max(ratio):.2f}")
    summary = {"per_class": a.per_class, "epochs": a.epochs, "float": [fl_val, fl_test], "groomed_mass": peaks,
               "rows": rows, "seconds": {"data": t_data, "sweep": t_sweep, "total": time.time() - t0}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    plot(summary, out / "lut_vs_ebops.png", a.fit_min_acc)
    print(f"total {time.time() - t0:.0f} s; {out / 'summary.json'}")


if __name__ == "__main__":
    main()
