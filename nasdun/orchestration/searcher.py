"""The Ray Tune searcher of `nasdun search`, on the driver: sampler asks -> cohorts -> results told back.

:class:`CohortSearcher` turns the experiment's asks (:meth:`nasdun.orchestration.experiment.Experiment.ask_cohort`) into
Ray Tune trials, one cohort each (its payload built by :meth:`nasdun.orchestration.searchconfig.ResolvedSearch.payload`),
and tells each finished cohort back to the experiment (rows first, then the study). The session that runs
it is :mod:`nasdun.orchestration.driver`.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher

from nasdun.orchestration.experiment import Experiment
from nasdun.runs.progress import ProgressLine, duration
from nasdun.runs.summary import SearchSummary
from nasdun.runs.tracking import Tracker
from nasdun.runs.verdict import judge
from search_spaces.genotype import Genotype


class CohortSearcher(Searcher):
    """Ray Tune searcher on the driver: turns sampler asks into cohorts and tells each candidate's result back.

    ``in_flight`` is the number of cohorts in flight: cohort c is proposed from cohorts <= c - in_flight
    (:meth:`Experiment.ask_cohort`). Workers report their cohort's progress while it trains
    (``progress`` results), so the progress line moves from the first cohort on.
    """

    def __init__(self, exp: Experiment, progress: ProgressLine, in_flight: int, fixed: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.exp, self.progress, self.in_flight = exp, progress, in_flight
        self.cohorts = 0  # cohorts completed this session (lost ones included)
        self.trainer_s = 0.0  # the trainers' own time of those that reported
        self.stopped_early = ""  # why the session asked no more cohorts before its budget, if it did
        self.fixed = fixed  # the session's constant figures; with them, search.json is rewritten after every cohort
        self.inflight: dict[str, tuple[int, list[tuple[int, Genotype]]]] = {}
        self.fraction: dict[str, float] = {}  # trial id -> share of its cohort's training done
        self.start = time.perf_counter()
        self.start_trained = exp.trained
        self.tracker = Tracker(exp.dir, exp.cfg.track, exp.cfg.to_mapping()) if exp.cfg.track and fixed is not None else None
        self.interrupted = threading.Event()  # set by the session's SIGINT handler
        self.busy = False  # inside suggest / on_trial_complete: Ctrl-C waits for the step to be whole (_step)
        self.dry = False  # the last ask found no fresh genotype: the next waits until no cohort is in flight

    @contextlib.contextmanager
    def _step(self) -> Any:
        """A cohort asked in full, or a report written and told in full: a Ctrl-C inside waits for its end, so a
        resume finds the cohort whole (trained again as the same trials) rather than cut short."""
        self.busy = True
        try:
            yield
        finally:
            self.busy = False
        if self.interrupted.is_set():
            raise KeyboardInterrupt

    def _inflight_candidates(self) -> int:
        return sum(len(m) for _, m in self.inflight.values())

    def suggest(self, trial_id: str) -> dict[str, Any] | None:  # or Searcher.FINISHED
        with self._step():
            return self._suggest(trial_id)

    def _suggest(self, trial_id: str) -> dict[str, Any] | None:
        exp, cfg = self.exp, self.exp.cfg
        if self.interrupted.is_set():  # Ctrl-C: no new cohort
            return Searcher.FINISHED if not self.inflight else None  # type: ignore[return-value]
        if exp.pending:  # cohorts a killed driver left unfinished come first, unchanged
            cohort, members = exp.pending.pop(0)
        else:
            remaining = cfg.budget - exp.trained - self._inflight_candidates()
            out_of_time = cfg.minutes > 0 and time.perf_counter() - self.start >= 60 * cfg.minutes
            if out_of_time and remaining > 0:
                self.stopped_early = f"the time limit of {cfg.minutes:g} min was reached"
            if remaining <= 0 or out_of_time:
                return Searcher.FINISHED if not self.inflight else None  # type: ignore[return-value]
            if any(k <= exp.next_cohort - self.in_flight for k, _ in self.inflight.values()):
                return None  # cohort c is proposed from cohorts <= c - in_flight: wait for them (Experiment.ask_cohort)
            if self.dry and self.inflight:
                return None
            members = exp.ask_cohort(min(cfg.cohort, remaining), self.in_flight)
            if not members:
                # Asked once more only when every cohort in flight has ended, not at each of Tune's polls: the
                # number of proposals (trials in the study) is then fixed by the seed, not by timing.
                if self.inflight:
                    self.dry = True
                    return None
                self.stopped_early = "the sampler proposed only genotypes already trained in this experiment"
                return Searcher.FINISHED  # type: ignore[return-value]
            self.dry = False
            cohort = exp.next_cohort - 1
        self.inflight[trial_id] = (cohort, members)
        return exp.search.payload(cohort, [g for _, g in members], exp.dir / "cohorts" / f"cohort-{cohort}.pt")

    def save(self, checkpoint_path: str) -> None:
        """The search state lives in the Optuna study and the results table; Tune keeps a note."""
        Path(checkpoint_path).write_text(f"study {self.exp.storage_url}; inflight cohorts {sorted(c for c, _ in self.inflight.values())}\n")

    def restore(self, checkpoint_path: str) -> None:
        """Resuming goes through `nasdun search --resume`, which rebuilds from the study and table."""

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its search algorithm into ``tuner.pkl`` for ``Tuner.restore``, which nasdun never uses: the
        searcher's state is the study and the table. The live experiment (its storage, its sampler: Optuna 5's NSGA-II
        holds a thread lock) stays out of the pickle, which keeps only where that state lives."""
        return {"storage_url": self.exp.storage_url, "dir": str(self.exp.dir)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)  # a record only: resume with `nasdun search --resume DIR`

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if trial_id in self.inflight and "progress" in result:
            self.fraction[trial_id] = float(result["progress"])
            self._show(force=False)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        with self._step():
            self._complete(trial_id, result, error)

    def _complete(self, trial_id: str, result: dict[str, Any] | None, error: bool) -> None:
        if trial_id not in self.inflight:
            return
        cohort, members = self.inflight.pop(trial_id)
        self.fraction.pop(trial_id, None)
        ok = result is not None and not error and "candidates" in result
        new = self.exp.complete(cohort, members, result if ok else None, error="" if ok else "the cohort's Ray trial failed")
        if self.tracker is not None:
            self.tracker.log(new)
        if ok:
            self.trainer_s += float(result["trainer_wall_s"])  # type: ignore[index]
        self.cohorts += 1
        if self.fixed is not None:
            self.figures(finished=False).write(self.exp.dir)  # atomically: a killed session leaves its record
        self._show(force=True)

    def figures(self, finished: bool) -> SearchSummary:
        """The session's figures so far (``search.json``, :class:`nasdun.runs.summary.SearchSummary`): counts, timing, the
        verdict against the hand designs."""
        exp, fixed = self.exp, self.fixed or {}
        wall = time.perf_counter() - self.start
        trained_now = exp.trained - self.start_trained
        concurrency = int(fixed.get("concurrency", self.in_flight))
        return SearchSummary.of(
            {
                **fixed,
                "finished": finished,
                "cohorts": self.cohorts,
                "candidates_trained": trained_now,
                "candidates_total": exp.trained,
                "wall_s": wall,
                "trainer_s": self.trainer_s,
                "overhead": wall / (self.trainer_s / concurrency) if self.trainer_s else math.nan,
                "candidates_per_min": trained_now / (wall / 60) if wall else math.nan,
                "best_val_nmse_db": exp.best(),
                "params_kept": exp.params.names(),
                **judge(exp.rows),
                "stopped_early": self.stopped_early,
            }
        )

    def _show(self, force: bool) -> None:
        """``12/24 candidates | 2 cohorts training (40%, 15%) | best val nmse_db -9.80 | 1m10s elapsed, ETA ~1m05s``."""
        exp, cfg = self.exp, self.exp.cfg
        elapsed = time.perf_counter() - self.start
        inflight = [(len(m), self.fraction.get(t, 0.0)) for t, (_, m) in self.inflight.items()]
        done_now = exp.trained - self.start_trained + sum(n * f for n, f in inflight)
        left = max(cfg.budget - exp.trained - sum(n * f for n, f in inflight), 0.0)
        eta = elapsed * left / done_now if done_now > 0 else float("inf")
        training = f" | {len(inflight)} cohort(s) training ({', '.join(f'{100 * f:.0f}%' for _, f in inflight)})" if inflight else ""
        best = exp.best()
        best_text = f" | best val nmse_db {best:.2f}" if best == best else ""
        self.progress.show(
            f"{exp.trained}/{cfg.budget} candidates done{training}{best_text} | {duration(elapsed)} elapsed, ETA ~{duration(eta)}", force=force
        )
