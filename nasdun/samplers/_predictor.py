"""Predictor-guided search (after BANANAS, White et al. 2021): learn the space from the history, propose the
candidate a predictor likes best among mutations of the best genotypes so far.

An ensemble of small regressors (scikit-learn MLPs, each on a bootstrap resample, seeded) maps a
one-hot encoding of the decisions to the validation value. Each proposal draws one ensemble member
(independent Thompson sampling: members disagree where the data are thin, so a cohort's proposals
spread out) and returns the candidate that member predicts lowest, among a pool of mutations (one or
two decisions changed) of the ``parents`` best observed genotypes and uniform random genotypes. A
genotype already asked in the study (any trial numbered below this one) is never proposed again. The
first ``startup`` proposals are uniform random; failed candidates are learnt as the worst value seen.

Like every :class:`HistorySampler`, its state is a function of its config and the study's finished
prefix, and a proposal of the trial number and the trials before it: repeatable and resumable.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nasdun.errors import NasdunError
from nasdun.samplers._history import HistorySampler, Observation
from search_spaces.genotype import Choice, Decision


class PredictorSampler(HistorySampler):
    """See the module's text. Options: ``startup`` (random proposals first), ``ensemble`` (members),
    ``parents`` (best genotypes mutated), ``pool`` (candidates scored per proposal, half mutations), ``hidden`` (units)."""

    def __init__(
        self,
        decisions: tuple[Decision, ...],
        seed: int = 0,
        startup: int = 10,
        ensemble: int = 5,
        parents: int = 10,
        pool: int = 400,
        hidden: int = 32,
    ) -> None:
        super().__init__(decisions, seed)
        for name, value, low in (
            ("startup", startup, 2),
            ("ensemble", ensemble, 1),
            ("parents", parents, 1),
            ("pool", pool, 2),
            ("hidden", hidden, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise NasdunError(f"predictor: {name}={value!r}; expected an integer >= {low}")
        self.startup, self.ensemble, self.parents, self.pool, self.hidden = startup, ensemble, parents, pool, hidden
        self.history: list[Observation] = []
        self._offsets = np.cumsum([0] + [len(d.choices) for d in decisions])
        self._models: list[Any] | None = None  # fitted on the history as it stood at ``_fitted_on`` observations
        self._fitted_on = -1
        self._study: Any = None

    def observe(self, obs: Observation) -> None:
        self.history.append(obs)

    def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
        self._study = study  # propose() excludes what the study has asked already
        return super().sample_relative(study, trial, search_space)

    def encode(self, params: dict[str, Choice]) -> np.ndarray:
        x = np.zeros(int(self._offsets[-1]))
        for i, d in enumerate(self.decisions):
            x[self._offsets[i] + d.choices.index(params[d.name])] = 1.0
        return x

    def _fit(self) -> list[Any]:
        if self._fitted_on != len(self.history):
            from sklearn.neural_network import MLPRegressor

            values = [o.value for o in self.history if o.value is not None]
            worst = max(values) if values else 0.0
            X = np.stack([self.encode(o.params) for o in self.history])
            y = np.array([worst if o.value is None else o.value for o in self.history])
            y = (y - y.mean()) / (y.std() or 1.0)
            models = []
            for m in range(self.ensemble):
                rng = np.random.default_rng([self.seed, len(self.history), m])
                idx = rng.integers(len(y), size=len(y))  # a bootstrap resample
                net = MLPRegressor(hidden_layer_sizes=(self.hidden, self.hidden), alpha=1e-3, max_iter=800, random_state=int(rng.integers(2**31)))
                models.append(net.fit(X[idx], y[idx]))
            self._models, self._fitted_on = models, len(self.history)
        assert self._models is not None
        return self._models

    def propose(self, rng: np.random.Generator, number: int) -> dict[str, Choice]:
        scored = [o for o in self.history if o.value is not None]
        if len(self.history) < self.startup or not scored:
            return self.random_params(rng)
        asked = set()
        if self._study is not None:
            asked = {tuple(sorted(t.params.items())) for t in self._study.get_trials(deepcopy=False) if t.number < number and t.params}
        best = sorted(scored, key=lambda o: (o.value, o.number))[: self.parents]
        pool: list[dict[str, Choice]] = []
        for i in range(self.pool // 2):
            child = dict(best[i % len(best)].params)
            for idx in rng.choice(len(self.decisions), 1 + int(rng.integers(2)), replace=False):
                d = self.decisions[int(idx)]
                child[d.name] = d.choices[int(rng.integers(len(d.choices)))]
            pool.append(child)
        pool += [self.random_params(rng) for _ in range(self.pool - len(pool))]
        fresh = [p for p in pool if tuple(sorted(p.items())) not in asked]
        if not fresh:
            return self.random_params(rng)
        member = self._fit()[int(rng.integers(self.ensemble))]
        scores = member.predict(np.stack([self.encode(p) for p in fresh]))
        return fresh[int(np.argmin(scores))]
