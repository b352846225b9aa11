"""One `hwnas run` per output folder: a second one stops at once, naming the process that holds the folder."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from hwnas.cli import main
from hwnas.runpaths import RunLockedError, run_lock
from tests.experiments import tiny_mlp


def test_a_second_run_on_the_same_folder_is_refused_and_the_lock_dies_with_its_process(tmp_path, capsys) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(tiny_mlp(trials=1))
    out = tmp_path / "out"
    # another process holds the folder (as a running `hwnas run` does)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from hwnas.runpaths import run_lock\n"
        "with run_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)"), str(out)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["run", str(path)]) == 2
        err = capsys.readouterr().err
        assert f"another hwnas run (pid {holder.pid})" in err and str(out) in err
        assert not (out / "stages.json").exists()  # nothing ran
        with pytest.raises(RunLockedError):
            with run_lock(out):
                pass
    finally:
        holder.kill()  # kill -9: the OS releases the flock, no stale lock file blocks the next run
        holder.wait(timeout=10)
        holder.stdout.close()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            with run_lock(out):
                assert (out / ".hwnas-run.lock").read_text() == str(os.getpid())
            break
        except RunLockedError:
            time.sleep(0.05)
    else:
        pytest.fail("the lock outlived its process")
