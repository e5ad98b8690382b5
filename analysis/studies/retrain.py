"""`nasdun retrain`: an averaged architecture against the hand designs on every setting, over seeds.

Each (setting, seed) is one `nasdun train` run of all networks together, written to
``OUT/runs/<setting>/seed<s>/``; the tables and curves are then built from those results
tables alone, so they can be rebuilt (``build_tables``) without training again.

Table 1 (the design-space paper's form): one row per setting, one column per network, the
mean and standard deviation over seeds of test ``nmse_db_mean`` (the paper's metric);
``table_pooled.*`` holds the same for the pooled ``nmse_db``. The best mean of a row is marked
(bold in Markdown, ``best`` column in CSV).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.readers.plots import curves_figure
from nasdun.core.errors import NasdunError
from nasdun.runs.results import prepare_out_dir, read_table
from trainers.options import RunOptions


def run_retrain(
    archs: str,
    against: str,
    settings: Sequence[str],
    seeds: int,
    protocol: str,
    layers: int,
    out: str | Path,
    options: RunOptions = RunOptions(),
    force: bool = False,
) -> dict[str, pd.DataFrame]:
    from nasdun.runs.training import run_train
    from search_spaces.presets import resolve_archs
    from trainers.problems.make import get_setting
    from trainers.problems.operators import setting_label
    from trainers.protocols import get_protocol

    if seeds < 1:
        raise NasdunError(f"seeds={seeds}; expected an integer >= 1", ("seeds",))
    for s in settings:
        get_setting(s)
    get_protocol(protocol)
    nets = resolve_archs(",".join(t for t in (archs, against) if t), layers)
    out_dir = prepare_out_dir(out, force, hint="or pass force=True to replace it")
    total = len(settings) * seeds
    for n, (setting, seed) in enumerate(((s, k) for s in settings for k in range(seeds)), start=1):
        print(f"retrain [{n}/{total}] {setting} seed {seed}: {', '.join(name for name, _ in nets)}", flush=True)
        run_dir = out_dir / "runs" / setting_label(setting) / f"seed{seed}"
        run_train(nets, setting, protocol, seed, run_dir, options, overwrite=force)
    (out_dir / "retrain.json").write_text(
        json.dumps({"networks": [n for n, _ in nets], "settings": list(settings), "seeds": seeds, "protocol": protocol, "layers": layers}, indent=2)
    )
    return build_tables(out_dir)


def collect(out_dir: Path) -> pd.DataFrame:
    """Every per-run row under ``out_dir/runs`` with its setting and seed."""
    frames = [read_table(p.parent) for p in sorted((out_dir / "runs").glob("*/seed*/results.csv"))]
    if not frames:
        raise NasdunError(f"no retraining runs under {str(out_dir / 'runs')!r}; expected OUT/runs/<setting>/seed<k>/results.csv")
    return pd.concat(frames, ignore_index=True)


def summary_table(rows: pd.DataFrame, metric: str, networks: Sequence[str], settings: Sequence[str], higher: bool = False) -> pd.DataFrame:
    """mean / std / seeds per (setting, network), plus the best network of each setting (lowest, or ``higher``)."""
    ok = rows[rows["status"] == "ok"]
    stats = ok.groupby(["setting", "name"])[metric].agg(["mean", "std", "count"])
    records = []
    for s in settings:
        rec: dict[str, Any] = {"setting": s}
        means = {}
        for net in networks:
            if (s, net) in stats.index:
                m, sd, c = stats.loc[(s, net)]
                rec[f"{net}_mean"], rec[f"{net}_std"], rec[f"{net}_seeds"] = m, (0.0 if c < 2 else sd), int(c)
                means[net] = m
            else:
                rec[f"{net}_mean"], rec[f"{net}_std"], rec[f"{net}_seeds"] = np.nan, np.nan, 0
        rec["best"] = (max if higher else min)(means, key=lambda k: means[k]) if means else ""
        records.append(rec)
    return pd.DataFrame(records)


def markdown_table(table: pd.DataFrame, networks: Sequence[str], metric: str, higher: bool = False) -> str:
    from nasdun.runs.verdict import display

    head = f"| setting | {' | '.join(display(n) for n in networks)} |\n|---|{'---|' * len(networks)}\n"
    lines = []
    for rec in table.to_dict("records"):
        cells = []
        for net in networks:
            m, sd = rec[f"{net}_mean"], rec[f"{net}_std"]
            cell = "n/a" if np.isnan(m) else f"{m:.2f} ± {sd:.2f}"
            cells.append(f"**{cell}**" if rec["best"] == net else cell)
        lines.append(f"| {rec['setting']} | {' | '.join(cells)} |")
    better = "higher" if higher else "lower"
    what = f" ({METRIC_WORDS[metric]})" if metric in METRIC_WORDS else ""
    return f"`{metric}`{what} (dB, {better} is better), mean ± std over seeds; best per row in bold.\n\n" + head + "\n".join(lines) + "\n"


METRIC_WORDS = {  # docs/design.md §4: the two differ (the mean is usually the lower), so a table says which it shows
    "test_nmse_db_mean": "the mean over test samples of each sample's NMSE in dB: the design-space paper's Table 1 metric",
    "test_nmse_db": "pooled: the test set's total squared error over its total energy, the metric of the search's verdict",
}


def build_tables(out_dir: str | Path) -> dict[str, pd.DataFrame]:
    from nasdun.runs.verdict import display
    from trainers.problems.operators import setting_label

    out_dir = Path(out_dir)
    rows = collect(out_dir)
    meta = json.loads((out_dir / "retrain.json").read_text()) if (out_dir / "retrain.json").is_file() else {}
    networks = meta.get("networks") or list(dict.fromkeys(rows["name"]))
    settings = meta.get("settings") or list(dict.fromkeys(rows["setting"]))
    tables = {}
    for metric, stem in (("test_nmse_db_mean", "table1"), ("test_nmse_db", "table_pooled")):
        t = summary_table(rows, metric, networks, settings)
        t.to_csv(out_dir / f"{stem}.csv", index=False)
        (out_dir / f"{stem}.md").write_text(markdown_table(t, networks, metric))
        tables[stem] = t
    if "test_psnr" in rows.columns:  # image settings: mean PSNR over the test images, and each image's (rows setting/image)
        t = summary_table(rows, "test_psnr", networks, settings, higher=True)
        per_image = pd.concat(
            [summary_table(rows, c, networks, settings, higher=True).assign(setting=lambda d, c=c: d["setting"].map(setting_label) + " / " + c[5:])
             for c in sorted(rows.columns) if c.startswith("psnr_") and rows[c].notna().any()]
        )  # fmt: skip
        for stem, frame in (("table_psnr", t), ("table_psnr_images", per_image)):
            frame.to_csv(out_dir / f"{stem}.csv", index=False)
            (out_dir / f"{stem}.md").write_text(
                markdown_table(frame, networks, "test_psnr" if stem == "table_psnr" else "psnr per image", higher=True)
            )
            tables[stem] = frame
    curves = pd.concat([pd.read_csv(p).assign(setting=p.parent.parent.name) for p in sorted((out_dir / "runs").glob("*/seed*/curves.csv"))])
    test = curves[curves["split"] == "test"]
    mean_curves = test.groupby(["setting", "metric", "name", "layer"])["value"].mean().reset_index()
    mean_curves.to_csv(out_dir / "curves.csv", index=False)
    table_metric = "nmse_db_mean"  # the figure shows the metric of Table 1 beside it
    for setting, part in mean_curves[mean_curves["metric"] == table_metric].groupby("setting"):
        series = {display(net): part[part["name"] == net].sort_values("layer")["value"].tolist() for net in networks if (part["name"] == net).any()}
        title = f"{setting}: test {table_metric} per layer (Table 1's metric), mean over seeds"
        curves_figure(series, out_dir / "figures", f"nmse_vs_layer_{setting}", title, f"test {table_metric} (dB)")
    tables["curves"] = mean_curves
    return tables
