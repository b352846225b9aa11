"""Particle swarm optimization: a plain ask/tell optimizer and an Optuna sampler (MONAS-LQ stage 4).

Contract:

* Both optimizers **minimize** one scalar per candidate. :class:`ParticleSwarm` works on a box of
  ``bounds`` (inclusive), each dimension integer (positions rounded half up, then clamped to the bounds)
  or continuous. :class:`PSOSampler` works on the Optuna parameters of its relative search space
  (``IntDistribution``/``FloatDistribution``; categorical parameters are left to independent sampling)
  and minimizes the study's value (negated for a ``maximize`` study) or, for a multi-objective study, the
  user's scalarization ``score_fn(frozen_trial)`` (``score_direction`` says which way is better).
* The update is the global-best ("star") PSO of Kennedy & Eberhart (1995) with the inertia weight of
  Shi & Eberhart (1998)::

      v ← w·v + c1·r1·(pbest − x) + c2·r2·(gbest − x),  r1, r2 ~ U(0, 1)^d,  x ← x + v

  Defaults ``w = 0.7298``, ``c1 = c2 = 1.49618`` are Clerc & Kennedy's (2002) constriction coefficients
  written as an inertia weight (χ = 0.7298 with φ = 4.1; Eberhart & Shi 2000), the standard convergent
  setting. ``inertia`` may instead be a pair ``(w_start, w_end)`` decreased linearly over ``generations``
  (Shi & Eberhart's 0.9 → 0.4 schedule). Velocities are clamped per dimension to ``velocity_clamp`` × the
  dimension's range (0.25 by default; ``None`` disables the clamp). The swarm keeps continuous
  positions; an integer dimension is evaluated at the rounded position, and personal/global bests are
  the evaluated (rounded) positions. A position leaving the box is put back on the wall and that
  velocity component set to 0 ("absorbing walls"). Optional turbulence (``mutation``, off by default):
  each coordinate of a move is, with that probability, reset to a uniform random value — integer swarms
  otherwise stall once every particle rounds to the global best.
* Generation 0: particle positions uniform in the box (uniform over the integers of an integer
  dimension), velocities ``U(−1, 1)`` × the velocity clamp (× the range when unclamped). Particle ``p``
  of generation ``g`` draws all its random numbers from ``numpy.random.default_rng([seed, g, p])``, so a
  run depends on nothing but the seed and the values told, and :class:`PSOSampler` with a fixed
  ``search_space``, run serially, proposes exactly what :class:`ParticleSwarm` with the same settings
  asks.
* Bests: a generation uses the personal and global bests of the generations before it (synchronous
  PSO). Candidates are ranked by Deb's (2000) feasibility rules: feasible ones (every constraint ≤ 0)
  by value, then infeasible ones by their total violation Σ max(c, 0) (then value) — an infeasible
  candidate is never a best while a feasible one exists — and a failed candidate (a NaN value; an Optuna
  trial that is FAILED or PRUNED) is worst: it never becomes a personal or global best. A particle
  without a best moves by inertia and the social term only; ties keep the earliest candidate.
* :class:`PSOSampler` keeps no state of its own: trial ``n`` (``n ≥ start_trial``) is particle
  ``p = (n − start_trial) mod swarm_size`` of generation ``g = (n − start_trial) // swarm_size``; its
  continuous position and velocity are stored in the trial's system attributes (``pso:generation``,
  ``pso:particle``, ``pso:x``, ``pso:v``), and each new trial rebuilds what it needs from the study's
  trials — so a study survives restarts and is shared by several workers on one storage. The
  particle's previous position is the previous trial's actual parameter values (an enqueued or fixed
  value replaces what the sampler proposed; its continuous position is kept when it rounds to the
  value used). With parallel workers, trials of the previous generation still running when a trial
  starts are not yet bests (asynchronous PSO); serial runs are exactly reproducible.

Errors name the argument (``bounds``, ``values``, ``constraints``, ``score_fn``, ``search_space``, …).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

__all__ = ["DEFAULT_C1", "DEFAULT_C2", "DEFAULT_INERTIA", "PSOSampler", "ParticleSwarm"]

DEFAULT_INERTIA = 0.7298
"""Inertia weight w: Clerc & Kennedy's constriction factor χ for φ = c1 + c2 = 4.1."""
DEFAULT_C1 = 1.49618
"""Cognitive coefficient (χ·2.05): pull towards the particle's own best."""
DEFAULT_C2 = 1.49618
"""Social coefficient (χ·2.05): pull towards the swarm's best."""
DEFAULT_VELOCITY_CLAMP = 0.25
"""Largest velocity per dimension as a fraction of the dimension's range."""

_KEY_GENERATION = "pso:generation"
_KEY_PARTICLE = "pso:particle"
_KEY_X = "pso:x"
_KEY_V = "pso:v"

Rank = tuple[int, float, float]
"""Sort key of an evaluated candidate (smaller is better): (0, value, 0) feasible, (1, violation, value)
infeasible, (2, 0, 0) failed."""

_FAILED: Rank = (2, 0.0, 0.0)


def _rank(value: float, violation: float = 0.0) -> Rank:
    """Deb's feasibility rank of a value and its total constraint violation (NaN value: failed)."""
    if math.isnan(value):
        return _FAILED
    if violation > 0.0:
        return (1, float(violation), float(value))
    return (0, float(value), 0.0)


def _violation(constraints: Sequence[float], where: str) -> float:
    """Σ max(c, 0) of one candidate's constraint values; NaN raises a ValueError naming ``where``."""
    c = np.asarray(constraints, dtype=float).reshape(-1)
    if np.isnan(c).any():
        raise ValueError(f"{where}: constraint values must not be NaN, got {c.tolist()}")
    return float(np.clip(c, 0.0, None).sum())


def _round_half_up(x: np.ndarray) -> np.ndarray:
    return np.floor(x + 0.5)


def _inertia_at(inertia: float | tuple[float, float], generations: int | None, g: int) -> float:
    """The inertia weight for the move into generation ``g`` (g ≥ 1)."""
    if isinstance(inertia, tuple):
        w0, w1 = inertia
        span = max((generations or 1) - 1, 1)
        t = min((g - 1) / span, 1.0)
        return float(w0 + (w1 - w0) * t)
    return float(inertia)


def _check_coefficients(inertia: Any, generations: int | None, c1: float, c2: float,
                        velocity_clamp: float | None, swarm_size: int,
                        mutation: float = 0.0) -> float | tuple[float, float]:
    if isinstance(swarm_size, bool) or not isinstance(swarm_size, int) or swarm_size < 1:
        raise ValueError(f"swarm_size must be a positive integer, got {swarm_size!r}")
    if isinstance(inertia, Sequence):
        if len(inertia) != 2:
            raise ValueError(f"inertia must be a float or a pair (start, end), got {inertia!r}")
        if generations is None or generations < 1:
            raise ValueError("inertia given as a schedule (start, end) needs generations >= 1")
        inertia = (float(inertia[0]), float(inertia[1]))
        ws = inertia
    else:
        inertia = float(inertia)
        ws = (inertia,)
    for w in ws:
        if not 0.0 <= w < 1.5:
            raise ValueError(f"inertia must lie in [0, 1.5), got {w}")
    for name, c in (("c1", c1), ("c2", c2)):
        if not (math.isfinite(c) and c >= 0.0):
            raise ValueError(f"{name} must be a finite number >= 0, got {c}")
    if velocity_clamp is not None and not (0.0 < velocity_clamp <= 1.0):
        raise ValueError(f"velocity_clamp must lie in (0, 1] (a fraction of each range) or be None, "
                         f"got {velocity_clamp}")
    if not 0.0 <= mutation <= 1.0:
        raise ValueError(f"mutation must lie in [0, 1], got {mutation}")
    return inertia


def _check_seed(seed: int | None) -> int:
    if seed is None:
        return int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


@dataclass(frozen=True)
class _Box:
    """The box the swarm moves in: per-dimension bounds, integrality and velocity limits."""

    low: np.ndarray
    high: np.ndarray
    integer: np.ndarray
    vmax: np.ndarray | None

    @property
    def dim(self) -> int:
        return int(self.low.size)

    def evaluated(self, x: np.ndarray) -> np.ndarray:
        """The position a candidate is evaluated at: integer dimensions rounded half up, clamped."""
        y = np.where(self.integer, _round_half_up(x), x)
        return np.clip(y, self.low, self.high)

    def evaluated_at(self, u: float, i: int) -> float:
        """:meth:`evaluated` for coordinate ``i`` alone."""
        y = math.floor(u + 0.5) if self.integer[i] else u
        return float(min(max(y, self.low[i]), self.high[i]))

    def initial(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A generation-0 position and velocity from ``rng`` (uniform; uniform integers where integer)."""
        u = rng.random(self.dim)
        span = self.high - self.low
        x = np.where(self.integer, np.minimum(np.floor(self.low + u * (span + 1.0)), self.high),
                     self.low + u * span)
        scale = self.vmax if self.vmax is not None else span
        v = (2.0 * rng.random(self.dim) - 1.0) * scale
        return x, v

    def move(self, x: np.ndarray, v: np.ndarray, pbest: np.ndarray | None, gbest: np.ndarray | None,
             rng: np.random.Generator, w: float, c1: float, c2: float,
             mutation: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """One velocity/position update of a particle (absorbing walls, optional turbulence)."""
        r = rng.random((2, self.dim))
        v_new = w * v
        if pbest is not None:
            v_new = v_new + c1 * r[0] * (pbest - x)
        if gbest is not None:
            v_new = v_new + c2 * r[1] * (gbest - x)
        if self.vmax is not None:
            v_new = np.clip(v_new, -self.vmax, self.vmax)
        x_new = x + v_new
        if mutation > 0.0:
            hit = rng.random(self.dim) < mutation
            reset, _ = self.initial(rng)
            x_new = np.where(hit, reset, x_new)
        outside = (x_new < self.low) | (x_new > self.high)
        x_new = np.clip(x_new, self.low, self.high)
        v_new = np.where(outside, 0.0, v_new)
        return x_new, v_new


def _make_box(low: Sequence[float], high: Sequence[float], integer: Sequence[bool],
              velocity_clamp: float | None) -> _Box:
    lo = np.asarray(low, dtype=float)
    hi = np.asarray(high, dtype=float)
    vmax = None if velocity_clamp is None else velocity_clamp * (hi - lo)
    return _Box(lo, hi, np.asarray(integer, dtype=bool), vmax)


class ParticleSwarm:
    """Ask/tell particle swarm minimizing a scalar over a box (integer positions by rounding).

    Usage::

        swarm = ParticleSwarm([(1, 8)] * 6, swarm_size=10, seed=0)
        for _ in range(20):
            positions = swarm.ask()                 # one np.ndarray per particle
            swarm.tell([f(p) for p in positions])   # NaN = failed (never a best)
        swarm.best_position, swarm.best_value

    Args:
        bounds: inclusive ``(low, high)`` per dimension.
        swarm_size: particles (candidates per generation).
        seed: every random number derives from it (see the module docstring).
        integer: all dimensions integer (``True``, default), continuous (``False``), or one flag per
            dimension. Integer bounds must be integers.
        inertia: inertia weight w, or ``(w_start, w_end)`` decreased linearly over ``generations``.
        c1, c2: cognitive and social coefficients.
        velocity_clamp: largest |v| per dimension as a fraction of its range (``None``: unclamped).
        generations: horizon of an inertia schedule (only needed with a pair ``inertia``).
        mutation: probability per particle and dimension that a move resets the coordinate to a uniform
            random value ("turbulence"; 0 = plain PSO). A few percent counters integer stagnation.
        initial_positions: optional starting positions for the first particles (e.g. the best
            bootstrap architectures); the remaining particles start at random.
    """

    def __init__(self, bounds: Sequence[tuple[float, float]], swarm_size: int = 8, seed: int = 0, *,
                 integer: bool | Sequence[bool] = True, inertia: float | tuple[float, float] = DEFAULT_INERTIA,
                 c1: float = DEFAULT_C1, c2: float = DEFAULT_C2,
                 velocity_clamp: float | None = DEFAULT_VELOCITY_CLAMP, generations: int | None = None,
                 mutation: float = 0.0, initial_positions: Sequence[Sequence[float]] | None = None) -> None:
        self._inertia = _check_coefficients(inertia, generations, c1, c2, velocity_clamp, swarm_size, mutation)
        self._mutation = float(mutation)
        self._seed = _check_seed(seed)
        bounds_list = [tuple(b) for b in bounds]
        if not bounds_list:
            raise ValueError("bounds must name at least one dimension")
        for i, b in enumerate(bounds_list):
            if len(b) != 2 or not all(math.isfinite(float(t)) for t in b) or float(b[1]) < float(b[0]):
                raise ValueError(f"bounds[{i}] must be a finite pair (low, high) with low <= high, got {b!r}")
        d = len(bounds_list)
        flags = [bool(integer)] * d if isinstance(integer, (bool, np.bool_)) else [bool(f) for f in integer]
        if len(flags) != d:
            raise ValueError(f"integer has {len(flags)} flags but bounds has {d} dimensions")
        for i, (flag, b) in enumerate(zip(flags, bounds_list, strict=True)):
            if flag and any(float(t) != round(float(t)) for t in b):
                raise ValueError(f"bounds[{i}] = {b!r} must be integers for an integer dimension")
        self._bounds = [(float(lo), float(hi)) for lo, hi in bounds_list]
        self._flags = flags
        self._box = _make_box([b[0] for b in self._bounds], [b[1] for b in self._bounds], flags, velocity_clamp)
        self._swarm_size = swarm_size
        self._c1, self._c2 = float(c1), float(c2)
        self._velocity_clamp = velocity_clamp
        self._generations = generations
        self._initial: np.ndarray | None = None
        if initial_positions is not None:
            init = np.asarray(initial_positions, dtype=float)
            if init.ndim != 2 or init.shape[1] != d or init.shape[0] > swarm_size:
                raise ValueError(f"initial_positions must have shape (k <= {swarm_size}, {d}), got {init.shape}")
            if ((init < self._box.low) | (init > self._box.high)).any():
                raise ValueError("initial_positions has a position outside bounds")
            self._initial = self._box.evaluated(init)
        self._generation = 0
        self._x = np.zeros((swarm_size, d))
        self._v = np.zeros((swarm_size, d))
        self._pending: np.ndarray | None = None
        self._pbest_pos = np.zeros((swarm_size, d))
        self._pbest_rank: list[Rank | None] = [None] * swarm_size
        self._gbest_pos: np.ndarray | None = None
        self._gbest_rank: Rank | None = None
        self._stagnation = 0

    # -- properties ---------------------------------------------------------------------------------------
    @property
    def swarm_size(self) -> int:
        """Particles per generation."""
        return self._swarm_size

    @property
    def dim(self) -> int:
        """Dimensions of a position."""
        return self._box.dim

    @property
    def generation(self) -> int:
        """Generations told so far (the next :meth:`ask` is this generation)."""
        return self._generation

    @property
    def stagnation(self) -> int:
        """Generations told since the global best last improved (for patience-based stopping)."""
        return self._stagnation

    @property
    def best_position(self) -> np.ndarray | None:
        """The global best (evaluated) position, or ``None`` before any successful candidate."""
        return None if self._gbest_pos is None else self._as_output(self._gbest_pos)

    @property
    def best_value(self) -> float | None:
        """The global best's value (``None`` before any successful candidate)."""
        r = self._gbest_rank
        if r is None:
            return None
        return r[1] if r[0] == 0 else r[2]

    @property
    def best_feasible(self) -> bool | None:
        """Whether the global best satisfies every constraint (``None`` before any successful candidate)."""
        return None if self._gbest_rank is None else self._gbest_rank[0] == 0

    def personal_bests(self) -> list[tuple[np.ndarray, float, bool] | None]:
        """Per particle ``(position, value, feasible)`` of its best candidate, or ``None`` if it has none."""
        out: list[tuple[np.ndarray, float, bool] | None] = []
        for i, r in enumerate(self._pbest_rank):
            if r is None:
                out.append(None)
            else:
                out.append((self._as_output(self._pbest_pos[i]), r[1] if r[0] == 0 else r[2], r[0] == 0))
        return out

    # -- ask / tell ---------------------------------------------------------------------------------------
    def _as_output(self, pos: np.ndarray) -> np.ndarray:
        if all(self._flags):
            return pos.astype(np.int64)
        return pos.astype(float).copy()

    def _rng(self, g: int, p: int) -> np.random.Generator:
        return np.random.default_rng([self._seed, g, p])

    def ask(self) -> list[np.ndarray]:
        """The positions of this generation, one per particle (the same again until :meth:`tell`)."""
        if self._pending is None:
            g = self._generation
            for p in range(self._swarm_size):
                rng = self._rng(g, p)
                if g == 0:
                    x, v = self._box.initial(rng)
                    if self._initial is not None and p < len(self._initial):
                        x = self._initial[p].copy()
                else:
                    pbest = self._pbest_pos[p] if self._pbest_rank[p] is not None else None
                    w = _inertia_at(self._inertia, self._generations, g)
                    x, v = self._box.move(self._x[p], self._v[p], pbest, self._gbest_pos, rng, w, self._c1, self._c2,
                                          self._mutation)
                self._x[p], self._v[p] = x, v
            self._pending = self._box.evaluated(self._x)
        return [self._as_output(row) for row in self._pending]

    def tell(self, values: Sequence[float], constraints: Sequence[Sequence[float]] | None = None) -> None:
        """Report the values (NaN: failed) and optional constraints (≤ 0 satisfied) of the asked positions."""
        if self._pending is None:
            raise RuntimeError("tell() without a pending ask(): call ask() first")
        vals = np.asarray(values, dtype=float).reshape(-1)
        if vals.size != self._swarm_size:
            raise ValueError(f"values has {vals.size} entries but the swarm has {self._swarm_size} particles")
        viol = np.zeros(self._swarm_size)
        if constraints is not None:
            cons = np.asarray(constraints, dtype=float)
            if cons.ndim == 1:
                cons = cons[:, None]
            if cons.ndim != 2 or cons.shape[0] != self._swarm_size:
                raise ValueError(f"constraints must have one row per particle ({self._swarm_size}), "
                                 f"got shape {cons.shape}")
            viol = np.array([_violation(row, f"constraints[{i}]") for i, row in enumerate(cons)])
        improved = False
        for p in range(self._swarm_size):
            r = _rank(float(vals[p]), float(viol[p]))
            if r == _FAILED:
                continue
            if self._pbest_rank[p] is None or r < self._pbest_rank[p]:
                self._pbest_rank[p] = r
                self._pbest_pos[p] = self._pending[p]
            if self._gbest_rank is None or r < self._gbest_rank:
                self._gbest_rank = r
                self._gbest_pos = self._pending[p].copy()
                improved = True
        self._stagnation = 0 if improved else self._stagnation + 1
        self._pending = None
        self._generation += 1

    def rescore(self, fn: Callable[[np.ndarray], Any]) -> None:
        """Re-evaluate every personal best with ``fn`` and re-elect the global best.

        For the hybrid loop, after a predictor is refitted: ``fn`` maps a ``(k, dim)`` array of positions
        to ``k`` values, or to a pair ``(values, constraints)``; a NaN value drops that personal best.
        """
        idx = [i for i, r in enumerate(self._pbest_rank) if r is not None]
        if not idx:
            return
        out = fn(np.stack([self._as_output(self._pbest_pos[i]) for i in idx]))
        if isinstance(out, tuple):
            vals, cons = out
        else:
            vals, cons = out, None
        vals = np.asarray(vals, dtype=float).reshape(-1)
        if vals.size != len(idx):
            raise ValueError(f"rescore fn returned {vals.size} values for {len(idx)} positions")
        viol = np.zeros(len(idx))
        if cons is not None:
            cons = np.asarray(cons, dtype=float).reshape(len(idx), -1)
            viol = np.array([_violation(row, f"rescore constraints[{k}]") for k, row in enumerate(cons)])
        self._gbest_rank, self._gbest_pos = None, None
        for k, i in enumerate(idx):
            r = _rank(float(vals[k]), float(viol[k]))
            self._pbest_rank[i] = None if r == _FAILED else r
        for i, r in enumerate(self._pbest_rank):
            if r is not None and (self._gbest_rank is None or r < self._gbest_rank):
                self._gbest_rank, self._gbest_pos = r, self._pbest_pos[i].copy()

    # -- resume -------------------------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        inertia = list(self._inertia) if isinstance(self._inertia, tuple) else self._inertia
        return {"bounds": [list(b) for b in self._bounds], "integer": list(self._flags),
                "swarm_size": self._swarm_size, "seed": self._seed, "inertia": inertia, "c1": self._c1,
                "c2": self._c2, "velocity_clamp": self._velocity_clamp, "generations": self._generations,
                "mutation": self._mutation,
                "initial_positions": None if self._initial is None else self._initial.tolist()}

    def state_dict(self) -> dict[str, Any]:
        """The whole optimizer state as JSON-serializable data (settings included, checked on load)."""
        return {
            "version": 1,
            "config": self._config(),
            "generation": self._generation,
            "x": self._x.tolist(),
            "v": self._v.tolist(),
            "pending": None if self._pending is None else self._pending.tolist(),
            "pbest_pos": self._pbest_pos.tolist(),
            "pbest_rank": [None if r is None else list(r) for r in self._pbest_rank],
            "gbest_pos": None if self._gbest_pos is None else self._gbest_pos.tolist(),
            "gbest_rank": None if self._gbest_rank is None else list(self._gbest_rank),
            "stagnation": self._stagnation,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`; its settings must equal this swarm's (errors name the setting)."""
        if state.get("version") != 1:
            raise ValueError(f"state version {state.get('version')!r} is not supported (expected 1)")
        mine = self._config()
        for key, value in state["config"].items():
            if key not in mine:
                raise ValueError(f"state has unknown setting {key!r}")
            if mine[key] != value:
                raise ValueError(f"state setting {key!r} = {value!r} differs from this swarm's {mine[key]!r}")
        self._generation = int(state["generation"])
        self._x = np.asarray(state["x"], dtype=float).reshape(self._swarm_size, self.dim)
        self._v = np.asarray(state["v"], dtype=float).reshape(self._swarm_size, self.dim)
        self._pending = None if state["pending"] is None else np.asarray(state["pending"], dtype=float)
        self._pbest_pos = np.asarray(state["pbest_pos"], dtype=float).reshape(self._swarm_size, self.dim)
        self._pbest_rank = [None if r is None else (int(r[0]), float(r[1]), float(r[2]))
                            for r in state["pbest_rank"]]
        self._gbest_pos = None if state["gbest_pos"] is None else np.asarray(state["gbest_pos"], dtype=float)
        g = state["gbest_rank"]
        self._gbest_rank = None if g is None else (int(g[0]), float(g[1]), float(g[2]))
        self._stagnation = int(state["stagnation"])


# -- Optuna sampler -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Coord:
    """How one Optuna parameter maps to a swarm coordinate u (and back)."""

    name: str
    dist: IntDistribution | FloatDistribution

    @property
    def kind(self) -> str:
        d = self.dist
        if d.log:
            return "log"
        if isinstance(d, IntDistribution) or d.step is not None:
            return "grid"
        return "linear"

    def bounds(self) -> tuple[float, float, bool]:
        d = self.dist
        if self.kind == "log":
            return math.log(d.low), math.log(d.high), False
        if self.kind == "grid":
            return 0.0, float(round((d.high - d.low) / d.step)), True
        return float(d.low), float(d.high), False

    def encode(self, value: float) -> float:
        d = self.dist
        if self.kind == "log":
            return math.log(value)
        if self.kind == "grid":
            return float(round((value - d.low) / d.step))
        return float(value)

    def decode(self, u: float) -> int | float:
        d = self.dist
        if self.kind == "log":
            value = min(max(math.exp(u), d.low), d.high)
            if isinstance(d, IntDistribution):
                return int(min(max(math.floor(value + 0.5), d.low), d.high))
            return float(value)
        if self.kind == "grid":
            k = math.floor(u + 0.5)
            if isinstance(d, IntDistribution):
                return int(min(d.low + k * d.step, d.high))
            return float(min(d.low + k * d.step, d.high))
        return float(min(max(u, d.low), d.high))


def _check_space(space: Mapping[str, BaseDistribution]) -> dict[str, IntDistribution | FloatDistribution]:
    out: dict[str, IntDistribution | FloatDistribution] = {}
    for name, dist in space.items():
        if not isinstance(dist, (IntDistribution, FloatDistribution)):
            raise ValueError(f"search_space[{name!r}] must be an IntDistribution or FloatDistribution, "
                             f"got {type(dist).__name__}")
        if dist.single():
            raise ValueError(f"search_space[{name!r}] has a single value; leave it out of the swarm's space")
        out[name] = dist
    return out


def _derived_seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint32)[0])


class PSOSampler(BaseSampler):
    """Optuna sampler running a particle swarm over a fixed set of numeric parameters (one trial = one particle).

    Args:
        swarm_size: particles per generation; trial ``start_trial + g·swarm_size + p`` is particle ``p``
            of generation ``g``.
        seed: seed of every random number (trial ``n``'s draws depend only on it and ``n``).
        inertia, c1, c2, velocity_clamp, generations, mutation: as for :class:`ParticleSwarm`.
        search_space: the swarm's parameters (``IntDistribution``/``FloatDistribution``, in this order);
            ``None`` infers them like Optuna's relative samplers: the numeric, non-single distributions
            shared by every COMPLETE trial numbered below the new one (sorted by name). With an inferred
            space the first trial's parameters are sampled independently (at random).
        score_fn: scalarization ``score_fn(frozen_trial) -> float`` of a COMPLETE trial; required for a
            multi-objective study (e.g. MONAS-LQ's composite score), optional otherwise (replaces the value).
        score_direction: ``"minimize"`` or ``"maximize"``: which way ``score_fn`` is better.
        constraints_func: ``constraints_func(frozen_trial) -> Sequence[float]`` of a COMPLETE trial, each
            ≤ 0 when satisfied (e.g. ``lambda t: t.user_attrs["constraints"]``).
        start_trial: trials numbered below it are not particles (e.g. a bootstrap phase run by another
            sampler on the same study); they still count for the global best. All workers must use the
            same value.

    Parameters outside the space are sampled independently with :class:`optuna.samplers.RandomSampler`
    seeded from ``(seed, trial number, parameter name)``.
    """

    def __init__(self, swarm_size: int = 8, *, seed: int | None = None,
                 inertia: float | tuple[float, float] = DEFAULT_INERTIA, c1: float = DEFAULT_C1,
                 c2: float = DEFAULT_C2, velocity_clamp: float | None = DEFAULT_VELOCITY_CLAMP,
                 generations: int | None = None, mutation: float = 0.0,
                 search_space: Mapping[str, BaseDistribution] | None = None,
                 score_fn: Callable[[FrozenTrial], float] | None = None, score_direction: str = "minimize",
                 constraints_func: Callable[[FrozenTrial], Sequence[float]] | None = None,
                 start_trial: int = 0) -> None:
        self._inertia = _check_coefficients(inertia, generations, c1, c2, velocity_clamp, swarm_size, mutation)
        self._mutation = float(mutation)
        self._seed = _check_seed(seed)
        if score_direction not in ("minimize", "maximize"):
            raise ValueError(f"score_direction must be 'minimize' or 'maximize', got {score_direction!r}")
        if isinstance(start_trial, bool) or not isinstance(start_trial, int) or start_trial < 0:
            raise ValueError(f"start_trial must be a non-negative integer, got {start_trial!r}")
        self._swarm_size = swarm_size
        self._c1, self._c2 = float(c1), float(c2)
        self._velocity_clamp = velocity_clamp
        self._generations = generations
        self._space = None if search_space is None else _check_space(search_space)
        self._score_fn = score_fn
        self._score_sign = 1.0 if score_direction == "minimize" else -1.0
        self._constraints_func = constraints_func
        self._start = start_trial
        self._rank_cache: dict[tuple[str, int], Rank] = {}

    @property
    def swarm_size(self) -> int:
        """Particles per generation."""
        return self._swarm_size

    def particle_of(self, trial_number: int) -> tuple[int, int] | None:
        """``(generation, particle)`` of a trial number, or ``None`` below ``start_trial``."""
        if trial_number < self._start:
            return None
        g, p = divmod(trial_number - self._start, self._swarm_size)
        return g, p

    def reseed_rng(self) -> None:
        """Nothing to reseed: every draw is derived from the seed and the trial number."""

    # -- search space -------------------------------------------------------------------------------------
    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """The fixed ``search_space``, or the numeric distributions every earlier COMPLETE trial shares."""
        if len(study.directions) > 1 and self._score_fn is None:
            raise ValueError("PSOSampler on a multi-objective study needs score_fn (a scalarization of a trial)")
        if self._space is not None:
            return dict(self._space)
        space: dict[str, BaseDistribution] | None = None
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.number >= trial.number:
                continue
            if space is None:
                space = {n: d for n, d in t.distributions.items()
                         if isinstance(d, (IntDistribution, FloatDistribution)) and not d.single()}
            else:
                space = {n: d for n, d in space.items() if t.distributions.get(n) == d}
        return dict(sorted((space or {}).items()))

    # -- ranking ------------------------------------------------------------------------------------------
    def _trial_rank(self, study: optuna.Study, t: FrozenTrial) -> Rank:
        if t.state != TrialState.COMPLETE:
            return _FAILED
        key = (study.study_name, t.number)
        cached = self._rank_cache.get(key)
        if cached is not None:
            return cached
        if self._score_fn is not None:
            value = float(self._score_fn(t))
            if math.isnan(value):
                raise ValueError(f"score_fn returned NaN for trial {t.number}")
            value *= self._score_sign
        else:
            value = float(t.value)  # type: ignore[arg-type]
            if study.direction == StudyDirection.MAXIMIZE:
                value = -value
        viol = 0.0
        if self._constraints_func is not None:
            viol = _violation(self._constraints_func(t), f"constraints_func of trial {t.number}")
        r = _rank(value, viol)
        self._rank_cache[key] = r
        return r

    # -- sampling -----------------------------------------------------------------------------------------
    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        """The trial's particle position: generation 0 at random, later ones moved from the previous."""
        where = self.particle_of(trial.number)
        if not search_space or where is None:
            return {}
        g, p = where
        coords = [_Coord(n, d) for n, d in _check_space(search_space).items()]
        b = [c.bounds() for c in coords]
        box = _make_box([t[0] for t in b], [t[1] for t in b], [t[2] for t in b], self._velocity_clamp)
        rng = np.random.default_rng([self._seed, g, p])
        if g == 0:
            x, v = box.initial(rng)
        else:
            trials = {t.number: t for t in study.get_trials(deepcopy=False)}
            x, v = self._previous_state(trials.get(trial.number - self._swarm_size), coords, box, g - 1, p)
            gen_start = self._start + g * self._swarm_size
            pbest = self._best(study, [trials[n] for n in range(self._start + p, gen_start, self._swarm_size)
                                       if n in trials], coords)
            gbest = self._best(study, [trials[n] for n in sorted(trials) if n < gen_start], coords)
            w = _inertia_at(self._inertia, self._generations, g)
            x, v = box.move(x, v, pbest, gbest, rng, w, self._c1, self._c2, self._mutation)
        storage, tid = study._storage, trial._trial_id
        storage.set_trial_system_attr(tid, _KEY_GENERATION, g)
        storage.set_trial_system_attr(tid, _KEY_PARTICLE, p)
        storage.set_trial_system_attr(tid, _KEY_X, {c.name: float(x[i]) for i, c in enumerate(coords)})
        storage.set_trial_system_attr(tid, _KEY_V, {c.name: float(v[i]) for i, c in enumerate(coords)})
        ev = box.evaluated(x)
        return {c.name: c.decode(float(ev[i])) for i, c in enumerate(coords)}

    def _previous_state(self, prev: FrozenTrial | None, coords: list[_Coord], box: _Box, g_prev: int,
                        p: int) -> tuple[np.ndarray, np.ndarray]:
        """Continuous position and velocity of the particle's previous trial (its actual values win)."""
        x0, v0 = box.initial(np.random.default_rng([self._seed, g_prev, p]))
        if prev is None:
            return x0, v0
        sx = prev.system_attrs.get(_KEY_X) or {}
        sv = prev.system_attrs.get(_KEY_V) or {}
        x, v = np.empty(len(coords)), np.zeros(len(coords))
        for i, c in enumerate(coords):
            stored = sx.get(c.name)
            if c.name in prev.params and prev.distributions.get(c.name) == c.dist:
                actual = prev.params[c.name]
                if stored is not None and c.decode(box.evaluated_at(float(stored), i)) == actual:
                    x[i] = float(stored)
                else:
                    x[i] = c.encode(actual)
                v[i] = float(sv.get(c.name, 0.0))
            elif stored is not None:
                x[i], v[i] = float(stored), float(sv.get(c.name, 0.0))
            else:
                x[i], v[i] = x0[i], v0[i]
        return x, v

    def _best(self, study: optuna.Study, candidates: list[FrozenTrial], coords: list[_Coord]) -> np.ndarray | None:
        """Evaluated position (swarm coordinates) of the best candidate carrying every coordinate."""
        best = self._best_of(study, candidates, {c.name: c.dist for c in coords})
        if best is None:
            return None
        return np.array([c.encode(best.params[c.name]) for c in coords])

    def _best_of(self, study: optuna.Study, candidates: Sequence[FrozenTrial],
                 space: Mapping[str, BaseDistribution]) -> FrozenTrial | None:
        best_r: Rank | None = None
        best: FrozenTrial | None = None
        for t in candidates:
            if not t.state.is_finished():
                continue
            if any(n not in t.params or t.distributions.get(n) != d for n, d in space.items()):
                continue
            r = self._trial_rank(study, t)
            if r == _FAILED:
                continue
            if best_r is None or r < best_r:
                best_r, best = r, t
        return best

    def best_trial(self, study: optuna.Study, before: int | None = None) -> FrozenTrial | None:
        """The swarm's global best trial (among trials numbered below ``before`` if given).

        The best COMPLETE trial by this sampler's ranking: feasible first, then by score or value, the
        earliest on ties. Only trials carrying every parameter of the fixed ``search_space`` count (all trials when the
        space is inferred). ``None`` when no trial qualifies.
        """
        trials = [t for t in study.get_trials(deepcopy=False) if before is None or t.number < before]
        return self._best_of(study, trials, self._space or {})

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        """A parameter outside the swarm's space: uniform at random, seeded by (seed, trial, name)."""
        seed = _derived_seed(self._seed, trial.number, zlib.crc32(param_name.encode()))
        return RandomSampler(seed=seed).sample_independent(study, trial, param_name, param_distribution)
