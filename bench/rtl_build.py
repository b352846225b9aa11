"""Verilator build time of one model's RTL emulator: alkaid's default flags against hwnas's split build.

The model is exported once (alkaid trace + optimization, timed); the same project is then built twice with
Verilator — alkaid's own ``VERILATOR_FLAGS``, then those plus :data:`hwnas.export.rtl.VERILATOR_SPLIT` — each
timed, each simulated on the model file's test inputs and compared with torch. Prints both times and their
ratio, measured in one run.

    OMP_NUM_THREADS=1 .venv/bin/python bench/rtl_build.py [MODEL_FILE]

MODEL_FILE defaults to the ``make demo`` knee model, ``runs/amc-monas-lq-small/trials/00012/model.pt``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hwnas.export import load_model
from hwnas.export.rtl import VERILATOR_SPLIT, export_rtl
from hwnas.export.tools import find_verilator


def build(project, flags: str) -> float:
    from alkaid.codegen.rtl._utils import verilator_warn_suppression

    rtl = project._model()
    with find_verilator().activated() as env:
        env = {**env, "VERILATOR_FLAGS": f"-Wall {verilator_warn_suppression()} {flags}".strip()}
        start = time.perf_counter()
        rtl._compile(_env=env)
        seconds = time.perf_counter() - start
    project._rtl = rtl
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="runs/amc-monas-lq-small/trials/00012/model.pt")
    parser.add_argument("--samples", type=int, default=256)
    args = parser.parse_args()
    bundle = load_model(args.model)
    x = bundle.test_inputs[: args.samples] if bundle.test_inputs is not None else torch.randn(64, *bundle.input_shape)
    with torch.no_grad():
        ref = bundle.model(x).double().numpy().reshape(len(x), -1)
    work = Path(tempfile.mkdtemp(prefix="hwnas-rtl-bench-"))
    try:
        start = time.perf_counter()
        project = export_rtl(bundle.model, bundle.input_shape, work / "rtl")
        print(f"export (alkaid trace + optimization): {time.perf_counter() - start:.1f} s", flush=True)
        times = {}
        for name, flags in (("alkaid default", ""), ("hwnas split", VERILATOR_SPLIT)):
            shutil.rmtree(work / "rtl" / "sim" / "obj_dir", ignore_errors=True)
            times[name] = build(project, flags)
            got = np.asarray(project.predict(x), dtype=np.float64).reshape(len(x), -1)
            bad = int(np.any(got != ref, axis=1).sum())
            print(f"{name:15s} build {times[name]:7.1f} s   {bad} of {len(x)} samples mismatching", flush=True)
        print(f"build time ratio default / split: {times['alkaid default'] / times['hwnas split']:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
