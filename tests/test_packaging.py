"""The built wheel works without the source tree: package data shipped, the CLI and a tiny search run from it."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]

TINY = """\
name: wheel
seed: 0
output: out
task: {name: digits}
space: {family: mlp, dense_layers: 1, dense_units: [8], precision: {weight_bits: [4], act_bits: [4]}}
objectives: [{metric: accuracy, direction: maximize}, {metric: bops, direction: minimize}]
hardware: {target: xc7z020, model: hls4ml}
training: {epochs: 1}
search: {strategy: random, n_trials: 2}
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    try:
        subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                        "--quiet", "-w", str(out)], check=True, capture_output=True, text=True, timeout=300)
    except subprocess.CalledProcessError as err:
        pytest.fail(f"building the wheel failed:\n{err.stderr[-3000:]}")
    (path,) = out.glob("hwnas-*.whl")
    return path


def test_wheel_ships_every_package_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    src = ROOT / "src"
    expected = {p.relative_to(src).as_posix() for p in (src / "hwnas").rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    missing = sorted(expected - names)
    assert not missing, f"the wheel lacks {missing}"
    assert "hwnas/cost/devices.yaml" in names


def test_installed_wheel_runs_the_cli_and_a_tiny_search(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    run = tmp_path / "run"
    run.mkdir()

    def hwnas(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "hwnas", *args], cwd=run, env=env, capture_output=True, text=True,
                              timeout=300)

    where = subprocess.run([sys.executable, "-c", "import hwnas; print(hwnas.__file__)"], cwd=run, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(site), where  # the wheel's copy, not the source tree
    defaults = hwnas("config", "--defaults")
    assert defaults.returncode == 0 and "search:" in defaults.stdout, defaults.stderr
    (run / "exp.yaml").write_text(TINY)
    done = hwnas("search", "exp.yaml", "--quiet")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (run / "out" / "search.json").is_file()


def test_version_flag(capsys):
    from hwnas import __version__
    from hwnas.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"hwnas {__version__}"
