"""A search's run folder on the driver: its ledger (results table and Optuna study, :mod:`nasdun.orchestration.ledger`) and its asker
(the sampler's cohorts, :mod:`nasdun.orchestration.asker`), sharing one record of what is in flight.

See :mod:`nasdun.orchestration.driver` for the layout; rows are written before the study is told, so a driver killed at any moment is
settled by :meth:`Experiment.recover`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nasdun.orchestration.asker import Asker
from nasdun.orchestration.ledger import InFlight, Ledger, Members
from nasdun.orchestration.record import lost
from nasdun.orchestration.searchconfig import ResolvedSearch, SearchConfig
from search_spaces.genotype import Genotype


class Experiment:
    """A search's ledger and asker over one :class:`nasdun.orchestration.ledger.InFlight`. :meth:`open` reads a run folder; the
    constructor takes the parts and does no I/O."""

    def __init__(self, ledger: Ledger, asker: Asker) -> None:
        self.ledger, self.asker, self.flight = ledger, asker, ledger.flight
        self.search, self.cfg, self.dir = ledger.search, ledger.cfg, ledger.dir

    @classmethod
    def open(cls, out_dir: Path, search: ResolvedSearch | SearchConfig) -> Experiment:
        """The experiment of ``out_dir`` (new or continued); a config given is resolved here."""
        search = search if isinstance(search, ResolvedSearch) else search.resolve()
        sampler = search.sampler()
        ledger = Ledger.open(out_dir, search, sampler, InFlight())
        return cls(ledger, Asker.open(search, sampler, ledger))

    # -- what the searcher reads and calls ------------------------------------------------------
    @property
    def trained(self) -> int:
        return self.ledger.trained

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.ledger.rows

    @property
    def params(self) -> Any:
        return self.ledger.params

    @property
    def study(self) -> Any:
        return self.ledger.study

    @property
    def storage_url(self) -> str:
        return self.ledger.storage_url

    @property
    def pending(self) -> list[tuple[int, Members]]:
        return self.flight.pending

    @property
    def next_cohort(self) -> int:
        return self.asker.next_cohort

    def best(self) -> float:
        return self.ledger.best()

    def ask_cohort(self, size: int, in_flight: int = 1) -> list[tuple[int, Genotype]]:
        """:meth:`nasdun.orchestration.asker.Asker.ask_cohort`."""
        return self.asker.ask_cohort(size, in_flight)

    def complete(self, cohort: int, members: Members, report: dict[str, Any] | None, error: str = "") -> list[dict[str, Any]]:
        """:meth:`nasdun.orchestration.ledger.Ledger.complete`."""
        return self.ledger.complete(cohort, members, report, error)

    # -- settling what a stopped driver left ----------------------------------------------------
    def recover(self) -> dict[str, int]:
        """Settle trials a killed or interrupted driver left open: tell them from the table, or train their cohort again.

        An interrupted cohort is trained again whole, as the same trials (same numbers, so the same row names
        as in a search that was never stopped), with the same members in the same order, so a cohort that
        halves (successive halving is relative to the cohort) reaches the same rungs and survivors, and its
        worker continues from the cohort's checkpoint where one was written. A cohort whose asking was cut
        short (no member carries the ``cohort_size`` mark that :meth:`nasdun.orchestration.asker.Asker.ask_cohort` sets after the last ask)
        never reached a worker: its trials are failed and the budget asks afresh, so no cohort is redone
        short of members. A proposal of a genotype that was training when the driver stopped waits for
        that training again (told its value when it ends), as it would have.
        """
        import optuna
        from optuna.trial import TrialState

        ledger, study, flight = self.ledger, self.ledger.study, self.flight
        told = redone = dropped = 0
        for _ in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):  # enqueued, never asked
            study.tell(study.ask(), state=TrialState.FAIL)
        cohorts: dict[int, list[Any]] = {}
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get("hash") in ledger.by_hash:
                ledger.tell(t.number, ledger.by_hash[t.user_attrs["hash"]])
                told += 1
            else:
                cohorts.setdefault(int(t.user_attrs.get("cohort", -1)), []).append(t)
        unplaced = cohorts.pop(-1, [])  # asked but never made a cohort's member: waiting for a training, or cut short
        for old_cohort in sorted(cohorts):
            members = sorted(cohorts[old_cohort], key=lambda t: t.number)
            if not any("cohort_size" in t.user_attrs for t in members):
                unplaced.extend(members)
                continue
            asked = []
            for t in members:
                flight.asked[t.number] = optuna.trial.Trial(study, t._trial_id)
                g = self.asker.space.decode(t.params)
                flight.training.add(g.hash)
                asked.append((t.number, g))
            flight.pending.append((old_cohort, asked))
            redone += len(members)
        for t in sorted(unplaced, key=lambda t: t.number):
            if t.user_attrs.get("hash") in flight.training:
                flight.asked[t.number] = optuna.trial.Trial(study, t._trial_id)
                flight.waiting.setdefault(str(t.user_attrs["hash"]), []).append(t.number)
            else:
                study.tell(t.number, state=TrialState.FAIL)
                dropped += 1
        return {"told_from_table": told, "requeued": redone, "dropped_unasked": dropped}

    def requeue_lost(self) -> int:
        """Queue again the candidates of cohorts whose worker was lost for good (Ray's retries ran out): each such
        cohort, same members in the same order, as new enqueued trials (``redo_of``); their `failed` rows leave the
        table when the redo reports. Candidates that failed by diverging are not retried. Returns the count."""
        ledger = self.ledger
        rows = [r for r in ledger.rows if lost(r) and str(r["hash"]) not in ledger.by_hash and str(r["hash"]) not in self.flight.training]
        by_cohort: dict[int, list[dict[str, Any]]] = {}
        for r in sorted(rows, key=lambda r: int(r["trial_number"])):
            by_cohort.setdefault(int(r["cohort"]), []).append(r)
        for old in sorted(by_cohort):
            self.asker.redo([(int(r["trial_number"]), self.asker.space.encode(Genotype.from_json(str(r["genotype"])))) for r in by_cohort[old]])
        retried = {id(r) for r in rows}
        ledger.rows[:] = [r for r in ledger.rows if id(r) not in retried]
        return len(rows)
