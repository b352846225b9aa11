"""Output folders of the exporters (hwnas.export.folders): nothing hwnas did not write is ever replaced.

Every export path (``hwnas export --to hls4ml|rtl|qonnx``, ``verify --out``, ``synth --out``, the pipeline's
export stage) writes into a new or empty folder or into an earlier hwnas export (with ``--force``); a folder
with other files is refused with one line and left exactly as it was (bytes, names and permissions).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from torch import nn

from hwnas.cli import main
from hwnas.export import ExportError, save_model
from hwnas.export.folders import MANIFEST, FolderError, Staging, check_folder, claim_folder, foreign_files
from tests.test_export_hls4ml import small_model

pytest.importorskip("hls4ml")
pytest.importorskip("alkaid")
needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not on PATH (hls4ml's C emulation)")

PATHS = ["hls4ml", "rtl", "qonnx"]


def tiny_model() -> nn.Module:
    return small_model()  # the hls4ml tests' 6-8-3 fixed-point MLP


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(save_model(tiny_model(), tmp_path_factory.mktemp("model") / "m.pt", (6,)))


def snapshot(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path under ``root`` (and root itself) with its permission bits and, for files, its bytes."""
    out: dict[str, tuple[int, bytes | None]] = {".": (stat.S_IMODE(root.stat().st_mode), None)}
    for p in sorted(root.rglob("*")):
        mode = stat.S_IMODE(p.lstat().st_mode)
        out[p.relative_to(root).as_posix()] = (mode, p.read_bytes() if p.is_file() else None)
    return out


def user_folder(path: Path) -> Path:
    """A folder of someone else's: files, a subfolder, unusual permissions."""
    path.mkdir()
    (path / "notes.txt").write_text("my notes")
    (path / "data").mkdir()
    (path / "data" / "x.bin").write_bytes(bytes(range(256)))
    (path / ".hidden").write_text("dotfile")
    (path / "notes.txt").chmod(0o640)
    path.chmod(0o750)
    return path


def export(model_file: str, to: str, out: Path | str, *extra: str) -> int:
    return main(["export", model_file, "--to", to, "--out", str(out), *extra])


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hwnas: error: "), err
    assert "Traceback" not in err[0]
    return err[0]


# ------------------------------------------------------------------------------------ foreign folders
@pytest.mark.parametrize("to", PATHS)
def test_a_foreign_folder_is_refused_and_left_unchanged(tmp_path: Path, model_file: str, to: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = user_folder(tmp_path / "mine")
    before = snapshot(out)
    assert export(model_file, to, out) == 2
    line = one_error_line(capsys)
    assert str(out) in line and "not written by hwnas" in line and "--force" in line
    assert export(model_file, to, out, "--force") == 2  # --force never touches files hwnas did not write
    one_error_line(capsys)
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no temporary folder left beside it


@pytest.mark.parametrize("to", ["hls4ml", "rtl"])
def test_out_dot_in_a_folder_with_files_changes_nothing(tmp_path: Path, model_file: str, to: str,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    cwd = user_folder(tmp_path / "work")
    monkeypatch.chdir(cwd)
    before = snapshot(cwd)
    for extra in ((), ("--force",)):
        assert export(model_file, to, ".", *extra) == 2
        assert str(cwd) in one_error_line(capsys)
        assert snapshot(cwd) == before  # nothing deleted, permissions kept (0750, not 0700)
    assert Path.cwd() == cwd and sorted(p.name for p in tmp_path.iterdir()) == ["work"]


def test_out_dot_in_an_empty_folder_keeps_the_folder(tmp_path: Path, model_file: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = tmp_path / "empty"
    cwd.mkdir(mode=0o751)
    cwd.chmod(0o751)
    ino = cwd.stat().st_ino
    monkeypatch.chdir(cwd)
    assert export(model_file, "rtl", ".") == 0
    assert (cwd / "hwnas_rtl.json").is_file() and (cwd / MANIFEST).is_file()
    assert export(model_file, "rtl", ".", "--force") == 0  # replaced entry by entry, the folder itself stays
    st = cwd.stat()
    assert st.st_ino == ino and stat.S_IMODE(st.st_mode) == 0o751 and Path.cwd() == cwd
    assert not [p for p in cwd.iterdir() if p.name.startswith(".hwnas-") and p.name != MANIFEST]


# ------------------------------------------------------------------------------------- earlier exports
@pytest.mark.parametrize("to", PATHS)
def test_an_earlier_export_is_replaced_only_with_force(tmp_path: Path, model_file: str, to: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "prj"
    assert export(model_file, to, out) == 0
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask  # not the private 0700 of a temporary folder
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["format"] == "hwnas-export" and manifest["wrote"]
    assert all((out / p).exists() or os.path.lexists(out / p) for p in manifest["wrote"])
    capsys.readouterr()
    before = snapshot(out)
    assert export(model_file, to, out) == 2
    line = one_error_line(capsys)
    assert "earlier hwnas export" in line and "--force" in line
    assert snapshot(out) == before
    edited = out / {"hls4ml": "README.md", "rtl": "hwnas_rtl.json", "qonnx": "model.qonnx.onnx"}[to]
    edited.write_text("edited")  # a file hwnas wrote: --force replaces it
    assert export(model_file, to, out, "--force") == 0
    assert edited.read_bytes() != b"edited"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prj"]
    assert not [p for p in out.iterdir() if p.name.startswith(".hwnas-") and p.name != MANIFEST]


@pytest.mark.parametrize("where", ["notes.txt", "src/notes.txt"])
def test_a_foreign_file_inside_an_export_refuses_force(tmp_path: Path, model_file: str, where: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Documented choice: a file someone added inside an hwnas export makes --force refuse (it survives)."""
    out = tmp_path / "rtl"
    assert export(model_file, "rtl", out) == 0
    (out / where).write_text("mine")
    capsys.readouterr()
    before = snapshot(out)
    assert export(model_file, "rtl", out, "--force") == 2
    line = one_error_line(capsys)
    assert where in line and "did not write" in line
    assert snapshot(out) == before and (out / where).read_text() == "mine"


def test_nested_exports_count_as_hwnas_files(tmp_path: Path) -> None:
    out = claim_folder(tmp_path / "c")
    inner = tmp_path / "c" / "sub"
    with Staging(inner) as stage:
        (stage.path / "a.v").write_text("module a; endmodule")
    assert foreign_files(out) == [] and check_folder(out, replace=True) == "ours"
    (inner / "x").write_text("mine")
    assert foreign_files(out) == ["sub/x"]
    with pytest.raises(FolderError, match="sub/x"):
        check_folder(out, replace=True)


# ------------------------------------------------------------------------------- files and parents
@pytest.mark.parametrize("command", ["export-hls4ml", "export-rtl", "verify", "synth"])
def test_a_file_where_the_folder_should_be(tmp_path: Path, model_file: str, command: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "out"
    f.write_text("a file")
    for out in (f, f / "sub"):
        if command.startswith("export"):
            code = export(model_file, command.split("-")[1], out)
        elif command == "verify":
            code = main(["verify", model_file, "--paths", "qonnx", "--samples", "8", "--quiet", "--out", str(out)])
        else:
            code = main(["synth", model_file, "--target", "ZCU104", "--out", str(out), "--quiet"])
        assert code == 2
        assert "is a file, not a folder" in one_error_line(capsys)
    assert f.read_text() == "a file" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_parent_that_cannot_be_written(tmp_path: Path, model_file: str, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    real_mkdir = os.mkdir

    def mkdir(path, mode=0o777, *args, **kwargs):  # root ignores chmod 0555, so deny like a read-only folder
        if Path(path).parent == ro:
            raise PermissionError(13, "Permission denied", str(path))
        return real_mkdir(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    assert export(model_file, "hls4ml", ro / "prj") == 2
    line = one_error_line(capsys)
    assert str(ro / "prj") in line and "Permission denied" in line
    assert list(ro.iterdir()) == []


def test_a_single_onnx_file_is_overwritten_only_with_force(tmp_path: Path, model_file: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"someone else's model")
    assert export(model_file, "qonnx", target) == 2
    assert "--force" in one_error_line(capsys) and target.read_bytes() == b"someone else's model"
    assert export(model_file, "qonnx", target, "--force") == 0
    assert target.read_bytes().startswith(b"\x08")  # an ONNX protobuf now
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    folder = tmp_path / "dir.onnx"
    folder.mkdir()
    capsys.readouterr()
    assert export(model_file, "qonnx", folder, "--force") == 2
    assert "is a folder" in one_error_line(capsys) and list(folder.iterdir()) == []


# --------------------------------------------------------------------------------- failures half-way
@pytest.mark.parametrize("to", ["hls4ml", "rtl"])
def test_a_failure_mid_export_leaves_the_previous_export(tmp_path: Path, model_file: str, to: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "prj"
    assert export(model_file, to, out) == 0
    before = snapshot(out)
    if to == "hls4ml":
        import hwnas.export.hls4ml as mod

        def boom(*args, **kwargs):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(mod, "_write_csv", boom)
    else:
        from alkaid.codegen import RTLModel

        real_write = RTLModel.write

        def boom(self, *args, **kwargs):
            real_write(self, *args, **kwargs)  # the whole new project is written (in the temporary folder), then
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(RTLModel, "write", boom)
    assert export(model_file, to, out, "--force") == 2
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prj"]


def test_a_failure_while_moving_into_place_is_rolled_back(tmp_path: Path, model_file: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import hwnas.export.folders as folders

    out = tmp_path / "prj"
    assert export(model_file, "hls4ml", out) == 0
    before = snapshot(out)
    real_rename = os.rename
    calls = {"n": 0}

    def rename(src, dst, *args, **kwargs):
        if Path(src).parent.name.startswith(".hwnas-tmp-"):  # moving the new project in
            calls["n"] += 1
            if calls["n"] == 3:
                raise OSError(5, "Input/output error")
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(folders.os, "rename", rename)
    assert export(model_file, "hls4ml", out, "--force") == 2
    assert calls["n"] == 3 and snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prj"]


# ------------------------------------------------------------------------------------- verify, synth
def test_verify_out_follows_the_rule(tmp_path: Path, model_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["verify", model_file, "--paths", "qonnx", "--samples", "8", "--quiet", "--out"]
    mine = user_folder(tmp_path / "mine")
    before = snapshot(mine)
    assert main([*args, str(mine), "--force"]) == 2
    assert "not written by hwnas" in one_error_line(capsys) and snapshot(mine) == before
    art = tmp_path / "art"
    assert main([*args, str(art)]) == 0 and (art / "model.qonnx.onnx").is_file()
    capsys.readouterr()
    assert main([*args, str(art)]) == 2
    assert "--force" in one_error_line(capsys)
    assert main([*args, str(art), "--force"]) == 0


def test_synth_out_is_checked_before_anything_runs(tmp_path: Path, model_file: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    mine = user_folder(tmp_path / "mine")
    before = snapshot(mine)
    assert main(["synth", model_file, "--target", "ZCU104", "--out", str(mine), "--quiet", "--force"]) == 2
    assert "not written by hwnas" in one_error_line(capsys) and snapshot(mine) == before


@needs_gxx
def test_compiled_projects_can_be_replaced(tmp_path: Path, model_file: str) -> None:
    """What hwnas's own compile adds (the emulation library) is recorded, so --force still replaces."""
    args = ["verify", model_file, "--paths", "hls4ml", "--samples", "8", "--quiet", "--out", str(tmp_path / "v")]
    assert main(args) == 0
    wrote = json.loads((tmp_path / "v" / "hls4ml" / MANIFEST).read_text())["wrote"]
    assert any(p.endswith(".so") for p in wrote)
    # replacing that folder needs no second C++ build: the export alone must accept the compiled project
    assert main(["export", model_file, "--to", "hls4ml", "--out", str(tmp_path / "v" / "hls4ml"), "--force",
                 "--quiet"]) == 0
    assert not any((tmp_path / "v" / "hls4ml").rglob("*.so"))  # replaced by a fresh, uncompiled project


# ------------------------------------------------------------------------------------------- pipeline
def stub_experiment(root: Path, paths: list[str]) -> SimpleNamespace:
    hls = SimpleNamespace(clock_period_ns=5.0, reuse_factor=1, backend="Vitis", strategy="Latency", part=None)
    run = SimpleNamespace(export=paths, hls4ml=hls, rtl=SimpleNamespace(flavor="verilog", latency_cutoff_ns=-1.0,
                                                                              optimize="full"))
    return SimpleNamespace(run=run, output_dir=lambda: root, hardware=SimpleNamespace(model="hls4ml"),
                           device=lambda: SimpleNamespace(part="xc7z020clg400-1", name="XC7Z020"))


def test_pipeline_export_replaces_its_own_trial_folder_but_no_foreign_file(tmp_path: Path, model_file: str) -> None:
    from hwnas.pipeline_export import export_dir, export_selected

    exp = stub_experiment(tmp_path / "run", ["qonnx", "rtl"])
    selection = [{"number": 3}]
    for _ in range(2):  # running the stage again replaces hwnas's own artefacts
        res = export_selected(exp, selection, lambda e: model_file, log=lambda s: None)
        assert [p["skipped"] for p in res[3]["paths"]] == [None, None]
    folder = export_dir(exp, 3)
    (folder / "rtl" / "mine.v").write_text("// mine")
    before = snapshot(folder)
    with pytest.raises(ExportError, match=r"rtl/mine\.v"):
        export_selected(exp, selection, lambda e: model_file, log=lambda s: None)
    assert snapshot(folder) == before
    (folder / "rtl" / "mine.v").unlink()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(FolderError, match=r"notes\.txt"):
        export_selected(exp, selection, lambda e: model_file, log=lambda s: None)
    assert (folder / "notes.txt").read_text() == "mine"


def test_a_pre_manifest_run_export_folder_is_adopted_only_when_it_holds_artefacts(tmp_path: Path) -> None:
    from hwnas.export.folders import adopt_legacy
    from hwnas.pipeline_export import ARTEFACT_NAMES

    old = tmp_path / "trial_00003"  # written by an hwnas before manifests: artefact names only
    (old / "hls4ml" / "firmware").mkdir(parents=True)
    (old / "hls4ml" / "firmware" / "x.cpp").write_text("old")
    (old / "model.qonnx.onnx").write_bytes(b"onnx")
    assert adopt_legacy(old, ARTEFACT_NAMES.values())
    assert foreign_files(old) == [] and check_folder(old, replace=True) and not adopt_legacy(old, ["hls4ml"])
    mixed = tmp_path / "trial_00004"
    (mixed / "rtl").mkdir(parents=True)
    (mixed / "notes.txt").write_text("mine")
    assert not adopt_legacy(mixed, ARTEFACT_NAMES.values()) and not (mixed / MANIFEST).exists()
    assert foreign_files(mixed, limit=5) == ["notes.txt", "rtl"]
