"""The run record of a search: its study's name and storage, its saved configuration, the row a failed
trial gets, and the results table and the Optuna study checked as one record; `nasdun repair` mends them.

This is the one home of those rules: :mod:`nasdun.orchestration.experiment` (the driver's view of a run) and
:mod:`nasdun.orchestration.driver` import them from here, and this module imports neither.

A search writes each finished cohort's rows first and tells the study second (:meth:`Experiment.complete`),
so after a clean stop or a kill the two agree up to trials left *running* (settled on resume). Anything
else means one of them was lost or altered by hand: the study deleted or replaced, the table cut back or
edited. Resuming then would train over the gap, reuse trial numbers or feed a sampler values the table
does not hold, so every start and resume checks (:func:`check`) and refuses with one line that says which
side lags and how to repair it.

:func:`repair` rebuilds the lagging side from the other:

* **rows from the study** for finished trials that have none. Every trial told by nasdun carries its whole
  row (user attribute ``row``), so the row comes back as written; a trial told by older code has only its
  validation value, and its row says so (``reason``), with NaN test metrics;
* **the study from the table** when rows have no trial, a trial of another genotype, or another value:
  the table is written first and holds every metric, so it wins. The rebuilt study has the same trial
  numbers (gaps filled from the old study, or with failed placeholders); the old study is kept in the same
  storage under a ``nasdun-before-repair-...`` name.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasdun.core.config import from_mapping, load_yaml
from nasdun.core.errors import NasdunError
from trainers.rows import failed_metrics

STUDY_NAME = "nasdun"
RANDOM_STATE = "sampler_random_state"  # study user attribute: an Optuna sampler's random state after the last ask
LOST = "worker lost"  # the reason prefix of a cohort whose Ray trial failed for good


def lost(row: dict[str, Any]) -> bool:
    """A row of a cohort whose worker was lost for good (not a candidate that failed by itself)."""
    return row.get("status") == "failed" and str(row.get("reason") or "").startswith(LOST)


def storage_url(out_dir: Path, cfg: Any) -> str:
    """The study's storage: ``--storage`` if given, else DIR/optuna.db."""
    return cfg.storage or f"sqlite:///{(out_dir / 'optuna.db').resolve()}"


def engine_kwargs(url: str) -> dict[str, Any]:
    return {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}


def load_saved_config(run_dir: Path, what: str = "run") -> Any:
    """The configuration a search directory was written with (``search.yaml``), a SearchConfig."""
    from nasdun.orchestration.searchconfig import SearchConfig

    if not (run_dir / "search.yaml").is_file():
        raise NasdunError(f"{what}={str(run_dir)!r} holds no search.yaml; expected a directory written by nasdun search", (what,))
    data = load_yaml(run_dir / "search.yaml")
    data.setdefault("baselines", False)  # a search written before baselines existed had none
    return from_mapping(SearchConfig, data, str(run_dir / "search.yaml"))


REBUILT = "rebuilt from the study by nasdun repair: test metrics were not recorded there"


@dataclass
class Findings:
    """What :func:`check` found; empty lists mean the table and the study agree."""

    rows: int
    trials: int
    no_trial: list[str] = field(default_factory=list)  # row names whose trial number the study lacks, or holds another genotype
    disagree: list[str] = field(default_factory=list)  # "t00003 (table ok -9.12 dB, study COMPLETE -8.70 dB)"
    no_row: list[int] = field(default_factory=list)  # finished trials (not cached from another row) with no row
    duplicates: list[str] = field(default_factory=list)  # trial numbers held by more than one row

    @property
    def ok(self) -> bool:
        return not (self.no_trial or self.disagree or self.no_row or self.duplicates)

    def message(self, run_dir: Path) -> str:
        """One line: which side lags, and the command that repairs it."""
        fix = f"run `nasdun repair {run_dir}`"
        if self.rows and not self.trials:
            return f"{run_dir}: the Optuna study is missing or empty but results.csv has {self.rows} rows; {fix} to rebuild the study from the table"
        if self.duplicates:
            many = _few(self.duplicates)
            return f"{run_dir}/results.csv gives trial number(s) {many} to more than one row; {fix} to renumber them and rebuild the study"
        if self.no_trial:
            return (f"{run_dir}: the study lacks the trials of {len(self.no_trial)} row(s) of results.csv ({_few(self.no_trial)}): it is behind"
                    f" the table or from another run; {fix} to rebuild the study from the table")  # fmt: skip
        if self.disagree:
            return (f"{run_dir}: results.csv and the study disagree on {len(self.disagree)} trial(s): {_few(self.disagree, 2)};"
                    f" {fix} to rebuild the study from the table (written first, it holds every metric)")  # fmt: skip
        if not self.rows:
            return (f"{run_dir}: the study already holds {len(self.no_row)} finished trial(s) but there is no results table (a storage"
                    f" of another run?); give the search a study of its own, or {fix} to rebuild the table from the study")  # fmt: skip
        return (f"{run_dir}/results.csv is behind the study: {len(self.no_row)} finished trial(s) have no row"
                f" ({_few([f't{n:05d}' for n in self.no_row])}); {fix} to rebuild the rows from the study")  # fmt: skip


def _few(items: list[Any], n: int = 4) -> str:
    shown = ", ".join(str(i) for i in items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


def expected_state(row: dict[str, Any]) -> tuple[str, float | None]:
    """The trial state (and value) a row is told as: see :meth:`nasdun.orchestration.ledger.Ledger.tell`."""
    raw = row.get("val_nmse_db")
    value = math.nan if raw is None else float(raw)
    if row.get("status") == "ok" and math.isfinite(value):
        return "COMPLETE", value
    if row.get("status") == "stopped" and math.isfinite(value):
        return "PRUNED", value
    return "FAIL", None


def check(rows: list[dict[str, Any]], trials: list[Any]) -> Findings:
    """Compare table rows with the study's frozen trials. Trials left running are not a disagreement
    (a resume settles them); a finished trial told from another row (``cached_from``) needs no row."""
    found = Findings(rows=len(rows), trials=len(trials))
    by_number = {t.number: t for t in trials}
    seen: dict[int, str] = {}
    for row in rows:
        number, name = int(row["trial_number"]), str(row["name"])
        if number in seen:
            found.duplicates.append(str(number))
            continue
        seen[number] = name
        trial = by_number.get(number)
        if trial is None or trial.user_attrs.get("hash") != str(row["hash"]):
            found.no_trial.append(name)
            continue
        state = trial.state.name
        if state in ("RUNNING", "WAITING"):
            continue
        want, value = expected_state(row)
        got = trial.value if state == "COMPLETE" else _last_intermediate(trial) if state == "PRUNED" else None
        if state != want or (value is not None and (got is None or not math.isclose(got, value, rel_tol=1e-9, abs_tol=1e-9))):
            found.disagree.append(f"{name} (table {row.get('status')} {_db(value)}, study {state} {_db(got)})")
    for t in trials:
        if t.state.name in ("COMPLETE", "PRUNED") and "cached_from" not in t.user_attrs and t.number not in seen:
            found.no_row.append(t.number)
    return found


def _db(value: float | None) -> str:
    return "" if value is None else f"{value:.4f} dB"


def _last_intermediate(trial: Any) -> float | None:
    values = trial.intermediate_values
    return float(values[max(values)]) if values else None


def row_attr(row: dict[str, Any]) -> str:
    """A row as the JSON kept on its trial (user attribute ``row``), numpy scalars made plain."""
    return json.dumps({k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()})


def open_study(url: str) -> Any:
    """The run's study in ``url``, or None where the storage holds none."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url))
    except Exception as err:  # SQLAlchemy raises many types; the user needs one line
        raise NasdunError(f"storage={url!r} cannot be opened: {str(err).splitlines()[0]}", ("storage",)) from None
    if STUDY_NAME not in optuna.get_all_study_names(storage):
        return storage, None
    return storage, optuna.load_study(study_name=STUDY_NAME, storage=storage)


def verify(run_dir: Path, url: str, rows: list[dict[str, Any]], default_storage: bool) -> Any:
    """Refuse (one line, how to repair) a run whose table and study disagree; returns (storage, study or None).
    A default ``optuna.db`` that is missing while the table has rows is refused before opening (which would make an empty one)."""
    if rows and default_storage and not (run_dir / "optuna.db").is_file():
        raise NasdunError(Findings(rows=len(rows), trials=0).message(run_dir))
    storage, study = open_study(url)
    found = check(rows, study.get_trials(deepcopy=False) if study is not None else [])
    if not found.ok:
        raise NasdunError(found.message(run_dir))
    return storage, study


def repair(run_dir: str | Path) -> dict[str, Any]:
    """Rebuild the lagging side of ``run_dir``'s table and study from the other (see the module's text).
    Returns what was done; the directory is locked while it works."""
    from nasdun.runs.lock import run_lock
    from nasdun.runs.results import read_table

    out = Path(run_dir)
    cfg = load_saved_config(out)
    url = storage_url(out, cfg)
    with run_lock(out):
        rows = [dict(r) for r in read_table(out, unique=False).to_dict("records")] if (out / "results.csv").is_file() else []
        storage, study = open_study(url)
        old = study.get_trials(deepcopy=False) if study is not None else []
        found = check(rows, old)
        done: dict[str, Any] = {"run": str(out), "rows": len(rows), "trials": len(old), "repaired": not found.ok,
                                "rows_rebuilt": 0, "rows_val_only": 0, "renumbered": 0, "study_rebuilt": False, "old_study": ""}  # fmt: skip
        if found.ok:
            return done
        space = cfg.space()
        by_number = {t.number: t for t in old}
        for number in found.no_row:  # rows from the study
            row, val_only = _row_from_trial(by_number[number], cfg, space)
            rows.append(row)
            done["rows_rebuilt"] += 1
            done["rows_val_only"] += val_only
        done["renumbered"] = _renumber(rows, max([t.number for t in old] + [-1]))
        if found.no_trial or found.disagree or found.duplicates or done["renumbered"]:  # the study from the table
            done["old_study"] = _rebuild_study(storage, study, rows, old, space)
            done["study_rebuilt"] = True
        if done["rows_rebuilt"] or done["renumbered"]:
            import shutil

            from nasdun.runs.results import write_table

            if (out / "results.csv").is_file():
                shutil.copyfile(out / "results.csv", out / "results.csv.before-repair")
            write_table(out, rows)
        _, study = open_study(url)
        after = check([dict(r) for r in read_table(out, unique=False).to_dict("records")], study.get_trials(deepcopy=False))
        if not after.ok:  # pragma: no cover - a bug in the rebuild, not a user error
            raise NasdunError(f"repair left {out} inconsistent: {after.message(out)}")
        done["rows"], done["trials"] = after.rows, after.trials
        return done


def _row_from_trial(trial: Any, cfg: Any, space: Any) -> tuple[dict[str, Any], int]:
    """The row a finished trial was told from: kept whole on the trial, or rebuilt from its value alone."""
    from nasdun.runs.results import candidate_row
    from nasdun.runs.verdict import preset_names

    if "row" in trial.user_attrs:
        return json.loads(trial.user_attrs["row"]), 0
    g = space.decode(trial.params)
    value = trial.value if trial.state.name == "COMPLETE" else _last_intermediate(trial)
    status = "ok" if trial.state.name == "COMPLETE" else "stopped"
    metrics = failed_metrics(REBUILT, status=status, val_nmse_db=value, rung_layer=max(trial.intermediate_values, default=0))
    context = {"sampler": cfg.sampler, "cohort": int(trial.user_attrs.get("cohort", -1)), "setting": cfg.setting, "protocol": cfg.protocol,
               "seed": cfg.seed, "device": "", "precision": cfg.precision}  # fmt: skip
    preset = preset_names(cfg.layers, cfg.max_lag).get(g.hash, "")
    return candidate_row(f"t{trial.number:05d}", g, metrics, trial_number=trial.number, preset=preset, **context), 1


def _renumber(rows: list[dict[str, Any]], last_trial: int) -> int:
    """Give every row after the first that shares a trial number a fresh number (and name) after all others."""
    seen: set[int] = set()
    top = max([last_trial] + [int(r["trial_number"]) for r in rows])
    moved = 0
    for row in rows:
        number = int(row["trial_number"])
        if number in seen:
            top += 1
            row["trial_number"], row["name"] = top, f"t{top:05d}"
            moved += 1
        seen.add(number)
    return moved


def _rebuild_study(storage: Any, study: Any, rows: list[dict[str, Any]], old: list[Any], space: Any) -> str:
    """Replace the run's study by one built from ``rows`` (same trial numbers); returns the old study's new name."""
    import time

    import optuna
    from optuna.distributions import BaseDistribution, CategoricalDistribution
    from optuna.trial import TrialState, create_trial

    from search_spaces.genotype import Genotype

    kept = ""
    attrs = dict(study.user_attrs) if study is not None else {}
    if study is not None:
        kept = f"{STUDY_NAME}-before-repair-{time.strftime('%Y%m%d-%H%M%S')}"
        optuna.copy_study(from_study_name=STUDY_NAME, from_storage=storage, to_storage=storage, to_study_name=kept)
        optuna.delete_study(study_name=STUDY_NAME, storage=storage)
    new = optuna.create_study(study_name=STUDY_NAME, storage=storage, direction="minimize")
    for key, value in attrs.items():  # the objective's name, the sampler's random state
        new.set_user_attr(key, value)
    dists: dict[str, BaseDistribution] = {d.name: CategoricalDistribution(list(d.choices)) for d in space.decisions()}
    by_row = {int(r["trial_number"]): r for r in rows}
    by_name = {str(r["name"]): r for r in rows}
    by_old = {t.number: t for t in old}
    for number in range(1 + max([*by_row, *by_old], default=-1)):
        row, prior = by_row.get(number), by_old.get(number)
        if row is not None:
            attrs = dict(prior.user_attrs) if prior is not None and prior.user_attrs.get("hash") == str(row["hash"]) else {}
            cohort = int(row.get("cohort", -1))
            attrs = {"ask_round": cohort, "cohort": cohort, **attrs, "hash": str(row["hash"]), "row": row_attr(row)}
            state, value = expected_state(row)
            steps = _steps(row, value)
            params = space.encode(Genotype.from_json(str(row["genotype"])))
            trial = create_trial(state=TrialState[state], value=value if state == "COMPLETE" else None, params=params,
                                 distributions=dists, user_attrs=attrs, intermediate_values=steps)  # fmt: skip
        elif prior is not None and "cached_from" in prior.user_attrs:  # told from another row: told that row's value again
            source = by_name.get(str(prior.user_attrs["cached_from"]))
            state, value = expected_state(source) if source is not None else ("FAIL", None)
            steps = _steps(source, value) if source is not None and state == "PRUNED" else None
            trial = create_trial(state=TrialState[state], value=value if state == "COMPLETE" else None, params=prior.params,
                                 distributions=prior.distributions, user_attrs=dict(prior.user_attrs), intermediate_values=steps)  # fmt: skip
        elif prior is not None:
            trial = prior  # failed without a row, or running / waiting (a resume settles those): kept as it was
        else:
            trial = create_trial(state=TrialState.FAIL, user_attrs={"repair_placeholder": True})
        new.add_trial(trial)
    return kept


def _steps(row: dict[str, Any], value: float | None) -> dict[int, float] | None:
    """A stopped row's rung as the pruned trial's intermediate value (step = the layer it reached)."""
    return {int(row.get("rung_layer") or 0): float(value)} if row.get("status") == "stopped" and value is not None else None
