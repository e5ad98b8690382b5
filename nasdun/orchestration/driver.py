"""`nasdun search`, the driver side: sampler asks -> cohorts -> Ray Tune trials -> results table.

This module is the session: it resolves the search once (:meth:`nasdun.orchestration.searchconfig.SearchConfig.resolve`),
joins Ray (:mod:`nasdun.orchestration.raycluster`) and runs Ray Tune with the searcher (:mod:`nasdun.orchestration.searcher`) over the
experiment (:mod:`nasdun.orchestration.experiment`). The worker side (one cohort trained on one Ray worker) is :mod:`nasdun.runs.worker`.

One experiment directory holds everything a search needs to resume:

* ``search.yaml``   the resolved configuration (a resume reads it back);
* ``optuna.db``     the Optuna study (or any SQLAlchemy URL given with ``--storage``);
* ``results.csv``   one row per trained candidate, rewritten atomically as each cohort ends;
* ``tune/``         Ray Tune's own state, one run folder per driver session;
* ``search.json``   timing and overhead figures of the last session.

A Ray Tune trial trains one *cohort* of candidates with the population trainer. The searcher
runs in the driver: it asks the study for candidates, skips genotypes already trained in
this experiment (their cached value is told to the study instead), and on completion writes
the rows first and tells the study second, so a driver killed at any moment loses at most
the cohorts in flight. On resume, trials left running are either told from the table (their
rows were written) or trained again as the same trials (:meth:`Experiment.recover`).
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from nasdun.core.errors import Interrupted, NasdunError
from nasdun.orchestration.experiment import Experiment
from nasdun.orchestration.promotion import second_phase
from nasdun.orchestration.raycluster import check_resources, concurrency, start_ray
from nasdun.orchestration.record import load_saved_config, storage_url
from nasdun.orchestration.searchconfig import ResolvedSearch, SearchConfig, load_config
from nasdun.orchestration.searcher import CohortSearcher
from nasdun.runs.progress import ProgressLine
from nasdun.runs.results import write_json
from nasdun.runs.summary import SearchSummary
from nasdun.runs.worker import train_cohort

__all__ = ["CohortSearcher", "Experiment", "ResolvedSearch", "SearchConfig", "load_config", "run_search"]


RESUMABLE = {
    "budget",
    "minutes",
    "promote_top",
    "promote_protocol",
    "promote_hand",
    "keep_params",
    "checkpoint_minutes",
    "retry_failed",
    "track",
}  # none of them changes a trained candidate


def run_search(
    out: str | Path,
    cfg: SearchConfig | None = None,
    resume: bool = False,
    address: str | None = None,
    num_cpus: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    force: bool = False,
) -> SearchSummary:
    """Run (or resume) a search into ``out``; returns the session's figures (also ``search.json``).
    ``force`` replaces a non-empty ``out`` (once everything is validated); without it that is refused. ``overrides``
    (the fields given, typed: :meth:`SearchConfig.with_overrides`) apply to ``cfg``, or on ``resume`` to the saved one.
    When the screening ends, the search's second phase runs with the run still locked (:func:`nasdun.orchestration.promotion.second_phase`:
    the promotion under ``promote_protocol`` on the same Ray workers, and the verdict there; ``promote_top`` 0: none).

    Everything is validated before the directory is written; a fresh start refused during set-up
    (e.g. a storage URL that cannot be opened) removes the directory it made. The run directory is
    locked for this process's life (:mod:`nasdun.runs.lock`): a second search or resume is refused.
    """
    import shutil

    from nasdun.orchestration.record import verify
    from nasdun.runs.lock import run_lock
    from nasdun.runs.results import check_out_dir, read_table
    from trainers.problems.operators import check_problem_record

    out_dir = Path(out)
    with contextlib.ExitStack() as held:  # a resume holds the run lock from before it reads the run's files
        if resume:
            saved = load_saved_config(out_dir, "resume")
            held.enter_context(run_lock(out_dir))  # a live writer is named now, not read half-written below
            wanted = saved.with_overrides(overrides or {}, "resume")
            bad = sorted(f.name for f in fields(SearchConfig) if getattr(wanted, f.name) != getattr(saved, f.name) and f.name not in RESUMABLE)
            if bad:
                allowed = ", ".join(sorted(RESUMABLE))
                raise NasdunError(
                    f"{', '.join(f'{b}={getattr(wanted, b)!r}' for b in bad)} cannot change on resume=True (only {allowed} can)", (*bad, "resume")
                )
            if wanted.budget < saved.budget:
                raise NasdunError(f"budget={wanted.budget} is below the resumed search's budget {saved.budget}", ("budget",))
            search = wanted.resolve()
            has_table = (out_dir / "results.csv").is_file()
            rows = [dict(r) for r in read_table(out_dir, unique=False).to_dict("records")] if has_table else []  # corrupt: one line
            verify(out_dir, storage_url(out_dir, wanted), rows, default_storage=not wanted.storage)  # table and study agree, before Ray starts
            if (out_dir / PROBLEM).is_file():  # a problem file's data changed since the search began: refused
                check_problem_record(json.loads((out_dir / PROBLEM).read_text()), search.setting, out_dir)
        else:
            if cfg is None:
                raise NasdunError("run_search needs a config unless resuming")
            search = (cfg.with_overrides(overrides) if overrides else cfg).resolve()
            check_out_dir(out_dir, force, hint="or resume it: resume=True; or replace it: force=True")  # nothing is overwritten
        start_ray(address, num_cpus)  # before writing: an unreachable cluster leaves no half-made directory
        check_resources(search.cfg, autoscaling=bool(address))
        proto = search.protocol
        if proto.max_iters >= 100_000 and search.cfg.gpus_per_trial == 0:
            print(
                f"nasdun: note: protocol {proto.name} allows {proto.max_iters:,} iterations per stage (patience {proto.patience:,}):"
                " expect hours per cohort on a CPU; `search`, `smoke` or a protocol file are the CPU-sized ones",
                flush=True,
            )
        if force and not resume and out_dir.is_dir():
            shutil.rmtree(out_dir)  # asked for, and only now that every check has passed
        made = not resume and not out_dir.exists()
        with run_lock(out_dir):
            try:
                exp = _open_experiment(out_dir, search)
            except NasdunError:
                if made:
                    shutil.rmtree(out_dir, ignore_errors=True)  # a refused start leaves nothing behind
                raise
            phase = "phase 1 of 2, screening" if search.promote_protocol is not None else "the search (no second phase: promote_top 0)"
            n_hand, budget = len(search.baselines), search.cfg.budget
            hand = (
                ""
                if not n_hand
                else f", {n_hand} of them the hand designs"
                if n_hand < budget
                else f", all hand designs (the first {budget} of {n_hand})"
            )
            print(f"{phase}: {search.cfg.budget} candidates under {proto.name}{hand}, {search.cfg.cohort} trained together per cohort", flush=True)
            figures = _run_session(exp, resume, address)
            return second_phase(out_dir, search, figures)


def _open_experiment(out_dir: Path, search: ResolvedSearch) -> Experiment:
    import yaml

    from trainers.problems.operators import problem_record

    (out_dir / "search.yaml").write_text(yaml.safe_dump(search.cfg.to_mapping(), sort_keys=False))
    problem = problem_record(search.setting)
    if problem and not (out_dir / PROBLEM).is_file():  # the data a search began on: a resume on changed data is refused
        write_json(out_dir / PROBLEM, problem)
    return Experiment.open(out_dir, search)


def _run_session(exp: Experiment, resume: bool, address: str | None) -> SearchSummary:
    """One driver session of Ray Tune over the experiment; ``search.json`` is rewritten after every cohort."""
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    cfg, out_dir = exp.cfg, exp.dir
    recovered = exp.recover() if resume else {"told_from_table": 0, "requeued": 0, "dropped_unasked": 0}
    recovered["lost_retried"] = exp.requeue_lost() if resume and cfg.retry_failed else 0
    in_flight = concurrency(cfg)
    progress = ProgressLine("search")
    session = 1 + len(list((out_dir / "tune").glob("session-*"))) if (out_dir / "tune").is_dir() else 1
    fixed = {"session": session, "resumed": resume, "recovered": recovered, "concurrency": in_flight, "budget": cfg.budget,
             "baselines": list(exp.search.baselines), "storage": exp.storage_url}  # fmt: skip
    searcher = CohortSearcher(exp, progress, in_flight=in_flight, fixed=fixed)
    trainable = tune.with_resources(train_cohort, {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            num_samples=-1,
            reuse_actors=True,
            max_concurrent_trials=in_flight,
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            callbacks=[JsonLoggerCallback()],
            storage_path=str((out_dir / "tune").resolve()),
            name=f"session-{session}",
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
        ),
    )
    previous = None
    if threading.current_thread() is threading.main_thread():  # Ctrl-C is nasdun's (Ray Tune's own handler is off: raycluster.start_ray)

        def on_sigint(signum: int, frame: Any) -> None:
            searcher.interrupted.set()  # kept even where the exception below is swallowed (inside a callback, a finaliser)
            if not searcher.busy:  # inside an ask or a report the searcher raises it when the step is whole
                raise KeyboardInterrupt

        previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        tuner.fit()
        if searcher.interrupted.is_set():  # the KeyboardInterrupt was lost on its way: no cohort started after it
            raise KeyboardInterrupt
    except KeyboardInterrupt:  # the study and table as they stand
        progress.close()
        searcher.figures(finished=False).write(out_dir)
        raise Interrupted(str(out_dir)) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if searcher.tracker is not None:
            searcher.tracker.close()
    progress.close()
    figures = searcher.figures(finished=True)
    figures.write(out_dir)
    return figures


PROBLEM = "problem.json"  # a problem file's path and data digest (trainers.problems.operators.record)


def _trial_name(trial: Any) -> str:
    return f"cohort-{trial.config.get('cohort', 'x')}-{trial.trial_id}"
