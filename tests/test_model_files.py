"""Model files cannot run code: allow-listed loading, digests, the first format, ``--trust``."""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

import hwnas.nn as hn
from hwnas.cli import main
from hwnas.errors import HwnasError, UnsafeFileError
from hwnas.export import ModelFileError, allow_classes, load_model, save_model
from hwnas.export.bundle import LEGACY_FORMAT, MANIFEST, PAYLOAD


def small_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(hn.QLinear(8, 6, input_quantizer=dict(bits=6, learnable=False)), hn.QActivation("relu"),
                          hn.QLinear(6, 3))
    model(torch.randn(32, 8))
    return model.eval()


class Payload:
    """Unpickling this writes ``marker`` (what a hostile model file would do with any code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def legacy_file(path: Path, model: nn.Module, extra: object = None) -> Path:
    """A file of the first format, written as hwnas before format 2 wrote it (plus an optional extra object)."""
    data = {"format": LEGACY_FORMAT, "model": model, "input_shape": [8], "test_inputs": torch.randn(4, 8),
            "metadata": {"trial": 3}}
    if extra is not None:
        data["extra"] = extra
    torch.save(data, path)
    return path


def rewrite_payload(path: Path, payload: bytes, *, fix_digest: bool = True) -> None:
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read(MANIFEST))
    if fix_digest:
        manifest["payload_sha256"] = hashlib.sha256(payload).hexdigest()
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(MANIFEST, json.dumps(manifest))
        z.writestr(PAYLOAD, payload)


def test_round_trip_keeps_outputs_inputs_and_metadata(tmp_path: Path) -> None:
    model = small_model()
    x = torch.randn(16, 8)
    path = save_model(model, tmp_path / "m.pt", (8,), test_inputs=x,
                      metadata={"trial": 7, "metrics": {"accuracy": 0.5, "bops": float("inf")}, "shape": (1, 2)})
    assert zipfile.is_zipfile(path)
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read(MANIFEST))
    assert manifest["format"] == "hwnas-model/2" and manifest["input_shape"] == [8]
    bundle = load_model(path)
    assert torch.equal(bundle.model(x), model(x))
    assert torch.equal(bundle.test_inputs, x) and bundle.input_shape == (8,)
    assert bundle.metadata["trial"] == 7 and bundle.metadata["shape"] == [1, 2]
    assert bundle.metadata["metrics"]["bops"] == float("inf")
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))


def test_every_searched_layer_kind_loads_without_trust(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        hn.QConv1d(2, 4, 3, batch_norm=True), hn.QActivation("relu"), hn.QMaxPool1d(2),
        hn.QConv1d(4, 4, 3, groups=4), hn.QAvgPool1d(2), nn.Flatten(), hn.QLinear(24, 5))
    model(torch.randn(8, 2, 30))
    hn.set_quantizers(model, weight=dict(kind="scaled", bits=8, granularity="channel"))
    model.eval()
    x = torch.randn(4, 2, 30)
    path = save_model(model, tmp_path / "m.pt", (2, 30))
    assert torch.equal(load_model(path).model(x), model(x))


def test_graph_layers_load_without_trust_and_own_graph_modules_with_it(tmp_path: Path) -> None:
    """Residual blocks, LayerNorm and softmax are hwnas layers; a user's own graph module needs --trust."""
    from .graph_models import GRAPH_MODELS

    torch.manual_seed(0)
    model = nn.Sequential(hn.QConv1d(2, 4, 3, padding=1), hn.QResidualBlock(1, 4, 4), nn.Flatten(),
                          hn.QLinear(32, 8), hn.QLayerNorm(8), hn.QSoftmax())
    x = torch.randn(4, 2, 8)
    model(x)
    model.eval()
    path = save_model(model, tmp_path / "dag.pt", (2, 8))
    assert torch.equal(load_model(path).model(x), model(x))
    own, shape = GRAPH_MODELS["residual1d"]()
    allow_classes(type(own))
    try:
        own_path = save_model(own, tmp_path / "own.pt", shape)
    finally:
        from hwnas.export import bundle

        bundle._extra_classes.remove(type(own))
    with pytest.raises(UnsafeFileError, match=r"ResidualCNN1d"):
        load_model(own_path)
    x = torch.randn(4, *shape)
    assert torch.equal(load_model(own_path, trust=True).model(x), own(x))


def test_poisoned_legacy_file_is_refused_and_runs_nothing(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "marker"
    path = legacy_file(tmp_path / "evil.pt", small_model(), Payload(marker))
    with pytest.raises(UnsafeFileError, match=r"builtins\.exec"):
        load_model(path)
    assert not marker.exists()
    for argv in (["verify", str(path), "--paths", "reference"],
                 ["export", str(path), "--to", "qonnx", "--out", str(tmp_path / "out.onnx")]):
        assert main(argv) == 2
        assert not marker.exists()
        err = capsys.readouterr().err
        assert err.startswith("hwnas: error:") and "Traceback" not in err and "--trust" in err
    assert not (tmp_path / "out.onnx").exists()


def test_poisoned_payload_with_a_valid_digest_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = save_model(small_model(), tmp_path / "m.pt", (8,))
    buf = io.BytesIO()
    torch.save({"model": small_model(), "test_inputs": None, "x": Payload(marker)}, buf)
    rewrite_payload(path, buf.getvalue())
    with pytest.raises(UnsafeFileError):
        load_model(path)
    assert not marker.exists()


def test_trust_admits_module_classes_but_never_code(tmp_path: Path, capsys) -> None:
    model = Custom()
    model(torch.randn(4, 8))
    own = tmp_path / "own.pt"
    torch.save({"format": LEGACY_FORMAT, "model": model, "input_shape": [8]}, own)
    with pytest.raises(UnsafeFileError, match="Custom"):
        load_model(own)
    assert isinstance(load_model(own, trust=True).model, Custom)  # the user's own layer, imported, weights-only
    marker = tmp_path / "marker"
    evil = legacy_file(tmp_path / "evil.pt", small_model(), Payload(marker))
    with pytest.raises(UnsafeFileError, match=r"builtins\.exec.*even with --trust"):
        load_model(evil, trust=True)
    assert main(["verify", str(evil), "--paths", "reference", "--trust"]) == 2
    assert not marker.exists() and "Traceback" not in capsys.readouterr().err


def test_benign_legacy_file_loads_without_trust(tmp_path: Path) -> None:
    model = small_model()
    path = legacy_file(tmp_path / "old.pt", model)
    bundle = load_model(path)
    x = torch.randn(5, 8)
    assert torch.equal(bundle.model(x), model(x)) and bundle.metadata == {"trial": 3}


def test_tampered_truncated_and_foreign_files_are_clear_errors(tmp_path: Path) -> None:
    path = save_model(small_model(), tmp_path / "m.pt", (8,))
    good = path.read_bytes()
    with zipfile.ZipFile(path) as z:
        payload = z.read(PAYLOAD)
    flipped = bytearray(payload)
    flipped[len(flipped) // 2] ^= 0xFF
    rewrite_payload(path, bytes(flipped), fix_digest=False)
    with pytest.raises(ModelFileError, match="SHA-256"):
        load_model(path)
    cases = {"truncated": good[: len(good) // 2], "empty": b"", "text": b"hello\n", "random": bytes(range(256)) * 8,
             "json": b'{"format": "hwnas-model/1"}'}
    for name, data in cases.items():
        p = tmp_path / f"{name}.pt"
        p.write_bytes(data)
        with pytest.raises(HwnasError):
            load_model(p)
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model(tmp_path / "missing.pt")
    newer = tmp_path / "newer.pt"
    with zipfile.ZipFile(newer, "w") as z:
        z.writestr(MANIFEST, json.dumps({"format": "hwnas-model/9"}))
    with pytest.raises(ModelFileError, match="hwnas-model/9"):
        load_model(newer)


def test_non_finite_weights_are_refused(tmp_path: Path, capsys) -> None:
    model = small_model()
    path = legacy_file(tmp_path / "nan.pt", model)
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    legacy_file(path, model)
    with pytest.raises(ModelFileError, match=r"0\.weight"):
        load_model(path)
    assert main(["verify", str(path), "--paths", "reference"]) == 2
    assert "0.weight" in capsys.readouterr().err


class Custom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = hn.QLinear(8, 2)

    def forward(self, x):
        return self.lin(x)


def test_own_classes_need_registering(tmp_path: Path) -> None:
    model = Custom()
    model(torch.randn(4, 8))
    with pytest.raises(ValueError, match="allow_classes"):
        save_model(model, tmp_path / "c.pt", (8,))
    assert not (tmp_path / "c.pt").exists()
    torch.save({"format": LEGACY_FORMAT, "model": model, "input_shape": [8]}, tmp_path / "c1.pt")
    with pytest.raises(UnsafeFileError, match="Custom"):
        load_model(tmp_path / "c1.pt")
    allow_classes(Custom)
    try:
        path = save_model(model, tmp_path / "c.pt", (8,))
        assert isinstance(load_model(path).model, Custom)
    finally:
        from hwnas.export import bundle

        bundle._extra_classes.remove(Custom)
