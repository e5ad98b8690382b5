"""A genotype-aware model of the `paper` value from a cheap protocol's value, leave-one-out over the reference.

Issue 31 asks whether a model from a short run (and the genotype) to the `paper` value ranks better per unit of
cost than training longer. The reference table does not hold the short runs' per-layer curves (they were lost
with their machines), so the model here uses what it does hold: each cheap protocol's final validation nmse_db
and five counts read from the genotype (extra connections, open LM lags, soft-threshold and ReLU layers, soft
layers in the second half). For each network, a ridge regression (lambda = 1 on every weight, the intercept's
included, fixed before looking) is fitted on the other networks that `paper` trains without divergence and
predicts the left-out one, whose `paper` value it never sees. Divergent networks rank last in the `paper` order, as in
fidelity.md. Prints, per protocol: Spearman (all 36, and the 33 `paper` trains) and median |prediction - paper|,
raw and modelled, beside the protocol's cost ratio from agreement.yaml.

    python benchmarks/fidelity_model.py
"""

import numpy as np
import pandas as pd

from analysis.readers.reference import load_reference
from nasdun.core.config import load_yaml
from nasdun.runs.ranks import spearman
from search_spaces.genotype import Genotype
from trainers.protocols import HERE

LAMBDA = 1.0
PROTOCOLS = ("final", "ref1000", "s2x1000", "s3x500", "s2x370", "search", "s250")


def features(g: Genotype) -> list[float]:
    half = g.layers // 2
    return [g.n_extra, sum(len(lags) for lags in g.lags), g.neurons.count("soft"), g.neurons.count("relu"), g.neurons[half:].count("soft")]


def leave_one_out(x: np.ndarray, feats: np.ndarray, y: np.ndarray, ok: np.ndarray) -> np.ndarray:
    design = np.column_stack([np.ones(len(x)), x, feats])
    out = np.empty(len(x))
    for i in range(len(x)):
        fit = ok.copy()
        fit[i] = False
        a = design[fit]
        w = np.linalg.solve(a.T @ a + LAMBDA * np.eye(a.shape[1]), a.T @ y[fit])
        out[i] = design[i] @ w
    return out


def main() -> pd.DataFrame:
    ref = load_reference("paper_small_k8")
    ok = (ref["status"] == "ok").to_numpy()
    y = ref["val_nmse_db"].astype(float).to_numpy()
    order = np.where(ok, y, np.inf)  # a network `paper` trains to divergence ranks last
    feats = np.array([features(Genotype.from_json(str(g))) for g in ref["genotype"]], dtype=float)
    cost = load_yaml(HERE / "references" / "agreement.yaml")["paper_small_k8"]
    rows = []
    for proto in PROTOCOLS:
        x = ref[f"{proto}_val_nmse_db"].astype(float).to_numpy()
        pred = leave_one_out(x, feats, y, ok)
        rows.append({
            "protocol": proto, "cost_ratio": cost[proto]["cost_ratio"],
            "spearman_raw": spearman(x, order), "spearman_model": spearman(pred, order),
            "spearman_ok_raw": spearman(x[ok], y[ok]), "spearman_ok_model": spearman(pred[ok], y[ok]),
            "median_abs_delta_raw": float(np.median(np.abs(x[ok] - y[ok]))), "median_abs_delta_model": float(np.median(np.abs(pred[ok] - y[ok]))),
        })  # fmt: skip
    return pd.DataFrame(rows)


if __name__ == "__main__":
    print(main().round(3).to_string(index=False))
