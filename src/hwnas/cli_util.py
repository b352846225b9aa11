"""Helpers shared by the ``hwnas`` sub-command modules: one-line argparse errors and the output settings.

What a command writes, and where (``docs/run.md``, *The command line*):

* results (tables, paths, summaries): stdout, always;
* status lines (``[search] running``, ``verifying: rtl ...``): stdout through :func:`say`, hidden by ``hwnas -q``;
* progress bars (tqdm, stderr): hidden by ``hwnas -q`` or a command's own ``--quiet`` (``args.quiet``);
* log records of hwnas's loggers (``logging.getLogger("hwnas.…")``): stderr, at the level ``-q`` (ERROR),
  default (WARNING), ``-v`` (INFO: one line per trial, …), ``-vv`` (DEBUG) or ``--log-level`` sets;
* errors: one line ``hwnas: error: <message>`` on stderr and the exit status (:mod:`hwnas.errors`).

:func:`output_settings` applies the global options for the duration of one command and restores the logging
state afterwards (so that :func:`hwnas.cli.main` can be called repeatedly, e.g. from tests).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any, NoReturn

__all__ = ["LOG_LEVELS", "log_level", "one_line_errors", "output_settings", "quiet", "say"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
"""The values of ``hwnas --log-level`` (any case)."""

_state = {"quiet": False}


def one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Make argparse's own errors (unknown option, bad or missing value) one line, exit 2, without the usage block."""

    def error(message: str) -> NoReturn:
        print(f"hwnas: error: {parser.prog}: {message}", file=sys.stderr)
        raise SystemExit(2)

    parse = parser.parse_known_args

    def parse_known_args(args: Any = None, namespace: Any = None) -> Any:
        ns, extras = parse(args, namespace)
        if extras:  # the top-level parser would report them with its usage block
            error(f"unrecognized arguments: {' '.join(extras)}")
        return ns, extras

    parser.error = error  # type: ignore[method-assign]
    parser.parse_known_args = parse_known_args  # type: ignore[method-assign]


def log_level(verbose: int = 0, quiet: bool = False, level: str | None = None) -> int:
    """The level of hwnas's loggers: ``level`` if given, else ERROR (quiet), WARNING, INFO (-v) or DEBUG (-vv)."""
    if level is not None:
        return int(getattr(logging, level.upper()))
    if quiet:
        return logging.ERROR
    return logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG


def quiet() -> bool:
    """Whether ``hwnas -q`` is in effect: no status lines, no progress bars."""
    return _state["quiet"]


def say(line: str) -> None:
    """A status line on stdout (not a result): hidden by ``hwnas -q``; printed above any progress bar."""
    if _state["quiet"]:
        return
    from tqdm.auto import tqdm

    tqdm.write(line, file=sys.stdout)
    sys.stdout.flush()


class _Handler(logging.Handler):
    """Log records on stderr (looked up when written, so a redirected stderr is followed), above progress bars."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if record.levelno >= logging.WARNING:
                text = f"hwnas: {record.levelname.lower()}: {text}"
            from tqdm.auto import tqdm

            tqdm.write(text, file=sys.stderr)
        except Exception:  # never let a log line stop a command
            self.handleError(record)


@contextlib.contextmanager
def output_settings(*, verbose: int = 0, quiet: bool = False, level: str | None = None) -> Iterator[int]:
    """Apply ``-v``/``-q``/``--log-level`` to hwnas's loggers and :func:`say` while the block runs; yields the level.

    The ``hwnas`` logger gets one stderr handler and the level of :func:`log_level`; records still propagate (to
    a handler a host program or pytest installed on the root logger). Everything is restored on exit.
    """
    logger = logging.getLogger("hwnas")
    handler = _Handler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    saved = (logger.level, _state["quiet"])
    chosen = log_level(verbose, quiet, level)
    logger.addHandler(handler)
    logger.setLevel(chosen)
    _state["quiet"] = quiet
    try:
        yield chosen
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        _state["quiet"] = saved[1]
