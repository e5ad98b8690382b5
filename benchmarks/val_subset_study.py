"""The validation rule of DESIGN.md §5 measured: the stage rule on a 1,024-sample subset against the whole
10,240-sample validation set (issue 42 item 2; docs/results/validation-subset.md).

    python benchmarks/val_subset_study.py OUT [--protocol search] [--layers 6] [--seeds 0,1,2] [--arch hand]
    python benchmarks/val_subset_study.py OUT --summary     # the tables, from OUT's results

The setting is `small` (m = 50, n = 100, p = 0.1, noiseless) with a validation set of 10,240 samples (the old
contract's size) instead of 1,024. Each network set is trained twice per seed, from the same data stream: once
with the protocol as shipped (`val_subset: 1024`: the stage rule reads the first 1,024 validation samples) and
once with `val_subset: 10240` (the stage rule reads the whole set, the old rule). Both score the kept parameters
and the final result on the whole set. What differs is only which iteration a stage ends at and which parameters
it keeps. Written per seed: OUT/<protocol>-s<seed>-{subset,full}.json (rows and per-stage records).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import kendalltau, spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search_spaces.presets import resolve_archs  # noqa: E402
from trainers.population import train_population  # noqa: E402
from trainers.problems.make import get_setting, make_problem  # noqa: E402
from trainers.protocols import get_protocol  # noqa: E402

N_VAL = 10_240


def run(out: Path, protocol: str, layers: int, seed: int, arch: str) -> None:
    setting = dataclasses.replace(get_setting("small"), name="small_val10240", n_val=N_VAL)
    problem = make_problem(setting, seed=seed)
    archs = resolve_archs(arch, layers)
    shipped = get_protocol(protocol)
    for variant, subset in (("subset", shipped.val_subset), ("full", N_VAL)):
        path = out / f"{protocol}-k{layers}-s{seed}-{variant}.json"
        if path.exists():
            continue
        t0 = time.perf_counter()
        results = train_population([g for _, g in archs], problem, dataclasses.replace(shipped, val_subset=subset))
        wall = time.perf_counter() - t0
        rows = [
            {"name": name, **{k: v for k, v in r.metrics().items() if k != "curves"}, "stages": r.stages}
            for (name, _), r in zip(archs, results, strict=True)
        ]
        path.write_text(json.dumps({"protocol": protocol, "layers": layers, "seed": seed, "val_subset": subset, "wall_s": wall, "rows": rows}))
        print(f"{path.name}: {len(rows)} networks in {wall:.0f} s", flush=True)


def compare(out: Path) -> str:
    lines = []
    pairs = sorted({p.name.rsplit("-", 1)[0] for p in out.glob("*-subset.json")})
    per_net = []
    for stem in pairs:
        if not (out / f"{stem}-full.json").exists():
            continue
        a, b = (json.loads((out / f"{stem}-{v}.json").read_text()) for v in ("subset", "full"))
        for ra, rb in zip(a["rows"], b["rows"], strict=True):
            sa, sb = ra["stages"], rb["stages"]
            same_end = [x["iters"] == y["iters"] for x, y in zip(sa, sb, strict=False)]
            # A stage keeps the same parameters if it ends at the same iteration with the same whole-set score
            # (subset run: kept_val_nmse_db_full; full run: its best is already on the whole set).
            same_kept = [
                x["iters"] == y["iters"] and abs(x.get("kept_val_nmse_db_full", x["best_val_nmse_db"]) - y["best_val_nmse_db"]) < 1e-4
                for x, y in zip(sa, sb, strict=False)
            ]
            first = next((i for i, s in enumerate(same_kept) if not s), None)
            per_net.append(
                {
                    "run": stem, "name": ra["name"], "status": f"{ra['status']}/{rb['status']}", "stages": len(sa),
                    "stage_end_differs": sum(not s for s in same_end), "kept_differs": sum(not s for s in same_kept),
                    "first_diff_stage": first, "d_val": ra["val_nmse_db"] - rb["val_nmse_db"],
                    "d_test": ra["test_nmse_db"] - rb["test_nmse_db"],
                    "val_subset": ra["val_nmse_db"], "val_full": rb["val_nmse_db"],
                    "test_subset": ra["test_nmse_db"], "test_full": rb["test_nmse_db"],
                    "iters_subset": ra["iterations"], "iters_full": rb["iterations"],
                }
            )  # fmt: skip
        lines.append(f"{stem}: wall subset {a['wall_s']:.0f} s, full {b['wall_s']:.0f} s (full/subset {b['wall_s'] / a['wall_s']:.2f}x)")
    df = pd.DataFrame(per_net)
    if df.empty:
        return "no finished pair"
    ok = df[df["status"] == "ok/ok"]
    lines.append("")
    lines.append(
        "| run | networks | stages | stage end differs | kept parameters differ | median abs d val (dB) | median abs d test"
        " | max abs d test | Spearman (val) | Kendall (val) |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for stem, g in ok.groupby("run"):
        rho = spearmanr(g["val_subset"], g["val_full"]).statistic
        tau = kendalltau(g["val_subset"], g["val_full"]).statistic
        lines.append(
            f"| {stem} | {len(g)} | {g['stages'].sum()} | {g['stage_end_differs'].sum()} ({g['stage_end_differs'].sum() / g['stages'].sum():.0%})"
            f" | {g['kept_differs'].sum()} ({g['kept_differs'].sum() / g['stages'].sum():.0%}) | {g['d_val'].abs().median():.3f}"
            f" | {g['d_test'].abs().median():.3f} | {g['d_test'].abs().max():.3f} | {rho:.3f} | {tau:.3f} |"
        )
    lines.append(
        f"| all | {len(ok)} | {ok['stages'].sum()} | {ok['stage_end_differs'].sum()} | {ok['kept_differs'].sum()} | {ok['d_val'].abs().median():.3f}"
        f" | {ok['d_test'].abs().median():.3f} | {ok['d_test'].abs().max():.3f} | | |"
    )
    failed = df[df["status"] != "ok/ok"]
    if len(failed):
        lines.append("")
        lines.append("Not ok in one variant: " + ", ".join(f"{r.run}/{r.name} ({r.status})" for r in failed.itertuples()))
    lines.append("")
    lines.append(f"Signed median d test (subset - full): {np.median(ok['d_test']):+.3f} dB; d val: {np.median(ok['d_val']):+.3f} dB")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--protocol", default="search")
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--arch", default="hand")
    ap.add_argument("--summary", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.summary:
        for seed in (int(s) for s in args.seeds.split(",")):
            run(args.out, args.protocol, args.layers, seed, args.arch)
    print(compare(args.out))


if __name__ == "__main__":
    main()
