"""The MCP server's file rules: every path is confined to one root folder; artefacts are read as text only.

Contract (``docs/agent.md``, "Safety"):

* :meth:`Root.resolve` resolves a user-given path against the root (``Path.resolve``, so ``..`` and symlinks are
  followed) and refuses, with :class:`OutsideRootError` naming the path, anything that does not end up inside the
  resolved root: an absolute path elsewhere, ``../..``, a symlink pointing out. A path for writing is also refused
  inside the server's own state folder ``<root>/.hwnas-mcp``.
* :func:`list_artefacts` lists an output folder (symlinks are not followed; at most :data:`MAX_LIST` files) with a
  label per file (Pareto table, report table, selected models, verification, estimate vs synthesis, ...).
* :func:`read_artefact` returns at most :data:`MAX_READ` characters of a text file (CSV, Markdown, JSON, YAML,
  logs, HDL and HLS sources); a model file (``*.pt``), a study database, an image or any file that is not UTF-8
  text is refused. Nothing here unpickles, imports or executes anything.

Only the standard library is imported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hwnas.errors import HwnasError

__all__ = ["MAX_LIST", "MAX_READ", "STATE_DIR", "AgentError", "OutsideRootError", "Root", "artefact_kind",
           "list_artefacts", "read_artefact"]

STATE_DIR = ".hwnas-mcp"
"""The server's own folder under the root (job records and logs)."""

MAX_LIST = 2000
"""Files listed at most by :func:`list_artefacts`."""

MAX_READ = 256 * 1024
"""Characters returned at most by one :func:`read_artefact` call (page on with ``offset``)."""

TEXT_SUFFIXES = frozenset({
    ".csv", ".tsv", ".md", ".txt", ".json", ".yaml", ".yml", ".log", ".html", ".rpt", ".xdc", ".tcl", ".cfg",
    ".ini", ".toml", ".v", ".sv", ".vh", ".vhd", ".cpp", ".cc", ".c", ".h", ".hpp", ".py"})
"""Suffixes :func:`read_artefact` reads (as UTF-8 text)."""

_REFUSED = {".pt": "a torch model file (a pickle)", ".pth": "a torch model file (a pickle)",
            ".pkl": "a pickle", ".pickle": "a pickle", ".db": "a database", ".sqlite": "a database",
            ".onnx": "a binary ONNX model", ".npy": "a binary array", ".npz": "a binary array",
            ".h5": "an HDF5 file", ".hdf5": "an HDF5 file", ".png": "an image", ".jpg": "an image",
            ".svg": "an image", ".so": "a shared library", ".bin": "a binary file"}


_FOLDERS = frozenset({"pareto", "report", "verify", "synth", "export", "local", "baselines", "trials"})


class AgentError(HwnasError, ValueError):
    """A request the MCP server refuses or cannot do; the message says which argument and why."""


class OutsideRootError(AgentError):
    """A path that is not inside the server's root folder (absolute elsewhere, ``..``, a symlink out)."""


class Root:
    """The one folder the server may read and write in (resolved once, symlinks included)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise AgentError(f"--root {os.fspath(folder)!r}: not an existing folder")
        self.path = path.resolve()

    def resolve(self, user_path: Any, *, what: str = "path", write: bool = False) -> Path:
        """``user_path`` (relative to the root, or absolute inside it) as a resolved path inside the root.

        Raises:
            AgentError: not a non-empty string, or (``write``) inside the server's state folder.
            OutsideRootError: it resolves outside the root.
        """
        if not isinstance(user_path, str) or not user_path.strip():
            raise AgentError(f"{what}: expected a non-empty path relative to the root {self.path}")
        if "\x00" in user_path or len(user_path) > 4096:
            raise AgentError(f"{what}: {user_path[:80]!r} is not a usable path")
        given = Path(user_path)
        try:
            resolved = (given if given.is_absolute() else self.path / given).resolve()
        except (OSError, RuntimeError) as err:  # a symlink loop
            raise AgentError(f"{what}: {user_path!r} cannot be resolved ({err})") from None
        if not resolved.is_relative_to(self.path):
            how = ("an absolute path elsewhere" if given.is_absolute() else
                   "'..' leads out of it" if ".." in given.parts else "a symlink on it leads out")
            raise OutsideRootError(f"{what}: {user_path!r} is outside the root {self.path} ({how}); give a path "
                                   "inside the root")
        if write and resolved.is_relative_to(self.path / STATE_DIR):
            raise AgentError(f"{what}: {user_path!r} is inside the server's own folder {STATE_DIR}/; choose "
                             "another path")
        return resolved

    def inside(self, path: Path) -> bool:
        """Whether the resolved ``path`` lies inside the root."""
        try:
            return path.resolve().is_relative_to(self.path)
        except (OSError, RuntimeError):
            return False

    def rel(self, path: Path) -> str:
        """``path`` relative to the root, with forward slashes (``.`` for the root itself)."""
        try:
            return path.resolve().relative_to(self.path).as_posix() or "."
        except ValueError:
            return str(path)


def artefact_kind(rel: str) -> str:
    """A label for a file of an output folder, by its path inside the folder."""
    parts = rel.split("/")
    name = parts[-1]
    # the output folder's own sub-folder the file is in (the listing may start anywhere above or inside it)
    top = next((p for p in reversed(parts[:-1]) if p in _FOLDERS), "")
    suffix = Path(name).suffix.lower()
    if suffix in (".db-wal", ".db-shm", ".db-journal"):
        suffix = ".db"
    if suffix in _REFUSED:
        return _REFUSED[suffix] + " (not readable here)"
    labels = {"search.json": "search summary", "selection.json": "selected models (select stage)",
              "stages.json": "stage records", "experiment.yaml": "experiment"}
    if not top and name in labels:
        return labels[name]
    if top == "pareto":
        return {"pareto.csv": "Pareto front table", "trials.csv": "every trial (table)",
                "pareto.json": "Pareto front records"}.get(name, "Pareto front trial")
    if top == "report":
        stem = Path(name).stem
        if stem == "selected":
            return "report: selected models"
        if stem == "verification":
            return "report: verification table"
        tables = {"table2": "report table 2 (BOPs, MACs, resources)", "table3": "report table 3 (latency, energy, "
                  "accuracy)", "pareto": "report table (Pareto front)", "layers": "report table (per-layer estimate)"}
        if stem in tables:
            return tables[stem]
        if stem.startswith("baseline"):
            return "report: baselines table"
        return "report" if name == "index.html" else "report file"
    return {"verify": "verification record", "synth": "synthesis vs estimate (synth stage)",
            "export": "export artefact", "local": "local search", "baselines": "baseline record",
            "trials": "trial file"}.get(top, "file")


def _readable(path: Path) -> bool:
    return path.suffix.lower() in TEXT_SUFFIXES


def list_artefacts(root: Root, folder: Path) -> dict[str, Any]:
    """The files under ``folder`` (inside ``root``): path, size, label, readable; symlinks are not followed."""
    if not folder.is_dir():
        raise AgentError(f"{root.rel(folder)}: no such folder (has the experiment run yet?)")
    files: list[dict[str, Any]] = []
    truncated = False
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames.sort()
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not (here / d).is_symlink() and d != STATE_DIR]
        for name in sorted(filenames):
            path = here / name
            if path.is_symlink() and not root.inside(path):
                continue  # never listed: it points outside the root
            if len(files) >= MAX_LIST:
                truncated = True
                break
            try:
                size = path.stat().st_size
            except OSError:
                continue
            rel = root.rel(path)
            files.append({"path": rel, "size": size, "kind": artefact_kind(rel), "readable": _readable(path)})
        if truncated:
            break
    return {"folder": root.rel(folder), "files": files, "truncated": truncated}


def read_artefact(root: Root, path: Path, *, offset: int = 0, max_chars: int = 65536) -> dict[str, Any]:
    """Up to ``max_chars`` characters of the text file ``path`` from character ``offset``; binary is refused."""
    rel = root.rel(path)
    if not path.is_file():
        raise AgentError(f"{rel}: no such file")
    suffix = path.suffix.lower()
    if suffix in _REFUSED:
        raise AgentError(f"{rel}: {_REFUSED[suffix]}; only text artefacts are read (CSV, Markdown, JSON, YAML, "
                         "logs)")
    if suffix not in TEXT_SUFFIXES:
        raise AgentError(f"{rel}: not a known text file ({suffix or 'no suffix'}); readable: "
                         f"{' '.join(sorted(TEXT_SUFFIXES))}")
    if offset < 0 or max_chars < 1:
        raise AgentError("offset must be >= 0 and max_chars >= 1")
    max_chars = min(max_chars, MAX_READ)
    size = path.stat().st_size
    if offset >= 4 * 1024 * 1024 * 1024:
        raise AgentError(f"offset {offset} is past the end of {rel}")
    with path.open("rb") as f:
        # characters are at most 4 bytes: read enough bytes for offset + max_chars characters (capped)
        raw = f.read(min(size, 4 * (offset + max_chars + 1), 64 * 1024 * 1024))
    if b"\x00" in raw[:8192]:
        raise AgentError(f"{rel}: binary content; only text artefacts are read")
    text = raw.decode("utf-8", errors="replace")
    if text.count("\ufffd") > max(16, len(text) // 100):
        raise AgentError(f"{rel}: not UTF-8 text; only text artefacts are read")
    piece = text[offset:offset + max_chars]
    end = offset + len(piece)
    more = end < len(text) or len(raw) < size
    return {"path": rel, "size": size, "offset": offset, "text": piece, "truncated": more,
            "next_offset": end if more else None}
