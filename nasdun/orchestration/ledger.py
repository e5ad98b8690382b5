"""A search's ledger: its results table and its Optuna study, kept in step, and the trials in flight between them.

Rows are written before the study is told, so a driver killed at any moment is settled by
:meth:`nasdun.orchestration.experiment.Experiment.recover`. The layout of the run folder: :mod:`nasdun.orchestration.driver`.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasdun.orchestration.record import LOST, STUDY_NAME, lost, row_attr, storage_url, verify
from nasdun.orchestration.searchconfig import ResolvedSearch
from nasdun.runs.weights import KeptParams
from search_spaces.genotype import Genotype
from trainers.rows import failed_metrics

Members = list[tuple[int, Genotype]]  # (trial number, genotype) of a cohort, in its order


@dataclass
class InFlight:
    """What this driver session has asked and not yet settled: the one record the asker writes and the ledger settles."""

    training: set[str] = field(default_factory=set)  # hashes of the cohorts asked and not yet completed
    asked: dict[int, Any] = field(default_factory=dict)  # trial number -> optuna.Trial asked in this session
    waiting: dict[str, list[int]] = field(default_factory=dict)  # hash being trained -> trials that proposed it again
    pending: list[tuple[int, Members]] = field(default_factory=list)  # (cohort, members) interrupted, to train again


class Ledger:
    """The results table (``rows``) and the Optuna study of one run folder. Made by :meth:`open`, which reads them."""

    def __init__(self, out_dir: Path, search: ResolvedSearch, study: Any, rows: list[dict[str, Any]], flight: InFlight) -> None:
        from nasdun.runs.verdict import preset_names

        cfg, proto = search.cfg, search.protocol
        self.dir, self.cfg, self.search, self.study, self.rows, self.flight = out_dir, cfg, search, study, rows, flight
        self.storage_url = storage_url(out_dir, cfg)
        self.presets = preset_names(cfg.layers, cfg.max_lag)  # hash -> hand-design name(s), for the `preset` column
        self.params = KeptParams(out_dir, cfg.keep_params, {"setting": cfg.setting, "seed": cfg.seed, "lam": proto.lam, "coef_init": proto.coef_init})
        self.by_hash = {str(r["hash"]): r for r in rows if not lost(r)}  # trained genotypes (a lost cohort's are not)

    @classmethod
    def open(cls, out_dir: Path, search: ResolvedSearch, sampler: Any, flight: InFlight) -> Ledger:
        """The ledger of ``out_dir``: its table read, checked against its study (one record: repaired, never trained
        over: :func:`nasdun.orchestration.record.verify`), the study opened (made when new) with ``sampler``."""
        import optuna

        from nasdun.runs.results import read_table

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        cfg = search.cfg
        rows: list[dict[str, Any]] = []
        if (out_dir / "results.csv").is_file():
            rows = [dict(r) for r in read_table(out_dir, unique=False).to_dict("records")]
        storage, _ = verify(out_dir, storage_url(out_dir, cfg), rows, default_storage=not cfg.storage)
        study = optuna.create_study(study_name=STUDY_NAME, storage=storage, sampler=sampler, direction="minimize", load_if_exists=True)
        if study.metric_names != ["val_nmse_db"]:
            with warnings.catch_warnings():  # experimental in Optuna; names the objective in optuna-dashboard
                warnings.simplefilter("ignore")
                study.set_metric_names(["val_nmse_db"])
        return cls(out_dir, search, study, rows, flight)

    @property
    def trained(self) -> int:
        return len(self.by_hash)

    def best(self) -> float:
        vals = [float(r["val_nmse_db"]) for r in self.rows if r.get("status") == "ok"]
        vals = [v for v in vals if math.isfinite(v)]
        return min(vals) if vals else math.nan

    def trial(self, number: int) -> Any:
        """Trial ``number`` to report on: the one asked in this session, or the stored one."""
        import optuna

        asked = self.flight.asked.pop(number, None)
        return asked or optuna.trial.Trial(self.study, self.study.get_trials(deepcopy=False)[number]._trial_id)

    def tell(self, number: int, row: dict[str, Any]) -> None:
        """Tell trial ``number`` its row: COMPLETE with the validation nmse_db; a candidate stopped by successive halving
        is PRUNED with its rung's value as intermediate value (step = the layer it reached); failures FAIL."""
        from optuna.trial import TrialState

        raw = row.get("val_nmse_db")
        value = math.nan if raw is None else float(raw)
        finite = math.isfinite(value)
        trial = self.trial(number)
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

    def complete(self, cohort: int, members: Members, report: dict[str, Any] | None, error: str = "") -> list[dict[str, Any]]:
        """Cohort ``cohort``'s rows, written first (atomically), then the study told: a kill in between is settled by
        :meth:`nasdun.orchestration.experiment.Experiment.recover`. ``report`` None: its worker was lost (``error``). Returns the new rows."""
        from nasdun.runs.results import candidate_row, write_table

        cfg = self.cfg
        context = {
            "sampler": cfg.sampler,
            "cohort": cohort,
            "setting": cfg.setting,
            "protocol": cfg.protocol,
            "seed": cfg.seed,
            "device": (report or {}).get("device", ""),
            "precision": cfg.precision,
        }
        metrics = (report or {}).get("candidates") or [{"reason": f"{LOST}: {error}"}] * len(members)
        new = [  # each on a failed row's values: a report may give only some metrics (analysis.studies.surrogate_search's do)
            candidate_row(f"t{number:05d}", g, {**failed_metrics(), **m}, trial_number=number, preset=self.presets.get(g.hash, ""), **context)
            for (number, g), m in zip(members, metrics, strict=True)
        ]
        self.rows.extend(new)
        write_table(self.dir, self.rows)
        self.params.fold_in(self.rows, new, (report or {}).get("params_file"))
        flight = self.flight
        for row in new:
            if not lost(row):  # a lost cohort does not count toward the budget: it is retried on --resume
                self.by_hash[str(row["hash"])] = row
            flight.training.discard(str(row["hash"]))
            self.tell(int(row["trial_number"]), row)
            for number in flight.waiting.pop(str(row["hash"]), []):  # proposed again while it trained
                flight.asked[number].set_user_attr("cached_from", str(row["name"]))
                self.tell(number, row)
        return new


def _curve(row: dict[str, Any]) -> list[tuple[int, float]]:
    """(layer, validation nmse_db after it) of a row (its ``curves`` JSON), finite values only."""
    try:
        values = json.loads(str(row.get("curves") or "{}")).get("val_nmse_db", [])
    except (ValueError, AttributeError):
        return []
    return [(k, float(v)) for k, v in enumerate(values, start=1) if isinstance(v, int | float) and math.isfinite(v)]
