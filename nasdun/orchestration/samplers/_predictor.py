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

from nasdun.core.errors import NasdunError
from nasdun.orchestration.samplers._history import HistorySampler, Observation
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
        # choice -> its index, per decision (the first of equal choices, as tuple.index finds it)
        self._index: list[dict[Choice, int]] = [{} for _ in decisions]
        for i, d in enumerate(decisions):
            for j, c in enumerate(d.choices):
                self._index[i].setdefault(c, j)
        # every (decision, choice) pair in decision order: the single-change moves of the descent
        self._move_decision = np.array([i for i, d in enumerate(decisions) for _ in d.choices])
        self._move_choice = np.array([j for d in decisions for j in range(len(d.choices))])
        position = {d.name: i for i, d in enumerate(decisions)}  # the kind moves, as (decisions, their choice indices)
        self._kind_moves = [
            (np.array([position[n] for n in names]), np.array([self._index[position[n]][c] for n in names]))
            for (_, c), names in self._kind_sets.items()
        ]
        self._models: dict[int, Any] = {}  # members fitted so far on the history as it stood at ``_fitted_on`` observations
        self._data: tuple[np.ndarray, np.ndarray] = (np.zeros((0, 0)), np.zeros(0))  # that history's features and standardised values
        self._fitted_on = -1
        self._study: Any = None

    def observe(self, obs: Observation) -> None:
        self.history.append(obs)

    def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
        self._study = study  # propose() excludes what the study has asked already
        return super().sample_relative(study, trial, search_space)

    def encode(self, params: dict[str, Choice]) -> np.ndarray:
        """The features of one genotype: the decisions' one-hot, then each choice's share among decisions of its kind."""
        return self._features(self._choices([params]))[0]

    def _choices(self, many: list[dict[str, Choice]]) -> np.ndarray:
        """Genotypes as rows of choice indices (one column per decision)."""
        return np.array([[index[p[d.name]] for index, d in zip(self._index, self.decisions, strict=True)] for p in many], dtype=np.int64)

    def _features(self, rows: np.ndarray) -> np.ndarray:
        """:meth:`encode` of each row of choice indices. The shares are taken row by row (a vector times the share
        matrix), the same arithmetic for one genotype and for many, so a prediction never depends on the batch."""
        x = np.zeros((len(rows), int(self._offsets[-1])))
        x[np.arange(len(rows))[:, None], self._offsets[:-1][None, :] + rows] = 1.0
        return np.concatenate([x, np.stack([row @ self._shares for row in x])], axis=1)

    def _params(self, row: np.ndarray, like: dict[str, Choice]) -> dict[str, Choice]:
        """Row of choice indices -> decisions, in the key order of ``like``."""
        out = dict(like)
        for d, j in zip(self.decisions, row, strict=True):
            out[d.name] = d.choices[int(j)]
        return out

    def _fit(self) -> list[Any]:
        """Every member of the ensemble, fitted on the history as it stands."""
        return [self._member(m) for m in range(self.ensemble)]

    def _member(self, m: int) -> Any:
        """Member ``m`` fitted on the history as it stands. Each member is its own bootstrap resample and seed (a function of
        the seed, the history's length and ``m``), so fitting only the member a proposal draws is the same model as
        fitting them all: members are fitted when first drawn, once per history length."""
        if self._fitted_on != len(self.history):
            values = [o.value for o in self.history if o.value is not None]
            worst = max(values) if values else 0.0
            X = self._features(self._choices([o.params for o in self.history]))
            y = np.array([worst if o.value is None else o.value for o in self.history])
            if self.clip < 1:  # values worse than this quantile are learnt as the quantile: the model spends itself on the best ones
                y = np.minimum(y, np.quantile(y, self.clip))
            self._data = (X, (y - y.mean()) / (y.std() or 1.0))
            self._models, self._fitted_on = {}, len(self.history)
        if m not in self._models:
            from sklearn.ensemble import RandomForestRegressor
            from sklearn.neural_network import MLPRegressor

            X, y = self._data
            rng = np.random.default_rng([self.seed, len(self.history), m])
            idx = rng.integers(len(y), size=len(y))  # a bootstrap resample
            state = int(rng.integers(2**31))
            if self.model == "forest":
                net: Any = RandomForestRegressor(self.trees, random_state=state)
            else:
                net = MLPRegressor(hidden_layer_sizes=(self.hidden, self.hidden), alpha=1e-3, max_iter=800, random_state=state)
            self._models[m] = net.fit(X[idx], y[idx])
        return self._models[m]

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
        member = self._member(int(rng.integers(self.ensemble)))
        scores = member.predict(self._features(self._choices(pool)))
        for start in np.argsort(scores, kind="stable")[: self.climbs]:
            pool.append(self._descend(member, pool[int(start)]))
        fresh = [p for p in pool if tuple(sorted(p.items())) not in asked]
        if not fresh:
            return self.random_params(rng)
        scores = member.predict(self._features(self._choices(fresh)))
        return fresh[int(np.argmin(scores))]

    def _descend(self, member: Any, params: dict[str, Choice]) -> dict[str, Choice]:
        """Greedy descent of ``member``'s prediction from ``params``: move to the best genotype one decision away while
        that lowers the prediction (at most as many steps as there are decisions). Neighbours in decision order, then
        choice order; with ``kind_moves``, then every decision of one kind set to one choice (each move once)."""
        current = self._choices([params])[0]
        value = float(member.predict(self._features(current[None]))[0])
        for _ in range(len(self.decisions)):
            single = self._move_choice != current[self._move_decision]
            neighbours = np.repeat(current[None], int(single.sum()), axis=0)
            neighbours[np.arange(len(neighbours)), self._move_decision[single]] = self._move_choice[single]
            if self.kind_moves:  # every decision of one kind set to one choice (every layer soft threshold, no extra connection...)
                seen = {row.tobytes() for row in neighbours}
                extra = []
                for where, choice in self._kind_moves:
                    moved = current.copy()
                    moved[where] = choice
                    if moved.tobytes() not in seen and not np.array_equal(moved, current):
                        seen.add(moved.tobytes())
                        extra.append(moved)
                if extra:
                    neighbours = np.concatenate([neighbours, np.stack(extra)])
            if not len(neighbours):
                break
            scores = member.predict(self._features(neighbours))
            i = int(np.argmin(scores))
            if scores[i] >= value:
                break
            current, value = neighbours[i].copy(), float(scores[i])
        return self._params(current, params)
