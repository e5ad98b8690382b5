"""`nasdun search`, the driver side: sampler asks -> cohorts -> Ray Tune trials -> results table.

The worker side (one cohort trained on one Ray worker) is :mod:`nasdun.worker`.

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
import math
import os
import signal
import threading
import time
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher

from nasdun.errors import Interrupted, NasdunError
from nasdun.experiment import Experiment
from nasdun.progress import ProgressLine, duration
from nasdun.record import load_saved_config, storage_url
from nasdun.results import write_json
from nasdun.searchconfig import SearchConfig, load_config
from nasdun.tracking import Tracker
from nasdun.verdict import compare
from nasdun.worker import train_cohort
from search_spaces.genotype import Genotype
from trainers.protocols import get_protocol

__all__ = ["CohortSearcher", "Experiment", "SearchConfig", "load_config", "run_search"]


class CohortSearcher(Searcher):
    """Ray Tune searcher on the driver: turns sampler asks into cohorts and tells each candidate's result back.

    ``lag`` is the number of cohorts in flight: cohort c is proposed from cohorts <= c - lag
    (:meth:`Experiment.ask_cohort`). Workers report their cohort's progress while it trains
    (``progress`` results), so the progress line moves from the first cohort on.
    """

    def __init__(self, exp: Experiment, progress: ProgressLine, stats: dict[str, Any], lag: int, fixed: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.exp, self.progress, self.stats, self.lag = exp, progress, stats, lag
        self.fixed = fixed  # the session's constant figures; with them, search.json is rewritten after every cohort
        self.protocol = asdict(get_protocol(exp.cfg.protocol))  # travels as data: a remote worker needs no YAML file
        self.inflight: dict[str, tuple[int, list[tuple[int, Genotype]]]] = {}
        self.fraction: dict[str, float] = {}  # trial id -> share of its cohort's training done
        self.start = time.perf_counter()
        self.start_trained = exp.trained
        self.tracker = Tracker(exp.dir, exp.cfg.track, _plain(exp.cfg)) if exp.cfg.track and fixed is not None else None
        self.interrupted = threading.Event()  # set by the session's SIGINT handler
        self.busy = False  # inside suggest / on_trial_complete: Ctrl-C waits for the step to be whole (_step)

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
                self.stats["stopped_early"] = f"the time limit of {cfg.minutes:g} min was reached"
            if remaining <= 0 or out_of_time:
                return Searcher.FINISHED if not self.inflight else None  # type: ignore[return-value]
            if any(k <= exp.next_cohort - self.lag for k, _ in self.inflight.values()):
                return None  # cohort c is proposed from cohorts <= c - lag: wait for them (Experiment.ask_cohort)
            members = exp.ask_cohort(min(cfg.cohort, remaining), self.lag)
            if not members:
                if self.inflight:
                    return None
                self.stats["stopped_early"] = "the sampler proposed only genotypes already trained in this experiment"
                return Searcher.FINISHED  # type: ignore[return-value]
            cohort = exp.next_cohort - 1
        self.inflight[trial_id] = (cohort, members)
        return {
            "cohort": cohort,
            "genotypes": [g.to_json() for _, g in members],
            "setting": cfg.setting,
            "protocol": self.protocol,
            "seed": cfg.seed,
            "cpus": cfg.cpus_per_trial,
            "compile": cfg.compile,
            "precision": cfg.precision,
            "params_path": str((exp.dir / "cohorts" / f"cohort-{cohort}.pt").resolve()),
            "checkpoint_every_s": 60 * cfg.checkpoint_minutes if cfg.checkpoint_minutes > 0 else None,
        }

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
            self.stats["trainer_s"] += float(result["trainer_wall_s"])  # type: ignore[index]
        self.stats["cohorts"] += 1
        if self.fixed is not None:
            write_json(self.exp.dir / "search.json", self.figures(finished=False))  # atomically: a killed session leaves its record
        self._show(force=True)

    def figures(self, finished: bool) -> dict[str, Any]:
        """The session's figures so far (``search.json``): counts, timing, the verdict against the hand designs."""
        exp, stats, fixed = self.exp, self.stats, self.fixed or {}
        wall = time.perf_counter() - self.start
        trained_now = exp.trained - self.start_trained
        concurrency = int(fixed.get("concurrency", self.lag))
        return {
            **fixed,
            "finished": finished,
            "cohorts": stats["cohorts"],
            "candidates_trained": trained_now,
            "candidates_total": exp.trained,
            "wall_s": wall,
            "trainer_s": stats["trainer_s"],
            "overhead": wall / (stats["trainer_s"] / concurrency) if stats["trainer_s"] else math.nan,
            "candidates_per_min": trained_now / (wall / 60) if wall else math.nan,
            "best_val_nmse_db": exp.best(),
            "params_kept": sorted(exp.kept),
            **compare(exp.rows),
            "stopped_early": stats.get("stopped_early", ""),
        }

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


GCS_TIMEOUT_S = 20.0  # a cluster address must answer as a Ray GCS within this long
AUTH_HINT = (
    "the cluster requires an authentication token and this one is missing or wrong: set RAY_AUTH_MODE=token and give the"
    " cluster's token in RAY_AUTH_TOKEN or in the file named by RAY_AUTH_TOKEN_PATH (default ~/.ray/auth_token)"
)


def _start_ray(address: str | None, num_cpus: int | None) -> None:
    import ray
    from ray.exceptions import AuthenticationError

    if address and address != "auto" and not address.startswith("ray://"):
        _check_reachable(address)
        _probe_gcs(address)
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # the results table is ours
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")  # Ctrl-C raises in the driver: nasdun names its own resume command
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "100")
    try:
        if address:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except AuthenticationError:
        raise NasdunError(f"could not join the Ray cluster at --address {address!r}: {AUTH_HINT}") from None
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as err:
        raise NasdunError(f"could not reach a Ray cluster at --address {address!r}: {str(err).splitlines()[0]}") from None


def _probe_gcs(address: str) -> None:
    """Join the cluster once in a subprocess, within GCS_TIMEOUT_S: a port where something other than Ray listens
    (ray.init would retry for many minutes there) or a refused token becomes a one-line error in bounded time."""
    import subprocess
    import sys

    code = "import sys, ray; ray.init(address=sys.argv[1], log_to_driver=False, logging_level='ERROR'); print('NASDUN-GCS-OK')"
    try:
        proc = subprocess.run([sys.executable, "-c", code, address], capture_output=True, text=True, timeout=GCS_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise NasdunError(
            f"--address {address!r} accepts connections but did not answer as a Ray cluster (GCS) within {GCS_TIMEOUT_S:g} s;"
            " expected the address of a Ray head node (`ray start --head` prints it)"
        ) from None
    if "NASDUN-GCS-OK" in proc.stdout:
        return
    text = proc.stderr
    if "AuthenticationError" in text or ("token" in text.lower() and "auth" in text.lower()):
        raise NasdunError(f"could not join the Ray cluster at --address {address!r}: {AUTH_HINT}")
    last = next((line for line in reversed(text.strip().splitlines()) if line.strip()), "no answer")
    raise NasdunError(f"could not reach a Ray cluster at --address {address!r}: {last[:200]}")


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, with one line, where ray.init would retry for minutes."""
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise NasdunError(f"--address {address!r}; expected auto, ray://host:port or host:port")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise NasdunError(f"could not reach a Ray cluster at --address {address!r}: {err.strerror or err}") from None


def _check_resources(cfg: SearchConfig, autoscaling: bool) -> None:
    """A local Ray that can never place one cohort would wait forever: say so instead.

    A cluster given with ``--address`` may autoscale, so there a shortfall is only reported."""
    import ray

    res = ray.cluster_resources()
    short = [
        f"{kind}={need} per trial but the cluster has {res.get(key, 0):g}"
        for kind, key, need in (("cpus_per_trial", "CPU", cfg.cpus_per_trial), ("gpus_per_trial", "GPU", cfg.gpus_per_trial))
        if need > res.get(key, 0)
    ]
    if short and not autoscaling:
        raise NasdunError(f"{'; '.join(short)}; lower them in the config or run on a cluster that has them (--address)")
    if short:
        print(f"nasdun: waiting for the cluster to provide {'; '.join(short)}", flush=True)


def _concurrency(cfg: SearchConfig) -> int:
    import ray

    if cfg.max_concurrent:
        return cfg.max_concurrent
    res = ray.cluster_resources()
    by_cpu = int(res.get("CPU", 1) // cfg.cpus_per_trial)
    by_gpu = int(res.get("GPU", 0) // cfg.gpus_per_trial) if cfg.gpus_per_trial > 0 else by_cpu
    return max(1, min(by_cpu, by_gpu))


RESUMABLE = {
    "budget",
    "minutes",
    "promote_top",
    "promote_protocol",
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
    overrides: dict[str, Any] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Run (or resume) a search into ``out``; returns the session's figures (also ``search.json``).
    ``force`` replaces a non-empty ``out`` (once everything is validated); without it that is refused.

    Everything is validated before the directory is written; a fresh start refused during set-up
    (e.g. a storage URL that cannot be opened) removes the directory it made. The run directory is
    locked for this process's life (:mod:`nasdun.lock`): a second search or resume is refused.
    """
    import shutil

    from nasdun.lock import run_lock
    from nasdun.record import verify
    from nasdun.results import check_out_dir, read_table
    from trainers.operators import check_record
    from trainers.problems import get_setting

    out_dir = Path(out)
    with contextlib.ExitStack() as held:  # a resume holds the run lock from before it reads the run's files
        if resume:
            saved = load_saved_config(out_dir, "--resume")
            held.enter_context(run_lock(out_dir))  # a live writer is named now, not read half-written below
            changed = {k: v for k, v in (overrides or {}).items() if v is not None and getattr(saved, k) != v}
            bad = sorted(set(changed) - RESUMABLE)
            if bad:
                allowed = ", ".join("--" + r.replace("_", "-") for r in sorted(RESUMABLE))
                raise NasdunError(f"{', '.join('--' + b.replace('_', '-') for b in bad)} cannot change on --resume (only {allowed} can)")
            cfg = replace(saved, **changed)
            cfg.validate()
            if cfg.budget < saved.budget:
                raise NasdunError(f"--budget {cfg.budget} is below the resumed search's budget {saved.budget}")
            rows = [dict(r) for r in read_table(out_dir).to_dict("records")] if (out_dir / "results.csv").is_file() else []  # corrupt: one line
            verify(out_dir, storage_url(out_dir, cfg), rows, default_storage=not cfg.storage)  # table and study agree, before Ray starts
            if (out_dir / PROBLEM).is_file():  # a problem file's data changed since the search began: refused
                check_record(json.loads((out_dir / PROBLEM).read_text()), get_setting(cfg.setting), out_dir)
        else:
            if cfg is None:
                raise NasdunError("run_search needs a config unless resuming")
            cfg.validate()
            check_out_dir(out_dir, force, hint="or resume it: --resume; or replace it: --force")  # nothing is overwritten
        _start_ray(address, num_cpus)  # before writing: an unreachable cluster leaves no half-made directory
        _check_resources(cfg, autoscaling=bool(address))
        proto = get_protocol(cfg.protocol)
        if proto.max_iters >= 100_000 and cfg.gpus_per_trial == 0:
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
                exp = _open_experiment(out_dir, cfg)
            except NasdunError:
                if made:
                    shutil.rmtree(out_dir, ignore_errors=True)  # a refused start leaves nothing behind
                raise
            return _run_session(exp, resume, address)


def _open_experiment(out_dir: Path, cfg: SearchConfig) -> Experiment:
    import yaml

    from trainers.operators import record
    from trainers.problems import get_setting

    (out_dir / "search.yaml").write_text(yaml.safe_dump(_plain(cfg), sort_keys=False))
    problem = record(get_setting(cfg.setting))
    if problem and not (out_dir / PROBLEM).is_file():  # the data a search began on: a resume on changed data is refused
        write_json(out_dir / PROBLEM, problem)
    return Experiment(out_dir, cfg)


def _run_session(exp: Experiment, resume: bool, address: str | None) -> dict[str, Any]:
    """One driver session of Ray Tune over the experiment; ``search.json`` is rewritten after every cohort."""
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    cfg, out_dir = exp.cfg, exp.dir
    recovered = exp.recover() if resume else {"told_from_table": 0, "requeued": 0, "dropped_unasked": 0}
    recovered["lost_retried"] = exp.requeue_lost() if resume and cfg.retry_failed else 0
    concurrency = _concurrency(cfg)
    progress = ProgressLine("search")
    session = 1 + len(list((out_dir / "tune").glob("session-*"))) if (out_dir / "tune").is_dir() else 1
    stats: dict[str, Any] = {"trainer_s": 0.0, "cohorts": 0}
    fixed = {"session": session, "resumed": resume, "recovered": recovered, "concurrency": concurrency, "budget": cfg.budget,
             "baselines": list(cfg.baseline_genotypes()), "storage": exp.storage_url}  # fmt: skip
    searcher = CohortSearcher(exp, progress, stats, lag=concurrency, fixed=fixed)
    trainable = tune.with_resources(train_cohort, {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            num_samples=-1,
            max_concurrent_trials=concurrency,
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
    if threading.current_thread() is threading.main_thread():  # Ctrl-C is nasdun's (Ray Tune's own handler is off: _start_ray)

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
        write_json(out_dir / "search.json", searcher.figures(finished=False))
        raise Interrupted(f"nasdun search --resume {out_dir}") from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if searcher.tracker is not None:
            searcher.tracker.close()
    progress.close()
    figures = searcher.figures(finished=True)
    write_json(out_dir / "search.json", figures)
    return figures


PROBLEM = "problem.json"  # a problem file's path and data digest (trainers.operators.record)


def _trial_name(trial: Any) -> str:
    return f"cohort-{trial.config.get('cohort', 'x')}-{trial.trial_id}"


def _plain(cfg: SearchConfig) -> dict[str, Any]:
    data = asdict(cfg)
    data["neurons"] = list(cfg.neurons)
    return {f.name: data[f.name] for f in fields(cfg)}
