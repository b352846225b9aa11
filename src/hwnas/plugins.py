"""Importing a user's plug-in module (an experiment's ``task.module`` / ``space.module``; docs/extending.md).

Contract: :func:`import_user_module` imports a dotted module name from Python's path, then from ``search_dir``
(the experiment file's folder, on the path only while the module is imported), and turns every failure into one
line of the caller's error class: a name that is not a dotted module name, a module that is not found, and a
module that raises while it is imported. What the module registers is the caller's business.
"""

from __future__ import annotations

import importlib
import os
import re
import sys

from hwnas.errors import HwnasError, first_line

__all__ = ["MODULE_RE", "import_user_module"]

MODULE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
"""A dotted Python module name."""


def import_user_module(module: str, search_dir: str | os.PathLike[str] | None, error: type[HwnasError],
                       example: str) -> None:
    """Import ``module`` (see the module docstring); failures raise ``error`` (``example`` names a valid one)."""
    if not isinstance(module, str) or not MODULE_RE.fullmatch(module) or module.endswith(".py"):
        hint = " (give the module's name, without .py)" if isinstance(module, str) and module.endswith(".py") else ""
        raise error(f"{module!r} is not a dotted Python module name like {example}{hint}")
    folder = os.fspath(search_dir) if search_dir is not None else None
    added = folder is not None and folder not in sys.path
    if added:
        sys.path.append(folder)  # type: ignore[arg-type]
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name and (module == err.name or module.startswith(err.name + ".")):
            where = "Python's path" + (f" or {folder}" if folder is not None else "")
            raise error(f"no module named {module!r} in {where}; install the package that has it or put "
                        f"{module.replace('.', '/')}.py next to the experiment file") from None
        raise error(f"importing {module!r} failed: {first_line(err)}") from err
    except Exception as err:  # the user's module raised while it was imported
        raise error(f"importing {module!r} failed: {type(err).__name__}: {first_line(err)}") from err
    finally:
        if added:
            sys.path.remove(folder)  # type: ignore[arg-type]
