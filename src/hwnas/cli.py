"""The ``hwnas`` command line.

Global options (before or after the command: ``hwnas -q run exp.yaml`` = ``hwnas run exp.yaml -q``) set what is
printed (:mod:`hwnas.cli_util`); every command's ``--help`` has a description and examples
(:mod:`hwnas.cli_help`). Exit status (:mod:`hwnas.errors`, ``docs/run.md``): 0 success,
1 failure (incl. a missing optional tool), 2 usage or configuration error, 130 interrupted (Ctrl-C: one line that
says how to resume, no traceback).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any


def _demo(args: argparse.Namespace) -> int:
    from hwnas.demo import run_demo

    run_demo(epochs=args.epochs, beta=args.beta, gamma=args.gamma, seed=args.seed, progress=not args.quiet)
    return 0


def _tasks(args: argparse.Namespace) -> int:
    from hwnas.tasks import TaskError, get_task, task_names

    if args.name is None:
        for name in task_names():
            task = get_task(name)
            print(f"{name:15s} {task.metric:9s} {task.description}")
        return 0
    try:
        task = get_task(args.name)
    except TaskError as err:
        print(f"hwnas: error: {err}", file=sys.stderr)
        return 2
    print(f"{task.name}: {task.description}\nmetric: {task.metric}   loss: {task.loss}\noptions:")
    for opt, default in task.defaults.items():
        print(f"  {opt:15s} default {default!r:12s} {task.option_docs.get(opt, '')}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from hwnas.tasks.amc import generate_cached

    try:
        data = generate_cached(args.preset, args.per_pair, seed=args.seed, data_dir=args.data_dir,
                               normalization=args.normalization, progress=not args.quiet,
                               workers=args.workers)
    except ValueError as err:
        print(f"hwnas: error: {err}", file=sys.stderr)
        return 2
    print(f"{len(data)} frames of {args.preset!r} ({len(data.classes)} classes, shape {tuple(data.x.shape[1:])}) "
          f"in {args.data_dir}")
    return 0


def _profile_cpu(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from hwnas.cost.cpu_latency import LatencyTable
    from hwnas.cost.cpu_profile import profile_table

    out = Path(args.table).expanduser()
    if out.exists() and not out.is_file():
        print(f"hwnas: error: {out} exists and is not a file; give the latency table another path", file=sys.stderr)
        return 2
    if out.exists() and not args.force:
        try:
            table = LatencyTable.load(out)
        except (ValueError, OSError) as err:
            print(f"hwnas: error: {err}; the existing file is not overwritten (choose another path, or --force to "
                  "replace it)", file=sys.stderr)
            return 2
        print(f"{out} exists ({len(table)} operators, profiled {table.created or 'at an unknown time'} on "
              f"{table.machine.get('cpu_model', 'an unknown CPU')}); kept (--force profiles again)")
        return 0
    if args.threads < 1:
        print(f"hwnas: error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        table = profile_table(out, grid=args.grid, threads=args.threads, cpu=None if args.cpu == -2 else args.cpu,
                              seed=args.seed, progress=not args.quiet)
    except (ValueError, OSError) as err:
        print(f"hwnas: error: {err}", file=sys.stderr)
        return 2
    s = table.session
    pinned = "not pinned" if s.get("pinned_cpu") is None else f"pinned to CPU {s['pinned_cpu']}"
    disturbed = int(s.get("disturbed_timings", 0))
    print(f"{len(table)} operators timed in {time.perf_counter() - start:.0f} s ({pinned}; {disturbed} "
          f"timing{'' if disturbed == 1 else 's'} disturbed by a busy CPU, retried): {out}")
    return 0


def _mcp(args: argparse.Namespace) -> int:
    from hwnas.errors import EXIT_FAILED

    try:
        from hwnas.agent.server import serve
    except ImportError as err:  # the optional SDK; any other import error is a bug and propagates
        if not (err.name or "").split(".")[0] == "mcp":
            raise
        print("hwnas: error: hwnas mcp needs the MCP Python SDK: pip install 'hwnas[agent]'", file=sys.stderr)
        return EXIT_FAILED  # a missing optional package: a failure, not a usage error
    return serve(args.root, http_port=args.http, max_jobs=args.max_jobs)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``hwnas`` command."""
    parser = argparse.ArgumentParser(
        prog="hwnas",
        description="Find, quantize, verify and deploy small neural networks for FPGAs and edge devices.",
    )
    from hwnas import __version__
    from hwnas.cli_util import LOG_LEVELS

    parser.add_argument("--version", action="version", version=f"hwnas {__version__}")
    out = parser.add_argument_group("output (before or after the command)")
    out.add_argument("-v", "--verbose", dest="verbosity", action="count", default=0,
                     help="more detail: hwnas's INFO log, e.g. one line per trial (-vv: DEBUG)")
    out.add_argument("-q", "--quiet", dest="global_quiet", action="store_true",
                     help="results and errors only: no status lines, progress bars or warnings")
    out.add_argument("--log-level", dest="log_level", type=str.upper, choices=LOG_LEVELS, metavar="LEVEL",
                     help=f"level of hwnas's log messages: {', '.join(LOG_LEVELS)} (default WARNING; overrides "
                     "-v/-q for the log)")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train an HGQ model with learnable per-parameter bit-widths on digits")
    demo.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    demo.add_argument("--beta", type=float, default=3e-6, help="EBOPs weight in the loss (default 3e-6)")
    demo.add_argument("--gamma", type=float, default=1e-6, help="bit-width L1 weight in the loss (default 1e-6)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=_demo)
    tasks = sub.add_parser("tasks", help="list the built-in tasks, or show one task's options")
    tasks.add_argument("name", nargs="?", help="a task name (omit to list all)")
    tasks.set_defaults(func=_tasks)
    gen = sub.add_parser("generate-amc", help="generate a RadioML-like AMC data set into a cache folder")
    gen.add_argument("--preset", default="rml2016", choices=("rml2016", "rml2018"), help="dataset preset")
    gen.add_argument("--per-pair", type=int, default=1000, help="frames per (class, SNR) pair (default 1000)")
    gen.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    gen.add_argument("--data-dir", default="data", help="cache folder (default ./data)")
    gen.add_argument("--normalization", default="unit_power", help="unit_power | rml2016_l1 | none")
    gen.add_argument("--workers", type=int, default=2, help="worker processes (default 2; data do not depend on it)")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(func=_generate)
    prof = sub.add_parser("profile-cpu", help="time onnxruntime operators on this machine into a CPU latency "
                          "table (hardware.cpu_table, prices cpu_latency_ms)")
    prof.add_argument("table", help="the JSON file to write (an existing table is kept unless --force)")
    prof.add_argument("--grid", default="default", choices=("default", "quick"),
                      help="operator grid: default (~13,300 float and int8 operators, 2-3 min on a quiet core, "
                      "longer on a busy one) or quick (seconds; tests and smoke runs)")
    prof.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    prof.add_argument("--cpu", type=int, default=-1,
                      help="CPU to pin the timing thread to (default -1: the last usable one; -2: not pinned)")
    prof.add_argument("--seed", type=int, default=0, help="order of the timing passes (default 0)")
    prof.add_argument("--force", action="store_true", help="profile again when the file exists")
    prof.add_argument("--quiet", action="store_true", help="no progress bar")
    prof.set_defaults(func=_profile_cpu)
    mcp = sub.add_parser("mcp", help="serve experiments, background jobs and their artefacts to agents over the "
                         "Model Context Protocol (stdio; docs/agent.md)")
    mcp.add_argument("--root", required=True, help="the folder every path is confined to (experiments, outputs)")
    mcp.add_argument("--http", type=int, default=None, metavar="PORT",
                     help="serve streamable HTTP at http://127.0.0.1:PORT/mcp instead of stdio (loopback only)")
    mcp.add_argument("--max-jobs", type=int, default=2, help="background jobs running at once (default 2)")
    mcp.set_defaults(func=_mcp)
    from hwnas.cli_export import add_export_commands

    add_export_commands(sub)
    from hwnas.cli_search import add_run_commands, add_search_commands

    add_search_commands(sub)
    add_run_commands(sub)
    from hwnas.cli_receiver import add_receiver_commands

    add_receiver_commands(sub)
    from hwnas.cli_jets import add_jets_commands

    add_jets_commands(sub)
    from hwnas.cli_help import describe

    describe(parser)
    _output_options_after_the_command(parser)
    return parser


_AFTER = {"verbosity": "_after_verbosity", "global_quiet": "_after_quiet", "log_level": "_after_log_level"}
"""The global output options' destinations, and those of the same options given after the command."""


def _leaf_commands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every command parser that takes no sub-command of its own (``run``, ``jets generate``, ...)."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                nested = any(isinstance(a, argparse._SubParsersAction) for a in sub._actions)
                found += _leaf_commands(sub) if nested else [sub]
    return found


def _output_options_after_the_command(parser: argparse.ArgumentParser) -> None:
    """Accept ``-v``/``-q``/``--log-level`` after the command too (``hwnas run exp.yaml -q``), meaning the same.

    Each command parser gets them under other destinations, unset unless given (argparse copies a sub-parser's
    values over the top-level ones); :func:`_merge_output_options` adds them to the global ones after parsing. A
    command's own long option of the same name (``--quiet``: its progress bars; ``--verbose`` of search/worker)
    keeps its meaning; the short forms and ``--log-level`` are the global ones everywhere.
    """
    from hwnas.cli_util import LOG_LEVELS

    for sub in _leaf_commands(parser):
        taken = sub._option_string_actions
        group = sub.add_argument_group("output (the global options, here after the command)")
        group.add_argument(*[o for o in ("-v", "--verbose") if o not in taken], dest=_AFTER["verbosity"],
                           action="count", default=argparse.SUPPRESS, help="as hwnas -v: more detail (-vv: DEBUG)")
        group.add_argument(*[o for o in ("-q", "--quiet") if o not in taken], dest=_AFTER["global_quiet"],
                           action="store_true", default=argparse.SUPPRESS,
                           help="as hwnas -q: results and errors only")
        group.add_argument("--log-level", dest=_AFTER["log_level"], type=str.upper, choices=LOG_LEVELS,
                           metavar="LEVEL", default=argparse.SUPPRESS, help="as hwnas --log-level")
    parse = parser.parse_known_args

    def parse_known_args(args: Any = None, namespace: Any = None) -> Any:
        ns, extras = parse(args, namespace)
        return _merge_output_options(ns), extras

    parser.parse_known_args = parse_known_args  # type: ignore[method-assign]


def _merge_output_options(ns: argparse.Namespace) -> argparse.Namespace:
    """Fold the output options given after the command into the global ones (after wins for --log-level)."""
    after = {dest: vars(ns).pop(name) for dest, name in _AFTER.items() if name in vars(ns)}
    if "verbosity" in after:
        ns.verbosity = (getattr(ns, "verbosity", 0) or 0) + after["verbosity"]
    if after.get("global_quiet"):
        ns.global_quiet = True
    if after.get("log_level") is not None:
        ns.log_level = after["log_level"]
    return ns


_RESUME = {
    "search": "finished trials are kept; the interrupted trial runs again (it costs no budget)",
    "worker": "finished trials are kept; the interrupted trial runs again (it costs no budget)",
    "run": "finished stages and trials are kept; the interrupted one runs again (a trial costs no budget)",
    "select": "the stage is recorded only when it finishes",
    "local": "the stage is recorded only when it finishes",
    "report": "the stage is recorded only when it finishes",
    "export": "finished stages are kept; the interrupted stage runs again",
    "verify": "finished stages are kept; the interrupted stage runs again",
    "synth": "finished stages are kept; the interrupted stage runs again",
    "jets": "finished shards are kept",
    "receiver": "the checkpoints written so far are kept",
}
"""What an interrupted command keeps, for the commands a second call resumes."""


def _interrupted(args: argparse.Namespace | None, argv: list[str]) -> str:
    """The one line printed after Ctrl-C: what is kept and the command that resumes, where there is one."""
    command = getattr(args, "command", None)
    note = _RESUME.get(command or "")
    if command in ("export", "verify", "synth") and not str(getattr(args, "model", "")).lower().endswith(
            (".yaml", ".yml")):
        note = None  # a model file: nothing half-written (exports are built aside), nothing to resume
    line = "hwnas: interrupted"
    if note:
        line += f"; {note}: resume with `{shlex.join(['hwnas', *argv])}`"
    return line


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hwnas`` command; returns the exit status (argparse's usage errors raise SystemExit(2))."""
    from hwnas.cli_util import output_settings
    from hwnas.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, HwnasError

    if argv is None:  # the console command: a scheduler's SIGTERM (preemption, scancel) is handled as Ctrl-C
        _sigterm_as_interrupt()
    argv = list(sys.argv[1:] if argv is None else argv)
    args: argparse.Namespace | None = None
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "epochs", 1) < 1:
            print("hwnas: error: --epochs must be >= 1", file=sys.stderr)
            return EXIT_BAD_INPUT
        # one setting for every command: the global -q/-v/--log-level, or the command's own --quiet/--verbose
        verbosity = max(args.verbosity, 1 if getattr(args, "verbose", False) else 0)
        args.quiet = bool(args.global_quiet or getattr(args, "quiet", False))  # progress bars (and lines) off
        args.verbose = verbosity > 0
        with output_settings(verbose=verbosity, quiet=args.global_quiet, level=args.log_level) as level:
            args.log_level_value = level
            return int(args.func(args))
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0
    except HwnasError as err:
        print(f"hwnas: error: {_one_line(str(err))}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:  # anywhere: one line, no traceback
        _settle_interrupts()
        line = _interrupted(args, argv)
        try:
            print(("\n" if sys.stderr.isatty() else "") + line, file=sys.stderr, flush=True)
        except (OSError, ValueError):  # stderr gone
            pass
        return EXIT_INTERRUPTED
    except MemoryError:
        print("hwnas: error: out of memory (smaller batch_size, data set or model?)", file=sys.stderr)
        return EXIT_FAILED
    except OSError as err:  # the user's environment: a read-only folder, a file where a folder should be, disk full
        where = f"{err.filename}: " if err.filename else ""
        print(f"hwnas: error: {where}{err.strerror or err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as err:
        from hwnas.search.storage import database_failure

        cause = database_failure(err)
        if cause is None:
            raise
        # a study's database server failing outside a worker's trial loop (opening, joining, summarising)
        print(f"hwnas: error: the study's database failed ({_one_line(cause)}); finished trials "
              "are kept: run the command again once the server is back", file=sys.stderr)
        return EXIT_FAILED


_CONSOLE = False
"""Set by :func:`_sigterm_as_interrupt`: this process is the ``hwnas`` console command (its signals are ours)."""
_SETTLED = False
"""Set by :func:`_settle_interrupts`: the interrupt was handled; later ones are dropped."""


def _settle_interrupts() -> None:
    """Once an interrupt is handled, let no later one kill the console command during exit.

    A re-delivery still pending or a second signal would otherwise end it by SIGINT instead of its one line and 130.
    """
    global _SETTLED
    if not _CONSOLE:
        return
    import signal

    _SETTLED = True
    signal.setitimer(signal.ITIMER_REAL, 0)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM):
        signal.signal(sig, signal.SIG_IGN)


def _sigterm_as_interrupt() -> None:
    """Make SIGTERM raise KeyboardInterrupt in the main thread, and never lose an interrupt.

    A preempted worker then hands its trial back (WAITING, no budget spent) instead of leaving it to the
    heartbeat timeout, and exits 130 with one line. An interrupt (SIGTERM or Ctrl-C) that lands while Python runs
    a weakref callback or ``__del__`` is swallowed there ("Exception ignored in ...", measured in the recipe
    test): the unraisable hook delivers it again 10 ms later (SIGALRM), so it reaches the main flow instead.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = sys.unraisablehook

    def unraisable(info: object) -> None:
        kind = getattr(info, "exc_type", None)
        if kind is not None and issubclass(kind, KeyboardInterrupt):
            if _SETTLED:  # already handled: exiting with its line and 130
                return
            # again in 10 ms, after this hook has returned: the alarm's handler raises it outside the callback (and,
            # should it land in another one, this hook arms the alarm once more)
            signal.signal(signal.SIGALRM, handler)
            signal.setitimer(signal.ITIMER_REAL, 0.01)
            return
        previous(info)

    global _CONSOLE
    _CONSOLE = True
    signal.signal(signal.SIGTERM, handler)
    sys.unraisablehook = unraisable


def _one_line(message: str) -> str:
    """An error message on one line (a tool's multi-line output folded in)."""
    return " ".join(part.strip() for part in message.strip().splitlines() if part.strip()) or "unknown error"


if __name__ == "__main__":
    sys.exit(main())
