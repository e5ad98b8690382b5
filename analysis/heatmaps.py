"""`nasdun heatmap`: the paper's connectivity figures from a results table, or of one genotype."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.average import Frequencies, average, frequencies, load_runs
from analysis.plots import connectivity_figure, lag_figure, neuron_figure
from nasdun.errors import NasdunError
from search_spaces.genotype import Genotype


def run_heatmaps(
    runs: Sequence[str | Path], out: str | Path, top: int = 50, diff: int | None = None, sampler: str | None = None, threshold: float = 0.5
) -> dict[str, pd.DataFrame]:
    """Connection, lag and neuron figures of the top-``top`` average; with ``diff``, also top-``top`` minus top-``diff``."""
    df = load_runs(runs, sampler)
    _, freq, _ = average(df, top, threshold)
    out_dir = Path(out)
    tag = f"top{top}"
    mats = {
        "conn": connectivity_figure(freq, out_dir, f"conn_{tag}", f"connection frequency, top-{top}"),
        "lags": lag_figure(freq, out_dir, f"lags_{tag}", f"LM-lag frequency, top-{top}"),
        "neurons": neuron_figure(freq, out_dir, f"neurons_{tag}", f"neuron types, top-{top}"),
    }
    if diff is not None:
        _, other, _ = average(df, diff, threshold)
        delta = Frequencies(freq.conn - other.conn, freq.lags - other.lags, freq.neurons - other.neurons, freq.neuron_names, freq.count)
        mats["diff"] = connectivity_figure(delta, out_dir, f"conn_top{top}_minus_top{diff}", f"top-{top} minus top-{diff}", diverging=True)
    return mats


def genotype_heatmap(genotype: Genotype, name: str, out: str | Path) -> pd.DataFrame:
    """The connectivity of one genotype (a hand design or a genotype file) as a 0/1 heatmap."""
    return connectivity_figure(frequencies([genotype]), Path(out), f"conn_{name}", f"connectivity of {name} (K={genotype.layers})")


def conn_vector(freq: Frequencies) -> np.ndarray:
    """The optional connections' frequencies (i <= k-2), flattened in a fixed order."""
    K = freq.layers
    return np.array([freq.conn[k - 1, i - 1] for k in range(3, K + 1) for i in range(1, k - 1)])


def check_same_size(a: Frequencies, b: Frequencies) -> None:
    if a.conn.shape != b.conn.shape:
        raise NasdunError(f"runs have different K ({a.layers} vs {b.layers}); expected the same design space")
