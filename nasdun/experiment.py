"""The experiment directory on the driver: Optuna study and results table, kept in step.

See :mod:`nasdun.driver` for the layout; rows are written before the study is told, so a
driver killed at any moment is settled by :meth:`Experiment.recover`.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

from nasdun.errors import NasdunError
from nasdun.record import LOST, RANDOM_STATE, STUDY_NAME, lost, row_attr, storage_url, verify
from nasdun.searchconfig import ResolvedSearch, SearchConfig
from nasdun.weights import KeptParams
from search_spaces.genotype import Genotype
from trainers.rows import failed_metrics

#: Proposals an ask makes per place in the cohort before it gives up on finding a fresh genotype.
TRIES_PER_PLACE = 20


class Experiment:
    """The experiment directory: configuration, Optuna study and results table, kept in step.

    ``search`` is the resolved search (:meth:`SearchConfig.resolve`; a config given instead is resolved here)."""

    def __init__(self, out_dir: Path, search: ResolvedSearch | SearchConfig) -> None:
        import optuna

        from nasdun.results import read_table

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.search = search if isinstance(search, ResolvedSearch) else search.resolve()
        cfg = self.search.cfg
        self.dir, self.cfg = out_dir, cfg
        self.space = self.search.space
        self.decisions = self.search.decisions
        self.storage_url = storage_url(out_dir, cfg)
        self.sampler = self.search.sampler()
        self.rows: list[dict[str, Any]] = []
        if (out_dir / "results.csv").is_file():
            self.rows = [dict(r) for r in read_table(out_dir, unique=False).to_dict("records")]
        storage, _ = verify(out_dir, self.storage_url, self.rows, default_storage=not cfg.storage)  # one record: repaired, never trained over
        self.study = optuna.create_study(study_name=STUDY_NAME, storage=storage, sampler=self.sampler, direction="minimize", load_if_exists=True)
        saved = self.study.user_attrs.get(RANDOM_STATE)
        if saved is not None:  # an Optuna sampler continues its random sequence where the last ask left it
            try:
                self.sampler.restore_random_state(saved)
            except ValueError as err:
                raise NasdunError(f"{out_dir}: the study's sampler state is not sampler {cfg.sampler!r}'s ({err})") from None
        if self.study.metric_names != ["val_nmse_db"]:
            with warnings.catch_warnings():  # experimental in Optuna; names the objective in optuna-dashboard
                warnings.simplefilter("ignore")
                self.study.set_metric_names(["val_nmse_db"])
        from nasdun.verdict import preset_names

        self.presets = preset_names(cfg.layers, cfg.max_lag)  # hash -> hand-design name(s), for the `preset` column
        proto = self.search.protocol
        self.params = KeptParams(out_dir, cfg.keep_params, {"setting": cfg.setting, "seed": cfg.seed, "lam": proto.lam, "coef_init": proto.coef_init})
        self.by_hash = {str(r["hash"]): r for r in self.rows if not lost(r)}  # trained genotypes (a lost cohort's are not)
        self.round_first: dict[int, int] = {}  # cohort -> number of the first trial asked for it
        asked = []
        for t in self.study.get_trials(deepcopy=False):
            if "ask_round" in t.user_attrs:
                k = int(t.user_attrs["ask_round"])
                self.round_first[k] = min(self.round_first.get(k, t.number), t.number)
            if "cohort" in t.user_attrs:
                asked.append(int(t.user_attrs["cohort"]))
        self.next_cohort = 1 + max((*asked, *(int(r["cohort"]) for r in self.rows)), default=-1)
        self.training: set[str] = set()  # hashes of the cohorts asked in this session and not yet completed
        self._asked: dict[int, Any] = {}  # trial number -> optuna.Trial asked in this session
        self._waiting: dict[str, list[int]] = {}  # hash being trained -> trials that proposed it again
        self.pending: list[tuple[int, list[tuple[int, Genotype]]]] = []  # interrupted cohorts to redo
        self._start: list[Genotype] | None = None  # start_from genotypes not yet proposed (see ask_cohort)

    @property
    def trained(self) -> int:
        return len(self.by_hash)

    def recover(self) -> dict[str, int]:
        """Settle trials a killed or interrupted driver left open: tell them from the table, or train their cohort again.

        An interrupted cohort is trained again whole, as the same trials (same numbers, so the same row names
        as in a search that was never stopped), with the same members in the same order, so a cohort that
        halves (successive halving is relative to the cohort) reaches the same rungs and survivors, and its
        worker continues from the cohort's checkpoint where one was written. A cohort whose asking was cut
        short (no member carries the ``cohort_size`` mark that :meth:`ask_cohort` sets after the last ask)
        never reached a worker: its trials are failed and the budget asks afresh, so no cohort is redone
        short of members. A proposal of a genotype that was training when the driver stopped waits for
        that training again (told its value when it ends), as it would have.
        """
        import optuna
        from optuna.trial import TrialState

        told = redone = dropped = 0
        for _ in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):  # enqueued, never asked
            self.study.tell(self.study.ask(), state=TrialState.FAIL)
        cohorts: dict[int, list[Any]] = {}
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get("hash") in self.by_hash:
                self._tell_from_row(t.number, self.by_hash[t.user_attrs["hash"]])
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
                self._asked[t.number] = optuna.trial.Trial(self.study, t._trial_id)
                g = self.space.decode(t.params)
                self.training.add(g.hash)
                asked.append((t.number, g))
            self.pending.append((old_cohort, asked))
            redone += len(members)
        for t in sorted(unplaced, key=lambda t: t.number):
            if t.user_attrs.get("hash") in self.training:
                self._asked[t.number] = optuna.trial.Trial(self.study, t._trial_id)
                self._waiting.setdefault(str(t.user_attrs["hash"]), []).append(t.number)
            else:
                self.study.tell(t.number, state=TrialState.FAIL)
                dropped += 1
        return {"told_from_table": told, "requeued": redone, "dropped_unasked": dropped}

    def _redo(self, members: list[tuple[int, dict[str, Any]]]) -> None:
        """Queue a cohort again as the next pending one: each (old trial number, decisions), in order, becomes a new
        enqueued trial with the same decisions and a ``redo_of`` mark (used by :meth:`requeue_lost`: the old trials
        were told failed when their worker was lost, so they cannot be trained again as themselves)."""
        asked = []
        for number, params in members:
            self.study.enqueue_trial(params, user_attrs={"redo_of": number}, skip_if_exists=False)
            trial = self.study.ask()  # the trial just enqueued, with the same decisions
            asked.append((trial.number, self._decode(trial)))
        self._mark_asked(asked)
        self.pending.append((self.next_cohort, asked))
        self.next_cohort += 1

    def requeue_lost(self) -> int:
        """Queue again the candidates of cohorts whose worker was lost for good (Ray's retries ran out): each such
        cohort, same members in the same order, as new enqueued trials (``redo_of``); their `failed` rows leave the
        table when the redo reports. Candidates that failed by diverging are not retried. Returns the count."""
        rows = [r for r in self.rows if lost(r) and str(r["hash"]) not in self.by_hash and str(r["hash"]) not in self.training]
        by_cohort: dict[int, list[dict[str, Any]]] = {}
        for r in sorted(rows, key=lambda r: int(r["trial_number"])):
            by_cohort.setdefault(int(r["cohort"]), []).append(r)
        for old in sorted(by_cohort):
            self._redo([(int(r["trial_number"]), self.space.encode(Genotype.from_json(str(r["genotype"])))) for r in by_cohort[old]])
        retried = {id(r) for r in rows}
        self.rows = [r for r in self.rows if id(r) not in retried]
        return len(rows)

    def _mark_asked(self, members: list[tuple[int, Genotype]]) -> None:
        """Make ``members`` cohort ``next_cohort``; marked wholly asked (see :meth:`recover`) after the last one."""
        for number, g in members:
            self._asked[number].set_user_attr("cohort", self.next_cohort)
            self.training.add(g.hash)
        for number, _ in members:
            self._asked[number].set_user_attr("cohort_size", len(members))

    def _decode(self, trial: Any) -> Genotype:
        params = {d.name: trial.suggest_categorical(d.name, list(d.choices)) for d in self.decisions}
        g = self.space.decode(params)
        self._asked[trial.number] = trial
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

    def _tell_from_row(self, number: int, row: dict[str, Any]) -> None:
        """COMPLETE with the validation nmse_db; a candidate stopped by successive halving is PRUNED
        with its rung's value as intermediate value (step = the layer it reached); failures FAIL."""
        import optuna
        from optuna.trial import TrialState

        raw = row.get("val_nmse_db")
        value = math.nan if raw is None else float(raw)
        finite = math.isfinite(value)
        asked = self._asked.pop(number, None)
        trial = asked or optuna.trial.Trial(self.study, self.study.get_trials(deepcopy=False)[number]._trial_id)
        if row.get("name") == f"t{number:05d}":  # its own row (not a cached one), kept whole so `nasdun repair` can restore it
            trial.set_user_attr("row", row_attr(row))
        if row.get("status") == "ok" and finite:
            for layer, v in _curve(row):  # the per-layer validation curve, for optuna-dashboard
                trial.report(v, step=layer)
            self.study.tell(number, value)
        elif row.get("status") == "stopped" and finite:
            trial.report(value, step=int(row.get("rung_layer") or 0))
            self.study.tell(number, state=TrialState.PRUNED)
        else:
            self.study.tell(number, state=TrialState.FAIL)

    def ask_cohort(self, size: int, in_flight: int = 1) -> list[tuple[int, Genotype]]:
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

        if self._start is None:  # after recover(): a start genotype whose trial failed is proposed again
            present = {t.user_attrs.get("hash") for t in self.study.get_trials(deepcopy=False) if t.state != TrialState.FAIL}
            self._start = [g for g in self.search.start if g.hash not in present]
        later = [f for k, f in self.round_first.items() if k > self.next_cohort - in_flight]
        self.sampler.history_limit = min(later, default=len(self.study.get_trials(deepcopy=False)))
        picked: list[tuple[int, Genotype]] = []
        for _ in range(TRIES_PER_PLACE * size + len(self._start)):
            if len(picked) == size:
                break
            if self._start:  # the sampler's own proposals come after the start genotypes
                self.study.enqueue_trial(self.space.encode(self._start.pop(0)), user_attrs={"start_from": True}, skip_if_exists=False)
            trial = self.study.ask()
            g = self._decode(trial)
            if self.cfg.retrain_duplicates and g.hash not in self.training and all(g.hash != o.hash for _, o in picked):
                picked.append((trial.number, g))
            elif g.hash in self.by_hash:
                trial.set_user_attr("cached_from", str(self.by_hash[g.hash]["name"]))
                self._tell_from_row(trial.number, self.by_hash[g.hash])
            elif g.hash in self.training or any(g.hash == o.hash for _, o in picked):
                self._waiting.setdefault(g.hash, []).append(trial.number)  # told when that training ends
            else:
                picked.append((trial.number, g))
        if picked:
            self._mark_asked(picked)
            self.next_cohort += 1
        return picked

    def complete(self, cohort: int, members: list[tuple[int, Genotype]], report: dict[str, Any] | None, error: str = "") -> list[dict[str, Any]]:
        """Rows first (atomically), then the study: a kill in between is settled by :meth:`recover`. Returns the new rows."""
        from nasdun.results import candidate_row, write_table

        context = {
            "sampler": self.cfg.sampler,
            "cohort": cohort,
            "setting": self.cfg.setting,
            "protocol": self.cfg.protocol,
            "seed": self.cfg.seed,
            "device": (report or {}).get("device", ""),
            "precision": self.cfg.precision,
        }
        metrics = (report or {}).get("candidates") or [{"reason": f"{LOST}: {error}"}] * len(members)
        new = [  # each on a failed row's values: a report may give only some metrics (analysis.surrogate_search's do)
            candidate_row(f"t{number:05d}", g, {**failed_metrics(), **m}, trial_number=number, preset=self.presets.get(g.hash, ""), **context)
            for (number, g), m in zip(members, metrics, strict=True)
        ]
        self.rows.extend(new)
        write_table(self.dir, self.rows)
        self.params.fold_in(self.rows, new, (report or {}).get("params_file"))
        for row in new:
            if not lost(row):  # a lost cohort does not count toward the budget: it is retried on --resume
                self.by_hash[str(row["hash"])] = row
            self.training.discard(str(row["hash"]))
            self._tell_from_row(int(row["trial_number"]), row)
            for number in self._waiting.pop(str(row["hash"]), []):  # proposed again while it trained
                self._asked[number].set_user_attr("cached_from", str(row["name"]))
                self._tell_from_row(number, row)
        return new

    def best(self) -> float:
        vals = [float(r["val_nmse_db"]) for r in self.rows if r.get("status") == "ok"]
        vals = [v for v in vals if math.isfinite(v)]
        return min(vals) if vals else math.nan


def _curve(row: dict[str, Any]) -> list[tuple[int, float]]:
    """(layer, validation nmse_db after it) of a row (its ``curves`` JSON), finite values only."""
    try:
        values = json.loads(str(row.get("curves") or "{}")).get("val_nmse_db", [])
    except (ValueError, AttributeError):
        return []
    return [(k, float(v)) for k, v in enumerate(values, start=1) if isinstance(v, int | float) and math.isfinite(v)]
