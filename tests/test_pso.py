"""Particle swarm: the ask/tell optimizer and the Optuna sampler (hwnas.search.pso)."""

import json
import math

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hwnas.search.pso import ParticleSwarm, PSOSampler

optuna.logging.set_verbosity(optuna.logging.WARNING)

D = 6
LOW, HIGH = -20, 20
SHIFT = np.array([3, -4, 1, 5, -2, 0])


def rastrigin(x) -> float:
    """Shifted Rastrigin-like function on the integers: local minima every 5 steps, global minimum 0 at SHIFT."""
    z = np.asarray(x, dtype=float) - SHIFT
    return float(np.sum(z**2 / 10 + 10 * (1 - np.cos(2 * np.pi * z / 5))))


def run_swarm(seed: int, generations: int = 20, swarm_size: int = 10, **kw) -> tuple[ParticleSwarm, list[float]]:
    if isinstance(kw.get("inertia"), tuple):
        kw.setdefault("generations", generations)
    swarm = ParticleSwarm([(LOW, HIGH)] * D, swarm_size=swarm_size, seed=seed, **kw)
    values = []
    for _ in range(generations):
        vals = [rastrigin(p) for p in swarm.ask()]
        values += vals
        swarm.tell(vals)
    return swarm, values


SPACE = {f"x{i}": IntDistribution(LOW, HIGH) for i in range(D)}


def objective(trial: optuna.Trial) -> float:
    return rastrigin([trial.suggest_int(f"x{i}", LOW, HIGH) for i in range(D)])


def params_of(study: optuna.Study) -> list[list[int]]:
    return [[t.params[f"x{i}"] for i in range(D)] for t in study.trials]


# -- ParticleSwarm -------------------------------------------------------------------------------------------

def test_swarm_beats_first_generation_and_random_search():
    pso, first, rand = [], [], []
    for seed in range(10):
        swarm, values = run_swarm(seed)
        pso.append(swarm.best_value)
        first.append(min(values[:10]))
        pts = np.random.default_rng(1000 + seed).integers(LOW, HIGH + 1, (200, D))  # same budget
        rand.append(min(rastrigin(p) for p in pts))
        assert swarm.best_value == min(values)
    assert np.mean(pso) < 0.5 * np.mean(first)
    assert np.mean(pso) < 0.7 * np.mean(rand)


def test_swarm_positions_are_integers_in_bounds_and_deterministic():
    _, va = run_swarm(3, generations=5)
    _, vb = run_swarm(3, generations=5)
    _, vc = run_swarm(4, generations=5)
    assert va == vb and va != vc
    swarm = ParticleSwarm([(1, 8), (0, 3), (2, 2)], swarm_size=6, seed=0)
    for _ in range(10):
        pos = swarm.ask()
        assert len(pos) == 6
        for p in pos:
            assert p.dtype == np.int64 and p.shape == (3,)
            assert 1 <= p[0] <= 8 and 0 <= p[1] <= 3 and p[2] == 2
        swarm.tell([float(p.sum()) for p in pos])
    assert swarm.best_position.tolist()[0] == 1


def test_mutation_escapes_integer_stagnation():
    # seed 0 without turbulence collapses onto (1, 1, 2) and never finds the corner (1, 0, 2)
    found = {}
    for mutation in (0.0, 0.05):
        swarm = ParticleSwarm([(1, 8), (0, 3), (2, 2)], swarm_size=6, seed=0, mutation=mutation)
        for _ in range(40):
            pos = swarm.ask()
            for p in pos:
                assert 1 <= p[0] <= 8 and 0 <= p[1] <= 3 and p[2] == 2
            swarm.tell([float(p.sum()) for p in pos])
        found[mutation] = swarm.best_position.tolist()
    assert found[0.0] == [1, 1, 2] and found[0.05] == [1, 0, 2]


def test_generation_zero_is_uniform_over_the_integers():
    counts = np.zeros(4)
    for seed in range(400):
        for p in ParticleSwarm([(0, 3)], swarm_size=5, seed=seed).ask():
            counts[int(p[0])] += 1
    assert counts.min() > 0.2 * counts.sum()  # endpoints are not under-sampled (expected 25% each)


def test_mixed_integer_and_continuous_dimensions():
    swarm = ParticleSwarm([(0, 10), (-1.0, 1.0)], swarm_size=8, seed=1, integer=[True, False])
    for _ in range(30):
        pos = swarm.ask()
        for p in pos:
            assert p.dtype == np.float64 and p[0] == round(p[0]) and -1.0 <= p[1] <= 1.0
        swarm.tell([(p[0] - 7) ** 2 + (p[1] - 0.3) ** 2 for p in pos])
    best = swarm.best_position
    assert best[0] == 7 and abs(best[1] - 0.3) < 0.1


def test_ask_is_idempotent_until_tell():
    swarm = ParticleSwarm([(0, 9)] * 3, swarm_size=4, seed=0)
    first = [p.tolist() for p in swarm.ask()]
    assert [p.tolist() for p in swarm.ask()] == first
    swarm.tell([0.0] * 4)
    assert swarm.generation == 1


def test_state_dict_resume_gives_identical_trajectory():
    full, values_full = run_swarm(7, generations=12)
    part = ParticleSwarm([(LOW, HIGH)] * D, swarm_size=10, seed=7)
    values = []
    for g in range(12):
        if g in (4, 9):
            state = json.loads(json.dumps(part.state_dict()))
            part = ParticleSwarm([(LOW, HIGH)] * D, swarm_size=10, seed=7)
            part.load_state_dict(state)
        pos = part.ask()
        if g == 6:  # resume between ask and tell
            state = json.loads(json.dumps(part.state_dict()))
            part = ParticleSwarm([(LOW, HIGH)] * D, swarm_size=10, seed=7)
            part.load_state_dict(state)
            assert [p.tolist() for p in part.ask()] == [p.tolist() for p in pos]
        vals = [rastrigin(p) for p in pos]
        values += vals
        part.tell(vals)
    assert values == values_full
    assert part.state_dict() == full.state_dict()


def test_load_state_dict_rejects_other_settings():
    swarm, _ = run_swarm(0, generations=2)
    other = ParticleSwarm([(LOW, HIGH)] * D, swarm_size=10, seed=1)
    with pytest.raises(ValueError, match="'seed'"):
        other.load_state_dict(swarm.state_dict())


def test_failed_values_never_become_best():
    swarm = ParticleSwarm([(0, 9)] * 2, swarm_size=4, seed=0)
    pos = swarm.ask()
    swarm.tell([math.nan] * 4)
    assert swarm.best_position is None and swarm.best_value is None
    assert swarm.personal_bests() == [None] * 4
    pos = swarm.ask()
    swarm.tell([math.nan, 5.0, math.nan, 3.0])
    assert swarm.best_value == 3.0 and swarm.best_position.tolist() == pos[3].tolist()
    assert swarm.personal_bests()[0] is None and swarm.personal_bests()[1][1] == 5.0


def test_infeasible_never_beats_feasible():
    # minimize x0 + x1 subject to x0 >= 5: the unconstrained optimum (0, 0) is infeasible
    swarm = ParticleSwarm([(0, 9)] * 2, swarm_size=8, seed=2)
    for _ in range(25):
        pos = swarm.ask()
        swarm.tell([float(p.sum()) for p in pos], constraints=[[5.0 - p[0]] for p in pos])
        if any(p[0] >= 5 for p in pos) or swarm.best_feasible:
            assert swarm.best_feasible and swarm.best_position[0] >= 5
    assert swarm.best_position.tolist() == [5, 0]


def test_infeasible_ranked_by_violation_when_nothing_is_feasible():
    swarm = ParticleSwarm([(0, 9)], swarm_size=3, seed=0)
    swarm.ask()
    swarm.tell([1.0, 2.0, 3.0], constraints=[[3.0], [1.0], [2.0]])
    assert swarm.best_feasible is False and swarm.best_value == 2.0


def test_stagnation_counts_generations_without_improvement():
    swarm = ParticleSwarm([(0, 9)], swarm_size=2, seed=0)
    swarm.ask()
    swarm.tell([1.0, 2.0])
    assert swarm.stagnation == 0
    for k in range(3):
        swarm.ask()
        swarm.tell([5.0, 5.0])
        assert swarm.stagnation == k + 1
    swarm.ask()
    swarm.tell([0.5, 5.0])
    assert swarm.stagnation == 0


def test_rescore_reelects_the_global_best():
    swarm = ParticleSwarm([(0, 9)] * 2, swarm_size=4, seed=0)
    pos = swarm.ask()
    swarm.tell([4.0, 3.0, 2.0, 1.0])
    assert swarm.best_position.tolist() == pos[3].tolist()
    # a refitted predictor now says particle 0's best is the best one and particle 3's failed
    swarm.rescore(lambda x: np.array([0.0, 3.0, 2.0, math.nan]))
    assert swarm.best_position.tolist() == pos[0].tolist() and swarm.best_value == 0.0
    assert swarm.personal_bests()[3] is None


def test_inertia_schedule_and_initial_positions():
    swarm = ParticleSwarm([(0, 9)] * 3, swarm_size=4, seed=0, inertia=(0.9, 0.4), generations=10,
                          initial_positions=[[1, 2, 3], [4, 5, 6]])
    pos = swarm.ask()
    assert pos[0].tolist() == [1, 2, 3] and pos[1].tolist() == [4, 5, 6]
    swarm.tell([0.0] * 4)
    sched, _ = run_swarm(0, generations=20, inertia=(0.9, 0.4))
    fixed, _ = run_swarm(0, generations=20)
    assert sched.state_dict()["x"] != fixed.state_dict()["x"]
    with pytest.raises(ValueError, match="generations"):
        ParticleSwarm([(0, 9)], inertia=(0.9, 0.4))


def test_swarm_argument_errors():
    with pytest.raises(ValueError, match=r"bounds\[1\]"):
        ParticleSwarm([(0, 3), (5, 1)])
    with pytest.raises(ValueError, match=r"bounds\[0\].*integers"):
        ParticleSwarm([(0.5, 3)])
    with pytest.raises(ValueError, match="integer has 1 flags"):
        ParticleSwarm([(0, 3), (0, 3)], integer=[True])
    with pytest.raises(ValueError, match="velocity_clamp"):
        ParticleSwarm([(0, 3)], velocity_clamp=2.0)
    with pytest.raises(ValueError, match="swarm_size"):
        ParticleSwarm([(0, 3)], swarm_size=0)
    swarm = ParticleSwarm([(0, 3)], swarm_size=3)
    with pytest.raises(RuntimeError, match="ask"):
        swarm.tell([1.0, 2.0, 3.0])
    swarm.ask()
    with pytest.raises(ValueError, match="values has 2 entries"):
        swarm.tell([1.0, 2.0])
    with pytest.raises(ValueError, match="constraints"):
        swarm.tell([1.0, 2.0, 3.0], constraints=[[0.0], [0.0]])


# -- PSOSampler ---------------------------------------------------------------------------------------------

def test_sampler_improves_across_generations():
    firsts, finals = [], []
    for seed in range(3):
        study = optuna.create_study(sampler=PSOSampler(10, seed=seed))
        study.optimize(objective, n_trials=200)
        values = [t.value for t in study.trials]
        firsts.append(min(values[:10]))
        finals.append(study.best_value)
        late = min(values[100:])
        assert late < min(values[:10])
    assert np.mean(finals) < 0.5 * np.mean(firsts)


def test_sampler_matches_the_ask_tell_swarm():
    study = optuna.create_study(sampler=PSOSampler(10, seed=3, search_space=SPACE))
    study.optimize(objective, n_trials=100)
    swarm = ParticleSwarm([(LOW, HIGH)] * D, swarm_size=10, seed=3)
    expected = []
    for _ in range(10):
        pos = swarm.ask()
        expected += [p.tolist() for p in pos]
        swarm.tell([rastrigin(p) for p in pos])
    assert params_of(study) == expected
    t = study.trials[23]
    assert t.system_attrs["pso:generation"] == 2 and t.system_attrs["pso:particle"] == 3
    assert set(t.system_attrs["pso:x"]) == set(SPACE) and set(t.system_attrs["pso:v"]) == set(SPACE)


def test_sampler_is_deterministic_and_survives_restarts_and_workers(tmp_path):
    a = optuna.create_study(sampler=PSOSampler(8, seed=5))
    a.optimize(objective, n_trials=64)
    b = optuna.create_study(sampler=PSOSampler(8, seed=5))
    b.optimize(objective, n_trials=64)
    assert params_of(a) == params_of(b)
    c = optuna.create_study(sampler=PSOSampler(8, seed=6))
    c.optimize(objective, n_trials=64)
    assert params_of(c) != params_of(a)

    # restart: a fresh process (new sampler, reloaded study) rebuilds the swarm from the trials
    storage = optuna.storages.InMemoryStorage()
    s1 = optuna.create_study(storage=storage, study_name="pso", sampler=PSOSampler(8, seed=5))
    s1.optimize(objective, n_trials=27)
    s2 = optuna.load_study(storage=storage, study_name="pso", sampler=PSOSampler(8, seed=5))
    s2.optimize(objective, n_trials=37)
    assert params_of(s2) == params_of(a)

    # two workers on one database, taking turns
    url = f"sqlite:///{tmp_path / 'pso.db'}"
    optuna.create_study(storage=url, study_name="shared")
    workers = [optuna.load_study(storage=url, study_name="shared", sampler=PSOSampler(8, seed=5)) for _ in range(2)]
    for n in range(40):
        workers[n % 2].optimize(objective, n_trials=1)
    assert params_of(workers[0]) == params_of(a)[:40]


def test_sampler_respects_maximize_direction():
    low = optuna.create_study(sampler=PSOSampler(8, seed=1, search_space=SPACE))
    low.optimize(objective, n_trials=48)
    high = optuna.create_study(direction="maximize", sampler=PSOSampler(8, seed=1, search_space=SPACE))
    high.optimize(lambda t: -objective(t), n_trials=48)
    assert params_of(low) == params_of(high)


def test_sampler_multi_objective_needs_and_uses_score_fn():
    def two(trial):
        x = [trial.suggest_int(f"x{i}", LOW, HIGH) for i in range(D)]
        return rastrigin(x), float(np.sum(np.abs(x)))

    study = optuna.create_study(directions=["minimize", "minimize"], sampler=PSOSampler(8, seed=0))
    with pytest.raises(ValueError, match="score_fn"):
        study.optimize(two, n_trials=3)
    # maximizing -f is minimizing f: the scalarization's direction is honoured
    scal = optuna.create_study(directions=["minimize", "minimize"],
                               sampler=PSOSampler(8, seed=0, search_space=SPACE, score_direction="maximize",
                                                  score_fn=lambda t: -t.values[0]))
    scal.optimize(two, n_trials=48)
    single = optuna.create_study(sampler=PSOSampler(8, seed=0, search_space=SPACE))
    single.optimize(objective, n_trials=48)
    assert params_of(scal) == params_of(single)


def test_sampler_failed_trials_are_never_bests():
    def flaky(trial):
        x = [trial.suggest_int(f"x{i}", LOW, HIGH) for i in range(D)]
        if x[0] < 0:
            raise RuntimeError("diverged")
        return rastrigin(x)

    sampler = PSOSampler(8, seed=2, search_space=SPACE)
    study = optuna.create_study(sampler=sampler)
    study.optimize(flaky, n_trials=80, catch=(RuntimeError,))
    states = [t.state for t in study.trials]
    assert optuna.trial.TrialState.FAIL in states and optuna.trial.TrialState.COMPLETE in states
    # every particle of generation g is pulled towards the best COMPLETE trial of generations < g only:
    # the swarm drifts towards feasible x0 >= 0
    late = [t.params["x0"] for t in study.trials[40:]]
    assert np.mean(np.array(late) >= 0) > 0.7
    best = sampler.best_trial(study)
    assert best.state == optuna.trial.TrialState.COMPLETE and best.value == study.best_value


def test_sampler_constraints_keep_feasible_global_best():
    # the unconstrained optimum has x0 = 3; constraint: x0 >= 8
    sampler = PSOSampler(10, seed=4, constraints_func=lambda t: [8.0 - t.params["x0"]])
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=150)
    feasible = [t for t in study.trials if t.params["x0"] >= 8]
    assert feasible
    assert study.best_trial.params["x0"] < 8  # the unconstrained best is infeasible
    for end in (10, 50, 100, 150):
        trials = study.trials[:end]
        best = sampler.best_trial(study, before=end)
        ok = [t.value for t in trials if t.params["x0"] >= 8]
        if ok:
            assert best.params["x0"] >= 8 and best.value == min(ok)
        else:  # nothing feasible yet: the least violation wins
            assert best.params["x0"] == max(t.params["x0"] for t in trials)
    assert np.mean([t.params["x0"] >= 8 for t in study.trials[100:]]) > 0.5


def test_sampler_independent_params_enqueue_and_start_trial():
    def obj(trial):
        act = trial.suggest_categorical("act", ["relu", "tanh"])
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        x = [trial.suggest_int(f"x{i}", LOW, HIGH) for i in range(D)]
        return rastrigin(x) + (0.0 if act == "relu" else 1.0) + abs(math.log10(lr) + 2)

    runs = []
    for _ in range(2):
        study = optuna.create_study(sampler=PSOSampler(6, seed=9, start_trial=4))
        study.enqueue_trial({"act": "relu", "lr": 1e-2, **{f"x{i}": int(SHIFT[i]) for i in range(D)}})
        study.optimize(obj, n_trials=40)
        runs.append([t.params for t in study.trials])
        for t in study.trials[:4]:
            assert "pso:generation" not in t.system_attrs  # below start_trial: not particles
        t = study.trials[4]
        assert t.system_attrs["pso:generation"] == 0 and t.system_attrs["pso:particle"] == 0
        assert {"lr", "x0"} <= set(t.system_attrs["pso:x"]) and "act" not in t.system_attrs["pso:x"]
        for t in study.trials:
            assert t.params["act"] in ("relu", "tanh") and 1e-4 <= t.params["lr"] <= 1e-1
        # the enqueued optimum (trial 0, before start_trial) is the global best the swarm is pulled to
        assert study.best_trial.number == 0
    assert runs[0] == runs[1]


def test_sampler_follows_an_enqueued_particle():
    study = optuna.create_study(sampler=PSOSampler(4, seed=0, search_space=SPACE, velocity_clamp=None))
    study.enqueue_trial({f"x{i}": int(SHIFT[i]) for i in range(D)})  # particle 0 of generation 0 at the optimum
    study.optimize(objective, n_trials=4)
    assert study.best_value == 0.0
    assert "pso:x" not in study.trials[0].system_attrs  # a fully fixed trial never asks the sampler
    study.optimize(objective, n_trials=4)
    # generation 1's particle 0 starts from the enqueued position (its own best and the global best) and
    # has no velocity: it stays there
    assert params_of(study)[4] == SHIFT.tolist()


def test_sampler_float_and_stepped_distributions():
    space = {"a": FloatDistribution(-1.0, 1.0), "b": FloatDistribution(0.0, 1.0, step=0.25),
             "c": IntDistribution(1, 64, log=True), "d": IntDistribution(0, 12, step=3)}

    def obj(trial):
        a = trial.suggest_float("a", -1.0, 1.0)
        b = trial.suggest_float("b", 0.0, 1.0, step=0.25)
        c = trial.suggest_int("c", 1, 64, log=True)
        d = trial.suggest_int("d", 0, 12, step=3)
        return (a - 0.4) ** 2 + (b - 0.75) ** 2 + (math.log2(c) - 4) ** 2 + (d - 9) ** 2

    study = optuna.create_study(sampler=PSOSampler(8, seed=0, search_space=space))
    study.optimize(obj, n_trials=160)
    for t in study.trials:
        assert t.params["b"] in (0.0, 0.25, 0.5, 0.75, 1.0) and t.params["d"] in (0, 3, 6, 9, 12)
        assert 1 <= t.params["c"] <= 64 and -1.0 <= t.params["a"] <= 1.0
    best = study.best_params
    assert best["b"] == 0.75 and best["d"] == 9 and 12 <= best["c"] <= 20 and abs(best["a"] - 0.4) < 0.2


def test_sampler_argument_errors():
    with pytest.raises(ValueError, match=r"search_space\['k'\]"):
        PSOSampler(search_space={"k": CategoricalDistribution(["a", "b"])})
    with pytest.raises(ValueError, match="score_direction"):
        PSOSampler(score_direction="down")
    with pytest.raises(ValueError, match="start_trial"):
        PSOSampler(start_trial=-1)
    with pytest.raises(ValueError, match="seed"):
        PSOSampler(seed=-3)
