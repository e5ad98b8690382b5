"""What a nasdun sampler learns from: the finished trials of a study, in a replayable order.

A sampler's state is a deterministic function of its config and this history, so a sampler
rebuilt on a resumed study (after the driver was killed) continues exactly where the old one
stood. Trials are consumed in trial-number order, and only as a contiguous prefix of finished
trials: a later trial waits until every earlier one has finished, so that the order in which
results arrive (which depends on timing) never changes the state. The search also sets
:attr:`HistorySampler.history_limit` before asking each cohort: with several cohorts in flight,
a cohort is proposed from the trials of the cohorts that must have finished by then, never from
one that merely happened to finish first (:meth:`nasdun.orchestration.experiment.Experiment.ask_cohort`).

Optuna's own samplers (random, TPE, NSGA-II) draw from a random state that each ask advances, so a
sampler rebuilt on resume would start its sequence again and re-propose the first genotypes of the
search. :meth:`ReplayableSampler.random_state` and :meth:`ReplayableSampler.restore_random_state`
carry that state across a restart: the search stores it in the study after every ask and puts it back
on resume, so a resumed search proposes what the uninterrupted one would have.

The search speaks to a sampler only through :class:`ReplayableSampler`, the contract declared here:
:class:`HistorySampler` (nasdun's own) and :class:`FixedHistory` (any Optuna sampler, wrapped) are its
two kinds, and :func:`nasdun.orchestration.samplers.make_sampler` wraps every registered sampler that is not one, so
no sampler can enter a search without the history limit and the stored random state.
"""

from __future__ import annotations

import abc
import json
import math
import threading
import warnings
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from search_spaces.genotype import Choice, Decision

FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)


@dataclass(frozen=True)
class Observation:
    """One finished trial: its decisions and its value (validation nmse_db; None if it failed).

    A trial pruned by successive halving carries the value it reached at its last rung (its
    last intermediate value), so samplers learn from the fidelity the candidate was trained to.
    """

    number: int
    params: dict[str, Choice]
    value: float | None


class ReplayableSampler(BaseSampler, abc.ABC):
    """What the search needs of a sampler to be repeatable from its seed, config and lag, and across a restart.

    * :attr:`history_limit`: set before each cohort is asked; trials numbered at or above it are not
      seen, whichever of them happen to have finished (:meth:`nasdun.orchestration.experiment.Experiment.ask_cohort`);
    * :meth:`history_used`: how many of the study's first trials the last proposal was a function of
      (recorded per trial; None where the sampler does not count them);
    * :meth:`random_state` / :meth:`restore_random_state`: the random state an ask advances, as JSON
      (None where proposals are seeded per trial), stored in the study after every ask and put back on resume.
    """

    history_limit: int | None = None

    def history_used(self) -> int | None:
        return None

    @abc.abstractmethod
    def random_state(self) -> str | None: ...

    @abc.abstractmethod
    def restore_random_state(self, text: str) -> None: ...


class HistorySampler(ReplayableSampler):
    """Base of the nasdun samplers: all decisions sampled jointly from a replayable history.

    Subclasses implement :meth:`observe` (fold one finished trial into the state) and
    :meth:`propose` (the decisions of a new trial, from a generator seeded by the trial
    number). Decisions the sampler does not know fall back to uniform sampling.
    """

    def __init__(self, decisions: tuple[Decision, ...], seed: int = 0) -> None:
        self.decisions = decisions
        self.seed = seed
        self.consumed = 0  # trials 0..consumed-1 have been observed
        self.history_limit: int | None = None  # trials numbered >= this are not observed (yet)
        self._space = {d.name: CategoricalDistribution(list(d.choices)) for d in decisions}
        self._lock = threading.RLock()  # study.optimize(n_jobs > 1) asks from several threads: one at a time here
        self._study_key: tuple[Any, int] | None = None  # the study whose history this instance holds
        self._waiting_on: int | None = None  # the RUNNING trial the history last waited on (warned once)

    def history_used(self) -> int:
        return self.consumed  # a proposal is a function of the study's first `consumed` trials

    def random_state(self) -> None:
        return None  # seeded per trial (rng): nothing to carry across a restart

    def restore_random_state(self, text: str) -> None:
        raise ValueError(f"sampler {type(self).__name__} is seeded per trial and holds no random state")

    # -- what subclasses implement -------------------------------------------------------------
    @abc.abstractmethod
    def observe(self, obs: Observation) -> None: ...

    @abc.abstractmethod
    def propose(self, rng: np.random.Generator, number: int) -> dict[str, Choice]: ...

    # -- Optuna's sampler interface ------------------------------------------------------------
    # Used by plain Optuna too (study.optimize, ask/tell): single-objective studies only (refused otherwise); one
    # instance per study (a second study is refused: the state is that study's history); thread-safe; a non-finite
    # value counts as a failed trial; parameters outside the decisions are drawn independently, each from its own
    # stream, by Optuna's RandomSampler (any distribution); reseed_rng draws a new seed (docs/search.md).
    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        self._check_study(study)
        return dict(self._space)

    def sample_relative(self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        self._check_study(study)
        with self._lock:
            self.catch_up(study)
            proposal = self.propose(self.rng(trial.number), trial.number)
        known = {
            name: proposal[name]
            for name, d in search_space.items()
            if name in proposal and isinstance(d, CategoricalDistribution) and proposal[name] in d.choices
        }
        return known | {name: self._fallback(study, trial, name, d) for name, d in search_space.items() if name not in known}

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution) -> Any:
        self._check_study(study)
        return self._fallback(study, trial, param_name, param_distribution)

    def reseed_rng(self) -> None:
        """A fresh seed (Optuna calls this in each thread of study.optimize(n_jobs > 1)); proposals are then not repeatable."""
        self.seed = int(np.random.default_rng().integers(2**63))

    def _fallback(self, study: Study, trial: FrozenTrial, name: str, distribution: BaseDistribution) -> Any:
        """An independent draw for a parameter outside the decisions: its own stream per (seed, trial, name)."""
        from optuna.samplers import RandomSampler

        seed = np.random.SeedSequence([self.seed, trial.number, zlib.crc32(name.encode())]).generate_state(1)[0]
        return RandomSampler(seed=int(seed)).sample_independent(study, trial, name, distribution)

    def _check_study(self, study: Study) -> None:
        if len(study.directions) > 1:
            n = len(study.directions)
            raise ValueError(f"{type(self).__name__} is a single-objective sampler; study {study.study_name!r} has {n} objectives")
        backend = getattr(study._storage, "_backend", study._storage)  # a cached RDB storage wraps its backend
        key = (getattr(backend, "url", None) or id(backend), study._study_id)
        with self._lock:
            if self._study_key is None:
                self._study_key = key
            elif self._study_key != key:
                raise ValueError(
                    f"this {type(self).__name__} holds the history of another study; expected one sampler instance per study"
                    f" (make a new one for {study.study_name!r})"
                )

    # -- history -------------------------------------------------------------------------------
    def rng(self, number: int, stream: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, number, stream])

    def random_params(self, rng: np.random.Generator) -> dict[str, Choice]:
        return {d.name: d.choices[int(rng.integers(len(d.choices)))] for d in self.decisions}

    def catch_up(self, study: Study) -> None:
        """Observe the newly finished prefix of the study's trials below ``history_limit``, in number order."""
        trials = study.get_trials(deepcopy=False)
        by_number: Mapping[int, FrozenTrial] = {t.number: t for t in trials}
        limit = len(trials) if self.history_limit is None else self.history_limit
        while self.consumed < limit and self.consumed in by_number and by_number[self.consumed].state in FINISHED:
            t = by_number[self.consumed]
            value = t.value if t.state == TrialState.COMPLETE else None
            if t.state == TrialState.PRUNED and t.intermediate_values:
                value = t.intermediate_values[max(t.intermediate_values)]
            if value is not None and not math.isfinite(value):
                value = None  # a NaN or infinite value is a failed trial, never a target to learn from
            params = {k: v for k, v in t.params.items() if k in self._space}
            if len(params) == len(self._space):  # trials of another space are skipped
                self.observe(Observation(t.number, params, value))
            self.consumed += 1
        held = by_number.get(self.consumed)
        later = any(t.state in FINISHED for t in trials if t.number > self.consumed and t.number < limit)
        if held is not None and held.state == TrialState.RUNNING and later and self._waiting_on != held.number:
            self._waiting_on = held.number
            warnings.warn(
                f"{type(self).__name__}: trial {held.number} is still RUNNING; the sampler learns from trials in number order, so no later"
                " finished trial is learned from until it finishes (tell it, or mark it failed)",
                stacklevel=2,
            )


class FixedHistory(ReplayableSampler):
    """An Optuna sampler that sees only the trials numbered below :attr:`history_limit`, its random state carried.

    Optuna's own model-based samplers (TPE, NSGA-II) read every finished trial of the study when asked,
    so with several cohorts in flight what they propose would depend on which cohort finished
    first. Wrapped, they read the same fixed history a nasdun sampler does (see
    :class:`HistorySampler` and :meth:`nasdun.orchestration.experiment.Experiment.ask_cohort`).
    """

    def __init__(self, inner: BaseSampler) -> None:
        self.inner = inner
        self.history_limit: int | None = None

    def _view(self, study: Study) -> Study:
        return study if self.history_limit is None else _StudyView(study, self.history_limit)  # type: ignore[return-value]

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.inner.infer_relative_search_space(self._view(study), trial)

    def sample_relative(self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self.inner.sample_relative(self._view(study), trial, search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution) -> Any:
        return self.inner.sample_independent(self._view(study), trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self.inner.before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()

    def random_state(self) -> str | None:
        """The inner sampler's random states (every LazyRandomState it holds, by attribute path) as JSON; None if it holds none."""
        states = {}
        for where, lazy in _lazy_states(self.inner):
            kind, keys, pos, has_gauss, gauss = lazy.rng.get_state()
            states[where] = [kind, [int(k) for k in keys], int(pos), int(has_gauss), float(gauss)]
        return json.dumps(states) if states else None

    def restore_random_state(self, text: str) -> None:
        """Put back what :meth:`random_state` returned; a state this sampler does not hold is an error (another sampler's record)."""
        held = dict(_lazy_states(self.inner))
        states = json.loads(text)
        if set(states) != set(held):
            raise ValueError(f"the stored sampler state has {sorted(states)}, this sampler {sorted(held)}")
        for where, (kind, keys, pos, has_gauss, gauss) in states.items():
            held[where].rng.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))


class _StudyView:
    """A study whose trial lists stop below ``limit``; everything else is the study's."""

    def __init__(self, study: Study, limit: int) -> None:
        self._study, self._limit = study, limit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states: Any = None, use_cache: bool = False) -> list[FrozenTrial]:
        return [t for t in self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache) if t.number < self._limit]

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        return self._get_trials(deepcopy=deepcopy, states=states)

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()


def _lazy_states(obj: Any, path: str = "", depth: int = 3) -> Iterator[tuple[str, Any]]:
    """(attribute path, Optuna LazyRandomState) for every random state held by ``obj`` and the Optuna objects it holds."""
    from optuna.samplers._lazy_random_state import LazyRandomState

    for name, value in sorted(vars(obj).items()):
        where = f"{path}.{name}" if path else name
        if isinstance(value, LazyRandomState):
            yield where, value
        elif depth > 0 and hasattr(value, "__dict__") and type(value).__module__.startswith("optuna."):
            yield from _lazy_states(value, where, depth - 1)
