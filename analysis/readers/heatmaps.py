"""`nasdun heatmap`: the paper's connectivity figures from a results table, or of one genotype."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.readers.average import Frequencies, average, frequencies
from analysis.readers.plots import connectivity_figure, lag_figure, neuron_figure
from nasdun.core.errors import NasdunError
from nasdun.runs.results import load_runs, resolve_top_k, trained_rows
from search_spaces.genotype import Genotype


def run_heatmaps(
    runs: Sequence[str | Path], out: str | Path, top: int = 50, diff: int | None = None, sampler: str | None = None, threshold: float = 0.5
) -> dict[str, Any]:
    """Connection, lag and neuron figures of the top-``top`` average, and the thresholded averaged architecture
    drawn as a genotype; with ``diff``, also top-``top`` minus top-``diff``. ``top`` above the runs' size uses
    all of them (``note`` says so, as in ``average`` and ``report``)."""
    df = load_runs(runs, sampler)
    k, note = resolve_top_k(df, top)
    if diff is not None:  # checked before any figure is drawn
        n = int(trained_rows(df)["hash"].nunique())
        if not 1 <= diff <= n or diff == k:
            raise NasdunError(
                f"diff={diff}; expected a top-k in 1..{n} (the runs' distinct genotypes trained to the end) other than top_k={k}", ("diff", "top_k")
            )
    g, freq, _ = average(df, k, threshold)
    out_dir = Path(out)
    trained = int(trained_rows(df)["hash"].nunique())
    names = ", ".join(Path(r).resolve().name for r in runs) + (f" ({sampler})" if sampler else "")
    pool = f"{names}: top-{k} of {trained} by validation nmse_db"
    tag = f"top{k}"
    res: dict[str, Any] = {
        "k": k,
        "note": note,
        "conn": connectivity_figure(freq, out_dir, f"conn_{tag}", f"connection frequency\n{pool}"),
        "lags": lag_figure(freq, out_dir, f"lags_{tag}", f"LM-lag frequency\n{pool}"),
        "neurons": neuron_figure(freq, out_dir, f"neurons_{tag}", f"neuron types\n{pool}"),
        "average": genotype_heatmap(g, f"average_{tag}", out_dir, f"averaged architecture\n{pool}, threshold {threshold:g}"),
    }
    if diff is not None:
        kd, _ = resolve_top_k(df, diff)
        _, other, _ = average(df, kd, threshold)
        kinds = {k: freq.weights.get(k, 0.0) - other.weights.get(k, 0.0) for k in freq.weights}
        delta = Frequencies(freq.conn - other.conn, freq.lags - other.lags, freq.neurons - other.neurons, freq.neuron_names, freq.count, kinds)
        res["diff"] = connectivity_figure(delta, out_dir, f"conn_top{k}_minus_top{kd}", f"top-{k} minus top-{kd} connection frequency\n{pool}",
                                          diverging=True, cbar_label=f"share in top-{k} minus share in top-{kd}",
                                          empty=f"every connection as frequent in the top-{k}\nas in the top-{kd}")  # fmt: skip
    return res


def genotype_heatmap(genotype: Genotype, name: str, out: str | Path, title: str | None = None) -> pd.DataFrame:
    """One genotype (a hand design, a genotype file, an averaged architecture): its connections and
    lags as 0/1 heatmaps and its neuron per layer; returns the connection matrix."""
    what = title or f"{name} (K={genotype.layers}, {genotype.weights} weights)"
    freq = frequencies([genotype])
    conn = connectivity_figure(freq, Path(out), f"conn_{name}", f"connectivity of {what}", cbar_label="1: connection open",
                               empty="no extra connection:\nevery layer reads x(k-1) alone")  # fmt: skip
    lag_figure(freq, Path(out), f"lags_{name}", f"LM lags of {what}", cbar_label="1: lag open", empty="no open lag:\nx(k) = u(k) at every layer")
    neuron_figure(freq, Path(out), f"neurons_{name}", f"neurons of {what}", ylabel="1: the layer's neuron")
    return conn


def conn_vector(freq: Frequencies) -> np.ndarray:
    """The optional connections' frequencies (i <= k-2), flattened in a fixed order."""
    K = freq.layers
    return np.array([freq.conn[k - 1, i - 1] for k in range(3, K + 1) for i in range(1, k - 1)])


def check_same_size(a: Frequencies, b: Frequencies) -> None:
    if a.conn.shape != b.conn.shape:
        raise NasdunError(f"runs have different K ({a.layers} vs {b.layers}); expected the same design space")
