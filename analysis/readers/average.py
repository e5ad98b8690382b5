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

from nasdun.core.errors import NasdunError
from nasdun.runs.results import top_k
from search_spaces.genotype import Genotype, common_size
from search_spaces.neurons import NEURONS
from search_spaces.weights import DEFAULT_WEIGHTS, WEIGHTS


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
