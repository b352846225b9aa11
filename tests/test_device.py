"""training.device: the spec is checked, a missing CUDA GPU is one line at the run's start, auto/cpu train through the
whole path on the CPU unchanged, and nothing in a forward pass, the HGQ loss or the trainer creates a tensor on the CPU
implicitly (the CUDA path itself: tests/test_device_cuda.py, skipped without a GPU)."""

from __future__ import annotations

import traceback

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

import hwnas.nn as hn
from hwnas.config import ConfigError, hash_payload, parse_experiment
from hwnas.tasks import load_digits
from hwnas.train import TrainConfig, Trainer, TrainError
from hwnas.train.device import DeviceError, resolve_device, to_cpu

from .experiments import tiny_mlp

NO_CUDA = not torch.cuda.is_available()


def test_device_values_are_checked_with_the_experiment():
    assert parse_experiment(tiny_mlp()).training.device == "auto"
    for ok in ("cpu", "cuda", "cuda:0", "cuda:12"):
        assert parse_experiment(tiny_mlp().replace("epochs: 1", f"epochs: 1, device: '{ok}'")).training.device == ok
    for bad in ("gpu", "cuda:", "cuda:01", "cpu:0", "CUDA", "mps"):
        with pytest.raises(ConfigError, match=r"training\.device: must be auto, cpu, cuda or cuda:N") as err:
            parse_experiment(tiny_mlp().replace("epochs: 1", f"epochs: 1, device: '{bad}'"))
        assert str(err.value).count("\n") == 0  # one line: <file>:<line>: training.device: ...
    with pytest.raises(TrainError, match="device: must be"):
        TrainConfig(device="gpu").validate()
    # where a worker trains is not what it trains: every device joins the same study
    payloads = [hash_payload(parse_experiment(tiny_mlp().replace("epochs: 1", f"epochs: 1, device: {d}")))
                for d in ("auto", "cpu", "cuda")]
    assert payloads[0] == payloads[1] == payloads[2] and "device" not in payloads[0]["training"]


@pytest.mark.skipif(not NO_CUDA, reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_is_one_line_at_the_start(tmp_path, capsys):
    from hwnas.cli import main
    from hwnas.search.objective import TrialContext

    assert resolve_device("auto") == resolve_device("cpu") == torch.device("cpu")
    for spec in ("cuda", "cuda:1"):
        with pytest.raises(DeviceError) as err:
            resolve_device(spec, "training.device")
        msg = str(err.value)
        assert "\n" not in msg and msg.startswith(f"training.device: '{spec}' asks for a CUDA GPU, but ")
        assert "use auto or cpu" in msg
    exp = parse_experiment(tiny_mlp().replace("epochs: 1", "epochs: 1, device: cuda"), base_dir=tmp_path)
    with pytest.raises(DeviceError, match=r"^training\.device: 'cuda'"):
        TrialContext.create(exp)  # before any data is loaded
    with pytest.raises(DeviceError, match=r"^device: 'cuda:0'"):
        Trainer(nn.Linear(2, 2), TrainConfig(device="cuda:0"))
    (tmp_path / "exp.yaml").write_text(tiny_mlp().replace("epochs: 1", "epochs: 1, device: cuda"))
    assert main(["search", str(tmp_path / "exp.yaml"), "--quiet"]) == 2
    err_lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err_lines == [err_lines[0]] and err_lines[0].startswith("hwnas: error: training.device: 'cuda' asks ")
    assert not (tmp_path / "out" / "trials").exists()


def _mlp() -> nn.Sequential:
    return nn.Sequential(hn.QLinear(64, 12), hn.QActivation("relu"),
                         hn.QLinear(12, 10, input_quantizer=dict(hn.DEFAULT_ACTIVATION, signed=False)))


def test_auto_and_cpu_train_bit_for_bit_like_no_device(tmp_path):
    d = load_digits(seed=0)
    train, val = (d.x_train[:300], d.y_train[:300]), (d.x_test[:80], d.y_test[:80])
    states = []
    for device in (None, "cpu", "auto"):
        torch.manual_seed(3)
        model = _mlp()
        cfg = TrainConfig(epochs=2, beta=1e-6, gamma=1e-6, seed=5, progress=False, device=device)
        Trainer(model, cfg, checkpoint_dir=tmp_path / str(device)).fit(train, val)
        states.append(model.state_dict())
    for name, value in states[0].items():
        assert torch.equal(value, states[1][name]) and torch.equal(value, states[2][name]), name
    # a checkpoint resumes whatever device it is asked for (it holds CPU tensors; the device is not compared)
    resumed = _mlp()
    cfg = TrainConfig(epochs=2, beta=1e-6, gamma=1e-6, seed=5, progress=False, device="cpu")
    hist = Trainer(resumed, cfg, checkpoint_dir=tmp_path / "auto").fit(train, val, resume=True)
    assert len(hist.records) == 2 and all(torch.equal(v, states[2][k]) for k, v in resumed.state_dict().items())
    state = {"a": torch.ones(2), "b": [torch.zeros(1)]}
    assert to_cpu(state) is state  # CPU state is written as it is, byte for byte


def test_a_trial_with_device_auto_trains_measures_and_saves_on_the_cpu(tmp_path):
    from hwnas.export import load_model
    from hwnas.search.objective import TrialContext, train_and_measure

    exp = parse_experiment(tiny_mlp(trials=1), base_dir=tmp_path)
    ctx = TrialContext.create(exp)
    assert ctx.train_device == torch.device("cpu")
    point = ctx.space.extreme(True)
    result = train_and_measure(point, ctx, 0)
    again = train_and_measure(point, ctx, 0, checkpoint_dir=tmp_path / "again")
    assert result.metrics == again.metrics  # same seed, same result
    bundle = load_model(tmp_path / "out" / "trials" / "00000" / "model.pt")
    assert all(t.device.type == "cpu" for t in bundle.model.state_dict().values())


_FACTORIES = {torch.tensor, torch.zeros, torch.ones, torch.full, torch.empty, torch.arange, torch.linspace,
              torch.eye, torch.rand, torch.randn, torch.randint, torch.randperm, torch.scalar_tensor, torch.as_tensor}


class _ImplicitCpu(TorchFunctionMode):
    """Records every tensor factory called without ``device=`` (on a GPU it would make a CPU tensor)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        if func in _FACTORIES and kwargs.get("device") is None \
                and not (func is torch.as_tensor and args and isinstance(args[0], torch.Tensor)):
            self.seen.append(f"{func.__name__} at\n{''.join(traceback.format_stack(limit=5)[:-1])}")
        return func(*args, **kwargs)


def test_no_tensor_is_created_implicitly_on_the_cpu_in_training():
    """What runs per step on the training device — forward, HGQ loss, backward, EBOPs, the trainer loop, calibration
    and PTQ — creates no tensor without a device (such a tensor lands on the CPU next to CUDA operands)."""
    from hwnas.quant import calibrate
    from hwnas.train.ptq import post_training_quantize

    torch.manual_seed(0)
    conv = nn.Sequential(hn.QConv1d(2, 4, 3), hn.QActivation("relu"), hn.QMaxPool1d(2), hn.QAvgPool1d(1),
                         nn.Flatten(), hn.QLinear(12, 6), hn.QLayerNorm(6), hn.QSoftmax())
    wrap = nn.Sequential(hn.QLinear(8, 6, input_quantizer=dict(hn.DEFAULT_ACTIVATION, overflow_mode="WRAP")),
                         hn.QActivation("relu"), hn.QLinear(6, 3, input_quantizer=None))
    for model, x in ((conv, torch.randn(16, 2, 8)), (wrap, torch.randn(16, 8)), (_mlp(), torch.randn(16, 64))):
        model(x[:2])
        probe = _ImplicitCpu()
        with probe:
            out = model(x)
            loss = out.square().mean() + hn.regularization(model, 1e-6, 1e-6)
            loss.backward()
            float(hn.ebops(model).detach())
            model.eval()
            model(x)
            calibrate(model, x)
        assert not probe.seen, probe.seen[0]
    d = load_digits(seed=0)
    model = _mlp()
    probe = _ImplicitCpu()
    with probe:
        Trainer(model, TrainConfig(epochs=1, beta=1e-6, gamma=1e-6, progress=False, device="cpu")).fit(
            (d.x_train[:128], d.y_train[:128]), (d.x_test[:32], d.y_test[:32]))
        post_training_quantize(model, lambda m: 0.0, d.x_train[:64], weight_bits=4, activation_bits=8, output_bits=8)
    assert not probe.seen, probe.seen[0]
