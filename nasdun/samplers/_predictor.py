"""Predictor-guided search (after BANANAS, White et al. 2021): learn the space from the history, propose the
candidate a predictor likes best among mutations of the best genotypes so far.

An ensemble of regressors (``model``: small scikit-learn MLPs by default, or random forests; each member
on a bootstrap resample, seeded) maps an encoding
of the decisions to the validation value. Forests rank unseen candidates of this space better from few
results, but cannot follow a trend past the values they have seen, which an MLP can
(``benchmarks/predictor_quality.py``, ``tests/test_samplers.py``, docs/results/samplers.md).
The encoding: the decisions' one-hot, followed by how often each choice is
taken among decisions of one kind (the share of soft-threshold layers, of open lag-1 gates, of open
connections...), so that a trend shared by the layers is learnt from a few candidates, not layer by
layer. Each proposal draws one ensemble member (independent Thompson sampling: members disagree where
the data are thin, so a cohort's proposals spread out) and returns the candidate that member predicts
lowest, among a pool of mutations (one or two decisions changed) of the ``parents`` best observed
genotypes and uniform random genotypes, and the
ends of a greedy descent on that member's prediction (one decision changed per step, from the
``climbs`` best of that pool) — so a trend the member has learnt decision by decision (soft threshold
in every layer, say) is followed to its end in one proposal instead of one mutation per cohort. A
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
    ``parents`` (best genotypes mutated), ``pool`` (candidates scored per proposal, half mutations), ``model``
    (``mlp`` or ``forest``), ``trees`` (per forest), ``hidden`` (units per MLP layer),
    ``climbs`` (greedy descents on the prediction per proposal; 0: the pool alone), ``kind_moves`` (the descent may also set
    every decision of one kind to one choice in one step), ``clip`` (values worse than this quantile of the history are
    learnt as that quantile; 1: as they are)."""

    MODELS = ("mlp", "forest")

    def __init__(
        self,
        decisions: tuple[Decision, ...],
        seed: int = 0,
        startup: int = 10,
        ensemble: int = 5,
        parents: int = 10,
        pool: int = 400,
        model: str = "mlp",
        trees: int = 50,
        hidden: int = 32,
        climbs: int = 4,
        kind_moves: bool = False,
        clip: float = 1.0,
    ) -> None:
        super().__init__(decisions, seed)
        for name, value, low in (
            ("startup", startup, 2),
            ("ensemble", ensemble, 1),
            ("parents", parents, 1),
            ("pool", pool, 2),
            ("trees", trees, 1),
            ("hidden", hidden, 1),
            ("climbs", climbs, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise NasdunError(f"predictor: {name}={value!r}; expected an integer >= {low}")
        if isinstance(clip, bool) or not isinstance(clip, int | float) or not 0 < clip <= 1:
            raise NasdunError(f"predictor: clip={clip!r}; expected a quantile in (0, 1] (1: values used as they are)")
        if not isinstance(kind_moves, bool):
            raise NasdunError(f"predictor: kind_moves={kind_moves!r}; expected true or false")
        if model not in self.MODELS:
            raise NasdunError(f"predictor: model={model!r}; expected one of {', '.join(self.MODELS)}")
        self.startup, self.ensemble, self.parents, self.pool, self.climbs = startup, ensemble, parents, pool, climbs
        self.model, self.trees, self.hidden, self.kind_moves, self.clip = model, trees, hidden, kind_moves, float(clip)
        self.history: list[Observation] = []
        self._offsets = np.cumsum([0] + [len(d.choices) for d in decisions])
        kinds: dict[tuple[str, Choice], list[int]] = {}  # (kind, choice) -> one-hot positions
        self._kind_sets: dict[tuple[str, Choice], list[str]] = {}  # (kind, choice) -> the decisions of that kind offering it
        for i, d in enumerate(decisions):
            parts = d.name.split("_")
            kind = parts[0] + (f"_{parts[-1]}" if parts[0] == "lag" else "")
            for j, c in enumerate(d.choices):
                kinds.setdefault((kind, c), []).append(int(self._offsets[i]) + j)
                self._kind_sets.setdefault((kind, c), []).append(d.name)
        self._shares = np.zeros((int(self._offsets[-1]), len(kinds)))  # one-hot @ _shares = share of each choice per kind
        for col, positions in enumerate(kinds.values()):
            self._shares[positions, col] = 1.0 / len(positions)
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
        return np.concatenate([x, x @ self._shares])

    def _fit(self) -> list[Any]:
        if self._fitted_on != len(self.history):
            from sklearn.ensemble import RandomForestRegressor
            from sklearn.neural_network import MLPRegressor

            values = [o.value for o in self.history if o.value is not None]
            worst = max(values) if values else 0.0
            X = np.stack([self.encode(o.params) for o in self.history])
            y = np.array([worst if o.value is None else o.value for o in self.history])
            if self.clip < 1:  # values worse than this quantile are learnt as the quantile: the model spends itself on the best ones
                y = np.minimum(y, np.quantile(y, self.clip))
            y = (y - y.mean()) / (y.std() or 1.0)
            models = []
            for m in range(self.ensemble):
                rng = np.random.default_rng([self.seed, len(self.history), m])
                idx = rng.integers(len(y), size=len(y))  # a bootstrap resample
                state = int(rng.integers(2**31))
                if self.model == "forest":
                    net: Any = RandomForestRegressor(self.trees, random_state=state)
                else:
                    net = MLPRegressor(hidden_layer_sizes=(self.hidden, self.hidden), alpha=1e-3, max_iter=800, random_state=state)
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
        member = self._fit()[int(rng.integers(self.ensemble))]
        scores = member.predict(np.stack([self.encode(p) for p in pool]))
        for start in np.argsort(scores, kind="stable")[: self.climbs]:
            pool.append(self._descend(member, pool[int(start)]))
        fresh = [p for p in pool if tuple(sorted(p.items())) not in asked]
        if not fresh:
            return self.random_params(rng)
        scores = member.predict(np.stack([self.encode(p) for p in fresh]))
        return fresh[int(np.argmin(scores))]

    def _descend(self, member: Any, params: dict[str, Choice]) -> dict[str, Choice]:
        """Greedy descent of ``member``'s prediction from ``params``: move to the best genotype one decision away while
        that lowers the prediction (at most as many steps as there are decisions)."""
        current = dict(params)
        value = float(member.predict(self.encode(current)[None])[0])
        for _ in range(len(self.decisions)):
            neighbours = [{**current, d.name: c} for d in self.decisions for c in d.choices if c != current[d.name]]
            if self.kind_moves:  # every decision of one kind set to one choice (every layer soft threshold, no extra connection...)
                for (_, c), names in self._kind_sets.items():
                    moved = {**current, **dict.fromkeys(names, c)}
                    if moved != current and moved not in neighbours:
                        neighbours.append(moved)
            if not neighbours:
                break
            scores = member.predict(np.stack([self.encode(p) for p in neighbours]))
            i = int(np.argmin(scores))
            if scores[i] >= value:
                break
            current, value = neighbours[i], float(scores[i])
        return current
