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

  The parent folder of a SQLite or journal file is created. A missing database driver raises
  :class:`StorageError` naming ``pip install 'hwnas[cluster]'``; an unknown scheme raises one naming
  ``storage.url``; a server that cannot be reached raises one with the URL (password hidden).
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
* :func:`describe_storage` names a storage for logs, with any password replaced by ``***``.
"""

from __future__ import annotations

import math
import sqlite3
import time
import urllib.parse
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "DEFAULT_DB_NAME",
    "HEARTBEAT_ATTR",
    "HeartbeatJournalStorage",
    "StorageError",
    "describe_storage",
    "resolve_storage",
    "storage_kind",
]

DEFAULT_DB_NAME = "study.db"
"""File name of the default SQLite study in the output folder."""

HEARTBEAT_ATTR = "hwnas:heartbeat"
"""Trial system attribute holding a journal trial's last heartbeat (seconds since the epoch)."""

SQLITE_TIMEOUT_S = 60.0
"""How long a SQLite transaction waits for the write lock before failing."""

JOURNAL_LOCK_GRACE_S = 30
"""A journal lock file older than this (its writer died while holding it) is broken."""

_CLUSTER_HINT = "pip install 'hwnas[cluster]'"


class StorageError(ValueError):
    """A storage URL that cannot be used (unknown scheme, missing driver, unreachable server)."""


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

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            last = trial.system_attrs.get(HEARTBEAT_ATTR)
            started = trial.datetime_start.timestamp() if trial.datetime_start is not None else None
            candidates = [t for t in (last, started) if isinstance(t, int | float)]
            if candidates and now - max(candidates) > self.grace_period:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> float:  # type: ignore[override]  # Optuna types it int
        """Seconds between heartbeats."""
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        """The callback run for each trial failed as stale."""
        return self.stale_trial_callback


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
    """``mysql://`` → ``mysql+pymysql://`` (the cluster extra installs PyMySQL); ``postgres://`` → postgresql."""
    if url.startswith("mysql://"):
        return "mysql+pymysql://" + url[len("mysql://"):]
    if url.startswith("postgres://"):
        return "postgresql://" + url[len("postgres://"):]
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
                    grace_s: float | None = None) -> BaseStorage:
    """Open (creating if needed) the storage a URL names, with heartbeats on; see the module docstring.

    Args:
        url: storage URL, or ``None`` for ``sqlite:///<output_dir>/study.db``.
        output_dir: the run's output folder; relative file URLs are resolved against it.
        heartbeat_s: seconds between heartbeats of a running trial.
        grace_s: seconds without heartbeat after which a running trial is failed (default ``2 × heartbeat_s``).

    Raises:
        StorageError: unknown scheme, bad heartbeat settings, a missing driver or an unreachable server.
    """
    output_dir = Path(output_dir)
    grace = _grace(heartbeat_s, grace_s)
    kind = storage_kind(url)
    if kind == "journal":
        assert url is not None
        path = _file_path(url, "journal", output_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = JournalFileOpenLock(str(path), grace_period=JOURNAL_LOCK_GRACE_S)
        return HeartbeatJournalStorage(JournalFileBackend(str(path), lock_obj=lock),
                                       heartbeat_interval=heartbeat_s, grace_period=grace)
    hb_int, grace_int = max(1, math.ceil(heartbeat_s)), math.ceil(grace)
    grace_int = max(grace_int, hb_int + 1)
    if kind == "sqlite":
        path = (output_dir / DEFAULT_DB_NAME) if url is None else _file_path(url, "sqlite", output_dir)
        path = path.resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        _sqlite_pragmas(path)
        sqlite_url = f"sqlite:///{path}"
        kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
        import sqlalchemy.exc

        for attempt in range(3):  # two processes opening a fresh file can race on creating the tables
            try:
                storage = _rdb(sqlite_url, kwargs, hb_int, grace_int)
                break
            except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError) as exc:
                if attempt == 2:
                    raise StorageError(f"storage.url: cannot open SQLite study {path}: {exc}") from exc
                time.sleep(0.5 * (attempt + 1))
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
