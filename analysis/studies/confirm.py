"""`nasdun confirm`: compare searches by what they found, retrained on fresh training seeds.

A search's best value is its best *training run*: picked as the minimum over many noisy
candidates, it is biased low, and more so the more candidates the search tried. To compare
two searches (a multi-fidelity one that tried many candidates against a full one that tried
few, say) ``confirm`` takes each run's top ``k`` genotypes by validation nmse_db (status ``ok``
only), adds optional anchors (hand designs), and trains all of them together under one
protocol on each of several *fresh* run seeds: same setting, so the same dictionary,
validation and test sets; another training set and batch order. Nothing is selected on these
retrained values, so they are unbiased. Each seed's training is its own run directory
(``OUT/seed<S>``); a seed whose directory already holds the results of these networks is
read, not trained again, so an interrupted ``confirm`` continues where it stopped.

Writes ``confirm.csv`` (one row per network: where it came from, its search values, its
retrained values per seed, mean and standard deviation) and ``confirm.md``: per run, its top-1
(the network the search returned) and the mean of its top ``k``, as search value and retrained
mean ± std of test nmse_db.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nasdun.core.errors import NasdunError
from nasdun.runs.results import load_runs, only_value, top_k
from search_spaces.genotype import Genotype
from search_spaces.presets import preset
from trainers.options import RunOptions


def _finalists(runs: list[str], k: int) -> tuple[str, int, pd.DataFrame]:
    """Each run's top k, with the runs' common setting and K; one row per (run, rank)."""
    setting_of, layers_of, parts = {}, {}, []
    for run in runs:
        df = load_runs([run])
        setting_of[run] = only_value(df, "setting", run)
        best = top_k(df, k).reset_index(drop=True)
        layers_of[run] = {Genotype.from_json(str(g)).layers for g in best["genotype"]}
        parts.append(
            pd.DataFrame({"run": run, "rank": np.arange(1, len(best) + 1), "hash": best["hash"].astype(str), "genotype": best["genotype"]}).assign(
                search_val_nmse_db=best["val_nmse_db"].astype(float).to_numpy(), search_test_nmse_db=best["test_nmse_db"].astype(float).to_numpy()
            )
        )
    settings = sorted(set(setting_of.values()))
    layers = sorted(set().union(*layers_of.values()))
    if len(settings) != 1:
        raise NasdunError(f"runs use settings {settings}; confirm compares runs of one setting")
    if len(layers) != 1:
        raise NasdunError(f"runs' finalists have K = {layers}; confirm compares runs of one depth")
    return settings[0], layers[0], pd.concat(parts, ignore_index=True)


def run_confirm(
    runs: list[str | Path],
    k: int,
    seeds: list[int],
    protocol: str,
    out: str | Path,
    against: list[str] | None = None,
    options: RunOptions = RunOptions(),
    force: bool = False,
) -> pd.DataFrame:
    """Retrain the top-``k`` of each run (and ``against`` presets) on each seed; returns the per-network table."""
    if not runs:
        raise NasdunError("confirm needs at least one run")
    if not seeds or len(set(seeds)) != len(seeds):
        raise NasdunError(f"seeds={seeds} must be distinct and non-empty", ("seeds",))
    import re

    from nasdun.runs.results import check_study_dir
    from nasdun.runs.training import train_or_reuse
    from trainers.protocols import get_protocol

    get_protocol(protocol)  # a bad name fails before anything is written
    setting, layers, finalists = _finalists([str(r) for r in runs], k)
    nets: dict[str, Genotype] = {}
    for h, g in zip(finalists["hash"], finalists["genotype"], strict=True):
        nets.setdefault(h, Genotype.from_json(str(g)))
    for name in against or []:
        nets[name] = preset(name, layers)
    archs = list(nets.items())
    out = check_study_dir(out, lambda name: name in ("confirm.csv", "confirm.md") or re.fullmatch(r"seed\d+", name) is not None, force)
    out.mkdir(parents=True, exist_ok=True)
    per_seed = {s: train_or_reuse(out / f"seed{s}", archs, setting, protocol, s, force, options).set_index("name") for s in seeds}

    table = pd.DataFrame({"name": list(nets)}).set_index("name")
    table["from"] = [" ".join(f"{r}#{i}" for r, i in zip(*_origins(finalists, n), strict=True)) or "anchor" for n in table.index]
    for col in ("val_nmse_db", "test_nmse_db"):
        values = np.array([[float(per_seed[s].loc[n, col]) for s in seeds] for n in table.index])
        for j, s in enumerate(seeds):
            table[f"{col}_seed{s}"] = values[:, j]
        table[f"{col}_mean"] = values.mean(axis=1)
        table[f"{col}_std"] = values.std(axis=1, ddof=1) if len(seeds) > 1 else np.nan
    table.reset_index().to_csv(out / "confirm.csv", index=False)
    (out / "confirm.md").write_text(_markdown(finalists, table, k, seeds, setting, protocol))
    return table.reset_index()


def _origins(finalists: pd.DataFrame, name: str) -> tuple[list[str], list[int]]:
    rows = finalists[finalists["hash"] == name]
    return [Path(str(r)).name for r in rows["run"]], [int(i) for i in rows["rank"]]


def _pm(mean: float, std: float) -> str:
    return f"{mean:.2f} ± {std:.2f}" if np.isfinite(std) else f"{mean:.2f}"


def _markdown(finalists: pd.DataFrame, table: pd.DataFrame, k: int, seeds: list[int], setting: str, protocol: str) -> str:
    seeds_txt = ", ".join(map(str, seeds))
    lines = [
        f"Top {k} of each run retrained with `{Path(protocol).stem}` on setting `{setting}`, fresh run seeds {seeds_txt} "
        "(test nmse_db, mean ± std over seeds; nothing is selected on these values).",
        "",
        f"| run | top-1 | top-1 in the search | top-1 retrained | mean of top {k} retrained | best of top {k} by retrained validation |",
        "|---|---|---|---|---|---|",
    ]
    for run, part in finalists.groupby("run", sort=False):
        rows: Any = table.loc[list(part["hash"])]
        top1 = part.iloc[0]
        pick = rows["val_nmse_db_mean"].idxmin()
        cells = [
            str(top1["hash"]),
            f"{float(top1['search_test_nmse_db']):.2f}",
            _pm(float(rows.loc[top1["hash"], "test_nmse_db_mean"]), float(rows.loc[top1["hash"], "test_nmse_db_std"])),
            f"{float(rows['test_nmse_db_mean'].mean()):.2f}",
            f"{pick}: {_pm(float(rows.loc[pick, 'test_nmse_db_mean']), float(rows.loc[pick, 'test_nmse_db_std']))}",
        ]
        lines.append(f"| {Path(str(run)).name} | {' | '.join(cells)} |")
    anchors = table[table["from"] == "anchor"]
    if len(anchors):
        lines += [
            "",
            "Anchors: " + ", ".join(f"{n} {_pm(float(r['test_nmse_db_mean']), float(r['test_nmse_db_std']))}" for n, r in anchors.iterrows()),
        ]
    return "\n".join(lines) + "\n"
