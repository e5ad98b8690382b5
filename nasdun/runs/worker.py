"""`nasdun search`, the worker side: one cohort trained by the population trainer on one Ray worker.

The driver (:mod:`nasdun.orchestration.driver`) sends the cohort as data (genotypes, setting, the resolved
protocol, seed); the worker trains it, reports its progress while it trains and every
candidate's metrics when it ends, and writes the candidates' parameters to ``params_path``
(in the run directory, which Tune's storage already requires the nodes to share) for the driver
to keep the best.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from search_spaces.genotype import Genotype

REPORT_EVERY_S = 5.0  # intermediate progress results sent to the driver at most this often
_PROBLEMS: dict[tuple[str, int, int, str], Any] = {}  # a worker process keeps its data between cohorts


def train_cohort(config: dict[str, Any]) -> None:
    """Ray Tune trainable: ``progress`` results while the cohort trains, then every candidate's result."""
    from ray import tune

    last = [time.monotonic()]

    def progress(p: Any) -> None:
        if time.monotonic() - last[0] >= REPORT_EVERY_S:
            last[0] = time.monotonic()
            tune.report({"progress": p.fraction_done, "elapsed_s": p.elapsed_s})

    tune.report(cohort_report(config, progress))


def cohort_report(config: dict[str, Any], progress: Any = None) -> dict[str, Any]:
    """Train the cohort a searcher suggested (``config``) on this process's device; what the trial reports."""
    import ray
    import torch

    from trainers.options import RunOptions
    from trainers.population import train_population
    from trainers.problems.make import make_problem
    from trainers.protocols import Protocol

    device = "cuda" if ray.is_initialized() and ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
    proto = Protocol(**config["protocol"])  # sent as data by the searcher
    key = (config["setting"], int(config["seed"]), proto.batch_size, device)
    if key not in _PROBLEMS:
        _PROBLEMS[key] = make_problem(config["setting"], int(config["seed"]), batch_size=proto.batch_size, device=device)
    genotypes = [Genotype.from_json(g) for g in config["genotypes"]]
    checkpoint = cohort_checkpoint(config)
    t0 = time.perf_counter()
    options = RunOptions.from_record({**config["options"], "device": device})  # the device is this worker's
    results = train_population(
        genotypes, _PROBLEMS[key], proto, progress=progress, options=options, checkpoint=checkpoint, threads=max(1, int(config["cpus"]))
    )
    report = {"trainer_wall_s": time.perf_counter() - t0, "device": device, "host": os.uname().nodename, "candidates": [r.metrics() for r in results],
              "stages": [r.stages for r in results]}  # fmt: skip
    path = config.get("params_path")
    if path:
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            torch.save({r.genotype.hash: r.params for r in results}, path + ".tmp")
            os.replace(path + ".tmp", path)
            report["params_file"] = path
        except OSError:
            pass  # this node cannot write there: the results still count, their parameters are not kept
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)  # the cohort is whole: its results travel in the report
    return report


def cohort_checkpoint(config: dict[str, Any]) -> Path | None:
    """Where a cohort checkpoints (beside its parameters file): named by what it trains, so a retried trial and
    a cohort redone after a driver kill (same members, same order) find it; None without a run directory."""
    import hashlib
    import json

    if not config.get("params_path") or not config.get("checkpoint"):
        return None
    trains = {k: config["options"][k] for k in ("compile", "precision")}
    what = {**{k: config.get(k) for k in ("genotypes", "setting", "protocol", "seed")}, **trains}
    key = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]
    return Path(config["params_path"]).parent / f"ckpt-{key}.pt"


def train_group(config: dict[str, Any], progress_file: str) -> dict[str, Any]:
    """A Ray task: one cohort of a training split over workers (:func:`nasdun.runs.training.run_train` with ``workers``), its
    progress written to ``progress_file`` (JSON, at most every second) for the driver's progress line."""
    import json
    from dataclasses import asdict

    last = [0.0]

    def progress(p: Any) -> None:
        if time.monotonic() - last[0] >= 1.0:
            last[0] = time.monotonic()
            Path(progress_file + ".tmp").write_text(json.dumps(asdict(p)))
            os.replace(progress_file + ".tmp", progress_file)

    return cohort_report(config, progress)
