"""Crash-proof study storages: torn journal tails, refused SQLite files, read-only commands, silent workers."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from hwnas.cli import main
from hwnas.config import load_experiment
from hwnas.search import workers
from hwnas.search.run import open_study
from hwnas.search.storage import (
    StorageError,
    StudyNotFoundError,
    _create_sqlite,
    read_errors,
    resolve_storage,
)
from hwnas.search.workers import _claim, create_study, join_study, run_worker
from tests.experiments import tiny_mlp

optuna.logging.set_verbosity(optuna.logging.WARNING)

HB, GRACE = 0.5, 2.0
EXPERIMENT = tiny_mlp(units="[8]")


def _objective(trial):
    return trial.suggest_float("x", -1, 1) ** 2


def _study(tmp_path: Path, url: str, budget: int, *, run: int = 0):
    """A toy study with ``budget`` trials of which the first ``run`` were run (by worker 0)."""
    storage = resolve_storage(url, tmp_path, heartbeat_s=HB, grace_s=GRACE)
    create_study("toy", storage, ["minimize"], budget=budget, metadata={"experiment": "toy"})
    if run:
        def stop_after(study, trial):
            if trial.number + 1 >= run:
                study.stop()

        run_worker("toy", storage, _objective, sampler=optuna.samplers.RandomSampler(seed=0), budget=budget,
                   worker_id=0, progress=False, callbacks=[stop_after])
    return storage


def _state(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def _plain_trials(log: Path):
    """The trials as plain Optuna reads the journal (no hwnas code involved)."""
    storage = JournalStorage(JournalFileBackend(str(log)))
    return optuna.load_study(study_name="toy", storage=storage).get_trials()


def _lines_are_entries(log: Path) -> bool:
    data = log.read_bytes()
    return data.endswith(b"\n") and all("op_code" in json.loads(line) for line in data.splitlines())


def _experiment(tmp_path: Path, extra: str = ""):
    path = tmp_path / "exp.yaml"
    path.write_text(EXPERIMENT + extra)
    return path, load_experiment(path)


# ------------------------------------------------------------------------------------------ journal
@pytest.mark.parametrize("tail", ["cut", "not_json", "zeros"])
def test_torn_journal_tail_is_cut_with_a_backup_and_the_study_goes_on(tmp_path, caplog, tail):
    _study(tmp_path, "journal:///study.log", 6, run=3)
    log = tmp_path / "study.log"
    data = log.read_bytes()
    assert data.endswith(b"\n")
    if tail == "cut":  # a writer killed in the middle of its last line
        torn = data[:-25]
    elif tail == "not_json":  # a last line that ends but is not JSON
        torn = data + b'{"op_code": 5, "trial_id\n'
    else:  # a crash that left the file extended with zeros
        torn = data + b"\0" * 512
    log.write_bytes(torn)
    complete_before = [t.number for t in _plain_trials(log) if t.state == TrialState.COMPLETE]

    with caplog.at_level(logging.WARNING, logger="hwnas.search.storage"):
        storage = resolve_storage("journal:///study.log", tmp_path, heartbeat_s=HB, grace_s=GRACE)
    (backup,) = tmp_path.glob("study.log.torn-*.bak")
    assert backup.read_bytes() == torn  # the original bytes, before the cut
    (warning,) = [r.getMessage() for r in caplog.records if "torn" in r.getMessage()]
    assert warning.startswith(f"journal {log}: cut its torn last line ") and str(backup) in warning
    assert _lines_are_entries(log) and data.startswith(log.read_bytes())
    assert not Path(str(log) + ".lock").exists()

    report = run_worker("toy", storage, _objective, sampler=optuna.samplers.RandomSampler(seed=1), budget=6,
                        worker_id=1, progress=False)
    assert report.trials  # more trials ran on the repaired journal
    for trials in (join_study("toy", resolve_storage("journal:///study.log", tmp_path)).get_trials(),
                   _plain_trials(log)):
        assert len(trials) == 6 and all(t.state.is_finished() for t in trials)
        assert {t.number for t in trials if t.state == TrialState.COMPLETE} >= set(complete_before)
    assert len(list(tmp_path.glob("study.log.torn-*.bak"))) == 1  # nothing more to repair


def test_a_torn_write_of_another_process_is_cut_before_the_next_append(tmp_path, caplog):
    storage = _study(tmp_path, "journal:///study.log", 3)  # this process keeps its handle open
    log = tmp_path / "study.log"
    before = log.read_bytes()
    with open(log, "ab") as f:  # another writer, killed mid-write
        f.write(b'{"op_code":8,"worker_id":"x","trial_id":0,"user_at')
    torn = log.read_bytes()
    study = optuna.load_study(study_name="toy", storage=storage)
    with caplog.at_level(logging.WARNING, logger="hwnas.search.storage"):
        storage.set_trial_user_attr(study.trials[0]._trial_id, "note", "after the crash")
    (backup,) = tmp_path.glob("study.log.torn-*.bak")
    assert backup.read_bytes() == torn and log.read_bytes().startswith(before) and _lines_are_entries(log)
    assert "cut its torn last line" in caplog.text
    assert _plain_trials(log)[0].user_attrs["note"] == "after the crash"


def test_a_second_repair_never_overwrites_an_earlier_backup(tmp_path):
    _study(tmp_path, "journal:///study.log", 2)
    log = tmp_path / "study.log"
    good = log.read_bytes()
    for fragment in (b'{"op_code":', b'{"op_'):
        log.write_bytes(good + fragment)
        resolve_storage("journal:///study.log", tmp_path, heartbeat_s=HB, grace_s=GRACE)
    backups = sorted(tmp_path.glob("study.log.torn-*.bak"))
    assert len(backups) == 2 and {b.read_bytes() for b in backups} == {good + b'{"op_code":', good + b'{"op_'}
    assert log.read_bytes() == good


@pytest.mark.parametrize("case", ["cut_middle", "garbage_middle", "not_a_journal", "sqlite_as_journal"])
def test_corrupt_journals_are_refused_unchanged(tmp_path, case):
    log = tmp_path / "study.log"
    if case in ("cut_middle", "garbage_middle"):
        _study(tmp_path, "journal:///study.log", 3)
        lines = log.read_bytes().splitlines(keepends=True)
        lines[2] = lines[2][:15] if case == "cut_middle" else b"\x00\x13garbage\n"
        log.write_bytes(b"".join(lines))
        match = "line 3 is corrupt"
    elif case == "not_a_journal":
        log.write_text("these are my notes, not a study")
        match = "line 1 is not an Optuna journal entry"
    else:
        con = sqlite3.connect(log)
        con.execute("CREATE TABLE t (x)")
        con.executemany("INSERT INTO t VALUES (?)", [(f"row {i}\n",) for i in range(50)])
        con.commit()
        con.close()
        match = "is a SQLite database, not a journal file"
    before = _state(log)
    for create in (True, False):
        with pytest.raises(StorageError, match=match) as err:
            resolve_storage("journal:///study.log", tmp_path, heartbeat_s=HB, grace_s=GRACE, create=create)
        assert str(log) in str(err.value) and "\n" not in str(err.value)
    assert _state(log) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.log"]  # no backup, no lock left


# ------------------------------------------------------------------------------------------- SQLite
def _valid_study_db(folder: Path) -> bytes:
    storage = _study(folder, "sqlite:///valid.db", 40)
    storage.engine.dispose()
    return (folder / "valid.db").read_bytes()


@pytest.mark.parametrize(("case", "match"), [
    ("empty", "is empty \\(0 bytes\\)"),
    ("text", "is not a SQLite database"),
    ("journal", "looks like a journal file"),
    ("foreign", "without Optuna's tables"),
    ("no_tables", "without any table"),
    ("truncated", "cannot be read|is corrupt"),
    ("garbage_page", "cannot be read|is corrupt"),
    ("zero_page", "cannot be read|is corrupt"),
    ("folder", "is a folder"),
])
def test_refused_sqlite_files_are_left_unchanged(tmp_path, case, match):
    path = tmp_path / "run" / "study.db"
    path.parent.mkdir()
    valid = _valid_study_db(tmp_path) if case in ("truncated", "garbage_page", "zero_page") else b""
    if case == "folder":
        path.mkdir()
    elif case in ("foreign", "no_tables"):
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE measurements (x)" if case == "foreign" else "PRAGMA user_version = 7")
        con.commit()
        con.close()
    else:
        path.write_bytes({"empty": b"", "text": b"hello\n", "journal": b'{"op_code": 0}\n',
                          "truncated": valid[:len(valid) // 2],
                          "garbage_page": valid[:3 * 4096] + os.urandom(4096) + valid[4 * 4096:],
                          "zero_page": valid[:4096] + bytes(4096) + valid[2 * 4096:]}[case])
    before = None if case == "folder" else _state(path)
    listing = sorted(p.name for p in path.parent.iterdir())
    for url in (None, f"sqlite:///{path}"):
        for create in (True, False):
            with pytest.raises(StorageError, match=match) as err:
                resolve_storage(url, path.parent, heartbeat_s=HB, grace_s=GRACE, create=create)
            assert str(path) in str(err.value) and "\n" not in str(err.value)
    if before is not None:
        assert _state(path) == before
    assert sorted(p.name for p in path.parent.iterdir()) == listing  # no -wal/-shm or temporary files left


def test_an_old_optuna_schema_gives_the_upgrade_hint(tmp_path):
    _study(tmp_path, "sqlite:///study.db", 2).engine.dispose()
    con = sqlite3.connect(tmp_path / "study.db")
    con.execute("UPDATE alembic_version SET version_num = 'v3.0.0.a'")
    con.commit()
    con.close()
    with pytest.raises(StorageError, match="optuna storage upgrade"):
        resolve_storage(None, tmp_path, heartbeat_s=HB, grace_s=GRACE)


def test_a_new_sqlite_study_appears_whole_and_an_existing_one_is_kept(tmp_path):
    resolve_storage(None, tmp_path / "out", heartbeat_s=HB, grace_s=GRACE)
    assert [p.name for p in (tmp_path / "out").iterdir() if "creating" in p.name] == []
    storage = _study(tmp_path, "sqlite:///study.db", 3)
    storage.engine.dispose()
    # a process that loses the creation race keeps the winner's file
    _create_sqlite(tmp_path / "study.db", {})
    assert [t.state for t in join_study("toy", resolve_storage(None, tmp_path)).trials] == [TrialState.WAITING] * 3
    assert [p.name for p in tmp_path.iterdir() if "creating" in p.name] == []


def test_read_only_studies_are_refused(tmp_path, monkeypatch):
    _study(tmp_path, "sqlite:///study.db", 2).engine.dispose()
    _study(tmp_path, "journal:///study.log", 2)
    real_access = os.access
    for denied, what in ((tmp_path / "study.db", "SQLite study .*study.db is read-only"),
                         (tmp_path / "study.log", "journal .*study.log is read-only"),
                         (tmp_path, "folder .* is read-only")):
        monkeypatch.setattr(os, "access", lambda p, mode, denied=denied: (Path(p) != denied or not mode & os.W_OK)
                            and real_access(p, mode))
        for url in ("sqlite:///study.db", "journal:///study.log"):
            if denied.suffix and not url.endswith(denied.name):
                continue
            with pytest.raises(StorageError, match=what):
                resolve_storage(url, tmp_path, heartbeat_s=HB, grace_s=GRACE, create=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write read-only files")
def test_a_chmod_read_only_study_is_refused(tmp_path):
    _study(tmp_path, "sqlite:///study.db", 2).engine.dispose()
    (tmp_path / "study.db").chmod(0o444)
    with pytest.raises(StorageError, match="read-only"):
        resolve_storage(None, tmp_path)


# --------------------------------------------------------------------------------- folders, reading
def test_storage_folders_are_created_only_inside_the_output_folder(tmp_path):
    out = tmp_path / "out"
    for url in (f"sqlite:///{tmp_path / 'elsewhere' / 'x.db'}", f"journal:///{tmp_path / 'elsewhere' / 'x.log'}",
                "sqlite:///../elsewhere/x.db"):
        with pytest.raises(StorageError, match=r"storage\.url: the folder .*elsewhere.* does not exist") as err:
            resolve_storage(url, out, heartbeat_s=HB, grace_s=GRACE)
        assert str(out) in str(err.value)
    assert not (tmp_path / "elsewhere").exists() and not out.exists()
    resolve_storage("sqlite:///deep/er/x.db", out, heartbeat_s=HB, grace_s=GRACE)  # inside: created
    resolve_storage("journal:///logs/x.log", out, heartbeat_s=HB, grace_s=GRACE)
    assert (out / "deep" / "er" / "x.db").is_file() and (out / "logs" / "x.log").is_file()
    (tmp_path / "elsewhere").mkdir()  # an existing folder outside is fine
    resolve_storage(f"journal:///{tmp_path / 'elsewhere' / 'x.log'}", out, heartbeat_s=HB, grace_s=GRACE)


@pytest.mark.parametrize("url", [None, "journal:///study.log"])
def test_read_only_commands_on_a_missing_study_create_nothing(tmp_path, capsys, url):
    path, exp = _experiment(tmp_path, "" if url is None else f"storage: {{url: '{url}'}}\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(StudyNotFoundError, match=r"no study named 'tiny' in .*: run `hwnas search"):
        open_study(exp)
    assert main(["pareto", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hwnas: error: no study named 'tiny' in ") and "hwnas search" in err and "\n" not in err
    with pytest.raises(StudyNotFoundError, match="no study in"):
        resolve_storage(exp.storage_url(), exp.output_dir(), create=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no study.db, journal, lock or output folder


def test_a_read_only_command_on_an_empty_study_file_fails_in_one_line(tmp_path, capsys):
    path, exp = _experiment(tmp_path)
    db = exp.output_dir() / "study.db"
    db.parent.mkdir()
    db.touch()
    before = _state(db)
    assert main(["pareto", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hwnas: error: storage.url: SQLite study ") and "is empty (0 bytes)" in err
    assert "\n" not in err and _state(db) == before


def test_read_errors_become_storage_errors_naming_the_storage():
    for exc in (sqlite3.DatabaseError("database disk image is malformed"), OSError(5, "Input/output error"),
                json.JSONDecodeError("Expecting value", "x", 0), ValueError("Invalid log format.")):
        with pytest.raises(StorageError, match=r"the study in /x/study\.db"), read_errors("/x/study.db"):
            raise exc
    with pytest.raises(ValueError, match="other"), read_errors("/x/study.db"):
        raise ValueError("other")  # not a storage problem: unchanged


# ----------------------------------------------------------------------------------- silent workers
@pytest.mark.parametrize("url", ["journal:///study.log", "sqlite:///study.db"])
def test_a_waiting_worker_says_when_a_silent_trial_is_reclaimed(tmp_path, caplog, monkeypatch, url):
    hb, grace = (0.5, 2.5) if url.startswith("journal") else (1.0, 3.0)
    storage = resolve_storage(url, tmp_path, heartbeat_s=hb, grace_s=grace)
    create_study("toy", storage, ["minimize"], budget=3, metadata={})
    study = optuna.load_study(study_name="toy", storage=storage)
    dead = _claim(study, hb)  # a worker that claimed trial 0 and died
    storage.set_trial_user_attr(dead, "worker", {"id": 7, "host": "n1", "pid": 4242})
    monkeypatch.setattr(workers, "WAIT_NOTE_S", 0.6)  # notes at most every 0.6 s (15 s by default)
    with caplog.at_level(logging.WARNING, logger="hwnas.search.workers"):
        report = run_worker("toy", storage, _objective, sampler=optuna.samplers.RandomSampler(seed=0), budget=3,
                            worker_id=1, progress=False)
    notes = [r.getMessage() for r in caplog.records if "waiting for" in r.getMessage()]
    assert notes, caplog.text
    assert all(n.startswith("worker 1: waiting for trial 0 of silent worker 7 (n1, pid 4242), no heartbeat for ")
               and n.endswith("s if no heartbeat comes") for n in notes)
    left = [int(n.split("reclaimed in ")[1].split(" s")[0]) for n in notes]
    assert left == sorted(left, reverse=True) and left[0] <= grace
    assert report.stale_failed == [0] and report.elapsed_s < grace + 2.5
    assert optuna.load_study(study_name="toy", storage=storage).trials[0].state == TrialState.FAIL


def test_waiting_notes_are_throttled(tmp_path, caplog):
    storage = resolve_storage("journal:///study.log", tmp_path, heartbeat_s=0.25, grace_s=2.0)
    create_study("toy", storage, ["minimize"], budget=2, metadata={})
    _claim(optuna.load_study(study_name="toy", storage=storage), 0.25)
    with caplog.at_level(logging.WARNING, logger="hwnas.search.workers"):
        run_worker("toy", storage, _objective, sampler=optuna.samplers.RandomSampler(seed=0), budget=2,
                   worker_id=1, progress=False)
    notes = [r.getMessage() for r in caplog.records if "waiting for" in r.getMessage()]
    assert len(notes) == 1 and notes[0].startswith("worker 1: waiting for trial 0 of a silent worker, no heartbeat")
