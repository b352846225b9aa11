"""The export-path registry (``hwnas.export.paths``): one record per path, read by the CLI, config and verify."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import hwnas.nn as hn
from hwnas.cli import build_parser, main
from hwnas.config import ConfigError, parse_experiment
from hwnas.export import ExportError, paths, save_model
from hwnas.export import verify as verify_mod
from hwnas.export.graph import run_reference
from hwnas.export.result import PathResult, compare, output_lsb
from hwnas.export.verify import verify_model

BUILTINS = ("reference", "qonnx", "hls4ml", "rtl", "finn")
DEFAULTS = ("reference", "qonnx", "hls4ml", "rtl")
MINIMAL = """\
name: tiny
task: {name: digits}
objectives:
  - metric: accuracy
    direction: maximize
"""


def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    q = dict(bits=6, learnable=False)
    model = torch.nn.Sequential(hn.QLinear(8, 6, input_quantizer=q), hn.QActivation("relu"), hn.QLinear(6, 3))
    model(torch.randn(32, 8))
    return model.eval()


# ----------------------------------------------------------------------- a path registered by the tests
def _export_layers(model, input_shape, out, *, replace=True, **options) -> str:
    """The test path's artefact: the export graph's layer names and input shape as JSON."""
    from hwnas.export.graph import extract

    graph = extract(model, tuple(input_shape))
    out = Path(out)
    if out.exists() and not replace:
        raise ExportError(f"{out} exists")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"layers": graph.layers(), "input_shape": list(input_shape)}))
    return f"layer list written to {out}"


def _verify_self(model, x, graph, ref, lsb, workdir, options) -> PathResult:
    """Writes the artefact, then compares the export graph's float64 execution with torch's outputs.

    ``offset_lsb`` (an option) shifts every output by that many LSBs: the comparison must then find them all.
    """
    target = workdir / "layers.json"
    _export_layers(model, tuple(x.shape[1:]), target)
    step = output_lsb(ref) if lsb is None else lsb
    got = run_reference(graph, x) + options.get("offset_lsb", 0) * np.broadcast_to(step, ref.shape)
    return compare("selfcheck", ref, got, lsb=lsb, artefact=str(target))


SELFCHECK = paths.ExportPath(name="selfcheck", summary="the export graph run in float64 (a registry test path)",
                             expresses="what the export graph expresses", needs_graph=True, export=_export_layers,
                             artefact="layers.json", verify=_verify_self)


@pytest.fixture
def selfcheck():
    """Registers ``selfcheck`` for one test and removes it after (the registry is then back to the built-ins)."""
    paths.register(SELFCHECK)
    try:
        yield SELFCHECK
    finally:
        paths.unregister("selfcheck")
        assert paths.names() == BUILTINS


# ------------------------------------------------------------------------------------------------ tests
def test_builtins_are_registered_once_in_the_verification_order() -> None:
    assert paths.names() == BUILTINS
    assert paths.names(exporters_only=True) == BUILTINS[1:]
    assert paths.names(default_only=True) == DEFAULTS  # finn needs finn-plus: opt in
    assert verify_mod.PATHS == BUILTINS  # the old constant, now read from the registry
    ref = paths.get("reference")
    assert ref.export is None and ref.artefact is None and ref.tool_check is None and ref.tools_missing() is None
    assert {n: paths.get(n).needs_graph for n in BUILTINS} == {"reference": True, "qonnx": False, "hls4ml": True,
                                                                 "rtl": True, "finn": True}
    from hwnas.pipeline_export import ARTEFACT_NAMES

    assert ARTEFACT_NAMES == {"qonnx": "model.qonnx.onnx", "hls4ml": "hls4ml", "rtl": "rtl", "finn": "finn"}
    for name in BUILTINS:
        p = paths.get(name)
        assert p.name == name and "\n" not in p.summary and p.expresses
        assert p.tool_check is None or isinstance(p.tools_missing(), str | None)
        with pytest.raises(dataclasses.FrozenInstanceError):
            p.summary = "changed"  # type: ignore[misc]


def test_an_unknown_name_is_an_export_error_naming_the_known_ones() -> None:
    with pytest.raises(ExportError) as info:
        paths.get("nope")
    assert "'nope'" in str(info.value) and all(n in str(info.value) for n in BUILTINS)
    with pytest.raises(ExportError, match="nope"):
        paths.unregister("nope")
    with pytest.raises(ExportError, match=r"unknown verification path\(s\) \['nope'\]"):
        verify_model(small_model(), input_shape=(8,), paths=["nope"], samples=4)


def test_a_path_is_registered_once(selfcheck) -> None:
    with pytest.raises(ValueError, match="'selfcheck' is already registered"):
        paths.register(dataclasses.replace(SELFCHECK, summary="another one"))
    assert paths.get("selfcheck") is SELFCHECK
    with pytest.raises(ValueError, match="'qonnx' is already registered"):
        paths.register(paths.get("qonnx"))
    paths.register(paths.get("qonnx"), replace=True)  # replace keeps the place in the order
    assert paths.names() == (*BUILTINS, "selfcheck")
    with pytest.raises(ValueError, match="artefact name"):
        dataclasses.replace(SELFCHECK, artefact=None)
    with pytest.raises(ValueError, match="lower case"):
        dataclasses.replace(SELFCHECK, name="a,b")  # --paths splits on commas
    with pytest.raises(ValueError, match="one non-empty line"):
        dataclasses.replace(SELFCHECK, summary="two\nlines")


def test_config_names_the_field_and_the_registered_paths() -> None:
    exp = parse_experiment(MINIMAL)
    assert exp.run.export == ["qonnx", "hls4ml", "rtl"] and exp.run.verify == ["qonnx", "hls4ml", "rtl"]
    for key in ("export", "verify"):
        with pytest.raises(ConfigError) as info:
            parse_experiment(MINIMAL + f"run: {{{key}: [qonnx, nope]}}\n", source="exp.yaml")
        assert str(info.value) == f"exp.yaml:6: run.{key}[1]: must be 'qonnx', 'hls4ml', 'rtl' or 'finn', got 'nope'"
    with pytest.raises(ConfigError, match=r"run.verify\[0\]: must be 'qonnx', 'hls4ml', 'rtl' or 'finn', got 'refer"):
        parse_experiment(MINIMAL + "run: {verify: [reference]}\n")  # it always runs; not an artefact path


def test_config_accepts_a_registered_path_and_keeps_the_defaults(selfcheck) -> None:
    exp = parse_experiment(MINIMAL + "run: {export: [selfcheck, rtl], verify: [selfcheck]}\n")
    assert exp.run.export == ["selfcheck", "rtl"] and exp.run.verify == ["selfcheck"]
    assert parse_experiment(MINIMAL).run.export == ["qonnx", "hls4ml", "rtl"]  # not a default path
    with pytest.raises(ConfigError, match="must be 'qonnx', 'hls4ml', 'rtl', 'finn' or 'selfcheck', got 'nope'"):
        parse_experiment(MINIMAL + "run: {export: [nope]}\n")


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    return next(a for a in parser._actions if flag in a.option_strings)


def test_cli_choices_come_from_the_registry(selfcheck, tmp_path, capsys) -> None:
    parser = build_parser()
    to = _option(_subparser(parser, "export"), "--to")
    assert tuple(to.choices) == paths.names(exporters_only=True) == (*BUILTINS[1:], "selfcheck")
    assert SELFCHECK.summary in to.help
    assert _option(_subparser(parser, "verify"), "--paths").default == "qonnx,hls4ml,rtl"
    model_file = save_model(small_model(), tmp_path / "m.pt", (8,))
    out = tmp_path / "layers.json"
    assert main(["export", str(model_file), "--to", "selfcheck", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"layer list written to {out}"
    assert json.loads(out.read_text())["input_shape"] == [8]
    with pytest.raises(SystemExit):
        main(["export", str(model_file), "--to", "reference", "--out", str(tmp_path / "x")])  # writes nothing
    assert "invalid choice: 'reference'" in capsys.readouterr().err


def test_verify_dispatches_a_registered_path(selfcheck, tmp_path) -> None:
    model = small_model()
    report = verify_model(model, input_shape=(8,), paths=["selfcheck"], samples=32, output_dir=tmp_path / "v")
    assert [r.path for r in report.results] == ["reference", "selfcheck"]
    r = report.results[1]
    assert r.samples == 32 and r.mismatches == 0 and r.skipped is None and report.passed and report.ran == [r]
    assert Path(r.artefact) == tmp_path / "v" / "layers.json" and Path(r.artefact).is_file()
    assert verify_mod._RUNNERS["selfcheck"] is _verify_self
    # a real comparison: outputs one LSB off are found on every sample
    off = verify_model(model, input_shape=(8,), paths=["selfcheck"], samples=8, locate=False,
                       options={"selfcheck": {"offset_lsb": 1}})
    bad = off.results[1]
    assert bad.mismatches == 8 and bad.max_lsb == 1.0 and not off.passed and off.failures == [bad]
    assert re.search(r"^selfcheck\s+8\s+8\s+1\s", off.table(), re.M), off.table()
    assert verify_mod.PATHS == (*BUILTINS, "selfcheck")  # what verify_model runs without paths


def test_a_path_without_a_graph_is_skipped_before_its_verify_runs(selfcheck) -> None:
    calls = []
    paths.register(dataclasses.replace(SELFCHECK, verify=lambda *a: calls.append(a)), replace=True)
    float_input = torch.nn.Sequential(hn.QLinear(8, 3, input_quantizer=None))  # float input: no export graph
    float_input(torch.randn(4, 8))
    report = verify_model(float_input.eval(), torch.randn(4, 8), paths=["selfcheck"])
    assert not calls and report.results[1].skipped.startswith("not expressible:")


def test_docs_describe_every_field_and_builtin_path() -> None:
    doc = (Path(__file__).parents[1] / "docs" / "export.md").read_text()
    section = doc.split("## Export paths (registry)\n", 1)[1].split("\n## ", 1)[0]
    for f in dataclasses.fields(paths.ExportPath):
        assert f"| `{f.name}` |" in section, f.name
    for name in BUILTINS:
        assert f"`{name}`" in section, name
