"""Sampler and search analysis: best-so-far curves, top-k agreement of two runs, NMSE vs connections."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.readers.average import frequencies
from analysis.readers.heatmaps import check_same_size, conn_vector
from analysis.readers.plots import best_so_far_figure, scatter_figure
from nasdun.runs.results import resolve_top_k, top_k, trained_rows
from search_spaces.genotype import Genotype


def median_or_none(values: list[int | None]) -> float | None:
    """Median with "not reached" (None) as +infinity; None when the median itself is not reached."""
    med = float(np.median([math.inf if v is None else v for v in values]))
    return None if math.isinf(med) else med


def best_so_far(df: pd.DataFrame) -> dict[str, list[float]]:
    """Per run and sampler: the best validation nmse_db after each trained candidate (in trial order).
    Curves are named by the sampler alone when the rows come from one run, else ``run: sampler``."""
    out: dict[str, list[float]] = {}
    order = "trial_number" if "trial_number" in df.columns else None
    sampler_col = df["sampler"].astype(str) if "sampler" in df.columns else pd.Series("run", index=df.index)
    several = "run" in df.columns and df["run"].nunique() > 1
    key = (df["run"].map(lambda r: Path(str(r)).name) + ": " + sampler_col) if several else sampler_col
    for sampler, rows in df.groupby(key, sort=False):
        rows = rows.sort_values(order) if order else rows
        vals = np.where((rows["status"] == "ok") & np.isfinite(rows["val_nmse_db"].astype(float)), rows["val_nmse_db"].astype(float), np.inf)
        out[str(sampler)] = np.minimum.accumulate(vals).tolist()
    return out


def topk_agreement(a: pd.DataFrame, b: pd.DataFrame, k: int) -> dict[str, Any]:
    """Overlap of two runs' top-k genotype sets and the correlation of their connection frequencies
    (k is capped at the smaller run's count of trained genotypes, as everywhere else)."""
    k = min(resolve_top_k(a, k)[0], resolve_top_k(b, k)[0])
    ta, tb = top_k(a, k), top_k(b, k)
    fa = frequencies([Genotype.from_json(g) for g in ta["genotype"]])
    fb = frequencies([Genotype.from_json(g) for g in tb["genotype"]])
    check_same_size(fa, fb)
    va, vb = conn_vector(fa), conn_vector(fb)
    # no correlation where a vector is constant or empty (K = 2 has no skip connection to count): NaN, not a numpy warning
    corr = float(np.corrcoef(va, vb)[0, 1]) if va.size > 1 and va.std() > 0 and vb.std() > 0 else float("nan")
    shared = set(ta["hash"]) & set(tb["hash"])
    return {"k": k, "overlap": len(shared), "overlap_fraction": len(shared) / k, "conn_freq_pearson": corr}


def best_trained(df: pd.DataFrame) -> dict[str, Any]:
    """The run's best candidate trained to the end of its protocol (status ``ok``; with successive
    halving, the top rung), chosen by validation nmse_db, and how many candidates it took."""
    ok = trained_rows(df)
    counts = {"trained": len(df), "fully_trained": len(ok), "stopped": int((df["status"] == "stopped").sum())}
    if ok.empty:
        return {**counts, "name": None, "val_nmse_db": float("nan"), "test_nmse_db": float("nan")}
    best = ok.loc[ok["val_nmse_db"].astype(float).idxmin()]
    return {**counts, "name": str(best["name"]), "val_nmse_db": float(best["val_nmse_db"]), "test_nmse_db": float(best["test_nmse_db"])}


def search_figures(df: pd.DataFrame, out_dir: Path) -> dict[str, Any]:
    """The best found network so far per run and sampler, against each run's hand designs (a reference line at the
    best, every one marked), and validation NMSE against extra connections, hand designs apart; returns the data drawn."""
    from nasdun.runs.verdict import display, hand_design_rows, preset_of

    hand_rows = hand_design_rows(df)
    curves = best_so_far(df[~hand_rows]) if (~hand_rows).any() else {}
    several = "run" in df.columns and df["run"].nunique() > 1
    hand: dict[str, dict[str, float]] = {}
    for _, r in df[hand_rows & (df["status"] == "ok")].iterrows():
        run = Path(str(r["run"])).name if several else ""
        hand.setdefault(run, {})[display(preset_of(r.to_dict()))] = float(r["val_nmse_db"])
    best_so_far_figure(curves, out_dir, "best_so_far", hand, xlabel="found candidates trained (hand designs: the reference lines)")
    ok = df[(df["status"] == "ok")].copy()
    ok["lm_lags"] = [sum(len(q) for q in Genotype.from_json(g).lags) for g in ok["genotype"]]
    sampler = ok["sampler"].astype(str) if "sampler" in ok.columns else pd.Series("found", index=ok.index)
    ok["kind"] = np.where(hand_rows[ok.index], "hand design", "found (" + sampler + ")")
    scatter_figure(ok, "n_extra", "val_nmse_db", "kind", out_dir, "nmse_vs_connections", "validation NMSE against extra connections",
                   labels={"n_extra": "extra connections (LWA inputs beyond x(k-1))", "val_nmse_db": "validation nmse_db (dB)"})  # fmt: skip
    return {"best_so_far": curves, "hand_designs": hand, "scatter": ok[["n_extra", "lm_lags", "val_nmse_db", "kind"]]}
