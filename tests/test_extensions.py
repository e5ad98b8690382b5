"""A new neuron, sampler, hand design, setting or protocol is a change in one place: registered here in fixtures, used everywhere."""

import optuna
import pandas as pd
import pytest
import torch
from helpers import drive_search

from nasdun.orchestration.samplers import SAMPLERS
from search_spaces import NEURONS, Genotype, SearchSpace


def shrink(z, theta):
    """A toy neuron: the soft threshold written as relu(z - theta) - relu(-z - theta)."""
    return (z - theta).relu() - (-z - theta).relu()


class Cycle(optuna.samplers.BaseSampler):
    """A toy sampler: each decision of trial t from a generator seeded by (t, decision name): deterministic, no memory."""

    def __init__(self, decisions) -> None:
        self.names = [d.name for d in decisions]

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, name, distribution):
        import random

        return distribution.choices[random.Random(f"{trial.number}:{name}").randrange(len(distribution.choices))]


@pytest.fixture
def toys():
    NEURONS.register("shrink", shrink)
    SAMPLERS.register("cycle", lambda decisions, seed, **options: Cycle(decisions))
    yield
    NEURONS.unregister("shrink")
    SAMPLERS.unregister("cycle")


def test_a_toy_neuron_and_sampler_search_without_touching_another_file(toys, tmp_path):

    from nasdun.interfaces.cli import build_parser
    from nasdun.orchestration.driver import Experiment
    from nasdun.orchestration.searchconfig import SearchConfig

    search_help = next(a for a in build_parser()._actions if a.dest == "command").choices["search"].format_help()
    assert "shrink" in SearchSpace().neurons and "cycle" in search_help  # the CLI help is read from the registry
    cfg = SearchConfig(sampler="cycle", budget=6, cohort=3, setting="small", protocol="smoke", layers=3, baselines=False, neurons=("soft", "shrink"))
    exp = Experiment.open(tmp_path, cfg)
    drive_search(exp, steps=10)
    df = pd.read_csv(tmp_path / "results.csv")
    assert len(df) == 6 and (df["status"] == "ok").all() and (df["sampler"] == "cycle").all()
    neurons = {n for g in df["genotype"] for n in Genotype.from_json(g).neurons}
    assert "shrink" in neurons  # the toy neuron was proposed, built into the batched model and trained


class Counting(optuna.samplers.BaseSampler):
    """A toy plain Optuna sampler that reads the study: each decision from the number of finished trials it sees."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, name, distribution):
        self.seen.append(len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))))
        return distribution.choices[self.seen[-1] % len(distribution.choices)]


def test_a_plain_optuna_sampler_keeps_the_replay_contract_with_no_other_edit():
    """Registered as it is, a plain Optuna sampler is put behind the search's history limit (it sees the trials below
    the limit, not every one that happened to finish), so a search with it stays repeatable: nothing is duck-typed."""
    from nasdun.orchestration.samplers import make_sampler
    from nasdun.orchestration.samplers._history import ReplayableSampler

    SAMPLERS.register("counting", lambda decisions, seed, **options: Counting())
    try:
        decisions = SearchSpace(layers=3).decisions()
        sampler = make_sampler("counting", decisions)
        assert isinstance(sampler, ReplayableSampler) and sampler.random_state() is None
        study = optuna.create_study(sampler=sampler)
        for _ in range(3):
            trial = study.ask()
            trial.suggest_categorical(decisions[0].name, list(decisions[0].choices))
            study.tell(trial, 0.0)
        sampler.history_limit = 1  # what Experiment.ask_cohort sets: the trials of the cohorts that must have finished
        study.ask().suggest_categorical(decisions[0].name, list(decisions[0].choices))
        assert sampler.inner.seen == [0, 1, 2, 1]  # 3 trials finished, 1 seen
    finally:
        SAMPLERS.unregister("counting")


def test_a_toy_neuron_trains_like_the_neuron_it_restates(toys, small_problem):
    """`shrink` is the soft threshold written another way: a network of it trains to the same numbers (eager path)."""
    from search_spaces import preset
    from trainers.population import train_population
    from trainers.protocols import get_protocol

    soft = preset("lista", 3)
    toy = Genotype(soft.inputs, ("shrink",) * 3, soft.lags)
    a, b = train_population([soft, toy], small_problem, get_protocol("smoke"))
    assert a.iterations == b.iterations
    assert b.test_nmse_db == pytest.approx(a.test_nmse_db, abs=1e-4)
    assert torch.allclose(a.params["Wx"], b.params["Wx"], atol=1e-4)


@pytest.fixture
def toy_preset():
    """A toy hand design: LISTA with ReLU neurons, registered in this one place."""
    from search_spaces.presets import PRESETS, hand_design

    @hand_design("relu-lista", "ReLU-LISTA")
    def relu_lista(layers: int, max_lag: int = 2) -> Genotype:
        return Genotype.build(layers, neurons=("relu",) * layers, max_lag=max_lag)

    yield relu_lista
    PRESETS.unregister("relu-lista")


def test_a_toy_hand_design_is_a_baseline_and_counted_by_the_verdict_with_no_other_edit(toy_preset, tmp_path):
    from nasdun.orchestration.driver import Experiment
    from nasdun.orchestration.searchconfig import SearchConfig
    from nasdun.runs.verdict import display, judge
    from search_spaces.presets import resolve_archs

    classic = {"neurons": ("soft", "relu", "lrelu"), "weights": ("free",)}  # the hand designs of the classic space, and the toy
    cfg = SearchConfig(sampler="random", budget=8, cohort=3, setting="small", protocol="smoke", layers=3, baselines=True, promote_top=0, **classic)
    assert "relu-lista" in cfg.baseline_genotypes() and "relu-lista" in [n for n, _ in resolve_archs("hand", 3)]
    exp = Experiment.open(tmp_path, cfg)
    drive_search(exp, steps=10)
    df = pd.read_csv(tmp_path / "results.csv")
    toy = df[df["preset"] == "relu-lista"]
    assert len(toy) == 1 and toy["status"].item() == "ok" and toy["hash"].item() == toy_preset(3, 2).hash  # trained as a baseline
    verdict = judge(df[(df["preset"] == "relu-lista") | df["preset"].isna()].to_dict("records"))  # the toy and the found networks
    assert verdict["best_preset"] == "relu-lista" and "ReLU-LISTA" in verdict["verdict"]  # counted on the hand-design side
    assert display("relu-lista") == "ReLU-LISTA"


def test_a_toy_neuron_with_a_piecewise_form_joins_the_fused_family_where_it_is_registered():
    from search_spaces.neurons import PIECEWISE, neuron, piecewise

    @neuron("leaky2", piecewise=(0.0, 0.2))
    def leaky2(z, theta):
        return (z - theta).relu() + 0.2 * (z - theta).clamp(max=0)

    try:
        assert PIECEWISE["leaky2"] == (0.0, 0.2) and "leaky2" in SearchSpace().neurons
        z, theta = torch.linspace(-2, 2, 41, dtype=torch.float64), torch.tensor(0.3, dtype=torch.float64)
        assert torch.allclose(piecewise(z, theta, 0.0, 0.2), leaky2(z, theta), atol=1e-15)  # the fused kernel's formula is the neuron
    finally:
        NEURONS.unregister("leaky2")
    assert "leaky2" not in PIECEWISE  # the family is the registry's, not a second list


@pytest.fixture
def toy_setting_and_protocol():
    """A toy problem setting and a toy protocol, each registered in this one place."""
    from trainers.problems.make import SETTINGS, Setting, register
    from trainers.protocols import PROTOCOLS, Protocol

    register(Setting("toy", "a toy setting: m=12, n=24, p=0.2", m=12, n=24, p=0.2, n_train=512, n_val=128, n_test=128, seed=7))
    PROTOCOLS.register("toy", Protocol(name="toy", lrs=(1e-3,), patience=20, max_iters=40, batch_size=32))
    yield
    SETTINGS.unregister("toy")
    PROTOCOLS.unregister("toy")


def test_a_toy_setting_and_protocol_are_usable_by_name_with_no_other_edit(toy_setting_and_protocol, tmp_path, capsys):
    """`nasdun train` and a search run on them by name; the data is the setting's (its shape, seeded by its seed)."""
    from nasdun.interfaces.cli import main
    from nasdun.orchestration.driver import Experiment
    from nasdun.orchestration.searchconfig import SearchConfig
    from trainers.problems.make import make_problem

    assert main(["train", "--arch", "lista,2no", "--layers", "3", "--setting", "toy", "--protocol", "toy", "--out", str(tmp_path / "t")]) == 0
    df = pd.read_csv(tmp_path / "t" / "results.csv")
    assert (df["status"] == "ok").all() and (df["setting"] == "toy").all() and (df["protocol"] == "toy").all()
    assert (df["iterations"] <= 3 * 40).all()  # one stage of at most 40 iterations per layer: the toy protocol's
    problem = make_problem("toy", 0, batch_size=32)
    assert problem.D.shape == (12, 24) and problem.val.x.shape == (128, 24)
    assert torch.equal(make_problem("toy", 1, batch_size=32).val.b, problem.val.b)  # validation from the setting's seed alone
    cfg = SearchConfig(sampler="random", budget=4, cohort=2, setting="toy", protocol="toy", layers=3, baselines=False, promote_top=0)
    (tmp_path / "s").mkdir()
    drive_search(Experiment.open(tmp_path / "s", cfg), steps=6)
    rows = pd.read_csv(tmp_path / "s" / "results.csv")
    assert len(rows) == 4 and (rows["setting"] == "toy").all() and (rows["status"] == "ok").all()
    capsys.readouterr()
    assert main(["protocols"]) == 0
    line = [line for line in capsys.readouterr().out.splitlines() if line.startswith("toy ")][0]
    assert "patience=20" in line and "max_iters=40" in line and "val_every=10" in line and "retries" not in line
