"""hwnas.nn.to_learnable: HGQ per-parameter bit-widths from a fixed-precision model, and the local β-sweep on it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import hwnas.nn as hn
from hwnas.config import load_experiment
from hwnas.export import load_model
from hwnas.quant import FixedPointQuantizer, PerParameter
from hwnas.space import SearchSpace, SpaceConfig

from .experiments import tiny_mlp


def _static(bits: int, granularity: str = "tensor", **kw) -> dict:
    return {"bits": bits, "learnable": False, "granularity": granularity, "round_mode": "RND", "overflow_mode": "SAT",
            **kw}


def _settle(model: torch.nn.Module, shape: tuple[int, ...]) -> torch.nn.Module:
    """A training batch (BatchNorm statistics move, activation ranges set), then eval with one more forward."""
    g = torch.Generator().manual_seed(1)
    model.train()
    with torch.no_grad():
        model(torch.randn((32, *shape), generator=g) * 2)
    model.eval()
    with torch.no_grad():
        model(torch.randn((16, *shape), generator=g))
    return model


def _inputs(shape: tuple[int, ...]) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    x = torch.randn((40, *shape), generator=g)
    return [x, x * 1e3, x * 1e-3, -x.abs() * 50]  # normal, saturating every input quantizer, tiny, one-sided


def _table_input(model: torch.nn.Module, q: FixedPointQuantizer) -> bool:
    return any(q is m.input_quantizer for m in model.modules()
               if isinstance(m, hn.QActivation) and m.mode == "table")


def _check_converted(model: torch.nn.Module, shape: tuple[int, ...], least: int = 4) -> torch.nn.Module:
    before = {n: (type(q), q.learnable) for n, q in model.named_modules() if isinstance(q, FixedPointQuantizer)}
    conv = hn.to_learnable(model)
    assert conv is not model
    # the original is untouched
    assert before == {n: (type(q), q.learnable) for n, q in model.named_modules() if isinstance(q, FixedPointQuantizer)}
    converted = 0
    for name, q in conv.named_modules():
        if not isinstance(q, FixedPointQuantizer):
            continue
        if _table_input(conv, q):  # a lookup table is indexed by its static input format: kept
            assert not q.learnable, name
            continue
        assert q.learnable and isinstance(q.granularity, PerParameter), name
        assert isinstance(q.f, torch.nn.Parameter) and q.f.requires_grad, name
        converted += 1
    assert converted >= least
    for x in _inputs(shape):
        with torch.no_grad():
            assert torch.equal(model(x), conv(x))
    return conv


@pytest.mark.parametrize(("family", "shape", "over"), [
    ("cnn1d", (2, 16), {"conv_blocks": {"min": 1, "max": 2}, "filters": [4], "kernel": [3], "pooling": ["max", "avg"],
                        "activation": ["relu", "tanh"], "batch_norm": [True], "separable": [False, True]}),
    ("mlp", (16,), {}),
])
def test_search_space_models_convert_bit_exactly(family, shape, over):
    raw = {"family": family, "dense_layers": {"min": 1, "max": 2}, "dense_units": [8],
           "precision": {"weight_bits": [3], "act_bits": [5]}, **over}
    space = SearchSpace(SpaceConfig.model_validate(raw, strict=True), shape, 5)
    rng = np.random.default_rng(0)
    for seed in range(3):
        model = _settle(space.build(space.sample(rng), seed=seed), shape)
        conv = _check_converted(model, shape)
        # same (k, i, f) element by element on the activation quantizers; the weights keep f and need at most i
        for (name, a), (_, b) in zip(model.named_modules(), conv.named_modules(), strict=True):
            if isinstance(a, FixedPointQuantizer) and b.learnable:
                ka, ia, fa = (t.expand(b.k.shape) for t in a.kif())
                kb, ib, fb = b.kif()
                assert torch.equal(ka, kb) and torch.equal(fa, fb), name
                assert torch.equal(ia, ib) if a.batch_dims else bool((ib <= ia).all()), name
        with torch.no_grad():
            assert float(hn.ebops(conv)) <= float(hn.ebops(model))


def test_hand_built_conv_batchnorm_linear_converts_bit_exactly():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        hn.QConv1d(2, 4, 3, padding=1, batch_norm=True, input_quantizer=_static(5),
                   weight_quantizer=_static(3), bias_quantizer=_static(8), output_quantizer=_static(6, signed=False)),
        hn.QActivation("relu"),
        hn.QMaxPool1d(2),
        torch.nn.Flatten(),
        hn.QLinear(4 * 6, 3, input_quantizer=_static(4, signed=False), weight_quantizer=_static(4),
                   bias_quantizer=_static(10, overflow_mode="WRAP")),
        hn.QActivation("identity", input_quantizer=_static(7, round_mode="TRN", overflow_mode="WRAP")),
    )
    _settle(model, (2, 12))
    conv = _check_converted(model, (2, 12))
    assert conv[0].bn is not None  # still fused; the quantizers see the folded values
    assert conv[5].input_quantizer.overflow_mode.value == "WRAP" and conv[5].input_quantizer.round_mode.value == "TRN"
    assert conv[0].output_quantizer.k.shape == (4, 12) and bool((conv[0].output_quantizer.k == 0).all())


def test_converted_model_trains_its_bit_widths():
    torch.manual_seed(0)
    model = torch.nn.Sequential(hn.QLinear(8, 6, input_quantizer=_static(5), weight_quantizer=_static(4, "channel"),
                                           bias_quantizer=_static(8)),
                                hn.QActivation("relu"),
                                hn.QLinear(6, 3, input_quantizer=_static(4, signed=False),
                                           weight_quantizer=_static(3, "channel"), bias_quantizer=_static(8)))
    _settle(model, (8,))
    conv = hn.to_learnable(model)
    bits = [p for q in conv.modules() if isinstance(q, FixedPointQuantizer) for p in q.parameters(recurse=False)]
    assert bits and all(p.requires_grad for p in bits)
    before = [p.detach().clone() for p in bits]
    opt = torch.optim.SGD(conv.parameters(), lr=0.5)
    conv.train()
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    loss = torch.nn.functional.cross_entropy(conv(x), y) + hn.regularization(conv, beta=1e-2, gamma=1e-3)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in bits)
    assert any(not torch.equal(a, p.detach()) for a, p in zip(before, bits, strict=True))


def test_formats_a_learnable_quantizer_cannot_reproduce_raise_naming_the_slot():
    torch.manual_seed(0)
    unsigned = torch.nn.Sequential(hn.QLinear(4, 3, input_quantizer=_static(5),
                                              weight_quantizer=_static(4, "channel", signed=False)))
    _settle(unsigned, (4,))
    assert bool((unsigned[0].weight < 0).any())
    with pytest.raises(ValueError, match=r"^0\.weight_quantizer: .*unsigned"):
        hn.to_learnable(unsigned)
    sym = torch.nn.Sequential(torch.nn.Flatten(), hn.QLinear(4, 3, input_quantizer=_static(5, overflow_mode="SAT_SYM"),
                                                             weight_quantizer=_static(4, overflow_mode="SAT_SYM")))
    _settle(sym, (4,))
    with pytest.raises(ValueError, match=r"^1\.weight_quantizer: .*SAT_SYM"):
        hn.to_learnable(sym)
    # SAT_SYM activations (same (k, i, f) per element) and SAT_SYM weights with a given i convert exactly
    hn.set_quantizers(sym, weight=_static(4, overflow_mode="SAT_SYM", i=0))
    _check_converted(sym, (4,), least=2)
    fresh = torch.nn.Sequential(hn.QActivation("relu", output_quantizer=_static(4)))  # never ran: no ranges yet
    with pytest.raises(ValueError, match=r"^0\.output_quantizer: .*run the model on data"):
        hn.to_learnable(fresh)


def test_local_beta_sweep_refines_a_fixed_precision_search(tmp_path, monkeypatch):
    import hwnas.train.sweep as sweep
    from hwnas.pipeline import local_search_selected, select_models
    from hwnas.search.run import run_search

    text = tiny_mlp(trials=1, dense_min=1, units="[8]", bits="{min: 3, max: 5}", extra=(
        "run:\n  select: [best]\n  local: {enabled: true, method: beta_sweep, beta0: 1.0e-6, beta1: 1.0e-3, "
        "sweep_epochs: 2, max_drop: 1.0}\n"))
    (tmp_path / "exp.yaml").write_text(text)
    exp = load_experiment(tmp_path / "exp.yaml")  # refused before: beta_sweep needed precision mode learned
    assert exp.space.precision.mode == "fixed"
    seen = []
    real = sweep.beta_sweep

    def spy(model, *args, **kwargs):
        seen.append((model, kwargs["config"]))
        return real(model, *args, **kwargs)

    monkeypatch.setattr(sweep, "beta_sweep", spy)
    selection = select_models(exp, run_search(exp, progress=False).study)
    records = local_search_selected(exp, selection, log=lambda _: None)
    (model, config), = seen
    assert config.gamma == exp.space.precision.gamma and config.epochs == 2
    quantizers = [q for q in model.modules() if isinstance(q, FixedPointQuantizer)]
    assert quantizers and all(q.learnable for q in quantizers)
    (rec,) = records.values()
    assert rec["method"] == "beta_sweep" and rec["ranked_by"] == "EBOPs" and rec["candidates"] >= 1
    assert rec["kept"].startswith("HGQ β-sweep from the searched layer-wise bits, epoch")
    assert rec["from_fixed_precision"] is True
    assert math.isfinite(rec["cost"]) and rec["cost"] > 0 and math.isfinite(rec["ebops"])
    kept = load_model(exp.output_dir() / rec["checkpoint"]).model
    kept_q = [q for q in kept.modules() if isinstance(q, FixedPointQuantizer)]
    assert kept_q and all(q.learnable and isinstance(q.granularity, PerParameter) for q in kept_q)
    with torch.no_grad():
        assert float(hn.ebops(kept)) == pytest.approx(rec["ebops"], rel=1e-6)
