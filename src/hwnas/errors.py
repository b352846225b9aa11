"""The one error base of hwnas: every error a user can cause derives from :class:`HwnasError`.

Contract: a :class:`HwnasError`'s message is one line that names the field, layer or file at fault and,
where there is one, what to do instead. The command line (:func:`hwnas.cli.main`) prints it as
``hwnas: error: <message>`` and exits with the error's :attr:`~HwnasError.exit_code` (2, "bad input"),
never with a traceback. Library callers catch :class:`HwnasError` (or the specific subclass); each
subclass also keeps the built-in base it had before (``ValueError``, ``RuntimeError``, ...), so existing
``except ValueError`` code still works. Exit codes are listed in ``docs/reliability.md``.
"""

from __future__ import annotations

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_INTERRUPTED", "HwnasError", "UnsafeFileError", "first_line"]

EXIT_FAILED = 1
"""A run that completed but failed its check (a verification mismatch, a search without a feasible trial)."""

EXIT_BAD_INPUT = 2
"""Bad input or environment: a malformed file, a missing path, a refused overwrite, a corrupt study."""

EXIT_INTERRUPTED = 130
"""Stopped by Ctrl-C (SIGINT); the finished work is kept, the running trial or stage is repeated next time."""


class HwnasError(Exception):
    """Base of every error hwnas reports to a user; the command line exits with :attr:`exit_code`."""

    exit_code: int = EXIT_BAD_INPUT


class UnsafeFileError(HwnasError, ValueError):
    """A file that could only be read by executing code from it (a pickle), refused without ``trust``."""


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first non-empty line of ``err``'s message (at most ``limit`` characters), else its type's name.

    For wrapping a third-party error (NumPy, h5py, torch, …) into one readable error line.
    """
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return lines[0][:limit] if lines else type(err).__name__
