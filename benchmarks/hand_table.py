"""The hand-design table of docs/results/hand-designs.md: `nasdun train --arch hand` runs, one per seed, read back.

    python benchmarks/hand_table.py RUN [RUN ...]     # RUN: a run directory, or a results.csv kept elsewhere (benchmarks/data)

A RUN named ``*-rounded.csv`` holds only the columns of ROUNDED, copied to 0.01 dB from a results page whose run was
not kept; its means and standard deviations are then exact to that rounding.

Prints a Markdown table: every network, mean ± std over the seeds of test nmse_db (pooled), test nmse_db_mean
(per sample, the design-space paper's) and validation nmse_db, ranked by mean test nmse_db; its rank at each seed
(among the networks trained at that seed: the runs of one seed, the table's ``seed`` column, count as one; × failed
there, – not trained there; ʳ where it trained to the end after a restart at half the rate, the protocol's
``retries``); the gap of each network to the best one; on an image setting, the mean test PSNR of its images. A
network that appears at one seed in several RUNs (a rerun) takes its row from the RUN given last.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nasdun.runs.results import read_table  # noqa: E402
from search_spaces.presets import display_name  # noqa: E402

ROUNDED = ("name", "seed", "status", "test_nmse_db", "test_nmse_db_mean", "val_nmse_db")  # a *-rounded.csv's columns


def table(runs: list[str]) -> str:
    import shutil
    import tempfile

    frames = []
    for run in runs:
        path = Path(run)
        if path.is_file() and path.stem.endswith("-rounded"):  # values copied from a results page (its run was not kept)
            df = pd.read_csv(path)
            if missing := set(ROUNDED) - set(df.columns):
                raise SystemExit(f"{path}: a -rounded table needs the columns {', '.join(ROUNDED)}; missing {', '.join(sorted(missing))}")
        elif path.is_file():  # a kept table: read (and checked) as its run directory would be
            with tempfile.TemporaryDirectory() as tmp:
                shutil.copyfile(path, Path(tmp) / "results.csv")
                df = read_table(Path(tmp))
        else:
            df = read_table(path)
        frames.append(df.assign(run=path.stem if path.is_file() else path.name))
    df = pd.concat(frames).drop_duplicates(["name", "seed"], keep="last")  # a network rerun at a seed: the later RUN's row
    restarted = {(n, sd) for n, sd, st, why in zip(df["name"], df["seed"], df["status"], df.get("reason", [""] * len(df)), strict=True)
                 if st == "ok" and " restart" in str(why)}  # fmt: skip
    ok = df[df["status"] == "ok"]
    failed = df[df["status"] != "ok"]
    g = ok.groupby("name")
    stats = pd.DataFrame(
        {
            "seeds": g.size(),
            "test": g["test_nmse_db"].mean(), "test_sd": g["test_nmse_db"].std(ddof=1),
            "test_mean": g["test_nmse_db_mean"].mean(), "test_mean_sd": g["test_nmse_db_mean"].std(ddof=1),
            "val": g["val_nmse_db"].mean(), "val_sd": g["val_nmse_db"].std(ddof=1),
        }
    ).sort_values("test")  # fmt: skip
    psnr = "test_psnr" in ok.columns and bool(ok["test_psnr"].notna().all())  # an image setting: the 4 test images' mean PSNR
    if psnr:
        stats["psnr"], stats["psnr_sd"] = g["test_psnr"].mean(), g["test_psnr"].std(ddof=1)
    ok = ok.assign(rank=ok.groupby("seed")["test_nmse_db"].rank(method="min").astype(int))
    ranks = ok.pivot(index="name", columns="seed", values="rank")
    best = stats["test"].iloc[0]
    seeds = sorted(df["seed"].unique())
    tried = set(zip(df["name"], df["seed"], strict=True))

    def cell(name: str, seed: int) -> str:  # the rank at that seed (ʳ: after a restart); × failed there, – not trained there
        rank = ranks.loc[name].get(seed)
        if rank is not None and not pd.isna(rank):
            return f"{int(rank)}ʳ" if (name, seed) in restarted else str(int(rank))
        return "×" if (name, seed) in tried else "–"

    def pm(mean: float, sd: float) -> str:
        return f"{mean:.2f}" if pd.isna(sd) else f"{mean:.2f} ± {sd:.2f}"

    head = "| rank | network | seeds | test nmse_db (pooled) | test nmse_db_mean | val nmse_db | gap to best (test) | rank per seed |"
    lines = [head + (" test PSNR (dB) |" if psnr else ""), "|---" * (8 + psnr) + "|"]
    for i, (name, r) in enumerate(stats.iterrows(), start=1):
        per_seed = ", ".join(cell(name, seed) for seed in seeds)
        lines.append(
            f"| {i} | {display_name(name)} | {int(r['seeds'])} | {pm(r['test'], r['test_sd'])}"
            f" | {pm(r['test_mean'], r['test_mean_sd'])} | {pm(r['val'], r['val_sd'])} | {r['test'] - best:+.2f} | {per_seed} |"
            + (f" {pm(r['psnr'], r['psnr_sd'])} |" if psnr else "")
        )
    for _, r in failed.iterrows():
        lines.append(f"| – | {display_name(str(r['name']))} (seed {r['seed']}) | failed: {r['reason']} | | | | | |" + (" |" if psnr else ""))
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(sys.argv[1:]))
