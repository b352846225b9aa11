"""Output folders of the exporters: the one rule for where an export may write and what it may replace.

Rule:

* An export writes into a folder that does not exist yet, an empty folder, or a folder hwnas wrote before.
  hwnas marks its folders with a manifest, ``.hwnas-export.json``, that lists every file and folder it wrote
  there (relative paths; build products that hwnas's own ``compile``/``trace`` add are appended). A folder
  inside it that carries its own manifest (a nested export) counts as hwnas's too.
* Anything else in the folder is *foreign*. A folder holding a foreign file is never written into and
  nothing in it is deleted, with or without ``--force``: :class:`FolderError` (an
  :class:`~hwnas.export.errors.ExportError`, one line) names the folder and the first foreign file. That
  covers ``--out .`` in a non-empty folder of one's own; the folder, its files and its permissions are left
  exactly as they were.
* A folder hwnas wrote before is replaced only with ``--force`` (library functions: ``replace=True``, their
  default); without it the command line refuses. Replacing moves aside only what the manifest lists (and
  hwnas folders in the way of the new files); the folder itself is kept (its permissions, and ``.`` as the
  current folder).
* Writes are atomic: the new export is built in a temporary folder (``.hwnas-tmp-*``, on the same file
  system: beside a new folder, inside an existing one), then renamed into place; the old files are moved
  aside (``.hwnas-old-*``) first and deleted last. A failure on the way, in the exporter or in the moves,
  restores the previous state and removes the temporary folder. A new folder gets the usual permissions
  (``0777`` less the umask), not the private ones of a temporary folder.
* A single file (``--out model.onnx``) is written to a temporary file beside it, then renamed over it; an
  existing file is overwritten only with ``--force`` (``replace=True``). A file where a folder should be (or
  a folder where a file should be), a folder that cannot be created or written (read-only parent, no
  permission) raise :class:`FolderError`, never a traceback.

Entry points: :class:`Staging` (build an export folder, then :meth:`~Staging.publish`), :func:`check_folder`
(the rule, without side effects), :func:`claim_folder` (a folder that several artefacts are written into,
one by one: ``hwnas verify --out``, the pipeline's ``export/trial_<n>/``), :func:`write_file` (one file) and
:func:`recording` (add what a build step created to the manifest).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import ExportError

__all__ = ["MANIFEST", "FolderError", "Staging", "adopt_legacy", "check_folder", "claim_folder", "foreign_files",
           "record", "recording", "write_file"]

MANIFEST = ".hwnas-export.json"
"""The marker of a folder hwnas wrote; lists what it wrote there."""

_PREFIX = ".hwnas-"
_FORMAT = "hwnas-export"
_FORCE = "pass --force (replace=True) to replace it, or choose another folder"


class FolderError(ExportError):
    """An output folder or file that the rule (module docstring) forbids writing; nothing was changed."""


def _transient(name: str) -> bool:
    """Whether ``name`` is one of hwnas's temporary names (``.hwnas-tmp-*``, ``.hwnas-old-*``), never data."""
    return name.startswith(_PREFIX) and name != MANIFEST


def _read_manifest(folder: Path) -> set[str] | None:
    """The paths the manifest of ``folder`` lists; None without a (valid) manifest."""
    try:
        data = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("wrote"), list):
        return None
    return {str(p) for p in data["wrote"]}


def _write_manifest(folder: Path, paths: Iterable[str]) -> None:
    data = {"format": _FORMAT, "version": 1,
            "note": "written by hwnas: the files and folders hwnas wrote here; hwnas --force replaces only these",
            "wrote": sorted(set(paths))}
    tmp = folder / f"{_PREFIX}tmp-manifest-{secrets.token_hex(4)}"
    try:
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        os.replace(tmp, folder / MANIFEST)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _entries(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return sorted((e for e in it if not _transient(e.name)), key=lambda e: e.name)


def _walk(folder: Path) -> list[str]:
    """Every path under ``folder`` (relative, posix), hwnas's temporary names and the manifest left out."""
    out = []
    for e in _entries(folder):
        if e.name == MANIFEST:
            continue
        out.append(e.name)
        if e.is_dir(follow_symlinks=False):
            out.extend(f"{e.name}/{p}" for p in _walk(Path(e.path)))
    return out


def foreign_files(folder: str | os.PathLike[str], limit: int = 1) -> list[str]:
    """Up to ``limit`` paths (relative to ``folder``) that hwnas did not write.

    A path is hwnas's when a manifest lists it or it lies in a nested folder with its own manifest (module
    docstring). Foreign folders are not entered.
    """
    folder = Path(folder)
    out: list[str] = []
    top = _read_manifest(folder)

    def walk(d: Path, rel: str, listed: set[str]) -> None:
        for e in _entries(d):
            if len(out) >= limit:
                return
            r = rel + e.name
            if r == MANIFEST and top is not None:
                continue
            is_dir = e.is_dir(follow_symlinks=False)
            if is_dir and _read_manifest(Path(e.path)) is not None:  # a nested export: judged by its own manifest
                out.extend(f"{r}/{p}" for p in foreign_files(e.path, limit - len(out)))
            elif r in listed:
                if is_dir:
                    walk(Path(e.path), r + "/", listed)
            else:
                out.append(r)

    walk(folder, "", top or set())
    return out[:limit]


def _first_missing_parent(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` when it is not a folder (a file in the way), else None."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def check_folder(output_dir: str | os.PathLike[str], *, replace: bool, what: str = "output folder") -> str:
    """Apply the rule to ``output_dir`` without changing anything: ``"new"``, ``"empty"`` or ``"ours"``.

    Raises :class:`FolderError` for a file in the way, a folder with foreign files, or (``replace=False``) a
    folder holding an earlier hwnas export.
    """
    final = Path(output_dir).resolve()
    if not final.exists():
        blocker = _first_missing_parent(final)
        if blocker is not None:
            raise FolderError(f"{what} {final}: {blocker} is a file, not a folder; nothing was changed: "
                              "choose another folder")
        return "new"
    if not final.is_dir():
        raise FolderError(f"{what} {final} is a file, not a folder; nothing was changed: choose a folder "
                          "(a new or empty one, or an earlier hwnas export with --force)")
    try:
        manifest = _read_manifest(final)
        content = [e.name for e in _entries(final) if not (e.name == MANIFEST and manifest is not None)]
        foreign = foreign_files(final) if content else []
    except OSError as err:
        raise FolderError(f"{what} {final} cannot be read ({err.strerror or err}); nothing was changed") from err
    if not content:
        return "empty"
    if foreign and manifest is None:
        raise FolderError(f"{what} {final} is not empty and was not written by hwnas (it holds {foreign[0]!r}); "
                          "nothing was changed: choose a new or empty folder (--force replaces only an earlier "
                          "hwnas export, never other files)")
    if foreign:
        raise FolderError(f"{what} {final} holds {foreign[0]!r}, which hwnas did not write; nothing was changed, "
                          "even with --force: move it out of the folder, or choose another folder")
    if not replace:
        raise FolderError(f"{what} {final} holds an earlier hwnas export; nothing was changed: {_FORCE}")
    return "ours"


def _fail(what: str, final: Path, doing: str, err: OSError) -> FolderError:
    return FolderError(f"{what} {final}: cannot {doing} ({err.strerror or err}); nothing was changed")


def _fresh_dir(parent: Path, stem: str) -> Path:
    """A new empty folder ``parent/<stem><random>`` with the usual permissions (0777 less the umask)."""
    while True:
        path = parent / f"{stem}{secrets.token_hex(4)}"
        try:
            os.mkdir(path, 0o777)
            return path
        except FileExistsError:
            continue


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


class Staging:
    """A temporary folder to build an export in, published atomically to ``output_dir`` (module docstring).

    Creating it applies the rule (:func:`check_folder`) and makes the temporary folder :attr:`path`;
    :meth:`publish` moves the build into :attr:`final`; :meth:`discard` (also on an error inside a ``with``
    block) removes it and leaves ``output_dir`` as it was.
    """

    def __init__(self, output_dir: str | os.PathLike[str], *, replace: bool = True,
                 what: str = "output folder") -> None:
        self.final = Path(output_dir).resolve()
        self.replace = replace
        self.what = what
        self.state = check_folder(self.final, replace=replace, what=what)
        try:
            if self.state == "new":
                self.final.parent.mkdir(parents=True, exist_ok=True)
                self.path = _fresh_dir(self.final.parent, f"{_PREFIX}tmp-{self.final.name[:80]}-")
            else:
                self.path = _fresh_dir(self.final, f"{_PREFIX}tmp-")
        except OSError as err:
            where = self.final.parent if self.state == "new" else self.final
            raise _fail(what, self.final, f"write in {where}", err) from err

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, kind: object, value: object, tb: object) -> None:
        if kind is None:
            self.publish()
        else:
            self.discard()

    def discard(self) -> None:
        """Remove the temporary folder; ``output_dir`` keeps its previous state."""
        _rmtree(self.path)

    def publish(self) -> Path:
        """Move the build into place (the rule is checked again first); returns :attr:`final`."""
        try:
            state = check_folder(self.final, replace=self.replace, what=self.what)
            if self.state == "new":
                if state not in ("new", "empty"):
                    raise FolderError(f"{self.what} {self.final} appeared while the export was written; "
                                      "nothing was changed: choose another folder")
                try:
                    _write_manifest(self.path, _walk(self.path))
                    os.rename(self.path, self.final)
                except OSError as err:
                    raise _fail(self.what, self.final, "move the export into place", err) from err
            else:
                self._swap()
        except BaseException:
            self.discard()
            raise
        return self.final

    def _swap(self) -> None:
        """Into an existing folder: move hwnas's old entries aside, the new ones in, then drop the old ones."""
        final, new = self.final, self.path
        trash: Path | None = None
        moved_out: list[str] = []
        moved_in: list[str] = []
        old_listed: set[str] | None = None
        try:
            old_listed = _read_manifest(final)
            new_listed = _walk(new)
            existing = {e.name for e in _entries(final)} - {MANIFEST}
            new_top = sorted(e.name for e in _entries(new))
            aside = sorted(({p.split("/")[0] for p in old_listed or ()} | set(new_top)) & existing)
            # first list old and new together: a crash half-way leaves a folder hwnas still recognizes as its own
            _write_manifest(final, (old_listed or set()) | set(new_listed))
            trash = _fresh_dir(final, f"{_PREFIX}old-")
            for name in aside:
                os.rename(final / name, trash / name)
                moved_out.append(name)
            for name in new_top:
                os.rename(new / name, final / name)
                moved_in.append(name)
            _write_manifest(final, new_listed)
        except BaseException as err:
            restored = True
            for name in reversed(moved_in):
                with contextlib.suppress(OSError):
                    os.rename(final / name, new / name)
            for name in reversed(moved_out):
                try:
                    os.rename(trash / name, final / name)  # type: ignore[operator]
                except OSError:
                    restored = False  # keep the old files in .hwnas-old-* rather than lose them
            with contextlib.suppress(OSError):
                if old_listed is None:
                    (final / MANIFEST).unlink(missing_ok=True)
                else:
                    _write_manifest(final, old_listed)
            if trash is not None and restored:
                _rmtree(trash)
            if isinstance(err, OSError):
                kept = "" if restored else f" (the previous files are kept in {trash})"
                raise FolderError(f"{self.what} {final}: cannot move the export into place "
                                  f"({err.strerror or err}){kept}") from err
            raise
        _rmtree(trash)  # type: ignore[arg-type]
        _rmtree(new)


def claim_folder(output_dir: str | os.PathLike[str], *, replace: bool = True, what: str = "output folder") -> Path:
    """Make ``output_dir`` a folder hwnas writes several artefacts into, one by one (each atomically).

    The rule applies (:func:`check_folder`); a new or empty folder gets a manifest. Returns the resolved path.
    """
    final = Path(output_dir).resolve()
    state = check_folder(final, replace=replace, what=what)
    try:
        if state == "new":
            final.mkdir(parents=True, exist_ok=True)
        if _read_manifest(final) is None:
            _write_manifest(final, ())
    except OSError as err:
        raise _fail(what, final, "create or write the folder", err) from err
    return final


def adopt_legacy(folder: str | os.PathLike[str], names: Iterable[str]) -> bool:
    """Mark a run folder's export folder written by hwnas before manifests existed as hwnas's own.

    Only a folder without a manifest whose top-level entries all carry one of ``names`` (the artefact names
    hwnas writes there: ``model.qonnx.onnx``, ``hls4ml``, ``rtl``) is adopted; anything else stays foreign.
    Returns whether the folder was adopted.
    """
    folder = Path(folder)
    if not folder.is_dir() or _read_manifest(folder) is not None:
        return False
    allowed = set(names)
    entries = _entries(folder)
    if not entries or any(e.name not in allowed for e in entries):
        return False
    try:
        _write_manifest(folder, _walk(folder))
    except OSError:
        return False
    return True


def record(folder: str | os.PathLike[str], paths: Iterable[str]) -> None:
    """Add ``paths`` (relative to ``folder``) to its manifest, when it has one (best effort)."""
    folder = Path(folder)
    listed = _read_manifest(folder)
    paths = [p for p in paths if p != MANIFEST]
    if listed is None or set(paths) <= listed:
        return
    with contextlib.suppress(OSError):
        _write_manifest(folder, listed | set(paths))


@contextlib.contextmanager
def recording(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Add what the block creates in ``folder`` (a build: compiled libraries, simulators) to its manifest."""
    folder = Path(folder)
    tracked = _read_manifest(folder) is not None
    before = set(_walk(folder)) if tracked and folder.is_dir() else set()
    try:
        yield
    finally:
        if tracked and folder.is_dir():
            with contextlib.suppress(OSError):
                record(folder, set(_walk(folder)) - before)


def write_file(path: str | os.PathLike[str], data: bytes, *, replace: bool = True, what: str = "output file") -> Path:
    """Write ``data`` to ``path`` atomically (temporary file beside it, then a rename; module docstring).

    An existing file is overwritten only with ``replace``; a folder at ``path`` or a parent that cannot be
    created or written raises :class:`FolderError`. Recorded in the parent's manifest when it has one.
    """
    final = Path(path).resolve()
    if final.is_dir():
        raise FolderError(f"{what} {final} is a folder, not a file; nothing was changed: name a file")
    if final.exists() and not replace:
        raise FolderError(f"{what} {final} exists; nothing was changed: pass --force (replace=True) to overwrite "
                          "it, or choose another file name")
    blocker = _first_missing_parent(final)
    if blocker is not None:
        raise FolderError(f"{what} {final}: {blocker} is a file, not a folder; nothing was changed")
    tmp = final.parent / f"{_PREFIX}tmp-{final.name[:80]}-{secrets.token_hex(4)}"
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, final)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise _fail(what, final, "write it", err) from err
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    record(final.parent, [final.name])
    return final
