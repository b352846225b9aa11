"""Build and run a g++ program that quantizes doubles with the real ``ap_fixed`` headers.

The headers come from hls4ml's package (``hls4ml/templates/vivado/ap_types``). Each requested type
(k, I, W, rounding, overflow) becomes one template instantiation; the program reads doubles for every
type from a binary file and writes back what assigning them to that type yields (``to_double()``).
Binaries are cached by a hash of their source, so repeated test runs do not recompile.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ApType:
    """One ``ap_[u]fixed<W, I, Q, O>`` type: k sign bit, i integer bits excluding sign, f fractional bits."""

    k: int
    i: int
    f: int
    round_mode: str
    overflow_mode: str

    def cpp(self) -> str:
        w = self.k + self.i + self.f
        base = "ap_fixed" if self.k else "ap_ufixed"
        return f"{base}<{w},{self.k + self.i},AP_{self.round_mode},AP_{self.overflow_mode}>"


def ap_types_dir() -> Path | None:
    """Directory holding ``ap_fixed.h`` (from the installed hls4ml), or None."""
    try:
        import hls4ml
    except ImportError:
        return None
    d = Path(hls4ml.__file__).parent / "templates" / "vivado" / "ap_types"
    return d if (d / "ap_fixed.h").exists() else None


def _cache_dir() -> Path:
    d = Path(os.environ.get("HWNAS_TEST_CACHE", Path(tempfile.gettempdir()) / "hwnas-apfixed-cache"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def _source(types: list[ApType], chunk: range) -> str:
    lines = [
        "#include <ap_fixed.h>",
        "#include <cstdio>",
        "#include <cstdlib>",
        "template <class T> static void run(const double* x, double* y, long n) {",
        "  for (long j = 0; j < n; ++j) { T v = x[j]; y[j] = v.to_double(); }",
        "}",
        "typedef void (*fn_t)(const double*, double*, long);",
        "static fn_t table[] = {",
    ]
    lines += [f"  &run<{types[t].cpp()} >," for t in chunk]
    lines += [
        "};",
        "int main(int argc, char** argv) {",
        "  // argv: input file, output file; input = [int64 type_index, int64 n, n doubles]*",
        "  FILE* in = fopen(argv[1], \"rb\"); FILE* out = fopen(argv[2], \"wb\");",
        "  if (!in || !out) return 2;",
        "  long long hdr[2];",
        "  while (fread(hdr, sizeof(long long), 2, in) == 2) {",
        "    double* x = (double*)malloc(sizeof(double) * hdr[1]);",
        "    double* y = (double*)malloc(sizeof(double) * hdr[1]);",
        "    if (fread(x, sizeof(double), hdr[1], in) != (size_t)hdr[1]) return 3;",
        f"    table[hdr[0] - {chunk.start}](x, y, hdr[1]);",
        "    fwrite(y, sizeof(double), hdr[1], out);",
        "    free(x); free(y);",
        "  }",
        "  fclose(in); fclose(out); return 0;",
        "}",
    ]
    return "\n".join(lines) + "\n"


def run_ap_fixed(types: list[ApType], inputs: list[np.ndarray], chunks: int = 2) -> list[np.ndarray]:
    """Quantize ``inputs[t]`` with ``types[t]`` in C++; returns the results in the same order.

    The types are split over ``chunks`` programs compiled in parallel.
    """
    include = ap_types_dir()
    if include is None or shutil.which("g++") is None:
        raise RuntimeError("ap_fixed check needs g++ and hls4ml's ap_types headers")
    n = len(types)
    bounds = np.linspace(0, n, chunks + 1).astype(int)
    ranges = [range(int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a]
    srcs = [_source(types, r) for r in ranges]
    # compile the chunks concurrently (two cores): start all compilers, then wait
    procs = []
    exes: list[Path] = []
    for src in srcs:
        digest = hashlib.sha256((src + str(include)).encode()).hexdigest()[:20]
        exe = _cache_dir() / f"apfixed_{digest}"
        exes.append(exe)
        if exe.exists():
            continue
        cpp = exe.with_suffix(".cpp")
        cpp.write_text(src)
        tmp = exe.with_name(exe.name + f".tmp{os.getpid()}")
        cmd = ["g++", "-O0", "-std=c++14", "-w", f"-I{include}", str(cpp), "-o", str(tmp)]  # -O0: compiles ~40 % faster
        procs.append((subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True), tmp, exe))
    for proc, tmp, exe in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"g++ failed on the ap_fixed harness:\n{err[-4000:]}")
        os.replace(tmp, exe)
    results: list[np.ndarray] = [np.empty(0)] * n
    with tempfile.TemporaryDirectory() as tmpd:
        for exe, r in zip(exes, ranges, strict=True):
            fin, fout = Path(tmpd) / "in.bin", Path(tmpd) / "out.bin"
            with open(fin, "wb") as fh:
                for t in r:
                    x = np.ascontiguousarray(inputs[t], dtype=np.float64)
                    np.array([t, x.size], dtype=np.int64).tofile(fh)
                    x.tofile(fh)
            subprocess.run([str(exe), str(fin), str(fout)], check=True)
            flat = np.fromfile(fout, dtype=np.float64)
            off = 0
            for t in r:
                size = inputs[t].size
                results[t] = flat[off:off + size]
                off += size
    return results
