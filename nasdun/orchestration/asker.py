"""The asker of a search: the sampler's proposals as cohorts, from a history fixed by each cohort's number.

It writes what it asks into the session's :class:`nasdun.orchestration.ledger.InFlight`; the ledger settles it when the rows come.
"""

from __future__ import annotations

from typing import Any

from nasdun.core.errors import NasdunError
from nasdun.orchestration.ledger import Ledger, Members
from nasdun.orchestration.record import RANDOM_STATE
from nasdun.orchestration.searchconfig import ResolvedSearch
from search_spaces.genotype import Genotype

#: Proposals an ask makes per place in the cohort before it gives up on finding a fresh genotype.
TRIES_PER_PLACE = 20


class Asker:
    """Cohorts of fresh candidates from ``sampler`` over the search's decisions. Made by :meth:`open`."""

    def __init__(self, search: ResolvedSearch, sampler: Any, ledger: Ledger, round_first: dict[int, int], next_cohort: int) -> None:
        self.search, self.sampler, self.ledger = search, sampler, ledger
        self.study, self.flight = ledger.study, ledger.flight
        self.space, self.decisions = search.space, search.decisions
        self.round_first = round_first  # cohort -> number of the first trial asked for it
        self.next_cohort = next_cohort
        self._start: list[Genotype] | None = None  # start_from genotypes not yet proposed (see ask_cohort)

    @classmethod
    def open(cls, search: ResolvedSearch, sampler: Any, ledger: Ledger) -> Asker:
        """The asker continuing ``ledger``'s study: the sampler's random sequence where the last ask left it, the next
        cohort's number after every cohort asked or written."""
        saved = ledger.study.user_attrs.get(RANDOM_STATE)
        if saved is not None:
            try:
                sampler.restore_random_state(saved)
            except ValueError as err:
                raise NasdunError(f"{ledger.dir}: the study's sampler state is not sampler {search.cfg.sampler!r}'s ({err})") from None
        round_first: dict[int, int] = {}
        asked = []
        for t in ledger.study.get_trials(deepcopy=False):
            if "ask_round" in t.user_attrs:
                k = int(t.user_attrs["ask_round"])
                round_first[k] = min(round_first.get(k, t.number), t.number)
            if "cohort" in t.user_attrs:
                asked.append(int(t.user_attrs["cohort"]))
        next_cohort = 1 + max((*asked, *(int(r["cohort"]) for r in ledger.rows)), default=-1)
        return cls(search, sampler, ledger, round_first, next_cohort)

    def ask_cohort(self, size: int, in_flight: int = 1) -> Members:
        """Up to ``size`` fresh candidates, proposed from a history fixed by the cohort's number.

        ``in_flight`` is how many cohorts run at once. Cohort c is asked only when cohorts 0..c-in_flight
        have finished (the searcher waits for them), and the sampler sees the trials asked up
        to cohort c-in_flight and no later ones, even those that happened to finish: what is proposed
        does not depend on which running cohort finishes first, so a search with several cohorts
        in flight is repeatable from its seed, config and ``in_flight``. A proposal of a genotype
        trained before is told the table's value (``cached_from``); of one being trained (in
        flight, or earlier in this cohort) it stays running until that training ends and is then
        told the same value, so its final state does not depend on timing either.
        """
        from optuna.trial import TrialState

        ledger, flight = self.ledger, self.flight
        if self._start is None:  # after a recovery: a start genotype whose trial failed is proposed again
            present = {t.user_attrs.get("hash") for t in self.study.get_trials(deepcopy=False) if t.state != TrialState.FAIL}
            self._start = [g for g in self.search.start if g.hash not in present]
        later = [f for k, f in self.round_first.items() if k > self.next_cohort - in_flight]
        self.sampler.history_limit = min(later, default=len(self.study.get_trials(deepcopy=False)))
        picked: Members = []
        for _ in range(TRIES_PER_PLACE * size + len(self._start)):
            if len(picked) == size:
                break
            if self._start:  # the sampler's own proposals come after the start genotypes
                self.study.enqueue_trial(self.space.encode(self._start.pop(0)), user_attrs={"start_from": True}, skip_if_exists=False)
            trial = self.study.ask()
            g = self.decode(trial)
            if self.search.cfg.retrain_duplicates and g.hash not in flight.training and all(g.hash != o.hash for _, o in picked):
                picked.append((trial.number, g))
            elif g.hash in ledger.by_hash:
                trial.set_user_attr("cached_from", str(ledger.by_hash[g.hash]["name"]))
                ledger.tell(trial.number, ledger.by_hash[g.hash])
            elif g.hash in flight.training or any(g.hash == o.hash for _, o in picked):
                flight.waiting.setdefault(g.hash, []).append(trial.number)  # told when that training ends
            else:
                picked.append((trial.number, g))
        if picked:
            self._mark_asked(picked)
        return picked

    def redo(self, members: list[tuple[int, dict[str, Any]]]) -> None:
        """Queue a cohort again as the next pending one: each (old trial number, decisions), in order, becomes a new
        enqueued trial with the same decisions and a ``redo_of`` mark (the old trials were told failed when their worker
        was lost, so they cannot be trained again as themselves)."""
        asked = []
        for number, params in members:
            self.study.enqueue_trial(params, user_attrs={"redo_of": number}, skip_if_exists=False)
            trial = self.study.ask()  # the trial just enqueued, with the same decisions
            asked.append((trial.number, self.decode(trial)))
        cohort = self.next_cohort
        self._mark_asked(asked)
        self.flight.pending.append((cohort, asked))

    def decode(self, trial: Any) -> Genotype:
        """The genotype of a trial just asked, its decisions suggested; the trial marked with its hash and ask round."""
        params = {d.name: trial.suggest_categorical(d.name, list(d.choices)) for d in self.decisions}
        g = self.space.decode(params)
        self.flight.asked[trial.number] = trial
        trial.set_user_attr("hash", g.hash)
        trial.set_user_attr("ask_round", self.next_cohort)
        self.round_first.setdefault(self.next_cohort, trial.number)
        used = self.sampler.history_used()
        if used is not None:  # a history sampler's proposal is a function of the study's first `used` trials
            trial.set_user_attr("sampler_history", int(used))
        state = self.sampler.random_state()
        if state is not None:  # an Optuna sampler's random state after this ask: a resume continues from it
            self.study.set_user_attr(RANDOM_STATE, state)
        return g

    def _mark_asked(self, members: Members) -> None:
        """Make ``members`` cohort ``next_cohort`` (marked wholly asked, see :meth:`Experiment.recover`, after the last
        one) and move to the next."""
        for number, g in members:
            self.flight.asked[number].set_user_attr("cohort", self.next_cohort)
            self.flight.training.add(g.hash)
        for number, _ in members:
            self.flight.asked[number].set_user_attr("cohort_size", len(members))
        self.next_cohort += 1
