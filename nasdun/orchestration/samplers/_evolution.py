"""Regularized (aging) evolution, Real et al. 2019."""

from __future__ import annotations

from collections import deque

import numpy as np

from nasdun.core.errors import NasdunError
from nasdun.orchestration.samplers._history import HistorySampler, Observation
from search_spaces.genotype import Choice, Decision


class EvolutionSampler(HistorySampler):
    """Aging evolution over the categorical decisions.

    The population is the ``population_size`` most recently finished successful trials (oldest
    removed first). Until it is full, proposals are uniform random. Then each proposal draws
    ``sample_size`` members uniformly without replacement, takes the best (lowest value; ties to
    the earlier trial) as parent, and changes ``mutations`` decisions of it, each to a different
    choice drawn uniformly.
    """

    def __init__(self, decisions: tuple[Decision, ...], seed: int = 0, population_size: int = 20, sample_size: int = 5, mutations: int = 1) -> None:
        super().__init__(decisions, seed)
        if population_size < 2 or not 1 <= sample_size <= population_size:
            raise NasdunError(
                f"evolution: population_size={population_size}, sample_size={sample_size}; expected 1 <= sample <= population, population >= 2"
            )
        if not 1 <= mutations <= len(decisions):
            raise NasdunError(
                f"evolution: mutations={mutations}, but this search space has {len(decisions)} decision(s); "
                f"expected mutations in 1..{len(decisions)} (lower sampler_options.evolution.mutations or search more layers)"
            )
        self.population_size, self.sample_size, self.mutations = population_size, sample_size, mutations
        self.population: deque[Observation] = deque(maxlen=population_size)

    def observe(self, obs: Observation) -> None:
        if obs.value is not None:
            self.population.append(obs)

    def propose(self, rng: np.random.Generator, number: int) -> dict[str, Choice]:
        if len(self.population) < self.population_size:
            return self.random_params(rng)
        members = [self.population[i] for i in rng.choice(len(self.population), self.sample_size, replace=False)]
        parent = min(members, key=lambda o: (o.value, o.number))
        child = dict(parent.params)
        for idx in rng.choice(len(self.decisions), self.mutations, replace=False):
            d = self.decisions[int(idx)]
            others = [c for c in d.choices if c != child[d.name]]
            child[d.name] = others[int(rng.integers(len(others)))]
        return child
