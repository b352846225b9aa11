"""Profile a CPU latency table into a file, once: the step an experiment with ``cpu_latency_ms`` needs first.

Contract:

* :func:`profile_table` times the operators of a named grid (``"default"``: :func:`~hwnas.cost.cpu_latency.
  default_grid`, about 13,300 float and int8 operators, 2–3 minutes on a quiet core, more on a busy one; ``"quick"``:
  :func:`~hwnas.cost.cpu_latency.quick_grid`, a few seconds, for tests and smoke runs) with
  :func:`~hwnas.cost.cpu_latency.profile_operators` and writes the table atomically to ``path``
  (:meth:`~hwnas.cost.cpu_latency.LatencyTable.save`: a temporary file in the same folder, then a rename, so
  a reader never sees half a table and an interrupted profiling leaves no file). A tqdm bar follows the
  timings when ``progress`` is true.
* :func:`ensure_table` returns the table at ``path``, profiling it first when the file does not exist. An
  exclusive lock on ``<path>.lock`` serialises processes that start together (several ``hwnas worker``
  processes of one study on one machine): the first profiles, the others wait and then load its table, so
  the machine is profiled once and never by two processes disturbing each other's timings. The lock file
  is removed once the table exists. A file at ``path`` that is not a latency table is an error (it is never
  overwritten); so is a folder there. A table profiled before hwnas predicted residual adds, concatenations
  and global average pooling (without the ``add``/``concat``/``gavgpool`` kinds) is loaded as it is: it
  predicts chain models, and a model with such joins raises
  :class:`~hwnas.cost.cpu_latency.MissingKindError`; profile it again (``hwnas profile-cpu <path> --force``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from hwnas.cost.cpu_latency import LatencyTable, Operator, ProfileGrid, default_grid, profile_operators, quick_grid
from hwnas.errors import HwnasError
from hwnas.runpaths import file_lock

__all__ = ["GRIDS", "CpuTableError", "GridName", "ensure_table", "profile_table"]

GridName = Literal["default", "quick"]
"""The name of an operator grid: ``"default"`` or ``"quick"``."""

GRIDS: dict[str, Callable[[], ProfileGrid]] = {"default": default_grid, "quick": quick_grid}
"""Named operator grids: ``default`` (the full grid) and ``quick`` (tests and smoke runs)."""


class CpuTableError(HwnasError, ValueError):
    """An experiment's CPU latency table cannot be loaded or profiled; the message names ``hardware.cpu_table``."""


def _check_target(path: Path) -> None:
    if path.exists() and not path.is_file():
        raise ValueError(f"{path} exists and is not a file; give the latency table another path")


def profile_table(path: str | os.PathLike[str], *, grid: GridName = "default", threads: int = 1,
                  cpu: int | None = -1, seed: int = 0, progress: bool = True) -> LatencyTable:
    """Profile the operators of ``grid`` on this machine and save the table to ``path`` (atomically).

    Args:
        path: the JSON file to write (its folder is created; an existing file is replaced).
        grid: ``"default"`` or ``"quick"`` (see the module docstring).
        threads: onnxruntime intra-op threads of every timing (the deployment's thread count).
        cpu: the CPU the timing thread is pinned to (-1: the last usable one; None: not pinned).
        seed: order of the timing passes.
        progress: show a progress bar.

    Returns:
        The saved :class:`~hwnas.cost.cpu_latency.LatencyTable`.

    Raises:
        ValueError: an unknown grid, ``threads`` below 1, an unusable ``cpu``, or a folder at ``path``.
    """
    if grid not in GRIDS:
        raise ValueError(f"grid must be one of {sorted(GRIDS)}, got {grid!r}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    path = Path(path)
    _check_target(path)
    bar = None
    callback = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc=f"CPU operator table ({grid})", unit="op")

        def callback(done: int, total: int, op: Operator, us: float) -> None:
            bar.total = total
            bar.update(done - bar.n)
            bar.set_postfix_str(f"{op.kind} {us:.1f} µs", refresh=False)
    try:
        table = profile_operators(GRIDS[grid](), threads=threads, cpu=cpu, seed=seed, progress=callback)
    finally:
        if bar is not None:
            bar.close()
    table.save(path)
    return table


def ensure_table(path: str | os.PathLike[str], *, grid: GridName = "default", threads: int = 1,
                 progress: bool = True) -> tuple[LatencyTable, bool]:
    """The table at ``path``, profiled into it first (with ``grid``) when the file does not exist.

    Args:
        path: the table's JSON file.
        grid: the operator grid to profile when the file is missing (``"default"`` or ``"quick"``).
        threads: onnxruntime intra-op threads of the timings.
        progress: show a progress bar while profiling.

    Returns:
        ``(table, profiled)``: ``profiled`` is True when this call measured the table, False when it loaded it.

    Raises:
        ValueError: the file at ``path`` is not a latency table (it is left as it is), a folder is there,
            or the profiling arguments are invalid.
    """
    if grid not in GRIDS:
        raise ValueError(f"grid must be one of {sorted(GRIDS)}, got {grid!r}")
    path = Path(path)
    _check_target(path)
    if path.is_file():
        return LatencyTable.load(path), False
    with file_lock(path):
        if path.is_file():  # another process profiled it while this one waited
            return LatencyTable.load(path), False
        return profile_table(path, grid=grid, threads=threads, progress=progress), True
