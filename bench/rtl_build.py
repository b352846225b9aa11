"""RTL verification time: export, Verilator build and simulation of models' RTL, hwnas's old build flags vs new.

Each model is exported once (alkaid trace + optimization, timed), then its Verilator emulator is built twice —
*before*: the flags hwnas used until issue 25 (``--output-split 3000 --output-split-cfuncs 300``, alkaid's C++
``-O``, as many jobs as ``nproc`` says, which honours ``OMP_NUM_THREADS``, the C++ compiled file by file),
*after*: today's defaults (:data:`hwnas.export.rtl.VERILATOR_FLAGS`, :data:`~hwnas.export.rtl.CXX_FLAGS`,
:func:`~hwnas.export.rtl.build_jobs`, :data:`~hwnas.export.rtl.PARALLEL_BUILD_ADDERS`) — each timed (wall and
CPU seconds of the build's processes), simulated on the model's test inputs and compared with torch (in
float64, as ``hwnas verify`` does for the exact paths). One line per model and build; ``verify`` is export +
build + simulation, what ``hwnas verify --paths rtl`` spends.

    OMP_NUM_THREADS=1 .venv/bin/python bench/rtl_build.py [MODEL_FILE ...] [--builtin mlp cnn_tanh] [--skip-before]
        [--latency-cutoff NS]

MODEL_FILEs are ``hwnas export``/search model files (``model.pt``); ``--builtin`` adds models built here
(:data:`BUILTIN`); without either, the built-in ones and, if present, the ``make demo`` knee model
``runs/amc-monas-lq-small/trials/00012/model.pt``.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hwnas.export import load_model
from hwnas.export.rtl import CXX_FLAGS, VERILATOR_FLAGS, VERILATOR_SPLIT, build_jobs, export_rtl

KNEE = "runs/amc-monas-lq-small/trials/00012/model.pt"


def _fixed(bits: int, **kw) -> dict:
    return dict(bits=bits, learnable=False, **kw)


def mlp_model() -> tuple[nn.Module, tuple[int, ...]]:
    """The ``hgq_sweep`` example's kind: a digits MLP 64-32-32-10 with learned per-parameter (HGQ) widths."""
    import hwnas.nn as hn

    torch.manual_seed(0)
    model = nn.Sequential(
        hn.QLinear(64, 32, input_quantizer=_fixed(8, signed=False),
                   weight_quantizer=dict(bits=6, granularity="parameter"), bias_quantizer=dict(bits=8)),
        hn.QActivation("relu"),
        hn.QLinear(32, 32, input_quantizer=dict(bits=6, signed=False, granularity="parameter"),
                   weight_quantizer=dict(bits=6, granularity="parameter"), bias_quantizer=dict(bits=8)),
        hn.QActivation("relu"),
        hn.QLinear(32, 10, input_quantizer=dict(bits=6, signed=False, granularity="parameter"),
                   weight_quantizer=dict(bits=6, granularity="parameter"), bias_quantizer=dict(bits=8)))
    model(torch.rand(256, 64) * 4)
    return model.eval(), (64,)


def cnn_tanh_model() -> tuple[nn.Module, tuple[int, ...]]:
    """A 4,224-MAC 1-D CNN like issue 25's: conv, ReLU, depthwise conv, tanh table, max pool, dense (2x48 in)."""
    import hwnas.nn as hn

    torch.manual_seed(0)
    model = nn.Sequential(
        hn.QConv1d(2, 8, 3, padding=1, input_quantizer=_fixed(8, overflow_mode="SAT_SYM"),
                   weight_quantizer=_fixed(6), bias_quantizer=_fixed(8)),
        hn.QActivation("relu"),
        hn.QConv1d(8, 8, 3, padding=1, groups=8, input_quantizer=_fixed(6, signed=False), weight_quantizer=_fixed(6),
                   bias_quantizer=_fixed(8)),
        hn.QActivation("tanh", input_quantizer=_fixed(8), output_quantizer=_fixed(6)),
        hn.QMaxPool1d(2), nn.Flatten(),
        hn.QLinear(8 * 24, 4, input_quantizer=_fixed(6), weight_quantizer=_fixed(6), bias_quantizer=_fixed(8)))
    model(torch.randn(256, 2, 48) * 2)
    return model.eval(), (2, 48)


BUILTIN: dict[str, Callable[[], tuple[nn.Module, tuple[int, ...]]]] = {"mlp": mlp_model, "cnn_tanh": cnn_tanh_model}

BEFORE = dict(verilator_flags=VERILATOR_SPLIT, cxx_flags="-std=c++17 -fPIC -O", parallel=True)


def _nproc() -> int:
    return int(subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout)


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measure(name: str, model: nn.Module, shape: tuple[int, ...], x: torch.Tensor, skip_before: bool,
            latency_cutoff: float = -1) -> None:
    from hwnas.cost.metrics import model_metrics
    from hwnas.nn import fold_batchnorm

    with torch.no_grad():  # torch in float64, as hwnas verify compares the exact paths (float32 may round)
        ref = fold_batchnorm(model).double().eval()(x.double()).numpy().reshape(len(x), -1)
    work = Path(tempfile.mkdtemp(prefix="hwnas-rtl-bench-"))
    try:
        start = time.perf_counter()
        project = export_rtl(model, shape, work / "rtl", latency_cutoff=latency_cutoff)
        export_s = time.perf_counter() - start
        s = project.summary
        print(f"{name}: {model_metrics(model, shape).macs} MACs, {s.adders} adders, {s.lookups} lookups, "
              f"{s.stages} stages; export (alkaid trace + optimization) {export_s:.1f} s", flush=True)
        builds = [("before", dict(BEFORE, jobs=_nproc()))] if not skip_before else []
        builds.append(("after", dict(verilator_flags=VERILATOR_FLAGS, cxx_flags=CXX_FLAGS, jobs=build_jobs())))
        for label, kw in builds:
            shutil.rmtree(work / "rtl" / "sim" / "obj_dir", ignore_errors=True)
            cpu0, start = _children_cpu(), time.perf_counter()
            project.compile(**kw)
            build_s, build_cpu = time.perf_counter() - start, _children_cpu() - cpu0
            start = time.perf_counter()
            got = np.asarray(project.predict(x), dtype=np.float64).reshape(len(x), -1)
            sim_s = time.perf_counter() - start
            bad = int(np.any(got != ref, axis=1).sum())
            print(f"  {label:6s} (-j {kw['jobs']}) build {build_s:6.1f} s wall {build_cpu:6.1f} s CPU, simulate "
                  f"{sim_s:5.2f} s, verify {export_s + build_s + sim_s:6.1f} s; {bad} of {len(x)} samples "
                  "mismatching", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="model files (hwnas's model.pt)")
    parser.add_argument("--builtin", nargs="*", choices=sorted(BUILTIN), default=None)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--skip-before", action="store_true", help="only the current build flags")
    parser.add_argument("--latency-cutoff", type=float, default=-1,
                        help="pipeline stages of at most this many ns (alkaid's estimate); -1: combinational")
    args = parser.parse_args()
    files = list(args.models)
    builtin = args.builtin
    if not files and builtin is None:
        builtin = sorted(BUILTIN)
        files = [KNEE] if Path(KNEE).is_file() else []
    g = torch.Generator().manual_seed(0)
    for name in builtin or []:
        model, shape = BUILTIN[name]()
        x = torch.randn((args.samples, *shape), generator=g) * 2
        measure(name, model, shape, x, args.skip_before, args.latency_cutoff)
    for path in files:
        bundle = load_model(path)
        x = bundle.test_inputs[: args.samples] if bundle.test_inputs is not None else \
            torch.randn((args.samples, *bundle.input_shape), generator=g)
        measure(path, bundle.model, bundle.input_shape, x, args.skip_before, args.latency_cutoff)


if __name__ == "__main__":
    main()
