"""How well does a predictor rank candidates it has not seen, after n results? (issue 18, item 2)

Offline, from a finished `nasdun compare-samplers` study: per search seed (the candidates of all samplers at
that seed share one dataset, so their values are comparable), every distinct genotype with its validation
nmse_db. For each training-set size n, ``--repeats`` random splits: fit each model on n candidates, rank the
rest, and report the median Spearman rho (prediction vs value on the held-out ones) and how often the
model's top-1 of the held-out candidates is in their true top 10 %. Models: the predictor sampler's own
ensemble (:class:`nasdun.orchestration.samplers._predictor.PredictorSampler`, the mean of its members), and for
comparison ridge regression on the same encoding, ridge on the share features alone, and a random forest.

    python benchmarks/predictor_quality.py runs/samplers8 --sizes 8,16,24,32,64,96 --repeats 10

Prints a markdown table (and writes it to ``--out`` if given).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.studies.surrogate_search import pools  # noqa: E402
from nasdun.orchestration.samplers._history import Observation  # noqa: E402
from nasdun.orchestration.samplers._predictor import PredictorSampler  # noqa: E402
from nasdun.runs.ranks import spearman  # noqa: E402
from search_spaces.genotype import Genotype, classic_space  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", type=Path)
    ap.add_argument("--sizes", default="8,16,24,32,64,96")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import Ridge

    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for seed, pool in pools(args.study).items():
        genotypes = [Genotype.from_json(g) for g in pool["genotype"]]
        space = classic_space(genotypes[0].layers, genotypes[0].max_lag)
        params = [space.encode(g) for g in genotypes]
        probe = PredictorSampler(space.decisions(), seed=seed)
        X = np.stack([probe.encode(p) for p in params])
        shares = X[:, probe._shares.shape[0] :]
        y = pool["val_nmse_db"].to_numpy()
        for n in sizes:
            if n >= len(y) - 5:
                continue
            for rep in range(args.repeats):
                rng = np.random.default_rng([seed, n, rep])
                order = rng.permutation(len(y))
                train, test = order[:n], order[n:]
                top10 = set(test[np.argsort(y[test])[: max(1, len(test) // 10)]])
                predictions = {}
                for model in PredictorSampler.MODELS:
                    sampler = PredictorSampler(space.decisions(), seed=rep, model=model)
                    sampler.history = [Observation(i, params[j], float(y[j])) for i, j in enumerate(train)]
                    predictions[f"predictor, {model} ensemble"] = np.mean([m.predict(X[test]) for m in sampler._fit()], axis=0)
                predictions |= {
                    "ridge": Ridge(alpha=1.0).fit(X[train], y[train]).predict(X[test]),
                    "ridge, shares only": Ridge(alpha=1.0).fit(shares[train], y[train]).predict(shares[test]),
                    "one random forest of 200 trees": RandomForestRegressor(200, random_state=rep).fit(X[train], y[train]).predict(X[test]),
                }
                for model, pred in predictions.items():
                    rows.append(
                        {
                            "seed": seed,
                            "n": n,
                            "model": model,
                            "spearman": spearman(pred, y[test]),
                            "top1_in_top10pct": test[int(np.argmin(pred))] in top10,
                        }
                    )
        print(f"seed {seed}: {len(y)} distinct candidates", file=sys.stderr, flush=True)
    df = pd.DataFrame(rows)
    table = df.groupby(["model", "n"]).agg(spearman=("spearman", "median"), hit=("top1_in_top10pct", "mean")).reset_index()
    lines = ["| model | " + " | ".join(f"n = {n}" for n in sizes) + " |", "|---|" + "---|" * len(sizes)]
    for model, g in table.groupby("model", sort=False):
        cells = {int(r.n): f"{r.spearman:.2f} ({100 * r.hit:.0f} %)" for r in g.itertuples()}
        lines.append(f"| {model} | " + " | ".join(cells.get(n, "—") for n in sizes) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
