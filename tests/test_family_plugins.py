"""Model families of your own (docs/extending.md): ``space: {family: <name>, module: <module>}`` from YAML."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import hwnas.nn as hn
from hwnas.config import ConfigError, hash_payload, parse_experiment
from hwnas.space import FamilyError, Point, SearchSpace, SpaceConfig, SpaceError, family, family_names, make_space

EXAMPLES = Path(__file__).parents[1] / "examples" / "plugins"


@pytest.fixture
def isolated_families(monkeypatch):
    """Families and modules registered by a test vanish after it (the built-in ones stay)."""
    monkeypatch.setattr(family, "_REGISTRY", dict(family._REGISTRY))
    monkeypatch.setattr(family, "_MODULE_FAMILIES", {})
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if not name.startswith(("hwnas", "torch", "optuna", "sklearn")):
            sys.modules.pop(name, None)


def _experiment(space: str, search: str = "{strategy: random, n_trials: 2}", hardware: str = "none") -> str:
    return f"""\
name: plug
task: {{name: digits, options: {{image: true}}}}
space: {space}
objectives:
  - {{metric: accuracy, direction: maximize}}
  - {{metric: bops, direction: minimize}}
hardware: {{model: {hardware}}}
training: {{epochs: 1, batch_size: 256}}
search: {search}
storage: {{url: "journal:///study.log"}}
"""


RES = "{family: res_cnn, module: my_families, family_options: {widths: [2, 4], blocks: [0, 1], kernels: [1]}}"

NO_VECTOR = '''\
from torch import nn
import hwnas.nn as hn
from hwnas.space import ModelFamily, register_family


@register_family
class Flat(ModelFamily):
    name = "flat_only"
    vector = False

    def variables(self, ctx):
        return {"units": [4, 8]}

    def layers(self, ctx):
        return ["hidden", "out"]

    def build(self, arch, ctx, quant):
        n = 1
        for d in ctx.input_shape:
            n *= d
        return nn.Sequential(hn.Flatten(), hn.QLinear(n, arch["units"], input_quantizer=quant.model_input(),
                                                      weight_quantizer=quant.weight("hidden")),
                             hn.QActivation("relu"),
                             hn.QLinear(arch["units"], ctx.n_classes, input_quantizer=quant.act("hidden"),
                                        weight_quantizer=quant.weight("out")))
'''


def _copy_example(tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "my_families.py", tmp_path / "my_families.py")


def test_the_example_family_registers_from_yaml_and_a_tiny_search_builds_its_models(tmp_path, isolated_families):
    from hwnas.search.run import run_search

    _copy_example(tmp_path)
    exp = parse_experiment(_experiment(RES), source="exp.yaml", base_dir=tmp_path)
    assert "res_cnn" in family_names() and str(tmp_path) not in sys.path
    assert parse_experiment(exp.to_yaml(), base_dir=tmp_path) == exp
    assert hash_payload(exp)["space"]["module"] == "my_families"
    plain = parse_experiment(_experiment("{family: mlp}"))
    assert "module" not in hash_payload(plain)["space"] and "family_options" not in hash_payload(plain)["space"]
    result = run_search(exp, progress=False)
    trials = [t for t in result.study.trials if t.state.name == "COMPLETE"]
    assert len(trials) == 2
    space = make_space(exp.space, (1, 8, 8), 10)
    for t in trials:
        point = Point.from_dict(t.user_attrs["point"])
        assert point.family == "res_cnn" and set(point.arch_dict()) >= {"width", "blocks"}
        model = space.build(point)
        blocks = [m for m in model.modules() if isinstance(m, hn.QResidualBlock)]
        assert len(blocks) == point.arch_dict()["blocks"]
        assert model[0].out_channels == point.arch_dict()["width"]
        assert t.user_attrs["metrics"]["bops"] > 0 and t.user_attrs["vector"] == space.encode(point)


def test_the_example_space_round_trips_every_encoding(tmp_path, isolated_families):
    _copy_example(tmp_path)
    exp = parse_experiment(_experiment(RES.replace("kernels: [1]", "kernels: [1, 3]").replace("[0, 1]", "[0, 2]")),
                           base_dir=tmp_path)
    space = make_space(exp.space, (1, 8, 8), 10)
    assert [s.name for s in space.layout()][:4] == ["width", "blocks", "block0.kernel", "block1.kernel"]
    # width 2 × (blocks 0: w^2·a + blocks 2: kernels^2 · w^4·a^3), bits 2..8 × 2..8
    assert space.size() == 2 * (7 * 7 * 7 + 2 * 2 * 7 ** 4 * 7 ** 3)
    rng = np.random.default_rng(0)
    for _ in range(6):
        p = space.sample(rng)
        assert space.decode(space.encode(p)) == p and space.from_params(space.params(p)) == p
        assert Point.from_dict(p.to_dict()) == p and "arch[" in p.describe()
        n_blocks = p.arch_dict()["blocks"]
        assert space.layers(p) == ["stem", *(f"block{i}" for i in range(n_blocks)), "head"]
        assert len(p.weight_bits) == n_blocks + 2 and len(p.act_bits) == n_blocks + 1
        assert space.build(p, seed=3)(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    small = space.extreme(largest=False)
    assert small.arch_dict() == {"width": 2, "blocks": 0}
    with pytest.raises(SpaceError, match=r"space\.family: 'res_cnn' is a plug-in family; make its space with"):
        SearchSpace(exp.space, (1, 8, 8), 10)
    with pytest.raises(FamilyError, match=r"space.family: 'res_cnn' cannot take the task's samples of shape \(64,\)"):
        make_space(exp.space, (64,), 10)


@pytest.mark.parametrize("space, files, message", [
    ("{family: res_cnn, module: no_such_mod}", {},
     r"space\.module: no module named 'no_such_mod' in Python's path or .*; install"),
    ("{family: res_cnn, module: broken_mod}", {"broken_mod.py": "raise RuntimeError('boom')\n"},
     r"space\.module: importing 'broken_mod' failed: RuntimeError: boom"),
    ("{family: res_cnn, module: empty_mod}", {"empty_mod.py": "X = 1\n"},
     r"space\.module: importing 'empty_mod' registered no family; it must call hwnas\.space\.register_family"),
    ("{family: res_cnn}", {},
     r"space\.family: unknown family 'res_cnn'; families are: cnn1d, cnn2d, mlp; a family of your own: name the "
     r"module that registers it in space\.module"),
    ("{family: res_cnn, module: my_families, family_options: {depth: 3}}", {},
     r"space\.family_options\.depth: family 'res_cnn' has no option 'depth'; its options are: widths, blocks"),
])
def test_a_bad_family_is_one_line_naming_the_key(tmp_path, isolated_families, space, files, message):
    _copy_example(tmp_path)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as info:
        parse_experiment(_experiment(space), source="exp.yaml", base_dir=tmp_path)
    assert len(info.value.problems) == 1, str(info.value)
    assert re.match(rf"exp\.yaml:3: {message}", str(info.value)), str(info.value)


@pytest.mark.parametrize("space, search, line, message", [
    ("{family: flat_only, module: no_vector}", "{strategy: pso, n_trials: 2}", 9,
     r"search\.strategy: pso searches the space's integer vector, which family 'flat_only' \(space\.family\) does "
     r"not offer .*; use nsga2, tpe or random"),
    (RES, "{strategy: supernet, n_trials: 2}", 9,
     r"search\.strategy: supernet shares the weights of the built-in families' conv and dense layers, which "
     r"family 'res_cnn' \(space\.family\) does not have"),
    (RES[:-1] + ", mapping: {kind: hls4ml, folding: search}}", "{strategy: random, n_trials: 2}", 3,
     r"space\.mapping\.folding: search picks PE/SIMD or reuse factors per layer of the built-in families; the "
     r"plug-in family 'res_cnn'"),
])
def test_a_strategy_the_family_cannot_serve_is_one_line(tmp_path, isolated_families, space, search, line, message):
    _copy_example(tmp_path)
    (tmp_path / "no_vector.py").write_text(NO_VECTOR)
    with pytest.raises(ConfigError) as info:
        parse_experiment(_experiment(space, search, "hls4ml"), source="exp.yaml", base_dir=tmp_path)
    assert len(info.value.problems) == 1, str(info.value)
    assert re.match(rf"exp\.yaml:{line}: {message}", str(info.value)), str(info.value)
    ok = parse_experiment(_experiment(space.replace("folding: search", "folding: auto"), hardware="hls4ml"),
                          base_dir=tmp_path)
    assert ok.space.family in ("flat_only", "res_cnn")  # nsga2/tpe/random serve every family


def test_readers_that_run_no_user_code_refuse_space_module(tmp_path, isolated_families):
    (tmp_path / "spy_fam.py").write_text("import sys\nsys.modules['hwnas_spy_family'] = sys\n")
    with pytest.raises(ConfigError, match=r"exp\.yaml:3: space\.module: modules of your own are not imported here"):
        parse_experiment(_experiment("{family: res_cnn, module: spy_fam}"), source="exp.yaml", base_dir=tmp_path,
                         plugins=False)
    assert "hwnas_spy_family" not in sys.modules and "spy_fam" not in sys.modules


def test_the_contract_is_checked_when_a_family_registers_and_builds(isolated_families):
    from hwnas.space import ModelFamily, get_family, register_family

    for name in ("cnn1d", "cnn2d", "mlp"):  # the built-ins sit in the same registry and keep their space
        assert get_family(name).vector and get_family(name).supernet
    cfg = SpaceConfig(family="mlp", dense_units=[4, 8])
    builtin, direct = make_space(cfg, (64,), 10), SearchSpace(cfg, (64,), 10)
    assert type(builtin) is SearchSpace and builtin.layout() == direct.layout() and builtin.size() == direct.size()

    class NoBuild(ModelFamily):
        name = "no_build"

        def variables(self, ctx):
            return {"units": [4]}

        def layers(self, ctx):
            return ["out"]

    with pytest.raises(FamilyError, match="must define build"):
        register_family(NoBuild)
    with pytest.raises(FamilyError, match="'mlp' is built in"):
        register_family(type("Mlp", (NoBuild,), {"name": "mlp", "build": lambda *a: None}))

    class Asks(NoBuild):
        name = "asks_badly"

        def variables(self, ctx):
            return {"units": [4, 8]}

        def choose(self, ask, ctx):
            ask("depth")
            return ["out"]

        def build(self, arch, ctx, quant):
            return hn.QLinear(64, ctx.n_classes, weight_quantizer=quant.weight("out"))

    register_family(Asks)
    space = make_space(SpaceConfig(family="asks_badly"), (64,), 10)
    with pytest.raises(FamilyError, match=r"asked for 'depth', which variables\(\) does not declare"):
        space.sample(np.random.default_rng(0))


def test_the_documented_example_is_the_example_file_and_valid(isolated_families):
    from hwnas.config import load_experiment

    text = (EXAMPLES / "custom_family.yaml").read_text()
    body = "".join(line + "\n" for line in text.splitlines() if not line.startswith("#"))
    doc = (Path(__file__).parents[1] / "docs" / "extending.md").read_text()
    assert f"```yaml\n{body}```" in doc
    exp = load_experiment(EXAMPLES / "custom_family.yaml")
    assert exp.space.family == "res_cnn" and exp.task.options == {"image": True}
    assert make_space(exp.space, (1, 8, 8), 10).size() == 2 * (3 * 3 * 2 + 2 * 3 ** 3 * 2 ** 2 + 4 * 3 ** 4 * 2 ** 3)
