"""`nasdun report`: one self-contained HTML file (figures embedded) and a Markdown twin."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.average import average, load_runs, write_average
from analysis.heatmaps import run_heatmaps
from analysis.searchstats import search_figures, topk_agreement
from nasdun.errors import NasdunError


def _md_table(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for rec in df.to_dict("records"):
        lines.append("| " + " | ".join(format(v, floatfmt) if isinstance(v, float) else str(v) for v in rec.values()) + " |")
    return "\n".join(lines)


def build_report(
    run: str | Path, out: str | Path | None = None, top: int = 50, retrain: str | Path | None = None, others: Sequence[str | Path] = ()
) -> tuple[Path, Path]:
    """Report on ``run``; ``others`` (e.g. the same search with other samplers) join the
    best-so-far curves and get a top-k agreement row each."""
    run_dir = Path(run)
    if not (run_dir / "results.csv").is_file():
        raise NasdunError(f"no results table at {str(run_dir / 'results.csv')!r}; expected a run directory of nasdun search or train")
    if retrain is not None and not (Path(retrain) / "table1.md").is_file():
        raise NasdunError(f"--retrain {str(retrain)!r} holds no table1.md; expected a directory written by nasdun retrain")
    out_dir = Path(out) if out else run_dir / "report"
    fig_dir = out_dir / "figures"
    df = load_runs([run_dir])
    n_ok = int((df["status"] == "ok").sum())
    if n_ok == 0:
        raise NasdunError(f"{str(run_dir)!r} has no successfully trained candidate to report on")
    k = min(top, df[df["status"] == "ok"]["hash"].nunique())
    genotype, freq, members = average(df, k)
    write_average(out_dir / "average.json", genotype, freq, members, top_k=k, threshold=0.5, runs=[str(run_dir)])
    run_heatmaps([run_dir], fig_dir, top=k, diff=k // 2 if k >= 4 else None)
    search_figures(load_runs([run_dir, *others]) if others else df, fig_dir)
    agreement = []
    for other in others:
        odf = load_runs([other])
        kk = min(k, odf[odf["status"] == "ok"]["hash"].nunique())
        agreement.append({"run": Path(other).name, **topk_agreement(df, odf, kk)})

    summary: dict[str, Any] = {"candidates": len(df), "ok": n_ok, "failed": int((df["status"] != "ok").sum())}
    for name in ("search.json", "run.json"):
        if (run_dir / name).is_file():
            data = json.loads((run_dir / name).read_text())
            summary.update({key: data[key] for key in ("wall_s", "candidates_per_min", "overhead", "best_val_nmse_db", "budget") if key in data})
    config = (run_dir / "search.yaml").read_text() if (run_dir / "search.yaml").is_file() else ""
    best = df[df["status"] == "ok"].sort_values("val_nmse_db").head(10)
    best_cols = [c for c in ("name", "hash", "val_nmse_db", "test_nmse_db", "test_nmse_db_mean", "n_extra", "sampler") if c in best.columns]
    sections: list[tuple[str, str, list[str]]] = [
        ("Search summary", _md_table(pd.DataFrame([summary])) + (f"\n\nConfiguration:\n\n```yaml\n{config}```" if config else ""), []),
        ("Best candidates (validation nmse_db)", _md_table(best[best_cols]), []),
        (
            f"Averaged architecture (top-{k}, threshold 0.5)",
            f"hash `{genotype.hash}`, {genotype.n_extra} extra connections, arch string `{genotype.to_arch_string()}`, "
            f"neurons {', '.join(genotype.neurons)}, LM orders {[genotype.order(j) for j in range(1, genotype.layers + 1)]}.",
            [f"conn_top{k}", f"lags_top{k}", f"neurons_top{k}"] + ([f"conn_top{k}_minus_top{k // 2}"] if k >= 4 else []),
        ),
        (
            "Search progress",
            "Best validation nmse_db versus candidates trained (per sampler), and NMSE versus extra connections.",
            ["best_so_far", "nmse_vs_connections"],
        ),
    ]
    if agreement:
        sections.append(("Agreement with other runs (top-k)", _md_table(pd.DataFrame(agreement), ".3f"), []))
    if retrain is not None:
        rdir = Path(retrain)
        figs = []
        for p in sorted((rdir / "figures").glob("*.png")):
            target = fig_dir / p.name
            target.write_bytes(p.read_bytes())
            figs.append(p.stem)
        sections.append(("Retraining against the hand designs", (rdir / "table1.md").read_text(), figs))

    md = [f"# nasdun report: {run_dir.name}\n"]
    body = [f"<h1>nasdun report: {html.escape(run_dir.name)}</h1>"]
    for title, text, figs in sections:
        md += [f"## {title}\n", text, ""] + [f"![{f}](figures/{f}.png)\n" for f in figs]
        body += [f"<h2>{html.escape(title)}</h2>", _md_to_html(text)]
        for f in figs:
            data = base64.b64encode((fig_dir / f"{f}.png").read_bytes()).decode()
            body.append(f'<figure><img alt="{f}" src="data:image/png;base64,{data}"/><figcaption>{f}</figcaption></figure>')
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    md_path.write_text("\n".join(md))
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}"
    )
    head = f"<head><meta charset='utf-8'><title>nasdun report</title><style>{style}</style></head>"
    html_path.write_text(f"<!doctype html><html>{head}<body>{''.join(body)}</body></html>")
    return html_path, md_path


def _md_to_html(text: str) -> str:
    """The few Markdown forms the report uses: pipe tables, fenced code, paragraphs."""
    out: list[str] = []
    rows: list[list[str]] = []
    code: list[str] | None = None
    for line in text.splitlines() + [""]:
        if line.startswith("```"):
            if code is None:
                code = []
            else:
                out.append(f"<pre>{html.escape(chr(10).join(code))}</pre>")
                code = None
            continue
        if code is not None:
            code.append(line)
            continue
        if line.startswith("|"):
            if not set(line) <= set("|-: "):
                rows.append([c.strip() for c in line.strip("|").split("|")])
            continue
        if rows:
            head, *rest = rows
            cell = lambda c: html.escape(c).replace("**", "")  # noqa: E731
            out.append("<table><tr>" + "".join(f"<th>{cell(c)}</th>" for c in head) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{'<b>' + cell(c) + '</b>' if c.startswith('**') else cell(c)}</td>" for c in r) + "</tr>" for r in rest]
            out.append("</table>")
            rows = []
        if line.strip():
            out.append(f"<p>{html.escape(line).replace('`', '')}</p>")
    return "\n".join(out)
