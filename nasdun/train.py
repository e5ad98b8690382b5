"""`nasdun train`: train named architectures together on one setting and write the run directory."""

from __future__ import annotations

import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from nasdun.errors import NasdunError
from nasdun.progress import ProgressLine
from nasdun.results import candidate_row, prepare_out_dir, save_params, write_json, write_table
from search_spaces.genotype import Genotype


def resolve_device(name: str) -> str:
    """'auto' -> cuda when available, else cpu; an explicit device must exist."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise NasdunError(f"--device {name!r} asked for CUDA but torch sees no CUDA device; expected cpu or auto")
    if name != "cpu" and not name.startswith("cuda"):
        raise NasdunError(f"--device {name!r}; expected cpu, cuda, cuda:N or auto")
    return name


def trainer_progress(label: str) -> tuple[ProgressLine, Any]:
    line = ProgressLine(label)

    def report(p: Any) -> None:
        rate = p.iteration / max(p.elapsed_s, 1e-9)
        line.show(
            f"iter {p.iteration} | layer {p.best_layer} | active {p.active} done {p.done} failed {p.failed} / {p.total}"
            f" | {rate:.0f} it/s | {p.elapsed_s:.0f}s"
        )

    return line, report


def ista_reference(problem: Any, layers: int, lam: float) -> dict[str, float]:
    """Test NMSE of K plain ISTA iterations (the untrained LISTA), for the report."""
    from search_spaces.presets import preset
    from trainers.model import UnrolledLISTA
    from trainers.population import evaluate

    acc = evaluate(UnrolledLISTA([preset("lista", layers)], problem.D, lam=lam).to(problem.D.device), problem.test)
    return {"test_nmse_db": float(acc.nmse_db()[-1, 0]), "test_nmse_db_mean": float(acc.nmse_db_mean()[-1, 0])}


def run_train(
    archs: list[tuple[str, Genotype]],
    setting: str,
    protocol: str,
    seed: int,
    out: str | Path,
    device: str = "auto",
    overwrite: bool = False,
    lr_scale: list[float] | None = None,
    compile: bool = False,
) -> Any:
    """Train ``archs`` together; returns the results frame (also written to ``out``)."""
    from trainers.population import train_population
    from trainers.problems import get_setting, make_problem
    from trainers.protocols import get_protocol

    s, proto = get_setting(setting), get_protocol(protocol)
    dev = resolve_device(device)
    out_dir = prepare_out_dir(out, overwrite)
    problem = make_problem(s, seed, batch_size=proto.batch_size, device=dev)
    layers = archs[0][1].layers
    line, report = trainer_progress(f"train {len(archs)} nets")
    t0 = time.perf_counter()
    results = train_population([g for _, g in archs], problem, proto, lr_scale=lr_scale, progress=report, compile=compile)
    wall = time.perf_counter() - t0
    line.close()
    context = {"setting": s.name, "protocol": proto.name, "seed": seed, "device": dev}
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
            "device": dev,
            "compile": compile,
            "host": platform.node(),
            "wall_s": wall,
            "ista_reference": ista,
            "stages": {name: r.stages for (name, _), r in zip(archs, results, strict=True)},
        },
    )
    df.attrs["ista"] = ista
    df.attrs["wall_s"] = wall
    return df
