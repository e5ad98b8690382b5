"""`nasdun train`: train named architectures together on one setting and write the run directory."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nasdun.core.errors import NasdunError
from nasdun.runs.progress import ProgressLine, duration
from nasdun.runs.results import candidate_row, check_out_dir, save_params, write_json, write_table
from search_spaces.genotype import Genotype
from trainers.options import RunOptions


def trainer_progress(label: str) -> tuple[ProgressLine, Any]:
    """A progress line and the trainer callback that draws it: layer t of K, stage, iterations, ETA."""
    line = ProgressLine(label)

    def report(p: Any) -> None:
        rate = p.iteration / max(p.elapsed_s, 1e-9)
        layer = f"{p.min_layer}" if p.min_layer == p.best_layer else f"{p.min_layer}-{p.best_layer}"
        line.show(
            f"layer {layer} of {p.layers}, stage {p.stage}/{p.stages_per_layer} | iter {p.iteration} ({rate:.0f} it/s)"
            f" | done {p.done} failed {p.failed} of {p.total} | {duration(p.elapsed_s)} elapsed, ETA ~{duration(p.eta_s())}"
        )

    return line, report


def ista_reference(problem: Any, layers: int, lam: float) -> dict[str, float]:
    """Test NMSE of K plain ISTA iterations (the untrained LISTA), for the report."""
    from search_spaces.presets import preset
    from trainers.model import UnrolledLISTA
    from trainers.population import evaluate

    acc = evaluate(UnrolledLISTA([preset("lista", layers)], problem.D, lam=lam).to(problem.D.device), problem.test, psi=problem.psi)
    return {"test_nmse_db": float(acc.nmse_db()[-1, 0]), "test_nmse_db_mean": float(acc.nmse_db_mean()[-1, 0])}


SPEC, CHECKPOINT = "train.json", "checkpoint.pt"


def run_train(
    archs: list[tuple[str, Genotype]],
    setting: str,
    protocol: Any,
    seed: int,
    out: str | Path,
    options: RunOptions = RunOptions(),
    overwrite: bool = False,
    lr_scale: list[float] | None = None,
    workers: int = 1,
    cpus: int = 1,
    gpus: float = 0.0,
) -> Any:
    """Train ``archs`` together; returns the results frame (also written to ``out``).

    ``workers`` > 1 (a Ray session must be running: the search's promotion): the networks are dealt round-robin into
    that many cohorts, each trained as a task on a Ray worker with ``cpus`` CPUs (its intra-op threads) and ``gpus``,
    as the search's cohorts are; each network trains as if alone, so the values equal one cohort's to float rounding (not bit for bit).

    ``options`` (:class:`trainers.options.RunOptions`: device, precision, compile, time box, checkpoint interval) go
    whole to :func:`trainers.population.train_population`; they are recorded in ``train.json`` and ``run.json``
    (precision in every row too). The run's full specification is written first (``train.json``) and its whole trainer
    state every ``options.checkpoint_every_s`` seconds (``checkpoint.pt``, removed when the run ends). A
    directory holding an unfinished run of the same specification is resumed from its checkpoint
    (the finished tables equal an uninterrupted run's); :func:`resume_train` resumes one by path.
    """
    from nasdun.runs.lock import run_lock
    from trainers.problems.make import get_setting
    from trainers.problems.operators import problem_record
    from trainers.protocols import get_protocol

    if not isinstance(options, RunOptions):
        raise NasdunError(f"options={options!r}; expected a trainers.options.RunOptions", ("options",))
    s, proto = get_setting(setting), get_protocol(protocol)
    opts = options.resolved()
    spec = {
        "archs": [[name, g.to_dict()] for name, g in archs],  # a list: the cohort's order is part of the run
        "setting": s.name, "protocol": asdict(proto), "seed": seed,
        **{k: v for k, v in opts.record().items() if k != "checkpoint_every_s"},  # how often it saves is not what it trains
        "lr_scale": lr_scale, "problem": problem_record(s),
    }  # fmt: skip
    if workers > 1 and (lr_scale is not None or opts.minutes):
        raise NasdunError(f"workers={workers} trains without lr_scale and without a time limit; expected workers=1 with either")
    out_dir = Path(out)
    unfinished = (out_dir / SPEC).is_file() and not (out_dir / "results.csv").is_file()
    same = unfinished and json.loads((out_dir / SPEC).read_text()) == json.loads(json.dumps(spec))  # the same run, cut short: continue it
    if not same:
        check_out_dir(out_dir, overwrite)
    with run_lock(out_dir):  # before anything is written: a run another process is training is never overwritten
        if not same:  # a new run: no checkpoint of another one may be read into it
            for stale in (out_dir / CHECKPOINT, *out_dir.glob("ckpt-*.pt"), *out_dir.glob("cohort-*.pt")):
                stale.unlink(missing_ok=True)
            write_json(out_dir / SPEC, spec)
        ray_workers = Workers(setting if isinstance(setting, str) else s.name, workers, cpus, gpus) if workers > 1 and len(archs) > 1 else None
        return _train(archs, s, proto, seed, out_dir, opts, lr_scale, ray_workers)


def holds_run(run_dir: str | Path, archs: list[tuple[str, Genotype]], setting: str, seed: int, protocol: Any, subset: bool = False) -> bool:
    """Whether ``run_dir`` holds a finished :func:`run_train` of exactly ``archs`` (``subset``: of some of them, each
    as given) on this setting's data, seed and protocol: what may be reused instead of trained again."""
    from trainers.problems.make import get_setting
    from trainers.protocols import Protocol, get_protocol

    path = Path(run_dir)
    if not (path / "results.csv").is_file() or not (path / "run.json").is_file():
        return False
    meta = json.loads((path / "run.json").read_text())
    want, have = {n: g.to_dict() for n, g in archs}, meta.get("archs") or {}
    same_archs = all(want.get(n) == g for n, g in have.items()) if subset else have == want
    s = get_setting(setting)
    same_data = meta.get("setting", {}).get("name") == s.name and meta.get("setting", {}).get("digest", "") == getattr(s, "digest", "")
    had = meta.get("protocol")
    defaults = json.loads(json.dumps(asdict(Protocol())))  # a field added since the run was written holds its default there
    same_protocol = isinstance(had, dict) and {**defaults, **had} == json.loads(json.dumps(asdict(get_protocol(protocol))))
    return same_archs and same_data and same_protocol and meta.get("seed") == seed


def train_or_reuse(run_dir: str | Path, archs: list[tuple[str, Genotype]], setting: str, protocol: Any, seed: int, force: bool = False,
                   options: RunOptions = RunOptions()) -> Any:  # fmt: skip
    """The results of ``archs`` trained in ``run_dir``: read back if it holds exactly that run (:func:`holds_run`),
    trained if it holds none; a run of anything else is refused in one line, or replaced under ``force``.
    Either way the table is read from disk, so a run trained now and one reused later give the same frame.
    ``options`` go to :func:`run_train` whole."""
    from nasdun.runs.results import read_table

    if not holds_run(run_dir, archs, setting, seed, protocol):
        if (Path(run_dir) / "results.csv").is_file() and not force:
            raise NasdunError(
                f"{run_dir} holds a run of other networks, setting, seed or protocol; use another out=DIR or pass force=True to retrain it",
                ("out", "force"),
            )
        run_train(archs, setting, protocol, seed, run_dir, options, overwrite=force)
    return read_table(Path(run_dir))


def resume_train(out: str | Path, checkpoint_every_s: float = 300.0) -> Any:
    """Finish the interrupted ``nasdun train`` in ``out`` from its last checkpoint (same networks, data and protocol)."""
    from nasdun.core.config import from_mapping
    from trainers.protocols import Protocol

    path = Path(out)
    if not (path / SPEC).is_file():
        raise NasdunError(f"resume={str(path)!r} holds no {SPEC}; expected the directory of an interrupted nasdun train", ("resume",))
    if (path / "results.csv").is_file():
        raise NasdunError(f"resume={str(path)!r} is a finished run (its results.csv is written); nothing to resume", ("resume",))
    spec = json.loads((path / SPEC).read_text())
    if spec.get("problem"):  # a problem file whose data changed since: refused, not trained on other data
        from trainers.problems.make import get_setting
        from trainers.problems.operators import check_problem_record

        check_problem_record(spec["problem"], get_setting(spec["setting"]), path)
    archs = [(name, Genotype.from_dict(g)) for name, g in spec["archs"]]
    proto = from_mapping(Protocol, spec["protocol"], f"{path / SPEC}: protocol")
    options = RunOptions(spec["device"], spec["precision"], spec["compile"], spec["minutes"], checkpoint_every_s,
                         cuda_graphs=spec.get("cuda_graphs", False))  # fmt: skip
    return run_train(archs, spec["setting"], proto, spec["seed"], path, options, lr_scale=spec["lr_scale"])


def _train(
    archs: list[tuple[str, Genotype]], s: Any, proto: Any, seed: int, out_dir: Path, opts: RunOptions, lr_scale: list[float] | None,
    workers: Workers | None = None,
) -> Any:  # fmt: skip
    from trainers.population import train_population
    from trainers.problems.make import make_problem

    problem = make_problem(s, seed, batch_size=proto.batch_size, device=opts.device)
    layers = archs[0][1].layers
    t0 = time.perf_counter()
    if workers is not None:
        results: list[Any] = _train_on_workers(archs, workers, proto, seed, out_dir, opts)
    else:
        line, report = trainer_progress(f"train {len(archs)} nets")
        results = train_population(
            [g for _, g in archs], problem, proto, lr_scale=lr_scale, progress=report, options=opts, checkpoint=out_dir / CHECKPOINT
        )
        line.close()
    wall = time.perf_counter() - t0
    context = {"setting": s.name, "protocol": proto.name, "seed": seed, "device": opts.device, "precision": opts.precision}
    rows = [candidate_row(name, r.genotype, r.metrics(), **context) for (name, _), r in zip(archs, results, strict=True)]
    df = write_table(out_dir, rows)
    meta = {"setting": s.name, "seed": seed, "lam": proto.lam, "coef_init": proto.coef_init}
    save_params(out_dir, {name: (r.genotype, r.params) for (name, _), r in zip(archs, results, strict=True)}, meta)
    ista = ista_reference(problem, layers, proto.lam)
    write_json(
        out_dir / "run.json",
        {
            "command": "train",
            "archs": {name: g.to_dict() for name, g in archs},
            "setting": asdict(s),
            "protocol": asdict(proto),
            "seed": seed,
            **{k: v for k, v in opts.record().items() if k != "checkpoint_every_s"},
            "host": platform.node(),
            "workers": workers.cohorts if workers else 1,  # cohorts trained side by side on Ray workers (1: one cohort in this process)
            "wall_s": wall,
            "ista_reference": ista,
            "stages": {name: r.stages for (name, _), r in zip(archs, results, strict=True)},
        },
    )
    (out_dir / CHECKPOINT).unlink(missing_ok=True)  # the run is whole on disk: the checkpoint has served
    df.attrs["ista"] = ista
    df.attrs["wall_s"] = wall
    return df


@dataclass(frozen=True)
class Workers:
    """How :func:`run_train` trains on Ray workers: the setting as the workers name it, cohorts, and each one's CPUs and GPUs."""

    setting: str
    cohorts: int
    cpus: int
    gpus: float


@dataclass
class _Trained:
    """One network trained on a worker, as :func:`_train` reads a trainer's result."""

    genotype: Genotype
    row: dict[str, Any]
    params: dict[str, Any]
    stages: list[dict[str, Any]]

    def metrics(self) -> dict[str, Any]:
        return self.row


def _train_on_workers(archs: list[tuple[str, Genotype]], workers: Workers, proto: Any, seed: int, out_dir: Path, opts: RunOptions) -> list[_Trained]:
    """``archs`` dealt round-robin into ``workers`` cohorts, each trained by :func:`nasdun.runs.worker.cohort_report` as a Ray
    task (checkpointed beside its parameters file, so a run cut short continues each cohort where it was); one progress
    line for all of them, read from the files the tasks write."""
    import ray
    import torch

    from nasdun.runs.worker import train_group

    if not ray.is_initialized():
        raise NasdunError(f"workers={workers.cohorts} trains on Ray workers and no Ray session is running; expected workers=1 or ray.init() first")
    n = min(workers.cohorts, len(archs))
    groups = [list(range(i, len(archs), n)) for i in range(n)]
    task = ray.remote(train_group).options(num_cpus=workers.cpus, num_gpus=workers.gpus)
    refs, files = [], []
    for i, idx in enumerate(groups):
        config = {
            "cohort": i, "genotypes": [archs[j][1].to_json() for j in idx], "setting": workers.setting,
            "protocol": asdict(proto), "seed": seed, "cpus": workers.cpus, "options": opts.record(),
            "params_path": str((out_dir / f"cohort-{i}.pt").resolve()), "checkpoint": True,
        }  # fmt: skip
        files.append(out_dir / f"cohort-{i}.progress.json")
        refs.append(task.remote(config, str(files[-1].resolve())))
    line = ProgressLine(f"train {len(archs)} nets in {n} cohorts")
    t0 = time.perf_counter()
    try:
        _follow(refs, groups, files, line, t0)
    except BaseException:  # Ctrl-C or an error here: the tasks stop now (their checkpoints stay for a resume)
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
    line.close()
    reports = ray.get(refs)
    out: dict[int, _Trained] = {}
    for idx, report in zip(groups, reports, strict=True):
        params = torch.load(report["params_file"], weights_only=True)
        for j, row, stages in zip(idx, report["candidates"], report["stages"], strict=True):
            g = archs[j][1]
            out[j] = _Trained(g, row, params[g.hash], stages)
        Path(report["params_file"]).unlink(missing_ok=True)  # kept in params.pt with the rest
    for f in files:
        f.unlink(missing_ok=True)
    return [out[j] for j in range(len(archs))]


def _follow(refs: list[Any], groups: list[list[int]], files: list[Path], line: ProgressLine, t0: float) -> None:
    """Wait for the tasks, drawing one progress line from their progress files (a finished cohort from its report)."""
    import ray

    index = {ref: i for i, ref in enumerate(refs)}
    pending, finished = list(refs), {}
    while pending:
        ready, pending = ray.wait(pending, num_returns=len(pending), timeout=2.0)
        for ref in ready:
            statuses = [c["status"] for c in ray.get(ref)["candidates"]]
            finished[index[ref]] = {"fraction_done": 1.0, "done": statuses.count("ok"), "failed": statuses.count("failed")}
        seen = {i: json.loads(f.read_text()) for i, f in enumerate(files) if f.is_file() and i not in finished} | finished
        if seen:
            elapsed = time.perf_counter() - t0
            fraction = sum(p["fraction_done"] for p in seen.values()) / len(refs)
            eta = elapsed * (1 - fraction) / fraction if fraction > 0 else float("inf")
            done, failed = (sum(int(p[k]) for p in seen.values()) for k in ("done", "failed"))
            running = [p for i, p in seen.items() if i not in finished]
            layer = f"layer {min(int(p['min_layer']) for p in running)} of {running[0]['layers']} | " if running else ""
            nets = sum(len(g) for g in groups)
            line.show(f"{layer}{len(finished)} of {len(refs)} cohorts finished | done {done} failed {failed}"
                      f" of {nets} | {duration(elapsed)} elapsed, ETA ~{duration(eta)}")  # fmt: skip
