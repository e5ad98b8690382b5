"""Checkpoints of the population trainer: its whole state, saved atomically, restored bit for bit.

A checkpoint holds what the next iteration reads: the model's parameters (the slots still in
the cohort), the :class:`~trainers.state.CandidateState` (Adam moments, stage bookkeeping,
best-so-far parameters, counters, halving flags), every candidate's result so far (finished,
failed and stopped ones included, with their parameters), the cohort's iteration count and the
elapsed time. The data stream needs no saved state: a candidate's batch is a pure function of its
own iteration count (:meth:`trainers.problems.make.Problem.train_batch`). Checkpoints are taken at
validation boundaries, so a restored trainer continues with exactly the steps the interrupted one
would have taken, and the finished results equal those of an uninterrupted run.

A checkpoint carries a fingerprint (genotypes, protocol, setting, seed, batch size, precision,
compile); restoring into a trainer with another fingerprint is a one-line error, never a silent mix.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasdun.core.errors import NasdunError
from search_spaces.genotype import Genotype
from trainers.scoring import CandidateResult

VERSION = 2  # 2: the candidates' restart counts (retries_h)
_NUMPY = "__numpy__"


def fingerprint(trainer: Any) -> dict[str, Any]:
    p = trainer.problem
    return {
        "genotypes": [r.genotype.hash for r in trainer.results],
        "protocol": dataclasses.asdict(trainer.protocol),
        "setting": p.setting.name,
        "setting_seed": p.setting.seed,
        "data_digest": getattr(p.setting, "digest", ""),  # a problem file's data: changed data is another run
        "seed": p.seed,
        "batch_size": p.batch_size,
        "precision": trainer.options.precision,
        "compile": trainer.options.compile,
    }


def _pack(value: Any) -> Any:
    """numpy arrays as tensors (``torch.load(weights_only=True)`` reads tensors, not numpy objects)."""
    if isinstance(value, np.ndarray):
        return {_NUMPY: torch.from_numpy(np.ascontiguousarray(value))}
    if isinstance(value, dict):
        return {k: _pack(v) for k, v in value.items()}
    return value


def _unpack(value: Any, device: torch.device) -> Any:
    """The inverse of :func:`_pack`, with the state's tensors moved to the trainer's device."""
    if isinstance(value, dict) and set(value) == {_NUMPY}:
        return value[_NUMPY].numpy().copy()
    if isinstance(value, dict):
        return {k: _unpack(v, device) for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        return value.to(device)
    return value


def save_checkpoint(trainer: Any, path: Path, elapsed: float) -> None:
    """Write ``trainer``'s whole state to ``path`` atomically (a kill mid-write leaves the previous one)."""
    results = [{**{f.name: getattr(r, f.name) for f in dataclasses.fields(r) if f.name != "genotype"}, "genotype": r.genotype.to_json()}
               for r in trainer.results]  # fmt: skip
    blob = {
        "version": VERSION,
        "fingerprint": fingerprint(trainer),
        "iteration": trainer.iteration,
        "elapsed": elapsed,
        "params": {k: v.detach() for k, v in trainer.params.items()},
        "state": {f.name: _pack(getattr(trainer.c, f.name)) for f in dataclasses.fields(trainer.c)},
        "results": results,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)


def restore_checkpoint(trainer: Any, path: Path) -> float:
    """Load ``path`` into ``trainer`` (built with the same genotypes, problem and protocol); returns the elapsed time."""
    from trainers.model import UnrolledLISTA

    dev = trainer.problem.D.device
    try:  # on the CPU: finished results keep their parameters there, as in an uninterrupted run; the state moves below
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: torch raises several types
        raise NasdunError(f"checkpoint {str(path)!r} cannot be read ({str(err).splitlines()[0][:120]}); delete it to start afresh") from None
    if blob.get("version") != VERSION:
        raise NasdunError(f"checkpoint {str(path)!r} is of format {blob.get('version')}, this nasdun reads {VERSION}; delete it to start afresh")
    if blob.get("fingerprint") != fingerprint(trainer):
        raise NasdunError(f"checkpoint {str(path)!r} belongs to another run (other networks, data, protocol or precision); delete it or use its run")
    trainer.results = [CandidateResult(**{**r, "genotype": Genotype.from_json(r["genotype"])}) for r in blob["results"]]
    state = {k: _unpack(v, dev) for k, v in blob["state"].items()}
    trainer.model = UnrolledLISTA(
        [trainer.results[i].genotype for i in state["ids"]],
        trainer.problem.D,
        trainer.protocol.lam,
        trainer.protocol.coef_init,
        trainer.options.compile,
    ).to(dev)
    with torch.no_grad():
        for name, p in trainer.model.named_parameters():
            p.copy_(blob["params"][name])
    trainer._bind_params()
    trainer.c = type(trainer.c)(**state)
    trainer.iteration = int(blob["iteration"])
    trainer._sync_state()
    return float(blob["elapsed"])
