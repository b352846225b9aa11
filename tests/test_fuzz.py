"""Seeded fuzzing of what a user hands hwnas: experiment files, command lines and damaged files.

Every case asserts the documented outcome (``docs/reliability.md``): exit 0, 1 or 2, never a traceback; an error is
one ``hwnas: error:`` line; nothing is half-written and nothing outside the output folder is touched; no code in
a file runs. The counts of cases are the "inputs tried" of docs/reliability.md.
"""

from __future__ import annotations

import builtins
import copy
import hashlib
import pickle
import random
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

import hwnas.nn as hn
from hwnas.cli import main
from hwnas.errors import HwnasError
from hwnas.export import load_model, save_model

SEED = 20261207

EXPERIMENT = {
    "name": "fuzz",
    "seed": 1,
    "output": "out",
    "task": {"name": "digits"},
    "space": {"family": "mlp", "dense_layers": {"min": 0, "max": 1}, "dense_units": [8, 16],
              "precision": {"weight_bits": {"min": 3, "max": 6}, "act_bits": {"min": 3, "max": 6}}},
    "objectives": [{"metric": "accuracy", "direction": "maximize"}, {"metric": "bops", "direction": "minimize"}],
    "constraints": [{"metric": "luts", "max": "30%"}],
    "hardware": {"target": "zcu104", "model": "hls4ml"},
    "training": {"epochs": 1, "batch_size": 64},
    "search": {"strategy": "nsga2", "n_trials": 4},
    "run": {"select": ["knee"], "export": ["qonnx"], "verify": ["qonnx"], "synth": "off"},
}

ODD_VALUES = [None, -1, 0, 1e30, "1e30", -1e-300, float("nan"), float("inf"), "", "x" * 5000, [], {}, True,
              [None], {"a": {"b": {"c": 1}}}, "../../../etc/passwd", "sqlite:////nonexistent/dir/x.db",
              "\x00", 2**70, "☃", [1] * 300]

SNIPPETS = ["a: &x [1, 2]\nb: *x\n", "{", "[", ": :", "\t- x", "!!python/object/apply:os.system ['true']",
            "!!binary AAAA", "? [1]\n: 2", "name: a\nname: b", "&a [*a]", "\xff\xfe", "%YAML 9.9\n---\n"]


def _paths(tree: object, prefix: tuple = ()) -> list[tuple]:
    out = []
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.append((*prefix, k))
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out.append((*prefix, i))
            out.extend(_paths(v, (*prefix, i)))
    return out


def _mutate(rng: random.Random) -> tuple[str, str]:
    """One mutated experiment file (its text) and a description of the mutation."""
    base = yaml.safe_dump(EXPERIMENT, sort_keys=False)
    kind = rng.choice(["value", "value", "delete", "extra", "truncate", "bytes", "snippet", "duplicate"])
    if kind in ("value", "delete", "extra"):
        data = copy.deepcopy(EXPERIMENT)
        path = rng.choice(_paths(data))
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        if kind == "value":
            parent[path[-1]] = copy.deepcopy(rng.choice(ODD_VALUES))
        elif kind == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[f"unknown_{rng.randrange(100)}"] = 1
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True), f"{kind} {path}"
    if kind == "truncate":
        cut = rng.randrange(len(base))
        return base[:cut], f"truncate at {cut}"
    if kind == "bytes":
        pos = rng.randrange(len(base))
        junk = "".join(chr(rng.randrange(0, 0x250)) for _ in range(rng.randrange(1, 8)))
        return base[:pos] + junk + base[pos:], f"bytes at {pos}"
    if kind == "snippet":
        pos = rng.choice([0, len(base)])
        return (rng.choice(SNIPPETS) + "\n" + base) if pos == 0 else (base + rng.choice(SNIPPETS)), "snippet"
    lines = base.splitlines()
    i = rng.randrange(len(lines))
    return "\n".join([*lines[: i + 1], lines[i], *lines[i + 1:]]), f"duplicate line {i}"


def _tree(folder: Path) -> dict[str, tuple[int, str]]:
    """Every file below ``folder``: mode and content digest (what 'nothing touched' compares)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        out[str(p.relative_to(folder))] = (stat.S_IMODE(st.st_mode), digest)
    return out


def _assert_clean(rc: int, err: str, allowed: tuple[int, ...], what: str) -> None:
    assert rc in allowed, f"{what}: exit {rc}\n{err}"
    assert "Traceback" not in err, f"{what}: traceback\n{err}"
    if rc == 2:
        errors = [line for line in err.splitlines() if line.startswith("hwnas: error:")]
        assert len(errors) == 1 or err.startswith("usage:"), f"{what}: not one error line\n{err}"


def _run(argv: list[str], capsys) -> tuple[int, str]:
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's usage errors: exit 2 with a usage line
        rc = int(exc.code or 0)
    return rc, capsys.readouterr().err


def test_fuzzed_experiment_files_give_exit_0_or_one_error_line(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    rng = random.Random(SEED)
    outcomes = {0: 0, 2: 0}
    for i in range(120):
        text, what = _mutate(rng)
        path = tmp_path / f"exp_{i}.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        before = _tree(tmp_path)
        rc, err = _run(["config", str(path)], capsys)
        _assert_clean(rc, err, (0, 2), f"config case {i} ({what})")
        outcomes[rc] += 1
        if rc == 0 and i % 3 == 0:  # a valid experiment: a read-only stage before any search creates nothing
            rc2, err2 = _run(["select", str(path)], capsys)
            _assert_clean(rc2, err2, (2,), f"select case {i} ({what})")
        assert _tree(tmp_path) == before, f"case {i} ({what}) changed files"
    assert outcomes[0] >= 10 and outcomes[2] >= 40  # both kinds are exercised


def _model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = nn.Sequential(hn.QLinear(6, 5, input_quantizer=dict(bits=6, learnable=False)), hn.QActivation("relu"),
                          hn.QLinear(5, 3))
    model(torch.randn(16, 6))
    return save_model(model, tmp_path / "model.pt", (6,), test_inputs=torch.randn(8, 6))


def test_fuzzed_command_lines(tmp_path: Path, monkeypatch, capsys) -> None:
    work = tmp_path / "work"
    user = work / "user_files"
    user.mkdir(parents=True)
    (user / "notes.txt").write_text("mine")
    (work / "keep.txt").write_text("keep")
    model = _model(work)
    exp = work / "exp.yaml"
    exp.write_text(yaml.safe_dump(EXPERIMENT))
    (work / "empty.pt").write_bytes(b"")
    (work / "data.npy").write_bytes(b"\x93NUMPY garbage")
    np.save(work / "good.npy", np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32))
    monkeypatch.chdir(work)
    commands = [["config"], ["tasks"], ["verify", "--paths", "reference"], ["export", "--to", "qonnx"],
                ["select"], ["pareto"], ["report"], ["local"], ["export"], ["verify"]]
    targets = [str(model), str(exp), "missing.pt", "missing.yaml", str(work / "empty.pt"), str(user), "",
               "-", str(work / "keep.txt")]
    extras = [[], ["--out", "."], ["--out", str(user)], ["--out", "new_out"], ["--out", str(work / "keep.txt")],
              ["--data", "data.npy"], ["--data", "good.npy"], ["--data", "missing.npz"], ["--samples", "-5"],
              ["--seed", "x"], ["--json", str(user)], ["--reuse-factor", "0"], ["--force"], ["--bogus"],
              ["--paths", "nope"], ["--epochs", "0"]]
    rng = random.Random(SEED + 1)
    protected = {k: v for k, v in _tree(work).items() if k.startswith("user_files") or k in ("keep.txt", "model.pt")}
    for _ in range(70):
        argv = [*rng.choice(commands)]
        if argv[0] != "tasks" or rng.random() < 0.3:
            argv.insert(1, rng.choice(targets))
        argv += rng.choice(extras)
        rc, err = _run(argv, capsys)
        _assert_clean(rc, err, (0, 1, 2), f"argv {argv}")
        now = _tree(work)
        assert {k: now.get(k) for k in protected} == protected, f"argv {argv} touched the user's files"
        assert not [k for k in now if k.endswith(".tmp") or "/.tmp" in k], f"argv {argv} left temporary files"


class _Marker:
    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (builtins.exec, (f"open({self.path!r}, 'w').write('ran')",))


def _corruptions(data: bytes, rng: random.Random, n: int) -> list[tuple[str, bytes]]:
    out = []
    for _ in range(n):
        kind = rng.choice(["truncate", "flip", "zero", "append", "swap"])
        b = bytearray(data)
        if kind == "truncate":
            cut = rng.randrange(len(b))
            b = b[:cut]
        elif kind == "flip":
            for _ in range(rng.randrange(1, 4)):
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif kind == "zero":
            start, width = rng.randrange(len(b)), rng.randrange(1, 64)
            b[start:start + width] = bytes(len(b[start:start + width]))
        elif kind == "append":
            b += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        else:
            i, j = sorted(rng.sample(range(len(b)), 2))
            b[i], b[j] = b[j], b[i]
        out.append((kind, bytes(b)))
    return out


def test_damaged_model_files_are_refused_or_read_exactly(tmp_path: Path, capsys) -> None:
    good = _model(tmp_path)
    reference = load_model(good)
    x = reference.test_inputs
    expected = reference.model(x)
    rng = random.Random(SEED + 2)
    refused = 0
    for i, (kind, data) in enumerate(_corruptions(good.read_bytes(), rng, 150)):
        path = tmp_path / f"bad_{i}.pt"
        path.write_bytes(data)
        try:
            bundle = load_model(path)
        except HwnasError:
            refused += 1
            continue
        # read despite the damage (e.g. a flip in the zip's slack): then it is the very model, not a changed one
        assert torch.equal(bundle.model(x), expected), f"case {i} ({kind}) loaded a different model"
    assert refused >= 100
    for i in range(0, 150, 25):  # the command line says so in one line, exit 2
        rc, err = _run(["verify", str(tmp_path / f"bad_{i}.pt"), "--paths", "reference", "--quiet"], capsys)
        _assert_clean(rc, err, (0, 2), f"verify bad_{i}.pt")


def test_damaged_trainer_checkpoints_raise_train_errors(tmp_path: Path) -> None:
    from hwnas.train import Trainer
    from hwnas.train.trainer import TrainConfig, TrainError

    torch.manual_seed(0)
    x, y = torch.randn(64, 6), torch.randint(0, 3, (64,))

    def make() -> Trainer:
        model = nn.Sequential(hn.QLinear(6, 3))
        return Trainer(model, TrainConfig(epochs=2, batch_size=32, progress=False), checkpoint_dir=tmp_path)

    make().fit((x, y), resume=True)
    good = (tmp_path / "last.pt").read_bytes()
    rng = random.Random(SEED + 3)
    cases = _corruptions(good, rng, 40)
    marker = tmp_path / "marker"
    poisoned = bytearray()
    torch.save({"model": {}, "optimizer": {}, "history": _Marker(marker), "config": {}}, tmp_path / "p.pt")
    poisoned += (tmp_path / "p.pt").read_bytes()
    cases.append(("poisoned", bytes(poisoned)))
    for _kind, data in cases:
        (tmp_path / "last.pt").write_bytes(data)
        try:
            make().fit((x, y), resume=True)
        except TrainError:
            pass
    assert not marker.exists()


def _rml2016_file(path: Path) -> Path:
    rng = np.random.default_rng(0)
    data = {(b"BPSK", 0): rng.standard_normal((3, 2, 16)).astype(np.float32),
            (b"QPSK", 10): rng.standard_normal((3, 2, 16)).astype(np.float32)}
    with open(path, "wb") as fh:
        pickle.dump(data, fh, protocol=2)
    return path


def test_damaged_radioml_files_raise_radioml_errors(tmp_path: Path) -> None:
    import h5py

    from hwnas.tasks.radioml_files import RadioMLFileError, read_rml2016_pickle, read_rml2018_hdf5

    good16 = _rml2016_file(tmp_path / "rml16.pkl").read_bytes()
    good18 = tmp_path / "rml18.h5"
    with h5py.File(good18, "w") as f:
        f["X"] = np.zeros((24, 16, 2), np.float32)
        f["Y"] = np.eye(24, dtype=np.int64)
        f["Z"] = np.zeros((24, 1), np.int64)
    rng = random.Random(SEED + 4)
    marker = tmp_path / "marker"
    cases = [("rml16", k, d) for k, d in _corruptions(good16, rng, 60)]
    cases += [("rml18", k, d) for k, d in _corruptions(good18.read_bytes(), rng, 30)]
    cases.append(("rml16", "poisoned", pickle.dumps({("BPSK", 0): _Marker(marker)}, protocol=2)))
    for i, (fmt, _kind, data) in enumerate(cases):
        path = tmp_path / f"case_{i}.{'pkl' if fmt == 'rml16' else 'h5'}"
        path.write_bytes(data)
        try:
            (read_rml2016_pickle if fmt == "rml16" else read_rml2018_hdf5)(path)
        except RadioMLFileError:
            pass
    assert not marker.exists()


def test_output_folder_that_is_a_file_is_one_error_line(tmp_path: Path, capsys) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(EXPERIMENT))
    (tmp_path / "out").write_text("a file where the output folder should be")
    for argv in (["search", str(exp), "--quiet"], ["run", str(exp), "--quiet"], ["select", str(exp)]):
        rc, err = _run(argv, capsys)
        _assert_clean(rc, err, (2,), " ".join(argv[:1]))
    assert (tmp_path / "out").read_text().startswith("a file")


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> dict[str, tuple[Path, Path, bytes]]:
    """A finished two-trial search per storage: (experiment, study file, the study file's bytes)."""
    from tests.experiments import tiny_mlp

    out = {}
    for kind, url, name in (("sqlite", None, "study.db"), ("journal", "journal:///study.log", "study.log")):
        folder = tmp_path_factory.mktemp(kind)
        extra = "" if url is None else f"storage: {{url: '{url}'}}\n"
        exp = folder / "exp.yaml"
        exp.write_text(tiny_mlp(units="[8]", dense_max=0, trials=2, extra=extra))
        assert main(["search", str(exp), "--quiet"]) == 0
        (study,) = folder.rglob(name)  # a relative journal URL is resolved against the experiment's folder
        out[kind] = (exp, study, study.read_bytes())
    return out


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_damaged_studies_are_read_refused_or_repaired(studies, kind, capsys) -> None:
    exp, study, good = studies[kind]
    rng = random.Random(SEED + (5 if kind == "sqlite" else 6))
    outcomes = {0: 0, 2: 0}
    for i, (what, data) in enumerate(_corruptions(good, rng, 25)):
        for extra in study.parent.glob(f"{study.name}*"):  # -wal/-shm, lock files, backups of the last case
            if extra != study:
                extra.unlink()
        study.write_bytes(data)
        rc, err = _run(["pareto", str(exp)], capsys)
        _assert_clean(rc, err, (0, 1, 2), f"{kind} case {i} ({what})")  # 1: no feasible trial left in it
        outcomes[rc] = outcomes.get(rc, 0) + 1
        if study.read_bytes() != data:  # only a journal's torn tail is cut, and the original is kept beside it
            backups = list(study.parent.glob(f"{study.name}.torn-*.bak"))
            assert kind == "journal" and len(backups) == 1 and backups[0].read_bytes() == data, \
                f"{kind} case {i} ({what}): the study was changed without a backup"
    study.write_bytes(good)
    assert outcomes[2] >= 5
