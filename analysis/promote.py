"""`nasdun promote`: the second phase of a screening search — train a run's top-k fully.

A search run with a cheap protocol ranks many candidates; ``promote`` takes its best ``k``
distinct genotypes by validation nmse_db (status ``ok`` only: with successive halving, the
top rung) and trains them together under a longer protocol, on the run's own setting and
seed (read from its rows), so the data are the ones the screening saw. It writes the usual
results table in ``OUT`` and ``promote.md``: each finalist's screening value and rank next to
its promoted value and rank, and Spearman's rho between the two.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.average import load_runs, only_value, top_k
from analysis.fidelity import spearman
from search_spaces.genotype import Genotype


def run_promote(run: str | Path, k: int, protocol: str, out: str | Path, device: str = "auto", compile: bool = False) -> pd.DataFrame:
    """Train the top-``k`` of ``run`` under ``protocol`` into ``out``; returns the comparison table."""
    from nasdun.train import run_train

    df = load_runs([run])
    setting, seed = only_value(df, "setting", str(run)), int(only_value(df, "seed", str(run)))
    finalists = top_k(df, k)
    archs = [(str(r["name"]), Genotype.from_json(str(r["genotype"]))) for _, r in finalists.iterrows()]
    promoted = run_train(archs, setting, protocol, seed, out, device=device, compile=compile).set_index("name")
    table = pd.DataFrame(
        {
            "name": [n for n, _ in archs],
            "screen_val_nmse_db": finalists["val_nmse_db"].astype(float).to_numpy(),
            "screen_rank": range(1, len(archs) + 1),
        }
    ).set_index("name")
    table["val_nmse_db"] = promoted.loc[table.index, "val_nmse_db"].astype(float)
    table["test_nmse_db"] = promoted.loc[table.index, "test_nmse_db"].astype(float)
    table["rank"] = table["val_nmse_db"].rank(method="first").astype(int)
    rho = spearman(table["screen_val_nmse_db"], table["val_nmse_db"]) if len(table) > 2 else float("nan")
    lines = [
        f"Top {k} of `{run}` (setting `{setting}`, seed {seed}) trained with `{Path(protocol).stem}`; "
        f"Spearman between screening and promoted validation nmse_db: {rho:.3f}.",
        "",
        "| name | screening val | screening rank | promoted val | promoted test | promoted rank |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in table.iterrows():
        values = f"{r['screen_val_nmse_db']:.2f}", f"{r['val_nmse_db']:.2f}", f"{r['test_nmse_db']:.2f}"
        cells = [values[0], str(int(r["screen_rank"])), values[1], values[2], str(int(r["rank"]))]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    (Path(out) / "promote.md").write_text("\n".join(lines) + "\n")
    table.reset_index().to_csv(Path(out) / "promote.csv", index=False)
    return table.reset_index()
