"""The one error base of hwnas: every error a user can cause derives from :class:`HwnasError`.

Contract: a :class:`HwnasError`'s message is one line that names the field, layer or file at fault and,
where there is one, what to do instead. The command line (:func:`hwnas.cli.main`) prints it as
``hwnas: error: <message>`` and exits with the error's :attr:`~HwnasError.exit_code` (2, "bad input",
unless the class or :func:`tool_missing` says 1), never with a traceback. Library callers catch
:class:`HwnasError` (or the specific subclass); each subclass also keeps the built-in base it had before
(``ValueError``, ``RuntimeError``, ...), so existing ``except ValueError`` code still works.

Exit codes of every ``hwnas`` command (``docs/run.md``, *The command line*; ``hwnas --help``):
0 success, 1 failure (the work ran and failed, or an optional tool or package it needs is missing),
2 usage or configuration error (bad flags, a malformed experiment or file, a refused path), 130 interrupted.
"""

from __future__ import annotations

from typing import TypeVar

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "HwnasError", "UnsafeFileError",
           "first_line", "tool_missing"]

EXIT_OK = 0
"""Success."""

EXIT_FAILED = 1
"""A failure: the work ran and failed its check (a verification mismatch, a search without a feasible trial, a
tool that failed), or an optional tool or package it needs is not installed (:func:`tool_missing`)."""

EXIT_BAD_INPUT = 2
"""Usage or configuration error: bad flags, a malformed file, a missing path, a refused overwrite, a corrupt study."""

EXIT_INTERRUPTED = 130
"""Stopped by Ctrl-C (SIGINT); the finished work is kept, the running trial or stage is repeated next time."""


class HwnasError(Exception):
    """Base of every error hwnas reports to a user; the command line exits with :attr:`exit_code`."""

    exit_code: int = EXIT_BAD_INPUT


_E = TypeVar("_E", bound=HwnasError)


def tool_missing(err: _E) -> _E:
    """Mark ``err`` as "an optional tool or package is not installed": the command line exits 1, not 2.

    ``raise tool_missing(TaskError("... pip install 'hwnas[receiver]'")) from err``; returns ``err``.
    """
    err.exit_code = EXIT_FAILED
    return err


class UnsafeFileError(HwnasError, ValueError):
    """A file that could only be read by executing code from it (a pickle), refused without ``trust``."""


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first non-empty line of ``err``'s message (at most ``limit`` characters), else its type's name.

    For wrapping a third-party error (NumPy, h5py, torch, …) into one readable error line.
    """
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return lines[0][:limit] if lines else type(err).__name__
