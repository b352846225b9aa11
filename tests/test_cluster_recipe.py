"""The scheduler files of docs/cluster.md start the right command per task (`hwnas` itself replaced by a stub
that prints its arguments; the commands are exercised for real in tests/test_postgres.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

CLUSTER = Path(__file__).parents[1] / "examples" / "cluster"


def _stub(tmp_path: Path) -> dict[str, str]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    stub = bindir / "hwnas"
    stub.write_text('#!/bin/sh\necho "hwnas $*"\n')
    stub.chmod(0o755)
    return {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}


def test_slurm_array_task_0_searches_and_the_others_wait_as_workers(tmp_path) -> None:
    env = _stub(tmp_path)
    script = CLUSTER / "slurm_array.sh"
    for task, expect in (("0", "hwnas search exp.yaml"), ("7", "hwnas worker exp.yaml --worker 7 --wait 600")):
        out = subprocess.run(["bash", str(script), "exp.yaml"], env={**env, "SLURM_ARRAY_TASK_ID": task},
                             capture_output=True, text=True, check=True).stdout.strip()
        assert out == expect
    bad = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "usage" in bad.stderr


def test_kubernetes_indexed_job_index_0_searches_and_the_others_wait_as_workers(tmp_path) -> None:
    env = _stub(tmp_path)
    job = yaml.safe_load((CLUSTER / "k8s_job.yaml").read_text())
    assert job["kind"] == "Job" and job["spec"]["completionMode"] == "Indexed"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    shell, flag = container["command"]
    for index, expect in (("0", "hwnas search /work/experiment.yaml"),
                          ("3", "hwnas worker /work/experiment.yaml --worker 3 --wait 600")):
        out = subprocess.run([shell, flag, container["args"][0]], env={**env, "JOB_COMPLETION_INDEX": index},
                             capture_output=True, text=True, check=True).stdout.strip()
        assert out == expect
    assert any(e["name"] == "PGPASSWORD" and "secretKeyRef" in e["valueFrom"] for e in container["env"])
