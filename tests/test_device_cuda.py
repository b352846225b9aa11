"""training.device on a CUDA GPU: the quantizers give the same codes as on the CPU and as the NumPy reference, HGQ
trains there, and everything that leaves the GPU (checkpoints, saved trial models) holds CPU tensors.

Skipped without a CUDA GPU. What is compared is exact by construction — fixed-point (and scaled-integer) quantizer
outputs for identical inputs — never float training trajectories, which differ between devices in the last bits.
``HWNAS_TEST_DEVICE=cpu`` runs the same checks with "cpu" in place of "cuda" (a dry run of the tests' own logic on a
machine without a GPU).
"""

from __future__ import annotations

import copy
import io
import itertools
import math
import os

import numpy as np
import pytest
import torch
from torch import nn

import hwnas.nn as hn
from hwnas.quant import FixedPointQuantizer, OverflowMode, RoundingMode, quantize_fixed
from hwnas.quant.reference import quantize_fixed_np
from hwnas.tasks import load_digits
from hwnas.train import TrainConfig, Trainer

DEVICE = os.environ.get("HWNAS_TEST_DEVICE", "cuda")

pytestmark = pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(),
                                reason="no CUDA GPU on this machine")


@pytest.fixture(autouse=True)
def _no_tf32():
    """Full float32 matmuls and convolutions (TF32 would round the fixed-point operands of a layer)."""
    if not torch.cuda.is_available():
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope="module")
def digits():
    return load_digits(seed=0)


def _mlp() -> nn.Sequential:
    return nn.Sequential(hn.QLinear(64, 16), hn.QActivation("relu"),
                         hn.QLinear(16, 10, input_quantizer=dict(hn.DEFAULT_ACTIVATION, signed=False)))


def _device_of(state: object) -> set[str]:
    """The device types of every tensor in a (nested) state."""
    if isinstance(state, torch.Tensor):
        return {state.device.type}
    if isinstance(state, dict):
        return set().union(*(_device_of(v) for v in state.values())) if state else set()
    if isinstance(state, list | tuple):
        return set().union(*(_device_of(v) for v in state)) if state else set()
    return set()


def _stored_devices(path) -> set[str]:
    """Devices of the tensors a trainer checkpoint stores (read without map_location: as written)."""
    outer = torch.load(path, weights_only=True)
    return _device_of(torch.load(io.BytesIO(outer["payload"]), weights_only=True))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_quantize_fixed_on_the_device_equals_the_cpu_and_the_reference(dtype):
    rng = np.random.default_rng(11)
    shape = (6, 256)
    k = rng.integers(0, 2, size=shape)
    i = rng.integers(-3, 7, size=shape)
    f = np.maximum(rng.integers(-2, 10, size=shape), -k - i)  # widths >= 0, some 0 (pruned)
    lsb = np.ldexp(1.0, -f)
    grid = rng.integers(-(2 ** 12), 2 ** 12, size=shape) * lsb / 4  # quarter-LSB grid: exact ties
    x = np.where(rng.random(shape) < 0.5, grid, rng.normal(0, 1.5 * np.ldexp(1.0, i)))
    xt = torch.tensor(x, dtype=dtype)
    x_held = xt.double().numpy()  # the values the dtype holds
    kif = [torch.tensor(v, dtype=dtype) for v in (k, i, f)]
    for r, o in itertools.product([m.value for m in RoundingMode], [m.value for m in OverflowMode]):
        on_cpu = quantize_fixed(xt, *kif, r, o)
        xd = xt.clone().to(DEVICE).requires_grad_(True)
        on_dev = quantize_fixed(xd, *(t.to(DEVICE) for t in kif), r, o)
        on_dev.sum().backward()
        assert on_dev.device.type == torch.device(DEVICE).type
        assert torch.equal(on_dev.detach().cpu(), on_cpu), (r, o)
        assert np.array_equal(on_dev.detach().cpu().double().numpy(), quantize_fixed_np(x_held, k, i, f, r, o)), (r, o)
        xc = xt.clone().requires_grad_(True)  # a leaf of its own
        quantize_fixed(xc, *kif, r, o).sum().backward()
        assert torch.equal(xd.grad.cpu(), xc.grad), (r, o)  # straight-through mask: 0 or 1 per element


def test_quantizer_modules_on_the_device_give_the_cpu_codes():
    torch.manual_seed(4)
    layer = hn.QLinear(24, 12)
    x = torch.randn(64, 24) * 3
    specs = [None, {"kind": "scaled", "bits": 6, "granularity": "channel"}, {"kind": "bipolar"},
             {"kind": "fixed", "bits": 5, "granularity": "channel", "learnable": False}]
    for spec in specs:
        cpu = copy.deepcopy(layer)
        dev = copy.deepcopy(layer).to(DEVICE)
        if spec is not None:  # fresh quantizers made on each side: on the device they are made there
            hn.set_quantizers(cpu, weight=spec)
            hn.set_quantizers(dev, weight=spec)
            assert {t.device.type for t in dev.buffers()} <= {torch.device(DEVICE).type}
        with torch.no_grad():
            assert torch.equal(dev.quantized_weight().cpu(), cpu.quantized_weight()), spec
            for q_dev, q_cpu in ((dev.input_quantizer, cpu.input_quantizer),):
                assert torch.equal(q_dev(x.to(DEVICE)).cpu(), q_cpu(x)), spec
        assert torch.equal(hn.ebops(dev).detach().cpu(), hn.ebops(cpu).detach()), spec


def test_hgq_trains_on_the_device_and_its_quantizers_match_the_cpu_bit_for_bit(digits, tmp_path):
    from hwnas.train.trainer import load_checkpoint

    torch.manual_seed(0)
    model = _mlp()
    cfg = TrainConfig(epochs=3, beta=1e-6, gamma=1e-6, seed=1, progress=False, device=DEVICE)
    hist = Trainer(model, cfg, checkpoint_dir=tmp_path).fit((digits.x_train, digits.y_train),
                                                           (digits.x_test, digits.y_test))
    assert {p.device.type for p in model.parameters()} == {torch.device(DEVICE).type}  # it stays there
    last = hist.records[-1]
    assert math.isfinite(last.train_loss) and last.ebops > 0 and last.val_metric > 0.3
    assert _stored_devices(tmp_path / "last.pt") == {"cpu"}  # checkpoints hold CPU tensors
    # every fixed-point quantizer of the trained model: on the device == the same quantizer on the CPU == NumPy
    model.eval()
    on_cpu = copy.deepcopy(model).cpu()
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def keep(name: str):
        def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            seen.setdefault(name, (args[0].detach(), out.detach()))
        return hook

    hooks = [q.register_forward_hook(keep(name)) for name, q in model.named_modules()
             if isinstance(q, FixedPointQuantizer)]
    with torch.no_grad():
        logits = model(digits.x_test.to(DEVICE))
    for h in hooks:
        h.remove()
    assert len(seen) == 6  # input, weight and bias quantizers of both layers (the ReLU has none)
    for name, (inp, out) in seen.items():
        q = on_cpu.get_submodule(name)
        with torch.no_grad():
            assert torch.equal(out.cpu(), q(inp.cpu())), name
        k, i, f = (t.numpy() for t in q.kif())
        if float(np.max(k + i + f)) <= 24:  # within float32's exact range
            ref = quantize_fixed_np(inp.cpu().double().numpy(), k, i, f, q.round_mode, q.overflow_mode)
            assert np.array_equal(out.cpu().double().numpy(), ref), name
    with torch.no_grad():
        agree = (logits.argmax(1).cpu() == on_cpu(digits.x_test).argmax(1)).float().mean()
    assert agree >= 0.98  # the float accumulations may differ in the last bit, the decisions hardly ever
    # the checkpoint resumes on the CPU (the device is not part of the settings)
    resumed = _mlp()
    Trainer(resumed, TrainConfig(**{**cfg.__dict__, "device": "cpu"}), checkpoint_dir=tmp_path).fit(
        (digits.x_train, digits.y_train), (digits.x_test, digits.y_test), resume=True)
    state = load_checkpoint(tmp_path / "last.pt")["model"]
    assert all(torch.equal(v, state[k]) for k, v in resumed.state_dict().items())


def test_ptq_local_search_and_sweep_run_on_the_device(digits, tmp_path):
    from hwnas.train import beta_sweep, local_search, post_training_quantize
    from hwnas.train.trainer import evaluate

    off = dict(input_quantizer=None, weight_quantizer=None, bias_quantizer=None)
    torch.manual_seed(2)
    model = nn.Sequential(hn.QLinear(64, 16, **off), hn.QActivation("relu"), hn.QLinear(16, 10, **off))
    train, val = (digits.x_train, digits.y_train), (digits.x_test, digits.y_test)
    cfg = TrainConfig(epochs=2, progress=False, device=DEVICE)
    Trainer(model, cfg).fit(train, val)
    r = post_training_quantize(model, lambda m: evaluate(m, *val)[0], digits.x_train,  # calibration data on the CPU
                               weight_bits=6, activation_bits=8, output_bits=8)
    assert {t.device.type for t in r.model.state_dict().values()} == {torch.device(DEVICE).type}
    assert r.quant_metric > 0.3
    found = local_search(model, train, val, [(8, 3)], config=cfg, warmup_epochs=1, iterations=1,
                         epochs_per_iteration=1)
    assert found.results[0].best_metric > 0.3
    torch.manual_seed(3)
    hgq = _mlp()
    sweep = beta_sweep(hgq, train, val, tmp_path / "sweep", config=TrainConfig(epochs=2, gamma=1e-6, progress=False,
                                                                               device=DEVICE))
    assert sweep.checkpoints and all(_stored_devices(c.path) == {"cpu"} for c in sweep.checkpoints)


def test_a_trial_trains_on_the_device_and_saves_a_cpu_model(tmp_path, monkeypatch):
    import hwnas.export
    from hwnas.config import parse_experiment
    from hwnas.search.objective import TrialContext, train_and_measure

    from .experiments import tiny_mlp

    saved: list[set[str]] = []
    real = hwnas.export.save_model

    def spy(model, *args, **kwargs):
        saved.append({t.device.type for t in model.state_dict().values()})
        return real(model, *args, **kwargs)

    monkeypatch.setattr(hwnas.export, "save_model", spy)
    exp = parse_experiment(tiny_mlp(trials=1).replace("epochs: 1", f"epochs: 2, device: '{DEVICE}', kfold: 2"),
                           base_dir=tmp_path)
    ctx = TrialContext.create(exp)
    assert ctx.train_device.type == torch.device(DEVICE).type
    result = train_and_measure(ctx.space.extreme(True), ctx, 0)
    assert saved == [{"cpu"}] and 0.0 <= result.metrics["accuracy"] <= 1.0 and len(result.folds) == 2
    assert result.metrics["bops"] > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_cuda_device_names_resolve_and_a_missing_index_is_one_line():
    from hwnas.train.device import DeviceError, resolve_device

    n = torch.cuda.device_count()
    assert resolve_device("auto").type == "cuda" and resolve_device("cuda:0") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", torch.cuda.current_device())
    with pytest.raises(DeviceError, match=rf"^training\.device: 'cuda:{n}' is not a device of this machine: this "
                       rf"machine has {n} CUDA device"):
        resolve_device(f"cuda:{n}", "training.device")


def test_a_supernet_trains_on_the_device_and_its_checkpoint_resumes_anywhere(tmp_path):
    from hwnas.supernet import Supernet, SupernetTrainConfig, train_supernet
    from hwnas.supernet.training import load_supernet

    from .test_supernet import data, space_of

    space = space_of()
    x, y = data(64)
    config = SupernetTrainConfig(epochs=2, batch_size=32, warmup_epochs=1, random_subnets=1, seed=7, device=DEVICE)
    sn = Supernet(space, seed=0)
    history = train_supernet(sn, x, y, config, checkpoint=tmp_path / "sn.pt")
    assert len(history.epochs) == 2 and all(math.isfinite(e.loss) for e in history.epochs)
    assert {p.device.type for p in sn.parameters()} == {torch.device(DEVICE).type}
    assert _stored_devices(tmp_path / "sn.pt") == {"cpu"}
    model = sn.extract(space.extreme(False), x[:32])  # x on the CPU: moved to the supernet's device
    with torch.no_grad():
        assert model(x[:8].to(DEVICE)).shape == (8, space.n_classes)
    on_cpu = Supernet(space, seed=3)
    load_supernet(on_cpu, tmp_path / "sn.pt")
    assert all(torch.equal(v.cpu(), on_cpu.state_dict()[k]) for k, v in sn.state_dict().items())
