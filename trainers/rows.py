"""The results table's row, in one place: its columns, their kinds, their order on disk, and a failed row's values.

Every table nasdun writes (``nasdun train``, a search, a promotion, ``retrain``) and reads (the verdict, averages,
heatmaps, the report) holds these columns; a run adds its own context after them (a search's ``trial_number``,
``sampler``, ``cohort``, ``preset``; an image setting's ``test_psnr``). The trainer's part of a row is
:data:`METRICS` (:meth:`trainers.scoring.CandidateResult.metrics`); a candidate without a report (a lost worker, a trial
rebuilt from the study) is :func:`failed_metrics`. :mod:`nasdun.runs.results` writes and checks tables by :data:`SCHEMA`.
torch-free: the CLI and the readers import it without the trainer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

STATUSES = ("ok", "failed", "stopped")  # stopped: by successive halving or a time limit, scored where it stopped


@dataclass(frozen=True)
class Column:
    """One column: its name, what it holds (``text``, ``int``, ``float``, ``json``: a JSON text), the value a failed row
    holds (``None``: set by the run, not by the trainer) and whether a table without it is refused."""

    name: str
    kind: Literal["text", "int", "float", "json"]
    failed: Any = None
    required: bool = False


# The trainer's part (CandidateResult.metrics): every metric at layer K, or at rung_layer for a stopped candidate.
METRICS: tuple[Column, ...] = (
    Column("status", "text", "failed", required=True),
    Column("reason", "text", ""),
    Column("iterations", "int", 0),
    Column("wall_s", "float", 0.0),
    Column("rung", "int", 0),
    Column("rung_layer", "int", 0),
    Column("val_nmse_db", "float", math.nan, required=True),
    Column("val_nmse_db_mean", "float", math.nan),
    Column("test_nmse_db", "float", math.nan, required=True),
    Column("test_nmse_db_mean", "float", math.nan),
    Column("curves", "json", None),  # {"{split}_{metric}": per-layer values}; a failed row's is {} (failed_metrics)
)
# The network and the run: who it is and what it was trained on.
CONTEXT: tuple[Column, ...] = (
    Column("name", "text", required=True),
    Column("hash", "text", required=True),
    Column("n_extra", "int"),
    Column("setting", "text"),
    Column("protocol", "text"),
    Column("seed", "int"),
    Column("layers", "int"),
    Column("device", "text"),
    Column("genotype", "json", required=True),
    Column("precision", "text"),
)
SCHEMA: dict[str, Column] = {c.name: c for c in (*CONTEXT, *METRICS)}

# The order on disk: these first (as every table since the first release), then the rest as the run adds them.
ORDER = (
    "name", "hash", "status", "reason", "test_nmse_db", "test_nmse_db_mean", "val_nmse_db", "val_nmse_db_mean",
    "iterations", "wall_s", "n_extra", "setting", "protocol", "seed", "layers", "device", "genotype",
)  # fmt: skip
REQUIRED = tuple(c.name for c in SCHEMA.values() if c.required)
NUMBERS = tuple(c.name for c in SCHEMA.values() if c.kind in ("int", "float"))  # checked as numbers (or empty) when read
FLOATS = tuple(c.name for c in SCHEMA.values() if c.kind == "float")  # read as floats (an int column may hold NaN: left as read)


def metric_names() -> tuple[str, ...]:
    return tuple(c.name for c in METRICS)


def failed_metrics(reason: str = "", **values: Any) -> dict[str, Any]:
    """The trainer's part of a row that has no report: failed, no values (a fresh dict each call); ``values`` set some."""
    unknown = sorted(set(values) - set(metric_names()))
    if unknown:
        raise ValueError(f"failed_metrics: {unknown} are not metric columns; expected any of {', '.join(metric_names())}")
    row = {c.name: ({} if c.name == "curves" else c.failed) for c in METRICS}
    return {**row, "reason": reason, **values}
