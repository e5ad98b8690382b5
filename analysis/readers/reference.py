"""A long protocol's training of a fidelity study's networks, kept as data: the reference table.

``paper`` takes some 20 h of CPU for the 38 networks of the fidelity study at ``small``, K = 8
(docs/results/fidelity.md); its results are kept as one CSV file (``trainers/protocols/references/``)
so that any protocol can be ranked against them without retraining ``paper``
(``nasdun fidelity --reference-table FILE``). One row per network:

* where it comes from: ``name`` (``r000``... or a hand design), ``kind``, ``chunk`` (the training run of
  the reference that held it: :func:`analysis.studies.fidelity.reference_chunks`, with the study's ``chunk_size`` and
  number of random genotypes ``study_genotypes``), ``setting``, ``layers``, ``seed``
  (the run seed: training set and batch order), ``genotype_seed`` (the random genotypes' draw),
  ``protocol``, the genotype (``genotype`` as JSON, its ``hash``, ``neurons`` one letter a layer);
* what the reference reached: ``status`` (``ok`` or ``failed``), ``reason``, ``diverged_layer`` and
  ``diverged_value_db`` (the validation nmse_db that crossed the protocol's limit), validation and test
  ``nmse_db`` and ``nmse_db_mean`` (docs/design.md §4), ``iterations``, and the validation nmse_db at
  the end of each layer (``val_nmse_db_layer1``...), empty where it was not recorded;
* other protocols' validation nmse_db measured on the same networks and data (``<protocol>_val_nmse_db``).

A written table is complete where a run directory is at hand (:func:`reference_rows`); the ``paper`` table
of 2026-12-01 was rebuilt from the study's report, whose runs were lost with their machine: its values
are rounded to 0.01 dB and it has no ``nmse_db_mean`` nor per-layer values.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nasdun.core.errors import NasdunError
from search_spaces.neurons import letter
from trainers.protocols import HERE as PROTOCOLS_DIR

REFERENCES = PROTOCOLS_DIR / "references"
REQUIRED = ("name", "kind", "chunk", "chunk_size", "study_genotypes", "setting", "layers", "seed", "genotype_seed", "protocol", "hash",
            "genotype", "status", "val_nmse_db", "test_nmse_db", "iterations")  # fmt: skip


def reference_path(name: str | Path) -> Path:
    """A reference table by file path, or by the name of one shipped in ``trainers/protocols/references`` (e.g. ``paper_small_k8``)."""
    path = Path(name)
    if path.suffix == ".csv":
        if not path.is_file():
            raise NasdunError(
                f"reference_table={str(path)!r} does not exist; expected a reference CSV or one of: {', '.join(shipped())}", ("reference_table",)
            )
        return path
    if (REFERENCES / f"{name}.csv").is_file():
        return REFERENCES / f"{name}.csv"
    raise NasdunError(
        f"reference_table={str(name)!r} is neither a .csv file nor a shipped reference; expected one of: {', '.join(shipped())}", ("reference_table",)
    )


def shipped() -> list[str]:
    return sorted(p.stem for p in REFERENCES.glob("*.csv"))


def load_reference(name: str | Path) -> pd.DataFrame:
    """The reference table, indexed by network name, with the genotype decoded into ``genotype_obj``.

    Refused in one line: a missing column, more than one setting, K, seed, genotype seed or protocol,
    a genotype whose hash is not the row's, a status other than ok / failed."""
    from search_spaces.genotype import Genotype

    path = reference_path(name)
    try:
        df = pd.read_csv(path, keep_default_na=True)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise NasdunError(
            f"reference table {path} is not a CSV table ({str(err).splitlines()[0]}); expected the columns of analysis/readers/reference.py"
        ) from None
    if df.empty:
        raise NasdunError(f"reference table {path} has no rows; expected one row per network")
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise NasdunError(f"reference table {path} lacks the column(s) {', '.join(missing)}; expected the columns of analysis/readers/reference.py")
    for col in ("setting", "layers", "seed", "genotype_seed", "protocol"):
        if df[col].nunique() != 1:
            raise NasdunError(f"reference table {path} mixes {col} values {sorted(map(str, df[col].unique()))}; expected one study per file")
    bad = sorted(set(df["status"]) - {"ok", "failed"})
    if bad:
        raise NasdunError(f"reference table {path}: status {bad}; expected ok or failed")
    for col in ("val_nmse_db", "test_nmse_db", "iterations", "layers", "seed", "genotype_seed", "chunk", "chunk_size"):
        values = pd.to_numeric(df[col], errors="coerce")
        must = df["status"] == "ok" if col.endswith("nmse_db") else pd.Series(True, index=df.index)
        bad_rows = df.loc[must & ~np.isfinite(values), "name"]  # NaN (not a number) or infinite
        if len(bad_rows):
            raise NasdunError(
                f"reference table {path}: column {col} is not a finite number for {', '.join(map(str, bad_rows[:3]))}; expected numbers"
            )
        df[col] = values
    df["reason"] = df["reason"].astype(object).where(df["reason"].notna(), "") if "reason" in df.columns else ""
    df["genotype_obj"] = [Genotype.from_json(text) for text in df["genotype"]]
    wrong = [n for n, g, h in zip(df["name"], df["genotype_obj"], df["hash"], strict=True) if g.hash != str(h)]
    if wrong:
        raise NasdunError(f"reference table {path}: genotype and hash disagree for {', '.join(wrong)}")
    if not df["name"].is_unique:
        raise NasdunError(f"reference table {path} names {sorted(df['name'][df['name'].duplicated()])} twice; expected one row per network")
    df = df.set_index("name")
    df.attrs.update({col: df[col].iloc[0] for col in ("setting", "layers", "seed", "genotype_seed", "protocol")}, path=str(path))
    return df


def as_results(ref: pd.DataFrame) -> pd.DataFrame:
    """The reference in the shape of a run's results table (what :mod:`analysis.studies.fidelity` ranks)."""
    out = ref[["status", "val_nmse_db", "test_nmse_db", "iterations"]].copy()
    out["reason"] = ref["reason"]
    out["rung"] = 0
    return out


def reference_rows(results: pd.DataFrame, run_meta: dict[str, Any], chunk: int, genotype_seed: int, kind: dict[str, str]) -> list[dict[str, Any]]:
    """The reference table's rows of one finished run (its ``results.csv`` as a frame indexed by name, and ``run.json``)."""
    from search_spaces.genotype import Genotype

    rows = []
    K = None
    for name, r in results.iterrows():
        g = Genotype.from_dict(run_meta["archs"][name])
        K = g.layers
        layer_vals = {int(st["layer"]): float(st["best_val_nmse_db"]) for st in run_meta["stages"].get(name, [])}
        failed = r["status"] == "failed"
        reason = str(r.get("reason", "") or "")
        row = {
            "name": name, "kind": kind.get(name, "random"), "chunk": chunk, "setting": run_meta["setting"]["name"], "layers": K,
            "seed": run_meta["seed"], "genotype_seed": genotype_seed, "protocol": run_meta["protocol"]["name"], "hash": g.hash,
            "neurons": "".join(letter(n) for n in g.neurons), "genotype": g.to_json(), "status": "failed" if failed else "ok",
            "reason": reason, "diverged_layer": _diverged_layer(reason if failed else ""),
            "diverged_value_db": _diverged_value(reason if failed else ""),
            "iterations": int(r["iterations"]),
        }  # fmt: skip
        for col in ("val_nmse_db", "test_nmse_db", "val_nmse_db_mean", "test_nmse_db_mean"):
            row[col] = math.nan if failed else float(r.get(col, math.nan))
        for k in range(1, K + 1):
            row[f"val_nmse_db_layer{k}"] = layer_vals.get(k, math.nan)
        rows.append(row)
    return rows


def _diverged_layer(reason: str) -> float:
    return float(reason.split("diverged at layer ")[1].split()[0]) if "diverged at layer " in reason else math.nan


def _diverged_value(reason: str) -> float:
    if "validation nmse_db " not in reason:
        return math.nan
    try:
        return float(reason.split("validation nmse_db ")[1].split()[0])
    except ValueError:
        return math.nan


def write_reference(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write reference rows as a table :func:`load_reference` reads back."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out, index=False)
    return out
