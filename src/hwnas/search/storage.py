"""Study storage: one URL names where a study lives, so that many workers (processes, machines) share it.

Contract:

* :func:`resolve_storage` turns a storage URL into an Optuna storage with heartbeats on:

  ==========================================  ==================================================================
  URL                                         storage
  ==========================================  ==================================================================
  ``None``                                    SQLite file ``<output_dir>/study.db`` (folder created)
  ``sqlite:///study.db``                      SQLite file, relative to ``output_dir``; ``sqlite:////abs/x.db`` is
                                              absolute (SQLAlchemy's four slashes)
  ``journal:///study.log``, ``journal:x.log``  Optuna :class:`~optuna.storages.JournalStorage` on an append-only
                                              file, relative to ``output_dir``; ``journal:////abs/x.log`` or
                                              ``journal:/abs/x.log`` is absolute
  ``postgresql://user:pw@host/db``            :class:`~optuna.storages.RDBStorage` (driver psycopg2)
  ``mysql://user:pw@host/db``                 :class:`~optuna.storages.RDBStorage` (driver PyMySQL: a bare
                                              ``mysql://`` becomes ``mysql+pymysql://``)
  ==========================================  ==================================================================

  The parent folder of a new SQLite or journal file is created only when it lies inside ``output_dir``;
  elsewhere it must exist (else :class:`StorageError` naming ``storage.url`` and the folder). A missing
  database driver raises :class:`StorageError` naming ``pip install 'hwnas[cluster]'``; an unknown scheme
  raises one naming ``storage.url``; a server that cannot be reached raises one with the URL (password hidden).
* **Opening a study file safely** (every error a :class:`StorageError` naming the file and what to do, the
  refused file left unchanged):

  - Only a path that does not exist yet is created, and only with ``create=True`` (the default;
    ``hwnas search``); ``create=False`` (``hwnas worker`` and the commands that only read a study) raises
    :class:`StudyNotFoundError` instead and creates nothing (no file, no folder, no lock file).
  - A new SQLite file is built under a hidden temporary name (tables included) and hard-linked into place
    (renamed where links are unsupported), so a crash never leaves a half-made study file, and a process
    that loses the race opens the winner's. An existing SQLite file must start with SQLite's header, pass
    ``PRAGMA quick_check`` and hold Optuna's tables (``studies``, ``trials``, ``version_info``), read
    through a read-only connection: an empty (0-byte) file, a file that is not SQLite, a foreign SQLite
    database (or one without tables) and a corrupt one are refused instead of being silently restarted.
    A table schema of another Optuna version gives Optuna's upgrade hint.
  - A study file or folder that hwnas cannot write (it writes ``-wal``/``-shm`` files, the journal lock file,
    and heartbeats, even to read a study) is refused as read-only.
  - **Journal torn tail**: a writer killed mid-write leaves a last line without line end. Optuna still reads
    such a journal, but the next append would continue the torn line and then nobody could read it. Before a
    journal is opened, a last line that is not a complete JSON journal entry is cut off, and before every
    append of this process (:class:`_JournalBackend`) a last line without line end is; both under the
    journal's lock (so a live writer finishes its line first). The file is first copied to
    ``<name>.torn-<UTC time>[-n].bak`` beside it (never over an existing file), and one warning names the
    line and the backup. A corrupt line *followed by other lines* is not a torn write: the journal is refused
    with the line number and left unchanged; so is a file whose only line is not a journal entry.
  - :func:`read_errors` turns the sqlite3, SQLAlchemy, OS and JSON errors of reading a corrupt study into a
    :class:`StorageError` naming the storage.
* **Heartbeats** on every storage: a worker records a heartbeat of its running trial every ``heartbeat_s``;
  a RUNNING trial whose last heartbeat is older than ``grace_s`` (default ``2 × heartbeat_s``) is *stale*
  (its worker died) and is failed by the next worker's sweep (:func:`hwnas.search.workers.fail_stale`).
  RDB storages use Optuna's own heartbeat table (whole seconds: ``heartbeat_s`` and ``grace_s`` are rounded
  up; the age is measured with the database server's clock). Optuna's JournalStorage has no heartbeat, so
  :class:`HeartbeatJournalStorage` adds one: the heartbeat is the trial system attribute
  ``hwnas:heartbeat`` (the worker's ``time.time()``; the age is measured with the reading worker's clock,
  so machines sharing a journal need clocks synchronized to well within ``grace_s``), and a RUNNING trial
  without a heartbeat yet counts from its start time.
* **SQLite with several processes** (one machine; SQLite's locking is unreliable on network filesystems,
  use a journal file there): the database runs in WAL mode, every transaction starts with
  ``BEGIN IMMEDIATE`` and waits up to 60 s for the write lock. Without this, pysqlite opens a transaction
  only at the first write, so the read-then-write of Optuna's WAITING → RUNNING claim is not atomic and two
  processes can claim the same trial (measured: 14 of 300 trials claimed twice by two racing processes);
  with it, every claim is serialized. The listeners are attached to this storage object's engine: a copy
  made by pickling loses them, so each process calls :func:`resolve_storage` itself.
* **Journal lock**: :class:`~optuna.storages.journal.JournalFileOpenLock` (an ``O_CREAT | O_EXCL`` lock
  file next to the log), which is atomic on local disks and on the shared filesystems of clusters (NFSv3
  and later, Lustre, GPFS/Spectrum Scale, BeeGFS, CephFS, SMB); Optuna's default symlink lock also suits
  NFSv2 but fails on filesystems without symbolic links (SMB/CIFS, several FUSE mounts). A lock left by a
  killed writer is broken after 30 s.
* :func:`describe_storage` names a storage for logs, with any password replaced by ``***``;
  :func:`heartbeat_ages` gives the seconds since each RUNNING trial's last heartbeat and
  :func:`heartbeat_grace` the grace period (what a waiting worker reports about a silent trial).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sqlite3
import time
import urllib.parse
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import FrozenTrial, TrialState

from hwnas.errors import HwnasError

__all__ = [
    "DEFAULT_DB_NAME",
    "HEARTBEAT_ATTR",
    "HeartbeatJournalStorage",
    "StorageError",
    "StudyNotFoundError",
    "database_failure",
    "describe_storage",
    "heartbeat_ages",
    "heartbeat_grace",
    "read_errors",
    "resolve_storage",
    "storage_kind",
]

log = logging.getLogger(__name__)

DEFAULT_DB_NAME = "study.db"
"""File name of the default SQLite study in the output folder."""

HEARTBEAT_ATTR = "hwnas:heartbeat"
"""Trial system attribute holding a journal trial's last heartbeat (seconds since the epoch)."""

SQLITE_TIMEOUT_S = 60.0
"""How long a SQLite transaction waits for the write lock before failing."""

JOURNAL_LOCK_GRACE_S = 30
"""A journal lock file older than this (its writer died while holding it) is broken."""

_CLUSTER_HINT = "pip install 'hwnas[cluster]'"


class StorageError(HwnasError, ValueError):
    """A storage URL that cannot be used (unknown scheme, missing driver, unreachable server)."""


class StudyNotFoundError(StorageError):
    """No study file exists where ``resolve_storage(..., create=False)`` looked (nothing was created)."""

    def __init__(self, path: Path, study_name: str | None = None) -> None:
        what = "no study" if study_name is None else f"no study named {study_name!r}"
        super().__init__(f"{what} in {path}: run `hwnas search <experiment.yaml>` first (nothing was created)")
        self.path = path


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """Optuna's :class:`~optuna.storages.JournalStorage` with heartbeats (a trial system attribute).

    Works with :meth:`optuna.study.Study.optimize` and :func:`optuna.storages.fail_stale_trials` too, since it
    implements Optuna's heartbeat interface.

    Args:
        backend: the journal backend (a :class:`~optuna.storages.journal.JournalFileBackend`).
        heartbeat_interval: seconds between heartbeats of a running trial.
        grace_period: seconds without a heartbeat after which a RUNNING trial is stale.
        stale_trial_callback: called with ``(study, trial)`` for each trial that
            :func:`optuna.storages.fail_stale_trials` fails.
    """

    def __init__(self, backend: JournalFileBackend, *, heartbeat_interval: float, grace_period: float,
                 stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None) -> None:
        if not heartbeat_interval > 0:
            raise StorageError(f"heartbeat_s must be > 0, got {heartbeat_interval}")
        if not grace_period > heartbeat_interval:
            raise StorageError(f"grace_s ({grace_period}) must exceed heartbeat_s ({heartbeat_interval})")
        super().__init__(backend)
        self.heartbeat_interval = float(heartbeat_interval)
        self.grace_period = float(grace_period)
        self.stale_trial_callback = stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        """Record that the worker running ``trial_id`` is alive (nothing once the trial has finished)."""
        try:
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
        except UpdateFinishedTrialError:
            pass

    def heartbeat_ages(self, study_id: int) -> dict[int, float]:
        """Seconds since the last heartbeat (else the start) of each RUNNING trial, by trial id."""
        now = time.time()
        ages = {}
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            last = trial.system_attrs.get(HEARTBEAT_ATTR)
            started = trial.datetime_start.timestamp() if trial.datetime_start is not None else None
            candidates = [t for t in (last, started) if isinstance(t, int | float)]
            if candidates:
                ages[trial._trial_id] = now - max(candidates)
        return ages

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        return [trial_id for trial_id, age in self.heartbeat_ages(study_id).items() if age > self.grace_period]

    def get_heartbeat_interval(self) -> float:  # type: ignore[override]  # Optuna types it int
        """Seconds between heartbeats."""
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        """The callback run for each trial failed as stale."""
        return self.stale_trial_callback


class _JournalBackend(JournalFileBackend):
    """Optuna's journal file backend that cuts a torn last line (a writer killed mid-write) before it appends.

    Without this, the next append would continue the torn line and the journal could no longer be read.
    The line format and the locking are Optuna's (one JSON object per line, appended under the lock).
    """

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        """Append ``logs`` (one line each), first cutting a torn last line off (kept in a backup)."""
        text = "\n".join(json.dumps(entry, separators=(",", ":")) for entry in logs) + "\n"
        self._lock.acquire()
        try:
            _cut_torn_append(Path(self._file_path))
            with open(self._file_path, "ab") as f:
                f.write(text.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
        finally:
            self._lock.release()


# ---------------------------------------------------------------------------------- file checks
_SQLITE_MAGIC = b"SQLite format 3\x00"
_OPTUNA_TABLES = ("studies", "trials", "version_info")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def database_failure(exc: BaseException) -> str | None:
    """The driver's first line when ``exc`` is, or was caused by, a database server's connection failure, else None.

    SQLAlchemy's ``OperationalError``/``InterfaceError`` anywhere in the cause chain (Optuna wraps them in
    ``StorageInternalError``); the line is that of the chain's first exception (the driver's own message).
    """
    import sqlalchemy.exc

    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and all(cur is not seen for seen in chain):
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    if not any(isinstance(e, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError) for e in chain):
        return None
    text = str(chain[-1]).strip()
    return text.splitlines()[0] if text else type(chain[-1]).__name__


def _read_error_types() -> tuple[type[BaseException], ...]:
    """The errors a corrupt or unreadable study raises while it is opened or read."""
    types: list[type[BaseException]] = [sqlite3.Error, OSError, json.JSONDecodeError, UnicodeDecodeError]
    try:
        import sqlalchemy.exc

        types.append(sqlalchemy.exc.SQLAlchemyError)
    except ImportError:  # pragma: no cover - optuna needs sqlalchemy
        pass
    return tuple(types)


@contextlib.contextmanager
def read_errors(where: str) -> Iterator[None]:
    """Turn a sqlite3, SQLAlchemy, OS or JSON error while reading a study into a :class:`StorageError`.

    ``where`` names the storage (:func:`describe_storage`). Optuna's "Invalid log format." (a journal line
    that is no entry) is converted too; :class:`StorageError` and other errors pass unchanged.
    """
    try:
        yield
    except StorageError:
        raise
    except _read_error_types() as exc:
        raise StorageError(f"cannot read the study in {where}: {_first_line(exc)}; is the file corrupt? "
                           "restore it from a backup, or move it away to start a new study") from exc
    except ValueError as exc:
        if str(exc) != "Invalid log format.":
            raise
        raise StorageError(f"cannot read the study in {where}: a journal line is not a complete entry (corrupt); "
                           "restore it from a backup (opening it again names the line)") from exc


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _prepare_parent(path: Path, output_dir: Path, *, create: bool, what: str) -> None:
    """Make sure the folder of a new study file exists: created only inside ``output_dir``."""
    parent = path.parent
    if parent.is_dir():
        return
    if not create:
        raise StudyNotFoundError(path)
    if parent.exists():
        raise StorageError(f"storage.url: {parent}, the folder of {what} {path}, is not a folder")
    if not _inside(parent, output_dir):
        raise StorageError(f"storage.url: the folder {parent} of {what} {path} does not exist; create it first "
                           f"(hwnas creates folders only inside the output folder {output_dir})")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"storage.url: cannot create the folder {parent} of {what} {path}: "
                           f"{exc.strerror or exc}") from exc


def _check_writable(path: Path, what: str, beside: str) -> None:
    """Refuse a study file, or its folder, that hwnas could not write (before anything is opened)."""
    if path.exists() and not os.access(path, os.W_OK):
        raise StorageError(f"storage.url: {what} {path} is read-only, and hwnas writes to it (even to read a "
                           "study): make it writable (chmod u+w), or copy the output folder to a writable place")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise StorageError(f"storage.url: the folder {path.parent} of {what} {path} is read-only, and hwnas writes "
                           f"{beside} there: make it writable, or copy the output folder to a writable place")


def _check_sqlite_file(path: Path) -> None:
    """Refuse, without changing it, an existing file that is not a readable SQLite study of Optuna."""
    keep = "nothing was changed"
    if path.is_dir():
        raise StorageError(f"storage.url: SQLite study {path} is a folder, not a file; {keep}")
    try:
        with open(path, "rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise StorageError(f"storage.url: cannot read SQLite study {path}: {exc.strerror or exc}") from exc
    if not head:
        raise StorageError(f"storage.url: SQLite study {path} is empty (0 bytes), not a study (an interrupted "
                           f"creation, or a file made by hand); {keep}: delete it to start a new study, or "
                           "restore it from a backup")
    if head != _SQLITE_MAGIC:
        hint = " (it looks like a journal file: use storage.url journal:///...)" if head.lstrip()[:1] == b"{" \
            else ""
        raise StorageError(f"storage.url: {path} is not a SQLite database{hint}; {keep}: point storage.url at "
                           "the study file, or move this file away")
    sidecars = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
    fresh = [p for p in sidecars if not p.exists()]
    try:
        tables, check = _sqlite_tables_and_check(path)
    except sqlite3.Error as exc:
        _drop_sidecars(fresh)
        raise StorageError(f"storage.url: SQLite study {path} cannot be read ({_first_line(exc)}): corrupt? "
                           f"{keep}: restore it from a backup, or move it away to start a new study") from exc
    if check != ["ok"] or not set(_OPTUNA_TABLES) <= tables:
        _drop_sidecars(fresh)
    if check != ["ok"]:
        found = "; ".join(" ".join(c.split()) for c in check)[:300]
        raise StorageError(f"storage.url: SQLite study {path} is corrupt (integrity check: {found}); "
                           f"{keep}: restore it from a backup, or move it away to start a new study")
    missing = [t for t in _OPTUNA_TABLES if t not in tables]
    if not tables:
        raise StorageError(f"storage.url: {path} is a SQLite database without any table, not a study (an "
                           f"interrupted creation?); {keep}: delete it to start a new study")
    if missing:
        raise StorageError(f"storage.url: {path} is a SQLite database without Optuna's tables ({', '.join(missing)} "
                           f"missing; it has {', '.join(sorted(tables)[:6])}): not an Optuna study; {keep}: point "
                           "storage.url at the study file, or move this file away")


def _sqlite_tables_and_check(path: Path) -> tuple[set[str], list[str]]:
    """The tables of a SQLite file and its ``quick_check`` result, read through a read-only connection."""
    con = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=SQLITE_TIMEOUT_S)
    try:
        tables = {str(row[0]) for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return tables, [str(row[0]) for row in con.execute("PRAGMA quick_check(3)")]
    finally:
        con.close()


def _drop_sidecars(created: list[Path]) -> None:
    """Remove the ``-wal``/``-shm`` files that reading a refused file made (an empty ``-wal`` only)."""
    for sidecar in created:
        with contextlib.suppress(OSError):
            if sidecar.name.endswith("-shm") or sidecar.stat().st_size == 0:
                sidecar.unlink()


def _create_sqlite(path: Path, engine_kwargs: dict[str, Any]) -> None:
    """Create a new SQLite study at ``path`` atomically: built under a temporary name, then linked into place.

    A crash leaves at most a hidden ``.<name>.<pid>-<id>.creating`` file, never a half-made ``path``; when
    another process creates ``path`` first, that one is kept.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.creating")
    try:
        storage = _rdb(f"sqlite:///{tmp}", engine_kwargs, 1, 2)  # rollback journal: all in the file once closed
        storage.engine.dispose()
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process created it first: that one is opened
        except OSError:  # a filesystem without hard links
            if not path.exists():
                os.replace(tmp, path)
    except _read_error_types() as exc:
        raise StorageError(f"storage.url: cannot create SQLite study {path}: {_first_line(exc)}") from exc
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-journal")):
            with contextlib.suppress(OSError):
                leftover.unlink()


# ------------------------------------------------------------------------------- journal repair
def _journal_line_error(line: bytes) -> str | None:
    """Why a journal line (with its line end) is not a complete Optuna journal entry; None when it is."""
    if not line.endswith(b"\n"):
        return "no line end"
    try:
        entry = json.loads(line)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        return "not JSON"
    if not isinstance(entry, dict) or "op_code" not in entry:
        return "JSON, but not an Optuna journal entry"
    return None


def _last_line(path: Path) -> tuple[int, bytes]:
    """The byte offset and the bytes of the last line of ``path`` (with its line end, if it has one)."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        pos, chunk, buf = size, 1 << 16, b""
        while pos > 0:
            step = min(chunk, pos)
            pos -= step
            f.seek(pos)
            buf = f.read(step) + buf
            i = buf.rfind(b"\n", 0, len(buf) - 1)
            if i >= 0:
                return pos + i + 1, buf[i + 1:]
            chunk *= 2
        return 0, buf


def _scan_journal(path: Path) -> tuple[int, int, str, bool] | None:
    """The first bad line of a journal: (line number, byte offset, why, whether it is the last line)."""
    bad: tuple[int, int, str] | None = None
    offset = 0
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if bad is not None:
                return (*bad, False)
            reason = _journal_line_error(line)
            if reason is not None:
                bad = (number, offset, reason)
            offset += len(line)
    return None if bad is None else (*bad, True)


def _backup_copy(path: Path) -> Path:
    """Copy ``path`` to ``<name>.torn-<UTC time>[-n].bak`` beside it (never over an existing file)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for i in range(1000):
        backup = path.with_name(f"{path.name}.torn-{stamp}{f'-{i}' if i else ''}.bak")
        try:
            fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        try:
            with os.fdopen(fd, "wb") as dst, open(path, "rb") as src:
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
                os.fsync(dst.fileno())
        except BaseException:
            backup.unlink(missing_ok=True)
            raise
        return backup
    raise OSError(f"no free backup name {path.name}.torn-{stamp}-N.bak")


def _cut(path: Path, offset: int, number: int, reason: str) -> None:
    """Back ``path`` up, then truncate it to ``offset`` (the start of its torn last line ``number``)."""
    size = path.stat().st_size
    try:
        backup = _backup_copy(path)
    except OSError as exc:
        raise StorageError(f"journal {path}: its last line {number} is torn ({reason}), and no backup could be "
                           f"written beside it ({exc.strerror or exc}); nothing was changed: free some space "
                           "and open it again") from exc
    with open(path, "r+b") as f:
        f.truncate(offset)
        f.flush()
        os.fsync(f.fileno())
    log.warning("journal %s: cut its torn last line %d (%d bytes, %s: a writer was killed mid-write); the "
                "original is kept in %s", path, number, size - offset, reason, backup)


def _cut_torn_append(path: Path) -> None:
    """Under the journal lock, before an append: cut a last line without line end (a killed writer's)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
    except FileNotFoundError:
        return  # the append creates it, as Optuna's does
    offset, _ = _last_line(path)
    with open(path, "rb") as f:
        number = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")) + 1
    _cut(path, offset, number, "no line end")


def _journal_corrupt(path: Path, number: int, reason: str) -> StorageError:
    return StorageError(f"journal {path}: line {number} is corrupt ({reason}) and more lines follow it, so it is "
                        "not a torn last write that can be cut off; nothing was changed: restore the journal from "
                        f"a backup, or delete line {number} by hand (losing that one update of the study)")


def _repair_journal_tail(path: Path, lock: JournalFileOpenLock) -> None:
    """Cut a torn last line (kept in a backup) under the journal's lock; refuse a corrupt line before it."""
    if not path.exists() or path.stat().st_size == 0 or _journal_line_error(_last_line(path)[1]) is None:
        return  # the usual case: the last line is complete (a corrupt line before it fails Optuna's replay)
    lock.acquire()  # a live writer finishes its line first
    try:
        found = _scan_journal(path)
        if found is None:
            return  # it was a write in progress
        number, offset, reason, last = found
        if not last:
            raise _journal_corrupt(path, number, reason)
        if number == 1 and not _last_line(path)[1].startswith(b'{"op_code"'):
            raise StorageError(f"journal {path}: line 1 is not an Optuna journal entry ({reason}): not a journal "
                               "file? nothing was changed: point storage.url at the study's journal, or delete "
                               "this file to start a new study")
        _cut(path, offset, number, reason)
    finally:
        lock.release()


def _refuse_sqlite_journal(path: Path) -> None:
    """Refuse a SQLite database given as a journal (``journal:`` for a ``study.db``)."""
    if not path.exists():
        return
    try:
        with open(path, "rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise StorageError(f"storage.url: cannot read journal {path}: {exc.strerror or exc}") from exc
    if head == _SQLITE_MAGIC:
        raise StorageError(f"storage.url: journal {path} is a SQLite database, not a journal file; nothing was "
                           "changed: use storage.url sqlite:///... for it")


def _journal_error(path: Path, exc: BaseException) -> StorageError:
    """The error for a journal that Optuna could not replay: the corrupt line when one is found."""
    try:
        found = _scan_journal(path)
    except OSError:
        found = None
    if found is not None:
        return _journal_corrupt(path, found[0], found[2]) if not found[3] else StorageError(
            f"journal {path}: its last line {found[0]} is corrupt ({found[2]}); open it again to cut it off")
    return StorageError(f"journal {path} cannot be replayed ({_first_line(exc)}): corrupt? nothing was changed: "
                        "restore it from a backup")


def _unwrap(storage: BaseStorage) -> BaseStorage:
    """The storage itself, not Optuna's cache around an RDB storage (``optuna.load_study`` adds one)."""
    from optuna.storages._cached_storage import _CachedStorage

    return storage._backend if isinstance(storage, _CachedStorage) else storage


def heartbeat_grace(storage: BaseStorage) -> float | None:
    """Seconds without heartbeat after which a RUNNING trial of ``storage`` is stale (None: no heartbeats)."""
    storage = _unwrap(storage)
    interval = getattr(storage, "heartbeat_interval", None)
    if interval is None:
        return None
    grace = getattr(storage, "grace_period", None)
    return float(grace) if grace is not None else 2.0 * float(interval)


def heartbeat_ages(storage: BaseStorage, study_id: int) -> dict[int, float]:
    """Seconds since the last heartbeat of each RUNNING trial of a study, by trial id (``{}`` without heartbeats).

    A journal trial without a heartbeat counts from its start; an RDB trial without a heartbeat row is left
    out (Optuna never finds it stale). RDB ages use the database's clock, in its resolution.
    """
    storage = _unwrap(storage)
    if isinstance(storage, HeartbeatJournalStorage):
        return storage.heartbeat_ages(study_id)
    if not isinstance(storage, RDBStorage) or storage.heartbeat_interval is None:
        return {}
    import sqlalchemy
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    beat, trial = models.TrialHeartbeatModel, models.TrialModel
    with _create_scoped_session(storage.scoped_session) as session:
        now = session.execute(sqlalchemy.func.now()).scalar()
        rows = (session.query(beat.trial_id, beat.heartbeat).join(trial, trial.trial_id == beat.trial_id)
                .filter(trial.study_id == study_id, trial.state == TrialState.RUNNING).all())
    if now is None:
        return {}
    now = now.replace(tzinfo=None)
    return {trial_id: (now - last.replace(tzinfo=None)).total_seconds() for trial_id, last in rows}


def storage_kind(url: str | None) -> str:
    """``"sqlite"``, ``"journal"``, ``"postgresql"`` or ``"mysql"`` for a storage URL (``None``: sqlite)."""
    if url is None:
        return "sqlite"
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower() if ":" in url else ""
    if scheme in ("sqlite", "journal", "postgresql", "postgres", "mysql"):
        return "postgresql" if scheme == "postgres" else scheme
    raise StorageError(f"storage.url: unknown scheme in {_redact(url)!r}; expected sqlite:///file.db, "
                       "journal:///file.log, postgresql://user@host/db or mysql://user@host/db (or null for "
                       f"{DEFAULT_DB_NAME} in the output folder)")


def _file_path(url: str, scheme: str, output_dir: Path) -> Path:
    """The file of a ``sqlite:``/``journal:`` URL, relative ones against ``output_dir``."""
    rest = url[len(scheme) + 1:]
    if rest.startswith("///"):
        rest = rest[3:]  # sqlite:///rel.db, sqlite:////abs.db
    elif rest.startswith("//"):
        raise StorageError(f"storage.url: {url!r} names a host; a {scheme} file URL is {scheme}:///relative/path "
                           f"or {scheme}:////absolute/path")
    if not rest:
        raise StorageError(f"storage.url: {url!r} has no file path")
    if "?" in rest:
        raise StorageError(f"storage.url: {url!r}: query options are not supported in {scheme} file URLs (the "
                           "SQLite lock timeout and WAL mode are set by hwnas)")
    if rest == ":memory:" or rest.startswith(":memory:"):
        raise StorageError(f"storage.url: {url!r} is an in-memory database, which other workers (and this "
                           "worker's heartbeat thread) cannot see; use a file, or null for the default")
    path = Path(urllib.parse.unquote(rest)).expanduser()
    return path if path.is_absolute() else (output_dir / path)


def _redact(url: str) -> str:
    """The URL with its password (and any ``password=`` query value) replaced by ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{host}"
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = "&".join(f"{k}={'***' if k.lower() in ('password', 'passwd', 'pwd') else v}" for k, v in pairs)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def describe_storage(url: str | None, output_dir: Path | None = None) -> str:
    """A one-line description of a storage URL for logs; passwords are replaced by ``***``.

    With ``output_dir`` the file of a SQLite or journal URL is shown resolved (as :func:`resolve_storage` opens
    it), which is the URL to give ``optuna-dashboard`` or ``optuna`` commands for a SQLite study.
    """
    kind = storage_kind(url)
    if kind in ("sqlite", "journal"):
        if url is None:
            where = str((output_dir / DEFAULT_DB_NAME).resolve()) if output_dir is not None else \
                f"<output>/{DEFAULT_DB_NAME}"
            return f"sqlite:///{where} (SQLite, default)"
        if output_dir is None:
            return f"{url} ({'SQLite' if kind == 'sqlite' else 'journal file'})"
        path = _file_path(url, kind, output_dir).resolve()
        if kind == "sqlite":
            return f"sqlite:///{path} (SQLite)"
        return f"journal file {path} (lock: O_EXCL lock file {path}.lock)"
    return f"{_redact(_with_driver(url))} ({'PostgreSQL' if kind == 'postgresql' else 'MySQL'})"


def _with_driver(url: str) -> str:
    """The URL with the driver the cluster extra installs named; a URL that names its driver is kept.

    ``mysql://`` → ``mysql+pymysql://``; ``postgresql://`` and ``postgres://`` → ``postgresql+psycopg2://``
    (SQLAlchemy 2.1 made psycopg 3 the default for a bare ``postgresql://``; found by the real-server tests).
    """
    if url.startswith("mysql://"):
        return "mysql+pymysql://" + url[len("mysql://"):]
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg2://" + url[len(bare):]
    return url


def _grace(heartbeat_s: float, grace_s: float | None) -> float:
    if not (isinstance(heartbeat_s, int | float) and math.isfinite(heartbeat_s) and heartbeat_s > 0):
        raise StorageError(f"storage.heartbeat_s must be a positive number of seconds, got {heartbeat_s!r}")
    grace = 2.0 * heartbeat_s if grace_s is None else grace_s
    if not (isinstance(grace, int | float) and math.isfinite(grace) and grace > heartbeat_s):
        raise StorageError(f"storage.grace_s ({grace_s!r}) must exceed storage.heartbeat_s ({heartbeat_s}), or "
                           "every running trial looks dead")
    return float(grace)


def _sqlite_pragmas(path: Path) -> None:
    """Switch the database file to WAL mode (persistent in the file; a no-op when it already is)."""
    con = sqlite3.connect(str(path), timeout=SQLITE_TIMEOUT_S)
    try:
        mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    finally:
        con.close()
    if str(mode).lower() != "wal":
        raise StorageError(f"storage.url: SQLite file {path} refused WAL mode (got journal_mode={mode}); "
                           "is it on a network filesystem? Use a journal:/// file there")


def _serialize_sqlite(storage: RDBStorage) -> None:
    """Make every SQLite transaction of ``storage`` take the write lock first (``BEGIN IMMEDIATE``)."""
    import sqlalchemy

    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # pysqlite emits no BEGIN of its own ...

    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # ... we emit one that locks at once

    sqlalchemy.event.listen(storage.engine, "connect", _on_connect)
    sqlalchemy.event.listen(storage.engine, "begin", _on_begin)
    storage.engine.dispose()  # connections opened while the tables were created lack the listeners


def _rdb(url: str, engine_kwargs: dict[str, Any], heartbeat: int, grace: int) -> RDBStorage:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat, grace_period=grace)


def resolve_storage(url: str | None, output_dir: Path, *, heartbeat_s: float = 30,
                    grace_s: float | None = None, create: bool = True) -> BaseStorage:
    """Open the storage a URL names, with heartbeats on; see the module docstring.

    Args:
        url: storage URL, or ``None`` for ``sqlite:///<output_dir>/study.db``.
        output_dir: the run's output folder; relative file URLs are resolved against it.
        heartbeat_s: seconds between heartbeats of a running trial.
        grace_s: seconds without heartbeat after which a running trial is failed (default ``2 × heartbeat_s``).
        create: create a SQLite or journal file that does not exist yet (and its folder, inside
            ``output_dir``); ``False`` (commands that only read a study) raises :class:`StudyNotFoundError`
            instead and creates nothing.

    Raises:
        StorageError: unknown scheme, bad heartbeat settings, a missing driver or an unreachable server; a
            study file that is empty, not a study, corrupt or read-only, or whose folder is missing.
        StudyNotFoundError: ``create=False`` and no study file exists.
    """
    output_dir = Path(output_dir)
    grace = _grace(heartbeat_s, grace_s)
    kind = storage_kind(url)
    if kind == "journal":
        assert url is not None
        path = _file_path(url, "journal", output_dir).resolve()
        if path.is_dir():
            raise StorageError(f"storage.url: journal {path} is a folder, not a file")
        if not path.exists():
            _prepare_parent(path, output_dir, create=create, what="journal")
            if not create:
                raise StudyNotFoundError(path)
        _check_writable(path, "journal", f"its lock file {path.name}.lock")
        _refuse_sqlite_journal(path)
        lock = JournalFileOpenLock(str(path), grace_period=JOURNAL_LOCK_GRACE_S)
        try:
            _repair_journal_tail(path, lock)
            backend = _JournalBackend(str(path), lock_obj=lock)
        except OSError as exc:
            raise StorageError(f"storage.url: cannot open journal {path}: {exc.strerror or exc}") from exc
        try:
            return HeartbeatJournalStorage(backend, heartbeat_interval=heartbeat_s, grace_period=grace)
        except StorageError:
            raise
        except (ValueError, KeyError, TypeError, IndexError, AttributeError, OSError) as exc:
            raise _journal_error(path, exc) from exc
    hb_int, grace_int = max(1, math.ceil(heartbeat_s)), math.ceil(grace)
    grace_int = max(grace_int, hb_int + 1)
    if kind == "sqlite":
        path = (output_dir / DEFAULT_DB_NAME) if url is None else _file_path(url, "sqlite", output_dir)
        path = path.resolve()
        kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
        beside = f"{path.name}-wal and {path.name}-shm"
        if not path.exists() and not path.is_symlink():
            _prepare_parent(path, output_dir, create=create, what="SQLite study")
            if not create:
                raise StudyNotFoundError(path)
            _check_writable(path, "SQLite study", beside)
            _create_sqlite(path, kwargs)
        _check_sqlite_file(path)  # an empty, foreign or corrupt file is refused unchanged
        _check_writable(path, "SQLite study", beside)
        try:
            _sqlite_pragmas(path)
        except sqlite3.Error as exc:
            raise StorageError(f"storage.url: cannot open SQLite study {path}: {_first_line(exc)}") from exc
        sqlite_url = f"sqlite:///{path}"
        import sqlalchemy.exc

        for attempt in range(3):  # two processes opening a fresh file can race on creating the tables
            try:
                storage = _rdb(sqlite_url, kwargs, hb_int, grace_int)
                break
            except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError) as exc:
                if attempt == 2:
                    raise StorageError(f"storage.url: cannot open SQLite study {path}: {_first_line(exc)}") from exc
                time.sleep(0.5 * (attempt + 1))
            except RuntimeError as exc:  # Optuna: the table schema is of another Optuna version
                raise StorageError(f"storage.url: SQLite study {path}: {_first_line(exc)}") from exc
            except sqlalchemy.exc.SQLAlchemyError as exc:
                raise StorageError(f"storage.url: cannot open SQLite study {path}: {_first_line(exc)}") from exc
        _serialize_sqlite(storage)
        return storage
    assert url is not None
    full = _with_driver(url)
    try:
        return _rdb(full, {"pool_pre_ping": True}, hb_int, grace_int)
    except ImportError as exc:
        driver = "psycopg2 (psycopg2-binary)" if kind == "postgresql" else "PyMySQL"
        raise StorageError(f"storage.url: {_redact(full)} needs the database driver {driver}, which is not "
                           f"installed: {_CLUSTER_HINT}") from exc
    except Exception as exc:  # sqlalchemy.exc.OperationalError and friends: server down, bad credentials
        import sqlalchemy.exc

        if isinstance(exc, sqlalchemy.exc.SQLAlchemyError):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StorageError(f"storage.url: cannot open {_redact(full)}: {first}") from exc
        raise
