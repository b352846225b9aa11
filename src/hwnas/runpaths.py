"""Paths recorded in a run folder are relative to it, so a moved or copied folder uses its own files.

Contract: :func:`record_path` turns a file inside the output folder into a POSIX path relative to it (a file
outside stays absolute); :func:`resolve_path` turns a recorded path back into a file of *this* folder. Studies
and records written before paths were relative hold absolute paths: one that lies in another folder is
mapped to this folder's file of the same run-relative name (``trials/00012/model.pt``) when that exists,
so a copied folder never reads the original's models (see ``docs/reliability.md``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from hwnas.errors import HwnasError

__all__ = ["RunFolderError", "RunLockedError", "file_lock", "read_record", "record_path", "resolve_path", "run_lock"]

_RUN_SUBFOLDERS = ("trials", "local", "export", "pareto", "sweep", "ptq")
"""Top-level folders of a run folder that hold model files (the anchor for mapping an old absolute path)."""


def record_path(path: str | os.PathLike[str], output_dir: str | os.PathLike[str]) -> str:
    """``path`` relative to ``output_dir`` (POSIX separators) when inside it, else absolute."""
    p = Path(path).absolute()
    base = Path(output_dir).absolute()
    try:
        return PurePosixPath(*p.relative_to(base).parts).as_posix()
    except ValueError:
        return str(p)


def resolve_path(recorded: str | os.PathLike[str], output_dir: str | os.PathLike[str]) -> Path:
    """The file a recorded path names in the run folder ``output_dir`` (see the module docstring)."""
    base = Path(output_dir).absolute()
    p = Path(recorded)
    if not p.is_absolute():
        return base / p
    try:
        p.relative_to(base)
        return p
    except ValueError:
        pass
    parts = p.parts
    for i in range(len(parts) - 1, 0, -1):  # the last run subfolder in the path anchors the mapping
        if parts[i] in _RUN_SUBFOLDERS:
            candidate = base.joinpath(*parts[i:])
            if candidate.exists():
                return candidate
            break
    return p


class RunFolderError(HwnasError, ValueError):
    """A record in a run folder that is missing where a stage needs it, or not readable."""


def read_record(path: str | os.PathLike[str], *, missing: str | None = None) -> Any:
    """The JSON record at ``path``; ``None`` when absent (or, with ``missing``, a :class:`RunFolderError` saying it).

    A record that is not JSON (a disk that filled up, a hand edit) raises :class:`RunFolderError` naming the file
    and what to do, never a traceback.
    """
    p = Path(path)
    if not p.is_file():
        if missing is not None:
            raise RunFolderError(f"{p}: not found; {missing}")
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunFolderError(f"{p}: not a readable record ({err}); delete it and run the stage that writes it "
                             "again (hwnas run redoes it)") from err


class RunLockedError(RuntimeError):
    """Another process holds the run lock of an output folder (:func:`run_lock`)."""


@contextlib.contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold ``<folder>/.hwnas-run.lock`` exclusively for the block, or raise :class:`RunLockedError` at once.

    The lock is an ``flock`` (released by the OS when the process dies, even by ``kill -9``), so a stale file
    never blocks; the file holds the owner's PID for the message. A folder the block created and left empty
    (a run that stopped before writing anything) is removed again with its lock file: a refused command leaves
    no trace.
    """
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / ".hwnas-run.lock"
    with open(lock, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            owner = fh.read().strip() or "unknown"
            raise RunLockedError(f"{folder}: another hwnas run (pid {owner}) is using this output folder; wait for "
                                 "it to finish or stop it, then run again (workers join with hwnas worker)") from None
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()))
            fh.flush()
            yield
        finally:
            if created and [p.name for p in folder.iterdir()] == [lock.name]:
                with contextlib.suppress(OSError):
                    lock.unlink()
                    folder.rmdir()
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` for the block: one process makes ``path`` while others wait.

    The lock file lies in ``path``'s folder (created if needed) and is removed once ``path`` exists, so later
    callers that find the file need no lock.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if path.is_file():
                lock.unlink(missing_ok=True)
            fcntl.flock(fh, fcntl.LOCK_UN)
