"""Top-k averaged architectures (the design-space paper's "average architecture").

Reads results tables only. Conventions (documented in docs/analysis.md):

* **top-k**: rows with status ``ok`` and a finite validation ``nmse_db``, sorted by that value
  ascending; ties broken by genotype hash, so the selection never depends on row order. A
  genotype appearing in several rows (several runs) counts once, at its best value.
* **frequencies**: for each optional connection (destination k, origin i <= k-2) and LM lag
  (layer k, lag j), the fraction of the top-k that has it; for neurons, the share of each type
  per layer. The immediate predecessor is always on (frequency 1).
* **thresholding**: a connection or lag is kept where its frequency is ``>= threshold``
  (the edge counts as kept); the neuron of a layer is the most frequent type, ties going to
  the type registered first (soft, relu, lrelu): the ISTA default wins a tie.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nasdun.errors import NasdunError
from search_spaces.genotype import Genotype, common_size
from search_spaces.neurons import NEURONS
from search_spaces.weights import DEFAULT_WEIGHTS, WEIGHTS


def load_runs(runs: Sequence[str | Path], sampler: str | None = None) -> pd.DataFrame:
    """Concatenate the results tables of ``runs`` (a ``run`` column names each), optionally one sampler's rows."""
    from nasdun.results import read_table

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


def top_k(df: pd.DataFrame, k: int) -> pd.DataFrame:
    """The k best distinct genotypes by validation nmse_db (see the module docstring for ties)."""
    ok = trained_rows(df)
    ok = ok.sort_values(["val_nmse_db", "hash"], kind="mergesort").drop_duplicates("hash", keep="first")
    if k < 1:
        raise NasdunError(f"top_k={k}; expected an integer >= 1", ("top_k",))
    if k > len(ok):
        raise NasdunError(f"top_k={k} exceeds the {len(ok)} successfully trained distinct genotypes in the results", ("top_k",))
    return ok.head(k)


@dataclass(frozen=True)
class Frequencies:
    """conn[k-1, i-1]: share with layer k reading x(i) (diagonal k-1 is 1); lags[k-1, j-1]; neurons[k-1, t]."""

    conn: np.ndarray
    lags: np.ndarray
    neurons: np.ndarray
    neuron_names: tuple[str, ...]
    count: int
    weights: dict[str, float] = field(default_factory=dict)  # weight parameterisation -> share (docs/design.md §2)

    @property
    def layers(self) -> int:
        return self.conn.shape[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "conn": self.conn.round(6).tolist(),
            "lags": self.lags.round(6).tolist(),
            "neurons": {name: self.neurons[:, t].round(6).tolist() for t, name in enumerate(self.neuron_names)},
            "weights": {name: round(share, 6) for name, share in self.weights.items()},
        }


def frequencies(genotypes: Sequence[Genotype]) -> Frequencies:
    K, J = common_size(genotypes, "the averaged set")
    names = tuple(NEURONS.names())
    conn, lags, neurons = np.zeros((K, K)), np.zeros((K, max(J, 1))), np.zeros((K, len(names)))
    for g in genotypes:
        for k in range(2, K + 1):
            conn[k - 1, [i - 1 for i in g.inputs[k - 1]]] += 1
        for k in range(1, K + 1):
            lags[k - 1, [j - 1 for j in g.lags[k - 1]]] += 1
            neurons[k - 1, names.index(g.neurons[k - 1])] += 1
    n = len(genotypes)
    kinds = {name: sum(g.weights == name for g in genotypes) / n for name in WEIGHTS.names()}
    return Frequencies(conn / n, lags / n, neurons / n, names, n, kinds)


def threshold_genotype(freq: Frequencies, threshold: float = 0.5) -> Genotype:
    """Connections and lags with frequency >= ``threshold``; the majority neuron per layer and the majority weight
    parameterisation (the first registered of those tied)."""
    if not 0.0 <= threshold <= 1.0 or math.isnan(threshold):
        raise NasdunError(f"threshold={threshold}; expected a fraction in [0, 1]", ("threshold",))
    K, J = freq.layers, freq.lags.shape[1]
    eps = 1e-9  # frequencies are ratios of integers; a value equal to the threshold is kept
    extra = {k: [i for i in range(1, k - 1) if freq.conn[k - 1, i - 1] >= threshold - eps] for k in range(3, K + 1)}
    lags = {k: [j for j in range(1, min(J, k - 1) + 1) if freq.lags[k - 1, j - 1] >= threshold - eps] for k in range(1, K + 1)}
    neurons = [freq.neuron_names[int(np.argmax(freq.neurons[k]))] for k in range(K)]  # argmax: first of the tied
    kinds = freq.weights or {DEFAULT_WEIGHTS: 1.0}
    weights = max(kinds, key=lambda name: (kinds[name], -list(kinds).index(name)))
    return Genotype.build(K, extra, neurons, lags, max_lag=J, weights=weights)


def average(df: pd.DataFrame, top: int = 50, threshold: float = 0.5) -> tuple[Genotype, Frequencies, pd.DataFrame]:
    """The averaged genotype of the top ``top`` rows of ``df``, its frequencies and the members."""
    members = top_k(df, top)
    freq = frequencies([Genotype.from_json(g) for g in members["genotype"]])
    return threshold_genotype(freq, threshold), freq, members


def write_average(path: str | Path, genotype: Genotype, freq: Frequencies, members: pd.DataFrame, **meta: Any) -> None:
    """JSON that ``nasdun train/retrain --arch`` reads back (its ``genotype`` key)."""
    data = {
        "genotype": genotype.to_dict(),
        "hash": genotype.hash,
        "arch_string": genotype.to_arch_string(),
        "spec": genotype.to_spec(),
        "n_extra": genotype.n_extra,
        "frequencies": freq.to_dict(),
        "members": [{"hash": h, "val_nmse_db": float(v)} for h, v in zip(members["hash"], members["val_nmse_db"], strict=True)],
        **meta,
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2))
