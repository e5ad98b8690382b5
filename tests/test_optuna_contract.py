"""nasdun's samplers under Optuna's own sampler test suite (optuna.testing.pytest_samplers), built as the registry
builds them, and the points of Optuna's sampler contract a plain-Optuna user relies on (docs/search.md)."""

import math
import warnings

import optuna
import pytest
from optuna.testing.pytest_samplers import BasicSamplerTestCase, RelativeSamplerTestCase, SingleOnlySamplerTestCase

from nasdun.orchestration.samplers import SAMPLERS, make_sampler
from nasdun.orchestration.samplers._history import HistorySampler
from search_spaces.genotype import Decision

DECISIONS = tuple(Decision(f"d{i}", ("a", "b", "c")) for i in range(4))
OWN = [name for name in SAMPLERS.names() if isinstance(make_sampler(name, DECISIONS, 0), HistorySampler)]


class _Every:
    @pytest.fixture(params=SAMPLERS.names())
    def sampler(self, request):
        return lambda: make_sampler(request.param, DECISIONS, 0)


class _Own:
    @pytest.fixture(params=OWN)
    def sampler(self, request):
        return lambda: make_sampler(request.param, DECISIONS, 0)


class TestOptunaBasicSuite(_Every, BasicSamplerTestCase):
    """Every registered sampler: floats, ints, categoricals, conditional and dynamic spaces, NaN objectives."""


class TestOptunaRelativeSuite(_Own, RelativeSamplerTestCase):
    """nasdun's own samplers sample relatively (all decisions jointly); a space they do not know is drawn independently."""


class TestOptunaSingleObjectiveSuite(_Own, SingleOnlySamplerTestCase):
    """nasdun's own samplers are single-objective: a multi-objective study is refused at the first ask."""


def test_own_samplers_are_the_history_samplers():
    assert set(OWN) == {"rl", "evolution", "predictor"}


SPACE = {d.name: optuna.distributions.CategoricalDistribution(d.choices) for d in DECISIONS}


def _objective(trial: optuna.Trial) -> float:
    return float(sum("abc".index(trial.suggest_categorical(d.name, d.choices)) for d in DECISIONS))


@pytest.mark.parametrize("name", OWN)
def test_thread_safe_under_optimize_with_two_jobs(name):
    study = optuna.create_study(sampler=make_sampler(name, DECISIONS, 0))
    study.optimize(_objective, n_trials=24, n_jobs=2, catch=())
    assert len(study.trials) == 24 and all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


@pytest.mark.parametrize("name", OWN)
@pytest.mark.parametrize("bad", [math.inf, -math.inf])
def test_a_non_finite_value_is_a_failure_not_a_target(name, bad):
    """One infinite value (Optuna completes a trial with it) never poisons later asks: it is learned from as a failure."""
    sampler = make_sampler(name, DECISIONS, 0)
    study = optuna.create_study(sampler=sampler)
    for i in range(12):
        trial = study.ask(SPACE)
        study.tell(trial, bad if i == 3 else _objective(trial))
    assert study.trials[3].state == optuna.trial.TrialState.COMPLETE and study.trials[3].value == bad
    for _ in range(6):
        trial = study.ask(SPACE)
        assert set(trial.params) == {d.name for d in DECISIONS} and all(trial.params[d.name] in d.choices for d in DECISIONS)
        study.tell(trial, _objective(trial))
    if name == "predictor":
        import numpy as np

        assert np.isfinite(sampler._data[1]).all()  # its training targets
        assert [o.value is None for o in sampler.history][3]  # trial 3 observed as a failure


@pytest.mark.parametrize("name", OWN)
def test_parameters_outside_the_decisions_get_independent_draws(name):
    study = optuna.create_study(sampler=make_sampler(name, DECISIONS, 0))
    draws = []
    for _ in range(20):
        trial = study.ask(SPACE)
        xs = [trial.suggest_int(f"x{j}", 0, 1000) for j in range(4)]
        draws.append(xs)
        study.tell(trial, 0.0)
    assert sum(len(set(xs)) == 1 for xs in draws) == 0  # never the same draw for every parameter of a trial
    again = optuna.create_study(sampler=make_sampler(name, DECISIONS, 0))
    trial = again.ask()
    assert [trial.suggest_int(f"x{j}", 0, 1000) for j in range(4)] == draws[0]  # repeatable from the seed


@pytest.mark.parametrize("name", OWN)
def test_one_instance_per_study(name):
    sampler = make_sampler(name, DECISIONS, 0)
    first = optuna.create_study(sampler=sampler)
    first.optimize(_objective, n_trials=3)
    second = optuna.create_study(sampler=sampler)
    with pytest.raises(ValueError, match="holds the history of another study; expected one sampler instance per study"):
        second.ask(SPACE)
    reloaded = optuna.load_study(study_name=first.study_name, storage=first._storage, sampler=sampler)  # the same study: fine
    reloaded.optimize(_objective, n_trials=1)


@pytest.mark.parametrize("name", OWN)
def test_reseed_rng_is_honoured(name):
    a, b = make_sampler(name, DECISIONS, 0), make_sampler(name, DECISIONS, 0)
    b.reseed_rng()
    assert a.seed == 0 and b.seed != 0
    sa, sb = optuna.create_study(sampler=a), optuna.create_study(sampler=b)
    pa = [sa.ask(SPACE).params for _ in range(8)]
    pb = [sb.ask(SPACE).params for _ in range(8)]
    assert pa != pb


@pytest.mark.parametrize("name", OWN)
def test_a_trial_left_running_is_warned_about(name):
    study = optuna.create_study(sampler=make_sampler(name, DECISIONS, 0))
    stuck = study.ask(SPACE)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(5):
            trial = study.ask(SPACE)
            study.tell(trial, _objective(trial))
    held = [w for w in caught if f"trial {stuck.number} is still RUNNING" in str(w.message)]
    assert len(held) == 1  # once, not at every ask
