"""`nasdun promote`: the second phase of a screening search — train a run's top-k fully.

A search run with a cheap protocol ranks many candidates; ``promote`` takes its best ``k``
distinct genotypes by validation nmse_db (status ``ok`` only: with successive halving, the
top rung) and trains them together under a longer protocol, on the run's own setting and
seed (read from its rows), so the data are the ones the screening saw. It writes the usual
results table in ``OUT`` and ``promote.md``: each finalist's screening value and rank next to
its promoted value and rank, and Spearman's rho between the two.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.average import load_runs, only_value, top_k
from analysis.fidelity import spearman
from search_spaces.genotype import Genotype


def run_promote(
    run: str | Path, k: int, protocol: str, out: str | Path, device: str = "auto", compile: bool = False, precision: str = "fp32", force: bool = False
) -> pd.DataFrame:
    """Train the top-``k`` of ``run`` under ``protocol`` into ``out``; returns the comparison table."""
    from nasdun.training import run_train

    df = load_runs([run])
    setting, seed = only_value(df, "setting", str(run)), int(only_value(df, "seed", str(run)))
    finalists = top_k(df, k)
    archs = [(str(r["name"]), Genotype.from_json(str(r["genotype"]))) for _, r in finalists.iterrows()]
    promoted = run_train(archs, setting, protocol, seed, out, device=device, overwrite=force, compile=compile, precision=precision).set_index("name")
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
    table["protocol"] = protocol
    table.reset_index().to_csv(Path(out) / "promote.csv", index=False)  # written last: the mark of a finished promotion
    return table.reset_index()


PROMOTED = "promoted"


def promote_search(run: str | Path, k: int, protocol: str, device: str = "auto", compile: bool = False) -> dict[str, Any]:
    """A search's own second phase (``promote_top`` > 0): its top-``k`` trained under ``protocol`` in RUN/promoted.

    Idempotent, so ``--resume`` can always call it: a finished promotion of the same finalists
    under the same protocol is read, not redone; a finished one of other finalists (the search
    went on after it) is kept as ``promoted.N`` and the new top-k promoted; an unfinished one
    (no ``promote.csv``: nothing of it was written) is redone. Returns the figures that go to
    ``search.json``: the promoted best by validation, its test value, the phase's wall time.
    """
    run, start = Path(run), time.perf_counter()
    out = run / PROMOTED
    names = [str(n) for n in top_k(load_runs([run]), k)["name"]]
    done = out / "promote.csv"
    reused = False
    if done.is_file():
        old = pd.read_csv(done)
        reused = [str(n) for n in old["name"]] == names and "protocol" in old and set(old["protocol"].astype(str)) == {protocol}
        if not reused:
            n = 1 + sum(1 for _ in run.glob(f"{PROMOTED}.*"))
            out.rename(run / f"{PROMOTED}.{n}")
    elif out.exists():
        shutil.rmtree(out)
    table = pd.read_csv(done) if reused else run_promote(run, k, protocol, out, device, compile)
    best = table.sort_values(["val_nmse_db", "name"], kind="mergesort").iloc[0]
    return {
        "top_k": k,
        "protocol": protocol,
        "reused": reused,
        "wall_s": 0.0 if reused else time.perf_counter() - start,
        "best": str(best["name"]),
        "best_val_nmse_db": float(best["val_nmse_db"]),
        "best_test_nmse_db": float(best["test_nmse_db"]),
        "spearman_screen_vs_promoted": spearman(table["screen_val_nmse_db"], table["val_nmse_db"]) if len(table) > 2 else float("nan"),
    }
