"""``hwnas mcp`` (issue 31): the MCP server driven by the official SDK's own client over stdio.

One tiny experiment runs (digits, mlp, 5 trials of 1 epoch, no export/verify/synth): about 10 s of CPU. A second
job with a large budget is started, the client disconnects, a restarted server lists both jobs from disk and stops
the second one mid-search.
"""

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest
import yaml

from hwnas.agent.files import AgentError, OutsideRootError, Root, read_artefact

TIMEOUT_S = 240  # the tiny run takes ~10 s on a quiet core; minutes on a loaded 2-core CI machine

OVERRIDES = {
    "seed": 3,
    "space": {"dense_layers": {"min": 0, "max": 2}, "dense_units": [8, 16, 32],
              "precision": {"weight_bits": {"min": 2, "max": 6}, "act_bits": {"min": 2, "max": 6}}},
    "search": {"strategy": "nsga2", "options": {"population_size": 4}},
    "run": {"select": ["knee"], "export": [], "verify": [], "synth": "off"},
}

BAD = """\
name: bad
task: {name: digits}
space: {family: mlp}
objectives:
  - {metric: accuracy, direction: maximize}
training:
  epochs: 0
"""


# ------------------------------------------------------------------------------------- no SDK, no server
def test_root_confines_paths(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (root / "out").symlink_to(outside)
    (root / "in").symlink_to(root / "sub")
    r = Root(root)
    assert r.resolve("sub/../sub/x.csv") == root.resolve() / "sub" / "x.csv"
    assert r.resolve(str(root / "sub")) == root.resolve() / "sub"  # absolute, inside: fine
    assert r.resolve("in/a.md") == root.resolve() / "sub" / "a.md"  # a symlink inside the root: fine
    for bad, why in (("/etc/passwd", "absolute"), ("../outside/secret.txt", "'..'"), ("out/secret.txt", "symlink")):
        with pytest.raises(OutsideRootError, match=why) as err:
            r.resolve(bad, what="path")
        assert repr(bad) in str(err.value)
    with pytest.raises(AgentError, match="server's own folder"):
        r.resolve(".hwnas-mcp/jobs/x.yaml", write=True)
    with pytest.raises(AgentError, match="non-empty"):
        r.resolve("")
    (root / "m.pt").write_bytes(b"\x80\x04pickle")
    (root / "b.csv").write_bytes(b"a,b\x00\x01")
    with pytest.raises(AgentError, match="pickle"):
        read_artefact(r, root / "m.pt")
    with pytest.raises(AgentError, match="binary"):
        read_artefact(r, root / "b.csv")
    with pytest.raises(AgentError, match="not an existing folder"):
        Root(tmp_path / "missing")


def test_job_stages_match_the_pipeline():
    from hwnas.agent.jobs import STAGES
    from hwnas.pipeline import STAGES as PIPELINE

    assert STAGES == PIPELINE


def test_mcp_without_sdk_names_the_extra(tmp_path, monkeypatch, capsys):
    from hwnas.cli import main

    for name in [n for n in sys.modules if n == "mcp" or n.startswith(("mcp.", "hwnas.agent.server"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "mcp", None)
    monkeypatch.setitem(sys.modules, "mcp.server.fastmcp", None)
    assert main(["mcp", "--root", str(tmp_path)]) == 1  # a missing optional package: a failure, not a usage error
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'hwnas[agent]'" in err[0]


# ------------------------------------------------------------------------------------- through the SDK
def _server(root: Path):
    from mcp import StdioServerParameters

    return StdioServerParameters(command=sys.executable, args=["-m", "hwnas", "mcp", "--root", str(root)],
                                 env=dict(os.environ), cwd=str(root))


async def _call(session, tool, **arguments):
    """A tool's structured result; a tool error fails the test with its text."""
    result = await session.call_tool(tool, arguments)
    assert not result.isError, result.content[0].text
    return result.structuredContent


async def _refused(session, tool, **arguments) -> str:
    result = await session.call_tool(tool, arguments)
    assert result.isError, result.structuredContent
    return result.content[0].text


async def _wait(session, job_id, until, what, *, light=False):
    """Poll until ``until(status)``; ``light``: poll list_jobs (no study read), then one job_status."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        if light:
            status = next(j for j in (await _call(session, "list_jobs"))["jobs"] if j["job_id"] == job_id)
        else:
            status = await _call(session, "job_status", job_id=job_id, log_lines=40)
        if until(status):
            return await _call(session, "job_status", job_id=job_id, log_lines=40) if light else status
        assert time.monotonic() < deadline, f"{what}: not after {TIMEOUT_S} s: {status}"
        await asyncio.sleep(1.0)


async def _first_session(root: Path, outside: Path) -> dict:
    from mcp import ClientSession
    from mcp.client.stdio import stdio_client
    from mcp.shared.exceptions import McpError
    from mcp.types import ListToolsResult
    from pydantic import BaseModel

    seen: dict = {}
    async with stdio_client(_server(root)) as (read, write), ClientSession(read, write) as s:
        await s.initialize()
        tools = {t.name for t in (await s.list_tools()).tools}
        assert tools == {"validate_experiment", "write_experiment", "start_job", "job_status", "list_jobs",
                         "stop_job", "list_artefacts", "read_artefact"}
        resources = {str(r.uri) for r in (await s.list_resources()).resources}
        assert resources == {"hwnas://config/reference", "hwnas://config/defaults", "hwnas://tasks"}
        tasks = (await s.read_resource("hwnas://tasks")).contents[0].text
        assert '"digits"' in tasks
        reference = (await s.read_resource("hwnas://config/reference")).contents[0].text
        assert "n_trials" in reference

        # validate a bad file: the error names file, line and key
        (root / "bad.yaml").write_text(BAD)
        bad = await _call(s, "validate_experiment", path="bad.yaml")
        assert bad["valid"] is False
        errors = {e["key"]: e for e in bad["errors"]}
        assert errors["training.epochs"]["line"] == 7 and errors["training.epochs"]["file"] == "bad.yaml"
        assert "greater than or equal to 1" in errors["training.epochs"]["message"]

        # write an experiment from task + budget + target: valid YAML, on disk
        written = await _call(s, "write_experiment", path="exp/tiny.yaml", task="digits", n_trials=5,
                              target="zcu104", objectives=["accuracy:max", "bops:min"], constraints={"luts": "30%"},
                              epochs=1, output="../out", description="tiny digits MLP", overrides=OVERRIDES)
        assert written["valid"] and written["summary"]["output"] == "out"
        data = yaml.safe_load(written["yaml"])
        assert data["search"]["n_trials"] == 5 and data["space"]["family"] == "mlp"
        assert (root / "exp" / "tiny.yaml").read_text() == written["yaml"]
        assert "exists" in await _refused(s, "write_experiment", path="exp/tiny.yaml", task="digits", n_trials=5)
        assert (await _call(s, "validate_experiment", path="exp/tiny.yaml"))["valid"]

        # start: the job id comes back at once, the job runs in the background
        t0 = time.monotonic()
        job = await _call(s, "start_job", experiment="exp/tiny.yaml")
        seen["start_s"] = time.monotonic() - t0
        assert job["state"] == "running" and job["returncode"] is None
        tiny = seen["tiny"] = job["job_id"]
        assert "still running" in await _refused(s, "start_job", experiment="exp/tiny.yaml")

        # while it runs: paths outside the root are refused, naming the path
        for path in ("/etc/passwd", "../outside/secret.txt", "link/secret.txt"):
            text = await _refused(s, "read_artefact", path=path)
            assert repr(path) in text and "outside the root" in text
        assert "outside the root" in await _refused(s, "list_artefacts", path="..")
        assert "outside the root" in await _refused(s, "write_experiment", path="../evil.yaml", task="digits",
                                                    n_trials=1)
        (root / "escape.yaml").write_text((root / "exp" / "tiny.yaml").read_text().replace("../out", str(outside)))
        escape = await _call(s, "validate_experiment", path="escape.yaml")
        assert not escape["valid"] and escape["errors"][0]["key"] == "output" and escape["errors"][0]["line"]
        assert "outside the server's root" in await _refused(s, "start_job", experiment="escape.yaml")

        # malformed requests: an error answer each, and the server still answers
        assert "Unknown tool" in await _refused(s, "rm_rf", path="/")
        assert "job_id" in await _refused(s, "job_status", job_id=5)
        assert "job_id" in await _refused(s, "job_status")
        assert "not a job id" in await _refused(s, "job_status", job_id="../../etc")

        class Bogus(BaseModel):
            method: str
            params: dict

        for bogus in (Bogus(method="tools/call", params={"name": 42}), Bogus(method="hwnas/exec", params={})):
            with pytest.raises(McpError) as err:
                await s.send_request(bogus, ListToolsResult)
            assert err.value.error.code == -32602
        assert len((await s.list_tools()).tools) == 8

        # poll until done; the status carries progress and the Pareto front
        mid = await _call(s, "job_status", job_id=tiny)
        assert mid["state"] in ("running", "done") and set(mid["progress"]["stages"]) >= {"search", "report"}
        done = await _wait(s, tiny, lambda st: st["state"] not in ("running", "stopping"), "tiny run", light=True)
        assert done["state"] == "done", done["log_tail"]
        progress = done["progress"]
        assert set(progress["stages"].values()) == {"done"}
        assert progress["trials"]["complete"] == 5 and progress["trials"]["budget"] == 5
        front = progress["pareto_front"]
        assert front and sum(row["knee"] for row in front) == 1 and {"accuracy", "bops"} <= set(front[0])

        # artefacts: the Pareto table as text; a model file is refused
        listing = await _call(s, "list_artefacts", path="exp/tiny.yaml")
        kinds = {f["path"]: f["kind"] for f in listing["files"]}
        assert kinds["out/pareto/pareto.csv"] == "Pareto front table"
        assert kinds["out/report/selected.md"] == "report: selected models"
        table = await _call(s, "read_artefact", path="out/pareto/pareto.csv")
        header, *rows = table["text"].strip().splitlines()
        assert header.startswith("number,") and len(rows) == len(front)
        assert {int(r.split(",")[0]) for r in rows} == {row["trial"] for row in front}
        model = next(p for p in kinds if p.endswith(".pt"))
        assert "pickle" in await _refused(s, "read_artefact", path=model)

        # a long job, then the client goes away
        long_yaml = (root / "exp" / "tiny.yaml").read_text().replace("n_trials: 5", "n_trials: 500")
        (root / "exp" / "long.yaml").write_text(long_yaml.replace("../out", "../long"))
        seen["long"] = (await _call(s, "start_job", experiment="exp/long.yaml"))["job_id"]
    return seen


async def _second_session(root: Path, seen: dict) -> None:
    from mcp import ClientSession
    from mcp.client.stdio import stdio_client

    async with stdio_client(_server(root)) as (read, write), ClientSession(read, write) as s:
        await s.initialize()
        jobs = {j["job_id"]: j for j in (await _call(s, "list_jobs"))["jobs"]}
        assert jobs[seen["tiny"]]["state"] == "done"
        assert jobs[seen["long"]]["state"] == "running"  # it survived the disconnect and the restart
        await _wait(s, seen["long"], lambda st: st["progress"]["current_stage"] == "search"
                    or st["state"] != "running", "long job's search")
        stopped = await _call(s, "stop_job", job_id=seen["long"])
        assert stopped["state"] == "stopped"
        status = await _call(s, "job_status", job_id=seen["long"])
        assert status["progress"]["stages"]["search"] == "stopped"
        assert (await _call(s, "stop_job", job_id=seen["long"]))["message"].endswith("not running (stopped)")
        again = await _call(s, "job_status", job_id=seen["tiny"])
        assert again["state"] == "done" and again["progress"]["pareto_front"]


def test_mcp_server_over_stdio(tmp_path):
    pytest.importorskip("mcp", reason="the MCP SDK is not installed (pip install 'hwnas[agent]')")
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (root / "link").symlink_to(outside)
    try:
        seen = asyncio.run(_first_session(root, outside))
        assert seen["start_s"] < 30  # validation only; the run itself takes longer than that on a loaded machine
        asyncio.run(_second_session(root, seen))
    finally:  # never leave a background job running after a failure
        from hwnas.agent.jobs import JobStore

        store = JobStore(Root(root))
        for job_id in store.ids():
            if store.status(job_id, detail=False)["state"] in ("running", "stopping"):
                store.stop(job_id, grace_s=1.0)
