"""``hwnas mcp``: the Model Context Protocol server over hwnas experiments (official ``mcp`` SDK, FastMCP).

Contract (``docs/agent.md`` has the client set-up, every tool's arguments and a transcript):

* Tools: ``validate_experiment`` (errors with file, line and key path), ``write_experiment`` (task + budget +
  target → validated YAML on disk), ``start_job`` (``hwnas run``, all stages or one, in the background: returns
  the job id at once), ``job_status`` (state, stage progress, trials against the budget, the current Pareto
  front, log tail), ``list_jobs``, ``stop_job``, ``list_artefacts`` and ``read_artefact`` (an output folder's
  report tables, selected models, verification and synthesis records, as text). Resources:
  ``hwnas://config/reference`` (every experiment key), ``hwnas://config/defaults`` (the commented default
  experiment), ``hwnas://tasks`` (the task list) and ``hwnas://jobs/{job_id}`` (a job's status).
* Every tool body runs in a worker thread: a long call never blocks the others, and long work runs as a job
  (:mod:`hwnas.agent.jobs`), never in a tool call. A refused request is a tool error (``isError``) whose text
  names the argument and why; the server keeps serving.
* Paths are confined to ``--root`` (:mod:`hwnas.agent.files`); nothing runs a user-given command, imports user
  code or loads a pickle.
* Transports: stdio (default; the protocol owns the real stdout, anything else written to stdout goes to stderr)
  or, with ``--http PORT``, streamable HTTP at ``http://127.0.0.1:PORT/mcp`` (loopback only, DNS-rebinding
  protection on).
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import anyio
import anyio.to_thread
from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from hwnas.agent import experiments, files
from hwnas.agent.files import Root
from hwnas.agent.jobs import STAGES, JobStore
from hwnas.errors import HwnasError

__all__ = ["build_server", "serve"]

T = TypeVar("T")

INSTRUCTIONS = """\
hwnas finds, quantizes, verifies and deploys small neural networks for FPGAs. Typical session: read
hwnas://tasks, write_experiment (or validate_experiment on a file), start_job, poll job_status until its state
is done, then list_artefacts / read_artefact on its output folder (pareto/pareto.csv, report/selected.md,
report/verification.md, report/table2.md, synth/*.json). Paths are relative to the server's root folder."""

_READ_ONLY = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False)


async def _threaded(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn`` in a worker thread; an hwnas error becomes a tool error with its one-line message."""
    def call() -> T:
        return fn(*args, **kwargs)

    try:
        return await anyio.to_thread.run_sync(call)
    except HwnasError as err:
        raise ToolError(" ".join(str(err).split())) from None


class _FirstLine(logging.Filter):
    """Warnings on stderr cut to their first line (the SDK logs a malformed request's whole validation error)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            lines = record.getMessage().strip().splitlines() or [""]
            if len(lines) > 1:
                record.msg, record.args = f"{lines[0]} (+{len(lines) - 1} lines)", None
        return True


def build_server(root: str | os.PathLike[str], *, max_jobs: int = 2, port: int = 8000) -> FastMCP:
    """The FastMCP server over ``root`` (tools and resources in the module docstring)."""
    home = Root(root)
    jobs = JobStore(home, max_running=max_jobs)
    app = FastMCP("hwnas", instructions=INSTRUCTIONS, host="127.0.0.1", port=port, log_level="WARNING")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_FirstLine())

    @app.tool(annotations=_READ_ONLY)
    async def validate_experiment(
            path: Annotated[str | None, Field(description="experiment YAML, relative to the root")] = None,
            text: Annotated[str | None, Field(description="YAML text to validate instead of a file (relative "
                                              "paths in it count from the root)")] = None) -> dict[str, Any]:
        """Validate an experiment file (or text): valid with a summary, or every error with file, line and key."""
        if (path is None) == (text is None):
            raise ToolError("give exactly one of path or text")

        def check() -> dict[str, Any]:
            where = home.resolve(path, what="path") if path is not None else None
            return experiments.validate(home, where, text)

        return await _threaded(check)

    @app.tool()
    async def write_experiment(
            path: Annotated[str, Field(description="where to write it (.yaml, relative to the root)")],
            task: Annotated[str, Field(description="task name (resource hwnas://tasks), e.g. digits")],
            n_trials: Annotated[int, Field(description="search budget: trials (each one a training)", ge=1)],
            target: Annotated[str, Field(description="FPGA from the device catalog, e.g. XC7Z020, ZCU104, VU13P")]
            = "XC7Z020",
            hardware_model: Annotated[Literal["hls4ml", "finn", "alkaid", "surrogate", "none"],
                                      Field(description="hardware cost model")] = "hls4ml",
            objectives: Annotated[list[str] | None, Field(
                description="'metric:maximize|minimize' items (default: accuracy, the task's own metric, up and "
                            "luts down; bops down with hardware_model none)")] = None,
            constraints: Annotated[dict[str, float | str] | None, Field(
                description="upper bounds by metric, a number or a device share like '30%'")] = None,
            epochs: Annotated[int | None, Field(description="training epochs per trial", ge=1)] = None,
            strategy: Annotated[str | None, Field(description="nsga2, random, tpe, pso, monas_lq, ha_nas or "
                                                  "supernet (default nsga2)")] = None,
            family: Annotated[str | None, Field(description="mlp, cnn1d or cnn2d (default: from the task's "
                                                "input shape)")] = None,
            name: Annotated[str | None, Field(description="experiment name (default: the file's stem)")] = None,
            description: Annotated[str, Field(description="free text kept with the results")] = "",
            output: Annotated[str | None, Field(description="output folder relative to the file (default "
                                                "runs/<name>)")] = None,
            overrides: Annotated[dict[str, Any] | None, Field(
                description="sections merged into the generated experiment, e.g. {\"run\": {\"synth\": \"off\"}} "
                            "(resource hwnas://config/reference lists every key)")] = None,
            overwrite: Annotated[bool, Field(description="replace an existing file")] = False) -> dict[str, Any]:
        """Write an experiment from a task, a trial budget and a hardware target; returns the validated YAML.

        Nothing is written unless the experiment is valid; the error names every problem's key path.
        """
        def make() -> dict[str, Any]:
            where = home.resolve(path, what="path", write=True)
            return experiments.write(home, where, task=task, n_trials=n_trials, target=target,
                                     hardware_model=hardware_model, objectives=objectives, constraints=constraints,
                                     epochs=epochs, strategy=strategy, family=family, name=name,
                                     description=description, output=output, overrides=overrides,
                                     overwrite=overwrite)

        return await _threaded(make)

    @app.tool()
    async def start_job(
            experiment: Annotated[str, Field(description="experiment YAML, relative to the root")],
            stage: Annotated[Literal[STAGES] | None, Field(  # type: ignore[valid-type]
                description="run only this stage (default: every stage, resuming what is done)")] = None,
            force: Annotated[bool, Field(description="run the stage(s) again even if done")] = False
    ) -> dict[str, Any]:
        """Start `hwnas run` on an experiment (or one stage) as a background job; returns its job id at once."""
        return await _threaded(lambda: jobs.start(home.resolve(experiment, what="experiment"), stage=stage,
                                                  force=force))

    @app.tool(annotations=_READ_ONLY)
    async def job_status(
            job_id: Annotated[str, Field(description="id from start_job or list_jobs")],
            log_lines: Annotated[int, Field(description="last log lines to include", ge=0, le=200)] = 20
    ) -> dict[str, Any]:
        """A job's state, stage progress, trials done against the budget, current Pareto front and log tail."""
        return await _threaded(jobs.status, job_id, log_lines=log_lines)

    @app.tool(annotations=_READ_ONLY)
    async def list_jobs() -> dict[str, Any]:
        """Every job of this root (also those started before a server restart), oldest first."""
        return await _threaded(lambda: {"jobs": [jobs.status(i, detail=False) for i in jobs.ids()]})

    @app.tool(annotations=ToolAnnotations(destructiveHint=True, idempotentHint=True, openWorldHint=False))
    async def stop_job(job_id: Annotated[str, Field(description="id of a running job")]) -> dict[str, Any]:
        """Stop a running job (finished trials and stages are kept; the next start resumes)."""
        return await _threaded(jobs.stop, job_id)

    @app.tool(annotations=_READ_ONLY)
    async def list_artefacts(
            path: Annotated[str, Field(description="an output folder, or an experiment YAML (its output folder), "
                                       "relative to the root")]) -> dict[str, Any]:
        """The files of an output folder with a label each (Pareto table, report tables, selected models, ...)."""
        def walk() -> dict[str, Any]:
            where = home.resolve(path, what="path")
            if where.is_file() and where.suffix in (".yaml", ".yml"):
                exp, _, _ = experiments.load(home, where)
                where = exp.output_dir().resolve()
            return files.list_artefacts(home, where)

        return await _threaded(walk)

    @app.tool(annotations=_READ_ONLY)
    async def read_artefact(
            path: Annotated[str, Field(description="a text file inside the root (CSV, Markdown, JSON, YAML, log)")],
            offset: Annotated[int, Field(description="first character to return", ge=0)] = 0,
            max_chars: Annotated[int, Field(description="characters to return (at most 262144)", ge=1)] = 65536
    ) -> dict[str, Any]:
        """Read a text artefact (binary files, model files and databases are refused); page with offset."""
        return await _threaded(lambda: files.read_artefact(home, home.resolve(path, what="path"), offset=offset,
                                                           max_chars=max_chars))

    @app.resource("hwnas://config/reference", name="config-reference", mime_type="text/markdown",
                  description="every key of an experiment file: type, default, meaning")
    async def config_reference() -> str:
        from hwnas.config import reference_markdown

        return await anyio.to_thread.run_sync(reference_markdown)

    @app.resource("hwnas://config/defaults", name="config-defaults", mime_type="application/yaml",
                  description="the complete default experiment, every key commented")
    async def config_defaults() -> str:
        from hwnas.config import defaults_yaml

        return await anyio.to_thread.run_sync(defaults_yaml)

    @app.resource("hwnas://tasks", name="tasks", mime_type="application/json",
                  description="the built-in tasks: name, metric, description, options with defaults")
    async def task_list() -> str:
        def tasks() -> str:
            from hwnas.tasks import get_task, task_names

            rows = []
            for n in task_names():
                t = get_task(n)
                rows.append({"name": n, "metric": t.metric, "description": t.description,
                             "options": {k: {"default": v, "doc": t.option_docs.get(k, "")}
                                         for k, v in t.defaults.items()}})
            return json.dumps({"tasks": rows}, indent=1, default=str)

        return await anyio.to_thread.run_sync(tasks)

    @app.resource("hwnas://jobs/{job_id}", name="job", mime_type="application/json",
                  description="a job's status (like the job_status tool)")
    async def job_resource(job_id: str) -> str:
        return json.dumps(await _threaded(jobs.status, job_id), indent=1, default=str)

    return app


async def _serve_stdio(app: FastMCP) -> None:
    """The stdio transport on a private copy of stdout; fd 1 itself then points to stderr (stray prints land there)."""
    from mcp.server.stdio import stdio_server

    sys.stdout.flush()
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    out = anyio.wrap_file(io.TextIOWrapper(protocol, encoding="utf-8", write_through=True))
    lowlevel = app._mcp_server  # FastMCP.run_stdio_async, with our stdout
    async with stdio_server(stdout=out) as (read_stream, write_stream):
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())


def serve(root: str | os.PathLike[str], *, http_port: int | None = None, max_jobs: int = 2) -> int:
    """Serve ``root`` over stdio, or streamable HTTP on 127.0.0.1:``http_port``; returns the exit status."""
    if http_port is not None and not 0 < http_port < 65536:
        raise HwnasError(f"--http: port {http_port} is not in 1..65535")
    app = build_server(root, max_jobs=max_jobs, port=http_port or 8000)
    if http_port is None:
        anyio.run(_serve_stdio, app)
    else:
        print(f"hwnas mcp: serving {Root(root).path} at http://127.0.0.1:{http_port}/mcp (streamable HTTP)",
              file=sys.stderr)
        anyio.run(app.run_streamable_http_async)
    return 0
