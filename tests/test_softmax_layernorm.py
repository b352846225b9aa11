"""QSoftmax and QLayerNorm: torch == reference == RTL circuit, torch == hls4ml's own C++, training, errors.

The C++ check compiles one program with g++ against the installed hls4ml's ``nnet_activation.h`` /
``nnet_layernorm.h`` and ``ap_fixed`` headers; it runs ``softmax_stable`` and ``layernormalize`` on every
sample of several configurations (defaults, hls4ml's own default types with sliced table indices, narrow
saturating/wrapping types, odd sizes) and dumps hls4ml's tables; everything must agree bit for bit.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import hwnas.nn as hn
from hwnas.errors import HwnasError
from hwnas.export import ExportError, extract, run_reference
from hwnas.export.graph import LayerNorm, Quantize, Softmax
from hwnas.nn.normalization import (
    FixedType,
    QLayerNorm,
    QSoftmax,
    layernorm_elementwise,
    layernorm_np,
    layernorm_table,
    softmax_elementwise,
    softmax_exp_table,
    softmax_inv_table,
    softmax_np,
)
from hwnas.quant import QuantizationError

from .apfixed import _cache_dir, ap_types_dir


def static(bits: int, i: int | None = None, **kw) -> dict:
    return dict(bits=bits, i=i, learnable=False, **kw)


ACT = static(8, 3, round_mode="RND", overflow_mode="SAT")


def _dense(n_in: int, n_out: int) -> hn.QLinear:
    return hn.QLinear(n_in, n_out, input_quantizer=ACT, weight_quantizer=static(6), bias_quantizer=static(8))


def _seeded_norm(ln: QLayerNorm, seed: int) -> QLayerNorm:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        ln.weight.copy_(torch.rand(ln.weight.shape, generator=g) + 0.5)
        ln.bias.copy_(torch.rand(ln.bias.shape, generator=g) - 0.5)
    return ln


def models() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    torch.manual_seed(3)
    softmax = nn.Sequential(_dense(6, 5), QSoftmax()).eval()
    norm = nn.Sequential(
        _dense(6, 8),
        _seeded_norm(QLayerNorm(8, input_quantizer=static(10, 2), weight_quantizer=static(6),
                                bias_quantizer=static(6), output_quantizer=static(10, 2)), 1),
        _dense(8, 3)).eval()
    rows = nn.Sequential(QSoftmax(exp_table_size=256, inv_table_size=512, exp_scale=0.7)).eval()  # (3, 5) samples
    return {"softmax": (softmax, (6,)), "layernorm": (norm, (6,)), "softmax_rows": (rows, (3, 5))}


def inputs(shape: tuple[int, ...], n: int, seed: int = 0, scale: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn((n, *shape), generator=g) * scale
    ties = torch.round(torch.randn((n // 4, *shape), generator=g) * 8) / 8  # equal maxima, exact codes
    return torch.cat([base, ties, torch.zeros((1, *shape))])


def torch_out(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(x).double().numpy()


# ------------------------------------------------------------------------------- torch == reference == RTL
@pytest.mark.parametrize("name", ["softmax", "layernorm", "softmax_rows"])
def test_torch_reference_and_rtl_circuit_agree_bit_for_bit(name: str) -> None:
    model, shape = models()[name]
    graph = extract(model, shape)
    kinds = {type(n) for n in graph.nodes}
    assert (Softmax in kinds) != (LayerNorm in kinds)
    x = inputs(shape, 200)
    ref = run_reference(graph, x)
    out = torch_out(model, x)
    assert ref.shape == out.shape and np.array_equal(ref, out), int((ref != out).sum())
    assert len(np.unique(out)) > 20  # the data exercise the layer, not one saturated value

    pytest.importorskip("alkaid")
    from alkaid.trace import trace

    from hwnas.export.alkaid_plugin import trace_hwnas

    inp, sym, _ = trace_hwnas(model, shape, graph=graph)
    comb = trace(inp, sym)
    got = comb.predict(graph.input_format.quantize(x.double().numpy()).reshape(len(x), -1))
    assert np.array_equal(got, ref.reshape(len(x), -1)), int((got != ref.reshape(len(x), -1)).sum())


def test_graph_nodes_carry_the_types_and_parameters() -> None:
    model, shape = models()["layernorm"]
    graph = extract(model, shape)
    ln = next(n for n in graph.nodes if isinstance(n, LayerNorm))
    layer = model[1]
    assert ln.n == 8 and ln.table_size == 4096 and ln.epsilon_power_of_10 == 5
    assert ln.accum_t == FixedType(1, 5, 12, "RND", "SAT") and ln.table_t.cpp() == "ap_ufixed<18,9,AP_RND,AP_SAT>"
    assert np.array_equal(ln.scale, layer.quantized_weight().detach().double().numpy())
    assert np.array_equal(ln.bias, layer.quantized_bias().detach().double().numpy())
    assert ln.output == "1/layernorm" and graph.producer(ln.inputs[0]).name == "1"
    model, shape = models()["softmax"]
    graph = extract(model, shape)
    sm = next(n for n in graph.nodes if isinstance(n, Softmax))
    assert isinstance(graph.producer(sm.inputs[0]), Quantize)
    assert (sm.n, sm.exp_table_size, sm.inv_table_size) == (5, 1024, 4096)
    assert sm.data_t.cpp() == "ap_fixed<10,4,AP_RND,AP_SAT>" and sm.inp_norm_t.cpp() == "ap_ufixed<10,4,AP_TRN,AP_WRAP>"
    assert sm.accum_t.cpp() == "ap_ufixed<19,4,AP_TRN,AP_WRAP>"  # exact: exp_table_t plus ceil(log2 5) bits


def test_elementwise_forms_equal_the_vectorized_ones() -> None:
    """The per-element algorithm the RTL path builds, run on floats, equals the NumPy reference."""
    rng = np.random.default_rng(0)
    layer = QSoftmax(inp_norm_t="ap_fixed<9,5>", exp_table_size=128, accum_t="ap_ufixed<8,2,AP_RND,AP_SAT>",
                     inv_inp_t="ap_fixed<10,3,AP_TRN,AP_SAT>", inv_table_size=256, exp_scale=0.7)
    x = layer.input_quantizer(torch.tensor(rng.normal(0, 3, (64, 7)), dtype=torch.float32)).double().numpy()
    cfg = layer.config((7,))

    def q(v, t):
        return float(t.quantize(v))

    def lookup(v, fn):
        return float(fn(np.array([v]))[0])

    rows = np.array([softmax_elementwise(list(r), cfg, q, lookup, max) for r in x])
    assert np.array_equal(rows, softmax_np(x, cfg))
    ln = _seeded_norm(QLayerNorm(5, 1e-4, accum_t="ap_fixed<16,3>", table_size=1000, table_range_power2=2), 2)
    ln(torch.zeros(1, 5))
    scale, bias = ln.quantized_weight().detach().double().numpy(), ln.quantized_bias().detach().double().numpy()
    rows = np.array([layernorm_elementwise(list(r), ln.config(), scale, bias, q, lookup) for r in x[:, :5]])
    assert np.array_equal(rows, layernorm_np(x[:, :5], ln.config(), scale, bias))


# ------------------------------------------------------------------------------- hls4ml's C++ (g++)
@dataclass
class _Case:
    kind: str  # "softmax" or "layernorm"
    layer: nn.Module
    shape: tuple[int, ...]
    x: torch.Tensor


def _kif_type(q) -> FixedType:
    k, i, f = (int(t.reshape(-1)[0]) for t in q.kif())
    return FixedType(k, i, f, q.round_mode.value, q.overflow_mode.value)


def _cases() -> list[_Case]:
    g = torch.Generator().manual_seed(11)

    def data(shape, n, scale):
        x = torch.randn((n, *shape), generator=g) * scale
        edge = torch.full((4, *shape), 1e3) * torch.tensor([1.0, -1.0, 0.0, 1.0]).reshape(4, *([1] * len(shape)))
        return torch.cat([x, edge])

    hls_default = "ap_fixed<18,8,AP_RND,AP_SAT>"
    cases = [
        _Case("softmax", QSoftmax(), (10,), data((10,), 1500, 3.0)),
        # hls4ml's default types for a ap_fixed<16,6> input, table indices sliced from the top bits
        _Case("softmax", QSoftmax(inp_norm_t="ap_ufixed<15,5>", exp_table_t=hls_default, accum_t=hls_default,
                                  inv_inp_t=hls_default, inv_table_t=hls_default, exp_table_size=1024,
                                  inv_table_size=1024, input_quantizer=static(16, 5),
                                  output_quantizer=static(16, 5)), (5,), data((5,), 1500, 8.0)),
        # narrow, signed, rounding and saturating/wrapping types, a non-power-of-two exp_scale: large differences
        # wrap to negative d, whose exp wraps to negative entries, so the saturating adder tree's order matters
        _Case("softmax", QSoftmax(inp_norm_t="ap_fixed<8,4>", exp_table_t="ap_fixed<12,3,AP_RND,AP_WRAP>",
                                  accum_t="ap_fixed<9,3,AP_RND,AP_SAT>", inv_inp_t="ap_fixed<10,3,AP_TRN,AP_SAT>",
                                  inv_table_t="ap_fixed<12,2,AP_RND_CONV,AP_WRAP>", exp_table_size=128,
                                  inv_table_size=256, exp_scale=0.7), (7,), data((7,), 1500, 3.0)),
        _Case("softmax", QSoftmax(exp_scale=1.4426950408889634, input_quantizer=static(8, 3, signed=False)),
              (3,), data((3,), 1000, 4.0)),
        _Case("layernorm", _seeded_norm(QLayerNorm(8, input_quantizer=static(10, 2), weight_quantizer=static(6),
                                                   bias_quantizer=static(6), output_quantizer=static(12, 3)), 4),
              (8,), data((8,), 1500, 1.0)),
        # hls4ml's default types, a feature count that is not a power of two, two rows per sample
        _Case("layernorm", _seeded_norm(QLayerNorm(6, 1e-3, accum_t="ap_fixed<14,4,AP_RND_CONV,AP_SAT>",
                                                   table_t="ap_ufixed<8,5,AP_RND_CONV,AP_SAT>",
                                                   input_quantizer=static(10, 3), weight_quantizer=static(8),
                                                   bias_quantizer=static(8), output_quantizer=static(16, 5)), 5),
              (2, 6), data((2, 6), 800, 4.0)),
        # a wrapping accumulator, a table of 1000 entries over [0, 1/4)
        _Case("layernorm", _seeded_norm(QLayerNorm(5, 1e-4, accum_t="ap_fixed<16,3>", table_size=1000,
                                                   table_range_power2=2, input_quantizer=static(8, 1),
                                                   weight_quantizer=static(7), bias_quantizer=static(7),
                                                   output_quantizer=static(14, 4)), 6),
              (5,), data((5,), 1500, 0.5)),
    ]
    for c in cases:
        c.layer.eval()
    return cases


_HEADER = """#include <cstdio>
#include <cstdlib>
#include "ap_fixed.h"
#include "nnet_utils/nnet_activation.h"
#include "nnet_utils/nnet_layernorm.h"
static FILE *fin, *fout;
static double rd() { double v; if (fread(&v, sizeof v, 1, fin) != 1) exit(3); return v; }
static void wr(double v) { fwrite(&v, sizeof v, 1, fout); }
template <class T> static void wr_table(const T *t, unsigned n) {
    for (unsigned j = 0; j < n; ++j) wr(t[j].to_double());
}
template <class data_T, class res_T, class C> static void run_softmax(long rows) {
    static typename C::exp_table_t et[C::exp_table_size];
    static typename C::inv_table_t it[C::inv_table_size];
    nnet::init_exp_table<typename C::inp_norm_t, C>(et, true);
    nnet::init_invert_table<typename C::inv_inp_t, C>(it);
    wr_table(et, C::exp_table_size); wr_table(it, C::inv_table_size);
    for (long r = 0; r < rows; ++r) {
        data_T d[C::n_slice]; res_T y[C::n_slice];
        for (unsigned j = 0; j < C::n_slice; ++j) d[j] = rd();
        nnet::softmax_stable<data_T, res_T, C>(d, y);
        for (unsigned j = 0; j < C::n_slice; ++j) wr(y[j].to_double());
    }
}
template <class data_T, class res_T, class C> static void run_layernorm(long rows) {
    static const unsigned dim = C::n_in / C::seq_len;
    typename C::scale_t s[dim]; typename C::bias_t b[dim];
    for (unsigned j = 0; j < dim; ++j) s[j] = rd();
    for (unsigned j = 0; j < dim; ++j) b[j] = rd();
    static typename C::table_t t[C::table_size];
    nnet::init_invert_sqr_table<C, C::table_size>(t);
    wr_table(t, C::table_size);
    for (long r = 0; r < rows; ++r) {
        data_T d[C::n_in]; res_T y[C::n_in];
        for (unsigned j = 0; j < C::n_in; ++j) d[j] = rd();
        nnet::layernormalize<data_T, res_T, C>(d, y, s, b);
        for (unsigned j = 0; j < C::n_in; ++j) wr(y[j].to_double());
    }
}
"""


def _program(cases: list[_Case]) -> tuple[str, list[str]]:
    """C++ source (one config struct per case, written as hls4ml's templates write them) and the main body."""
    parts, calls = [_HEADER], []
    for idx, c in enumerate(cases):
        data_t, res_t = _kif_type(c.layer.input_quantizer), _kif_type(c.layer.output_quantizer)
        rows = len(c.x) * (c.x[0].numel() // c.shape[-1] if c.kind == "softmax" else 1)
        if c.kind == "softmax":
            cfg = c.layer.config(c.shape)
            parts.append(f"""struct cfg{idx} : nnet::activ_config {{
    static const unsigned n_in = {cfg.n}; static const unsigned n_slice = {cfg.n};
    static const unsigned n_outer = 1; static const unsigned n_inner = 1;
    static const unsigned exp_table_size = {cfg.exp_table_size};
    static const unsigned inv_table_size = {cfg.inv_table_size};
    static const unsigned io_type = nnet::io_parallel; static const unsigned reuse_factor = 1;
    static const nnet::softmax_implementation implementation = nnet::softmax_implementation::stable;
    static constexpr float exp_scale = {cfg.exp_scale!r};
    typedef {cfg.exp_table_t.cpp()} exp_table_t;
    typedef {cfg.inv_table_t.cpp()} inv_table_t;
    typedef {cfg.accum_t.cpp()} accum_t;
    typedef {cfg.inv_inp_t.cpp()} inv_inp_t;
    typedef {cfg.inp_norm_t.cpp()} inp_norm_t;
}};
""")
            calls.append(f"run_softmax<{data_t.cpp()}, {res_t.cpp()}, cfg{idx}>({rows});")
        else:
            cfg = c.layer.config()
            seq = c.x[0].numel() // cfg.n
            parts.append(f"""struct cfg{idx} : nnet::layernorm_config {{
    static const unsigned n_in = {seq * cfg.n}; static const unsigned seq_len = {seq};
    static const unsigned axis = 2;
    static const unsigned epsilon_power_of_10 = {cfg.epsilon_power_of_10};
    static const unsigned table_range_power2 = {cfg.table_range_power2};
    static const unsigned table_size = {cfg.table_size};
    typedef {cfg.accum_t.cpp()} accum_t;
    typedef {_kif_type(c.layer.bias_quantizer).cpp()} bias_t;
    typedef {_kif_type(c.layer.weight_quantizer).cpp()} scale_t;
    typedef {cfg.table_t.cpp()} table_t;
    static const unsigned io_type = nnet::io_parallel; static const unsigned reuse_factor = 1;
    template <class x_T, class y_T> using product = nnet::product::mult<x_T, y_T>;
}};
""")
            calls.append(f"run_layernorm<{data_t.cpp()}, {res_t.cpp()}, cfg{idx}>({len(c.x)});")
    main = ["int main(int argc, char **argv) {", "    fin = fopen(argv[1], \"rb\"); fout = fopen(argv[2], \"wb\");",
            "    if (!fin || !fout) return 2;", *("    " + call for call in calls),
            "    fclose(fin); fclose(fout); return 0;", "}"]
    return "".join(parts) + "\n".join(main) + "\n", calls


def _compile(src: str) -> Path:
    import hls4ml

    templates = Path(hls4ml.__file__).parent / "templates" / "vivado"
    include = ap_types_dir()
    assert include is not None
    digest = hashlib.sha256((src + str(templates)).encode()).hexdigest()[:20]
    exe = _cache_dir() / f"hls4ml_norm_{digest}"
    if not exe.exists():
        cpp = exe.with_suffix(".cpp")
        cpp.write_text(src)
        tmp = exe.with_name(exe.name + f".tmp{os.getpid()}")
        # hls4ml's build_lib.sh flags (-O3; its C++ standard), include paths as in its projects
        cmd = ["g++", "-O3", "-std=c++17", "-w", f"-I{include}", f"-I{templates}", str(cpp), "-o", str(tmp)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-4000:]
        os.replace(tmp, exe)
    return exe


def test_torch_equals_hls4ml_cpp_bit_for_bit() -> None:
    """softmax_stable and layernormalize from hls4ml's headers, compiled with g++: 0 mismatches, equal tables."""
    pytest.importorskip("hls4ml")
    if shutil.which("g++") is None or ap_types_dir() is None:
        pytest.skip("needs g++ and hls4ml's ap_fixed headers")
    cases = _cases()
    expected = []
    for c in cases:
        with torch.no_grad():
            y = c.layer(c.x).double().numpy()
        data = c.layer.input_quantizer(c.x).detach().double().numpy()
        expected.append((data, y))
    src, _ = _program(cases)
    exe = _compile(src)
    with tempfile.TemporaryDirectory() as tmpd:
        fin, fout = Path(tmpd) / "in.bin", Path(tmpd) / "out.bin"
        with open(fin, "wb") as fh:
            for c, (data, _) in zip(cases, expected, strict=True):
                if c.kind == "layernorm":
                    c.layer.quantized_weight().detach().double().numpy().tofile(fh)
                    c.layer.quantized_bias().detach().double().numpy().tofile(fh)
                data.astype(np.float64).tofile(fh)
        subprocess.run([str(exe), str(fin), str(fout)], check=True)
        flat = np.fromfile(fout, dtype=np.float64)
    off, samples, mismatches, table_mismatches = 0, 0, 0, 0
    for c, (_, y) in zip(cases, expected, strict=True):
        if c.kind == "softmax":
            cfg = c.layer.config(c.shape)
            tables = [cfg.exp_table(), cfg.inv_table()]
        else:
            tables = [c.layer.config().table()]
        for t in tables:
            got_t = flat[off:off + len(t)]
            off += len(t)
            table_mismatches += int(np.count_nonzero(got_t != t))
        got = flat[off:off + y.size].reshape(y.shape)
        off += y.size
        mismatches += int(np.count_nonzero(got != y))
        samples += len(y)
        assert len(np.unique(y)) > 20, c.layer  # a configuration that exercises the layer
    assert off == flat.size
    assert (mismatches, table_mismatches) == (0, 0)
    assert samples > 9000


_TABLES = """#include <cstdio>
#include "ap_fixed.h"
#include "nnet_utils/nnet_activation.h"
#include "nnet_utils/nnet_layernorm.h"
struct ln_cfg : nnet::layernorm_config {
    static const unsigned epsilon_power_of_10 = 5; static const unsigned table_range_power2 = 1;
    static const unsigned table_size = 3000; typedef ap_ufixed<50,10> table_t;
};
struct sm_cfg : nnet::activ_config {
    static const unsigned exp_table_size = 65536; static const unsigned inv_table_size = 65536;
    static constexpr float exp_scale = 1.4426950408889634;
    typedef ap_ufixed<22,1,AP_RND,AP_SAT> exp_table_t; typedef ap_fixed<16,6> inp_norm_t;
    typedef ap_ufixed<50,20,AP_RND,AP_SAT> inv_table_t; typedef ap_fixed<16,8> inv_inp_t;
};
template <class T> static void dump(FILE *f, const T *t, unsigned n) {
    for (unsigned j = 0; j < n; ++j) { double v = t[j].to_double(); fwrite(&v, sizeof v, 1, f); }
}
int main(int argc, char **argv) {
    FILE *f = fopen(argv[1], "wb");
    static ln_cfg::table_t t[ln_cfg::table_size]; nnet::init_invert_sqr_table<ln_cfg, ln_cfg::table_size>(t);
    static sm_cfg::exp_table_t e[65536]; nnet::init_exp_table<sm_cfg::inp_norm_t, sm_cfg>(e, true);
    static sm_cfg::inv_table_t i[65536]; nnet::init_invert_table<sm_cfg::inv_inp_t, sm_cfg>(i);
    dump(f, t, ln_cfg::table_size); dump(f, e, 65536); dump(f, i, 65536);
    fclose(f); return 0;
}
"""


def test_tables_equal_hls4ml_init_functions_with_wide_types() -> None:
    """hls4ml's init_invert_sqr_table / init_exp_table / init_invert_table with wide entry types.

    Wide types expose every float32 step: sqrtf (not a double sqrt), the float32 index values and products,
    signed indices (negative d: exp of a positive number, saturating), 1/0 and negative inverses.
    """
    pytest.importorskip("hls4ml")
    if shutil.which("g++") is None or ap_types_dir() is None:
        pytest.skip("needs g++ and hls4ml's ap_fixed headers")
    exe = _compile(_TABLES)
    with tempfile.TemporaryDirectory() as tmpd:
        out = Path(tmpd) / "tables.bin"
        subprocess.run([str(exe), str(out)], check=True)
        got = np.fromfile(out, dtype=np.float64)
    ln = layernorm_table(3000, 1, 5, FixedType.parse("ap_ufixed<50,10>", "t"))
    ex = softmax_exp_table(FixedType.parse("ap_fixed<16,6>", "t"), 65536, float(np.float32(1.4426950408889634)),
                           FixedType.parse("ap_ufixed<22,1,AP_RND,AP_SAT>", "t"))
    inv = softmax_inv_table(FixedType.parse("ap_fixed<16,8>", "t"), 65536,
                            FixedType.parse("ap_ufixed<50,20,AP_RND,AP_SAT>", "t"))
    assert got.size == ln.size + ex.size + inv.size
    assert np.array_equal(got[:ln.size], ln)
    assert np.array_equal(got[ln.size:ln.size + ex.size], ex)
    assert np.array_equal(got[ln.size + ex.size:], inv)
    assert len(np.unique(ln)) == 3000 and len(np.unique(ex)) > 5000 and len(np.unique(inv)) > 30000


# ------------------------------------------------------------------------------- training
def test_layers_train_gradients_flow() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(_dense(6, 8), QLayerNorm(8, input_quantizer=static(10, 2)), _dense(8, 4), QSoftmax())
    x = inputs((6,), 64)
    target = torch.randint(0, 4, (len(x),))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        p = model(x)
        loss = nn.functional.nll_loss(torch.log(p.clamp_min(1e-3)), target)
        loss.backward()
        for name, param in model.named_parameters():
            assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert model[0].weight.grad.abs().sum() > 0 and model[1].weight.grad.abs().sum() > 0
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    assert hn.macs(model) > 0 and np.isfinite(float(hn.ebops(model).detach()))


# ------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("build", "slot"), [
    (lambda: QSoftmax(input_quantizer=dict(bits=8)), "input_quantizer"),  # learnable
    (lambda: QSoftmax(input_quantizer=None), "input_quantizer"),
    (lambda: QSoftmax(input_quantizer=dict(bits=8, learnable=False, granularity="parameter")), "input_quantizer"),
    (lambda: QSoftmax(output_quantizer=None), "output_quantizer"),
    (lambda: QSoftmax(exp_table_size=1 << 17), "exp_table_size"),
    (lambda: QSoftmax(inv_table_size=1000), "inv_table_size"),
    (lambda: QSoftmax(exp_table_t="ap_fixed<8"), "exp_table_t"),
    (lambda: QSoftmax(accum_t=(2, 3, 4)), "accum_t"),
    (lambda: QSoftmax(exp_scale=0.0), "exp_scale"),
    (lambda: QSoftmax(dim=1), "dim"),
    (lambda: QLayerNorm(4, table_size=1 << 17), "table_size"),
    (lambda: QLayerNorm(4, accum_t=(1, 10, 20)), "accum_t"),
    (lambda: QLayerNorm(4, eps=0.5), "eps"),
    (lambda: QLayerNorm(4, table_range_power2=-1), "table_range_power2"),
    (lambda: QLayerNorm(4, table_t="ap_ufixed<0,0>"), "table_t"),
])
def test_bad_configurations_name_the_argument(build, slot: str) -> None:
    with pytest.raises(HwnasError) as info:
        build()
    assert isinstance(info.value, QuantizationError)
    assert str(info.value).startswith(slot), str(info.value)


def test_configuration_errors_found_at_run_and_export_time() -> None:
    layer = QSoftmax(inp_norm_t=(0, 2, 4), exp_table_size=128)  # 6-bit inp_norm_t cannot index 128 entries
    with pytest.raises(QuantizationError, match=r"^exp_table_size: 128 entries need 7 index bits"):
        layer(torch.zeros(2, 4))
    with pytest.raises(ExportError, match=r"exp_table_size: 128 entries"):
        extract(nn.Sequential(layer), (4,))
    wide = QSoftmax(exp_table_t=(0, 1, 30), inv_table_t=(0, 1, 24))  # exp_res * inv needs 58 bits
    with pytest.raises(QuantizationError, match=r"^accum_t: .* more than float64's 53"):
        wide(torch.zeros(2, 4))
    big = _seeded_norm(QLayerNorm(4, input_quantizer=static(8, 2), weight_quantizer=static(24, 4),
                                  bias_quantizer=static(8), accum_t=(1, 8, 8), table_t=(0, 12, 8)), 7)
    with pytest.raises(ExportError, match=r"^0\.weight_quantizer: .* more than float64's 53"):
        extract(nn.Sequential(big), (4,))


@pytest.mark.parametrize(("layer", "hint"), [(nn.Softmax(dim=-1), "QSoftmax"), (nn.LayerNorm(5), "QLayerNorm")])
def test_plain_torch_layers_are_refused_with_the_replacement(layer: nn.Module, hint: str) -> None:
    model = nn.Sequential(_dense(4, 5), layer)
    pattern = rf"^1: {type(layer).__name__} is not supported .*hwnas\.nn\.normalization\.{hint}"
    with pytest.raises(ExportError, match=pattern):
        extract(model, (4,))


# ------------------------------------------------------------------------------- hls4ml export (C simulation)
class _Norms(nn.Module):
    """Both layers, every hls4ml layout case, in one model (one g++ compilation).

    ``rows``: a softmax over the length of a (3, 4) conv output, strided in hls4ml's channels-last layout
    (``softmax_multidim`` with ``n_inner = 3``), sliced 256/512-entry tables, ``exp_scale`` 0.7; ``norm``: a
    LayerNorm of a flattened (2, 4) conv output, whose row reaches hls4ml in channels-last order (gamma/beta
    permuted; a wrapping ``accum_t``, so the in-order sums do not depend on the order), a 1000-entry table over
    ``[0, 1/2)``; ``norm2``: the default types (saturating ``accum_t``) over 6 features (``1/n`` rounded); then a
    softmax with the default types.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = hn.QConv1d(2, 3, 3, padding=1, input_quantizer=ACT, weight_quantizer=static(6),
                               bias_quantizer=static(8))
        self.rows = QSoftmax(exp_table_size=256, inv_table_size=512, exp_scale=0.7)
        self.mix = hn.QConv1d(3, 2, 1, input_quantizer=static(8, 0, signed=False), weight_quantizer=static(6),
                              bias_quantizer=static(8))
        self.norm = _seeded_norm(QLayerNorm(8, accum_t="ap_fixed<16,3>", table_size=1000, table_range_power2=1,
                                            input_quantizer=static(8, 1), weight_quantizer=static(7),
                                            bias_quantizer=static(7), output_quantizer=static(10, 2)), 6)
        self.fc = _dense(8, 6)
        self.norm2 = _seeded_norm(QLayerNorm(6, 1e-3, input_quantizer=static(10, 2), weight_quantizer=static(6),
                                             bias_quantizer=static(6), output_quantizer=static(10, 2)), 1)
        self.head = _dense(6, 5)
        self.softmax = QSoftmax()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.flatten(self.mix(self.rows(self.conv(x))), 1)
        return self.softmax(self.head(self.norm2(self.fc(self.norm(h)))))


def test_hls4ml_c_simulation_is_bit_exact(tmp_path) -> None:
    """hls4ml's Softmax / LayerNormalization, compiled (g++) and run: 0 mismatches against torch and the reference."""
    pytest.importorskip("hls4ml")
    if shutil.which("g++") is None:
        pytest.skip("g++ is not on PATH (hls4ml's C emulation)")
    from hwnas.export.hls4ml import export_hls4ml

    torch.manual_seed(3)
    model = _Norms().eval()
    shape = (2, 4)
    x = inputs(shape, 1200)
    y = torch_out(model, x)
    graph = extract(model, shape)
    ref = run_reference(graph, x)
    assert np.array_equal(ref, y)
    project = export_hls4ml(model, shape, tmp_path / "prj", backend="Vitis")
    layers = {layer.name: layer for layer in project.lowered.layers}
    assert (layers["softmax_rows"].attrs["n_outer"], layers["softmax_rows"].attrs["n_inner"]) == (1, 3)
    assert layers["softmax_softmax"].attrs["n_inner"] == 1 and layers["layernorm_norm2"].attrs["seq_len"] == 1
    classes = {node.class_name for node in project.model.graph.values()}
    assert {"Softmax", "LayerNormalization"} <= classes
    params = (project.path / "firmware" / "parameters.h").read_text()
    assert params.count("softmax_implementation::stable") == 2
    assert params.count("using product = nnet::product::mult<x_T, y_T>") >= 2
    assert "static const unsigned exp_table_size = 256;" in params and "table_size = 1000;" in params
    project.compile()
    got = project.predict(x)
    mismatches = int(np.count_nonzero(got != y)) + int(np.count_nonzero(got != ref))
    assert mismatches == 0 and got.size > 7000, (mismatches, got.size)
    assert len(np.unique(got)) > 100  # the data exercise the layers, not a few saturated values


def test_row_layout_finds_hls4ml_rows() -> None:
    from hwnas.export.hls4ml_lower import row_layout

    flat = np.arange(12)
    assert row_layout(flat, 4)[:2] == (3, 1)
    strided = np.moveaxis(np.arange(12).reshape(3, 4), 0, -1).ravel()  # torch (3, 4) held as (4, 3)
    n_outer, n_inner, pos = row_layout(strided, 4)
    assert (n_outer, n_inner) == (1, 3) and np.all(pos == np.arange(4)[None, :, None])
    flattened = np.moveaxis(np.arange(8).reshape(2, 4), 0, -1).ravel()  # a flattened (2, 4), one row of 8
    n_outer, n_inner, pos = row_layout(flattened, 8)
    assert (n_outer, n_inner) == (1, 1) and list(pos[0, :, 0]) == [0, 4, 1, 5, 2, 6, 3, 7]


def _conv(cin: int, cout: int) -> hn.QConv1d:
    return hn.QConv1d(cin, cout, 3, padding=1, input_quantizer=ACT, weight_quantizer=static(6),
                      bias_quantizer=static(8))


@pytest.mark.parametrize(("layers", "pattern"), [
    # LayerNorm over the length of a (C, L) tensor: strided rows in channels-last layout
    (lambda: [_conv(2, 3), QLayerNorm(4, input_quantizer=static(10, 2))],
     r"^1: LayerNorm over the last axis of a \(3, 4\) tensor: .*contiguous rows only"),
    # a flattened channels-last row with a saturating accum_t (the default's): the sum order could matter
    (lambda: [_conv(2, 2), nn.Flatten(), QLayerNorm(8, input_quantizer=static(10, 2))],
     r"^2: the elements of each LayerNorm row .* accum_t ap_fixed<18,6,AP_RND,AP_SAT> saturates"),
    (lambda: [_conv(2, 2), nn.Flatten(), QSoftmax(accum_t="ap_ufixed<19,4,AP_TRN,AP_SAT>")],
     r"^2: the elements of each softmax row .* saturates"),
])
def test_hls4ml_lowering_refuses_what_it_cannot_express(layers, pattern: str) -> None:
    from hwnas.export.hls4ml_lower import lower

    model = nn.Sequential(*layers()).eval()
    model(torch.randn(4, 2, 4))
    graph = extract(model, (2, 4))
    with pytest.raises(ExportError, match=pattern):
        lower(graph, {}, {})


def test_flattened_softmax_with_a_wrapping_accumulator_lowers() -> None:
    """A reordered row is exact with the default (wrapping, exact) accum_t: no refusal, the row's order kept."""
    from hwnas.export.hls4ml_lower import lower

    model = nn.Sequential(_conv(2, 2), nn.Flatten(), QSoftmax()).eval()
    model(torch.randn(4, 2, 4))
    lowered = lower(extract(model, (2, 4)), {}, {})
    sm = next(layer for layer in lowered.layers if layer.kind == "softmax")
    assert (sm.attrs["n_outer"], sm.attrs["n_inner"], sm.attrs["n_in"]) == (1, 1, 8)
    assert set(sm.attr_types) == {"exp_table", "inv_table", "accum", "inv_inp", "inp_norm"}
    assert sm.types["accum"].cpp() == "ap_ufixed<19,4>"


# ------------------------------------------------------------------------------- cost models
def _cost_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(_dense(6, 8), _seeded_norm(QLayerNorm(8, input_quantizer=static(10, 2)), 1),
                          _dense(8, 5), QSoftmax()).eval()
    model(torch.randn(2, 6))
    return model


def test_cost_rows_for_softmax_and_layernorm() -> None:
    from hwnas.cost import estimate
    from hwnas.cost.graph import describe_model

    model = _cost_model()
    infos = {li.name: li for li in describe_model(model, (6,))}
    assert (infos["1"].kind, infos["1"].elements, infos["1"].rows, infos["1"].macs) == ("layernorm", 8, 1, 3 * 8 + 2)
    assert (infos["3"].kind, infos["3"].elements, infos["3"].macs) == ("softmax", 5, 5)
    est = estimate(model, "VU13P", input_shape=(6,), kind="hls4ml")
    rows = {r.name: r for r in est.rows}
    for name in ("1", "3"):
        r = rows[name]
        assert r.luts > 0 and r.cycles > 0 and r.bram18 + r.extra["tables"][0]["luts"] > 0, r
        assert all(t["bits"] == t["entries"] * t["width"] for t in r.extra["tables"])
    assert [t["entries"] for t in rows["3"].extra["tables"]] == [1024, 4096]
    assert rows["3"].extra["tables"][0]["reads"] == 5 and rows["1"].extra["tables"][0]["entries"] == 4096
    assert est.latency_cycles >= rows["1"].cycles + rows["3"].cycles and "normalization" in est.assumptions
    assert math.isfinite(est.totals["luts"]) and est.totals["macs"] == 48 + 26 + 40 + 5


@pytest.mark.parametrize(("layers", "name", "cls"), [
    (lambda: [_dense(6, 5), QSoftmax()], "1", "QSoftmax"),
    (lambda: [_dense(6, 8), QLayerNorm(8, input_quantizer=static(10, 2))], "1", "QLayerNorm"),
])
def test_finn_cannot_build_them(layers, name: str, cls: str) -> None:
    from hwnas.cost import CostError, estimate

    model = nn.Sequential(*layers()).eval()
    model(torch.randn(2, 6))
    with pytest.raises(CostError, match=rf"^layer {name}: {cls} .* cannot be built by FINN"):
        estimate(model, "VU13P", input_shape=(6,), kind="finn")


def test_model_metrics_are_finite() -> None:
    from hwnas.cost import model_metrics

    model = _cost_model()
    m = model_metrics(model, (6,))
    assert m.macs == 48 + 26 + 40 + 5
    for value in (m.bops, m.ebops, m.weight_bits):
        assert math.isfinite(value) and value > 0
    assert math.isfinite(float(hn.ebops(model).detach())) and math.isfinite(hn.bops(model))
