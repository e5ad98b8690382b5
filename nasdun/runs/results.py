"""The results table and trained parameters on disk: what `train`, `search` and `retrain` write.

A run directory holds ``results.csv`` (one row per network; also ``results.parquet`` when
pyarrow is installed), ``curves.csv`` (per-layer NMSE, long form), ``params.pt`` (trained
parameters by row name, loadable again with :func:`load_network`) and ``run.json`` (the
configuration that reproduces the run).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasdun.core.errors import NasdunError, place_error
from search_spaces.genotype import Genotype
from trainers.rows import FLOATS, NUMBERS, ORDER, REQUIRED, STATUSES, metric_names

if TYPE_CHECKING:
    import pandas as pd
    import torch


def candidate_row(name: str, genotype: Genotype, metrics: Mapping[str, Any], **context: Any) -> dict[str, Any]:
    """One results-table row (:mod:`trainers.rows`) from a candidate's metrics (``CandidateResult.metrics()``, or
    :func:`trainers.rows.failed_metrics`); ``context`` adds run-level columns (setting, protocol, seed, sampler, cohort, ...)."""
    missing = [c for c in metric_names() if c not in metrics]
    if missing:
        raise ValueError(f"candidate_row({name!r}): metrics lack {missing}; expected CandidateResult.metrics() or failed_metrics()")
    row: dict[str, Any] = {"name": name, "hash": genotype.hash}
    row.update({k: v for k, v in metrics.items() if k != "curves"})
    row["wall_s"] = round(float(metrics["wall_s"]), 3)
    row.update({"n_extra": genotype.n_extra, "layers": genotype.layers, "genotype": genotype.to_json()})
    row["curves"] = json.dumps(metrics.get("curves") or {})
    row.update(context)
    return row


def curve_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Long-form per-layer curves from table rows (their ``curves`` JSON column)."""
    out = []
    for row in rows:
        curves = json.loads(row["curves"]) if row.get("curves") else {}
        for key, values in curves.items():
            split, metric = key.split("_", 1)
            for layer, value in enumerate(values, start=1):
                out.append({"name": row["name"], "hash": row["hash"], "split": split, "metric": metric, "layer": layer, "value": value})
    return out


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def write_table(out_dir: Path, rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Write ``results.csv`` (and Parquet when possible) atomically; returns the frame."""
    import pandas as pd

    df = pd.DataFrame(rows)
    ordered = [c for c in ORDER if c in df.columns] + [c for c in df.columns if c not in ORDER]
    df = df[ordered]
    _atomic_write(out_dir / "results.csv", lambda p: df.to_csv(p, index=False))
    try:
        import pyarrow  # noqa: F401

        _atomic_write(out_dir / "results.parquet", lambda p: df.to_parquet(p, index=False))
    except ImportError:
        pass
    curves = pd.DataFrame(curve_rows(rows))
    _atomic_write(out_dir / "curves.csv", lambda p: curves.to_csv(p, index=False))
    return df


def read_table(run_dir: str | Path, unique: bool = True) -> pd.DataFrame:
    """A run's ``results.csv``, checked: a corrupt, truncated or column-less table is a one-line error
    naming the file and the problem (nothing downstream sees a half-read table). ``unique=False``: rows repeating a
    name pass (a search's resume and ``nasdun repair`` read such a table to say how to fix it, and to fix it)."""
    import json

    import pandas as pd

    path = Path(run_dir) / "results.csv"
    if not path.is_file():
        raise NasdunError(f"no results table at {str(path)!r}; expected a run directory written by nasdun")
    import warnings

    if not path.read_bytes().endswith(b"\n"):  # nasdun writes whole lines (atomically); a file cut mid-row ends without one
        raise NasdunError(f"results table {str(path)!r} ends inside a row (cut short?); expected a table written by nasdun")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)  # a row with a field too many would shift every column
            df = pd.read_csv(path, keep_default_na=False, na_values=[""], index_col=False)
    except (pd.errors.ParserError, pd.errors.ParserWarning, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        raise NasdunError(
            f"results table {str(path)!r} cannot be read ({str(err).strip().splitlines()[0][:160]}); it is corrupt or truncated"
        ) from None
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise NasdunError(f"results table {str(path)!r} lacks column(s) {missing}; expected a table written by nasdun (corrupt or truncated?)")
    for col in [c for c in NUMBERS if c in df.columns]:
        bad = pd.to_numeric(df[col], errors="coerce").isna() & df[col].notna()
        if bad.any():
            raise NasdunError(
                f"results table {str(path)!r}: column {col} holds {df[col][bad].iloc[0]!r} in row {int(bad.idxmax()) + 2}; expected numbers"
            )
        if col in FLOATS:
            df[col] = pd.to_numeric(df[col]).astype(float)
    for i, text in enumerate(df["genotype"]):
        try:
            json.loads(str(text))
        except json.JSONDecodeError:
            raise NasdunError(
                f"results table {str(path)!r}: row {i + 2} has no valid genotype (cut short?); expected a table written by nasdun"
            ) from None
    bad_status = ~df["status"].astype(str).isin(STATUSES)
    if bad_status.any():
        row = int(bad_status.idxmax())
        raise NasdunError(f"results table {str(path)!r}: row {row + 2} has status {df['status'][row]!r}; expected one of {', '.join(STATUSES)}")
    twice = df["name"].astype(str).duplicated()
    if unique and twice.any():  # a row counted twice would weigh twice in every average, heatmap and verdict
        row = int(twice.idxmax())
        raise NasdunError(f"results table {str(path)!r}: row {row + 2} repeats the name {df['name'][row]!r}; expected one row per network")
    if "trial_number" in df.columns:
        number = pd.to_numeric(df["trial_number"], errors="coerce")
        wrong = df["trial_number"].notna() & (number.isna() | (number % 1 != 0) | (number < 0))
        if wrong.any():
            row = int(wrong.idxmax())
            raise NasdunError(f"results table {str(path)!r}: row {row + 2} has trial_number {df['trial_number'][row]!r}; expected an integer >= 0")
    return df


def save_params(out_dir: Path, named: Mapping[str, tuple[Genotype, dict[str, torch.Tensor]]], meta: Mapping[str, Any]) -> None:
    import torch

    blob = {"meta": dict(meta), "networks": {name: {"genotype": g.to_json(), "params": p} for name, (g, p) in named.items()}}
    _atomic_write(out_dir / "params.pt", lambda path: torch.save(blob, path))


def read_params(path: str | Path, device: str = "cpu") -> dict[str, Any]:
    """A run's ``params.pt`` (``{"meta": ..., "networks": {name: {"genotype", "params"}}}``); a file that is not one is a
    one-line error naming it, never torch's unpickling traceback."""
    import torch

    try:
        blob = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # a truncated or foreign file: torch raises several types
        first = (str(err).splitlines() or [""])[0][:120]
        raise NasdunError(
            f"{str(path)!r} cannot be read as a run's parameters ({type(err).__name__}: {first}); expected the params.pt nasdun writes"
        ) from None
    if not isinstance(blob, dict) or not isinstance(blob.get("networks"), dict) or not isinstance(blob.get("meta"), dict):
        raise NasdunError(f"{str(path)!r} is not a run's parameters file; expected the params.pt nasdun writes (meta and networks)")
    return blob


def load_network(run_dir: str | Path, name: str, device: str = "cpu") -> Any:
    """The trained network ``name`` of a run as an :class:`~trainers.model.UnrolledLISTA` with P = 1."""
    from trainers.model import UnrolledLISTA
    from trainers.problems.make import dictionary

    path = Path(run_dir) / "params.pt"
    if not path.is_file():
        raise NasdunError(f"no saved parameters at {str(path)!r}")
    blob = read_params(path, device)
    nets = blob["networks"]
    if name not in nets:
        raise NasdunError(f"no network {name!r} in {str(path)!r}; expected one of: {', '.join(nets)}")
    meta = blob["meta"]
    D = dictionary(meta["setting"])  # the initialisation's D; every trained value comes from the file
    model = UnrolledLISTA([Genotype.from_json(nets[name]["genotype"])], D, lam=meta["lam"], coef_init=meta["coef_init"])
    model.load_candidate_state(0, nets[name]["params"])
    return model.to(device)


def check_out_dir(out: str | Path, force: bool = False, hint: str = "or pass force=True") -> Path:
    """``out`` as a directory to write into, checked but not created: a file is refused, and a non-empty directory
    unless ``force``; ``hint`` says how to allow it (empty: say nothing)."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise NasdunError(f"out={str(path)!r} is a file; expected a directory", ("out",))
    if path.is_dir() and any(path.iterdir()) and not force:
        raise NasdunError(f"out={str(path)!r} is not empty; choose a new directory" + (f" ({hint})" if hint else ""), ("out", "force", "resume"))
    check_writable(path)
    return path


def check_writable(path: Path) -> None:
    """Refuse, before any work, a place that cannot be written: the nearest existing folder of ``path`` must take a new
    entry (tried: a folder made and removed at once, as root ignores permission bits but not a read-only mount)."""
    import tempfile

    here = path if path.is_dir() else path.parent
    while not here.exists() and here != here.parent:
        here = here.parent
    try:
        if not here.is_dir():
            raise NotADirectoryError(20, "Not a directory", str(path))
        os.rmdir(tempfile.mkdtemp(prefix=".nasdun-probe-", dir=here))
    except OSError as err:
        raise place_error(OSError(err.errno, err.strerror, str(path))) from None  # named as the user gave it


def check_study_dir(out: str | Path, own: Callable[[str], bool], force: bool = False) -> Path:
    """``out`` for a study that continues its own earlier work there: a file is refused, and a directory holding
    entries the study does not write (``own(name)`` false) unless ``force``; so a user's files are never written among."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise NasdunError(f"out={str(path)!r} is a file; expected a directory", ("out",))
    foreign = sorted(p.name for p in path.iterdir() if not own(p.name)) if path.is_dir() else []
    if foreign and not force:
        listed = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise NasdunError(
            f"out={str(path)!r} holds files this command did not write ({listed}); choose a new directory (or pass force=True)", ("out", "force")
        )
    return path


def check_out_file(out: str | Path, force: bool = False) -> Path:
    """``out`` as a file to write: refuse a directory, and an existing file unless ``force``."""
    path = Path(out)
    if path.is_dir():
        raise NasdunError(f"out={str(path)!r} is a directory; expected a file path", ("out",))
    if path.exists() and not force:
        raise NasdunError(f"out={str(path)!r} exists; choose a new file (or pass force=True)", ("out", "force"))
    check_writable(path)
    return path


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    _atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=True, default=str)))


def prepare_out_dir(out: str | Path, overwrite: bool = False, hint: str = "or pass force=True") -> Path:
    """Create ``out``; refuse a non-empty one unless ``overwrite`` (nothing is lost silently).
    ``hint`` names the parameter that allows it (e.g. "or pass force=True"), where the command has one."""
    path = check_out_dir(out, overwrite, hint)
    path.mkdir(parents=True, exist_ok=True)
    return path


LATEST = "latest"


def point_latest(run: str | Path) -> Path | None:
    """Point ``<run's folder>/latest`` at ``run`` (a relative symbolic link, replaced atomically), so the next command
    can name ``runs/latest``. Returns the link, or None where a file or folder of the user's holds that name."""
    import os

    run = Path(run)
    link = run.parent / LATEST
    if link.exists() and not link.is_symlink() or not run.is_dir():
        return None
    tmp = run.parent / f".{LATEST}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(run.name, target_is_directory=True)
    os.replace(tmp, link)
    return link


# -- reading tables: several runs, the trained rows, the top-k ------------------------------------
def load_runs(runs: Sequence[str | Path], sampler: str | None = None) -> pd.DataFrame:
    """Concatenate the results tables of ``runs`` (a ``run`` column names each), optionally one sampler's rows."""
    import pandas as pd

    if not runs:
        raise NasdunError("no run directory given; expected one or more directories holding results.csv")
    frames = []
    for run in runs:
        df = read_table(run)
        missing = sorted({"hash", "genotype", "status", "val_nmse_db"} - set(df.columns))
        if missing:
            raise NasdunError(f"results table of {str(run)!r} lacks column(s) {missing}")
        frames.append(df.assign(run=str(run)))
    df = pd.concat(frames, ignore_index=True)
    if sampler is not None:
        if "sampler" not in df.columns or not (df["sampler"] == sampler).any():
            have = sorted(set(df["sampler"])) if "sampler" in df.columns else []
            raise NasdunError(f"no rows of sampler {sampler!r} in the given runs; they hold {have}")
        df = df[df["sampler"] == sampler]
    return df


def only_value(df: pd.DataFrame, column: str, run: str) -> Any:
    """The one value ``column`` takes in a run's table; a one-line error if it takes none or several."""
    values = sorted({str(v) for v in df[column].dropna()}) if column in df.columns else []
    if len(values) != 1:
        raise NasdunError(f"results table of {run!r} has {column} values {values}; expected exactly one")
    return values[0]


def trained_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows trained to the end of their protocol (status ``ok``; with successive halving, the
    top rung) with a finite validation nmse_db: the only rows rankings and averages use."""
    import numpy as np

    return df[(df["status"] == "ok") & np.isfinite(df["val_nmse_db"].astype(float))]


def resolve_top_k(df: pd.DataFrame, k: int) -> tuple[int, str]:
    """The k that ``average``, ``heatmap``, ``report`` and ``compare`` use: ``k``, or every trained distinct
    genotype when the runs hold fewer (with a note saying so); a one-line error when they hold none."""
    if k < 1:
        raise NasdunError(f"top_k={k}; expected an integer >= 1", ("top_k",))
    n = int(trained_rows(df)["hash"].nunique())
    if n == 0:
        raise NasdunError("the runs hold no candidate trained to the end (status ok); nothing to rank")
    if k > n:
        return n, f"the runs hold {n} distinct genotypes trained to the end, so the top-{n} (all of them) are used, not the top-{k} asked for"
    return k, ""


def ranked(df: pd.DataFrame) -> pd.DataFrame:
    """The distinct genotypes of :func:`trained_rows`, best validation nmse_db first, ties broken by genotype hash (the
    order never depends on row order); a genotype in several rows counts once, at its best."""
    return trained_rows(df).sort_values(["val_nmse_db", "hash"], kind="mergesort").drop_duplicates("hash", keep="first")


def top_k(df: pd.DataFrame, k: int) -> pd.DataFrame:
    """The k best distinct genotypes by validation nmse_db (:func:`ranked`); a one-line error for more than there are."""
    ok = ranked(df)
    if k < 1:
        raise NasdunError(f"top_k={k}; expected an integer >= 1", ("top_k",))
    if k > len(ok):
        raise NasdunError(f"top_k={k} exceeds the {len(ok)} successfully trained distinct genotypes in the results", ("top_k",))
    return ok.head(k)
