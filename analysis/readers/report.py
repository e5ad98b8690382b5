"""`nasdun report`: one self-contained HTML file (figures embedded) and a Markdown twin."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.readers.average import average, write_average
from analysis.readers.heatmaps import run_heatmaps
from analysis.readers.searchstats import search_figures, topk_agreement
from nasdun.core.errors import NasdunError
from nasdun.runs.results import load_runs, resolve_top_k
from nasdun.runs.summary import SearchSummary


def _md_table(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for rec in df.to_dict("records"):
        lines.append("| " + " | ".join(format(v, floatfmt) if isinstance(v, float) else str(v) for v in rec.values()) + " |")
    return "\n".join(lines)


def build_report(
    run: str | Path,
    out: str | Path | None = None,
    top: int = 50,
    retrain: str | Path | None = None,
    others: Sequence[str | Path] = (),
    force: bool = False,
) -> tuple[Path, Path]:
    """Report on ``run``: it opens with the verdict against the hand designs and the retraining table;
    ``others`` (e.g. the same search with other samplers) join the best-so-far curves, one per run and
    sampler, and get a top-k agreement row each; the configuration is folded at the end."""
    from nasdun.runs.results import prepare_out_dir
    from nasdun.runs.verdict import judge

    run_dir = Path(run)
    if not (run_dir / "results.csv").is_file():
        raise NasdunError(f"no results table at {str(run_dir / 'results.csv')!r}; expected a run directory of nasdun search or train")
    if retrain is not None and not (Path(retrain) / "table1.md").is_file():
        raise NasdunError(f"retrain={str(retrain)!r} holds no table1.md; expected a directory written by nasdun retrain", ("retrain",))
    df = load_runs([run_dir])
    k, note = resolve_top_k(df, top)
    other_dfs = [load_runs([o]) for o in others]
    out_dir = prepare_out_dir(Path(out) if out else run_dir / "report", force)
    fig_dir = out_dir / "figures"
    genotype, freq, members = average(df, k)
    write_average(out_dir / "average.json", genotype, freq, members, top_k=k, threshold=0.5, runs=[str(run_dir)])
    run_heatmaps([run_dir], fig_dir, top=k, diff=k // 2 if k >= 4 else None)
    search_figures(pd.concat([df, *other_dfs], ignore_index=True) if others else df, fig_dir)
    agreement = []
    for other, odf in zip(others, other_dfs, strict=True):
        kk, _ = resolve_top_k(odf, k)
        agreement.append({"run": Path(other).name, **topk_agreement(df, odf, min(k, kk))})

    n_ok = int((df["status"] == "ok").sum())
    summary: dict[str, Any] = {"candidates": len(df), "ok": n_ok, "not ok": int((df["status"] != "ok").sum())}
    searched = (run_dir / "search.json").is_file()
    saved = SearchSummary.read(run_dir) if searched else SearchSummary()
    data = dict(saved) if searched else json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    summary.update({key: data[key] for key in ("wall_s", "candidates_per_min", "overhead", "budget") if key in data})
    config = (run_dir / "search.yaml").read_text() if (run_dir / "search.yaml").is_file() else ""
    verdict = judge(df.to_dict("records"))
    best = df[df["status"] == "ok"].sort_values(["val_nmse_db", "hash"]).head(10)
    best_cols = [c for c in ("name", "preset", "hash", "val_nmse_db", "test_nmse_db", "test_nmse_db_mean", "n_extra", "sampler") if c in best.columns]
    headline = _bold_answer(verdict["verdict"])
    if saved.screening_verdict:  # the search's own verdict: under the promotion's protocol, or marked as screening
        headline = _bold_answer(saved.verdict)
        if saved.promoted:
            headline += f"\n\nUnder the screening protocol alone: {verdict['verdict']}."
    headline += (
        "\n\nThe verdict's dB are the pooled `nmse_db` (a split's total squared error over its total energy)"
        + ("; the retraining table below is in `nmse_db_mean`, the mean of each test sample's NMSE in dB (the design-space"
           " paper's Table 1), which is usually the lower of the two." if retrain is not None else ".")
    )  # fmt: skip
    sections: list[tuple[str, str, list[str]]] = [("Did the search beat the hand designs?", headline, [])]
    if (run_dir / "promoted" / "promote.md").is_file():
        sections.append(("The verdict's networks under the promotion's protocol", (run_dir / "promoted" / "promote.md").read_text(), []))
    if retrain is not None:
        rdir = Path(retrain)
        figs = []
        for p in sorted((rdir / "figures").glob("*.png")):
            (fig_dir / p.name).write_bytes(p.read_bytes())
            figs.append(p.stem)
        sections.append(("Retraining against the hand designs", (rdir / "table1.md").read_text() + _protocol_note(rdir, saved), figs))
    sections += [
        ("Best candidates (validation nmse_db)", _md_table(best[best_cols].fillna("")), []),
        (
            f"Averaged architecture (top-{k}, threshold 0.5)",
            (f"{note}. " if note else "")
            + f"hash `{genotype.hash}`, {genotype.n_extra} extra connections, arch string `{genotype.to_arch_string()}` "
            f"(with neurons and lags: `{genotype.to_spec()}`), "
            f"neurons {', '.join(genotype.neurons)}, LM orders {[genotype.order(j) for j in range(1, genotype.layers + 1)]}.",
            [f"conn_average_top{k}", f"lags_average_top{k}", f"neurons_average_top{k}", f"conn_top{k}", f"lags_top{k}", f"neurons_top{k}"]
            + ([f"conn_top{k}_minus_top{k // 2}"] if k >= 4 else []),
        ),
        (
            "Search progress",
            "Best validation nmse_db versus candidates trained (one curve per run and sampler), and NMSE versus extra connections.",
            ["best_so_far", "nmse_vs_connections"],
        ),
    ]
    if agreement:
        sections.append(("Agreement with other runs (top-k)", _md_table(pd.DataFrame(agreement), ".3f"), []))
    sections.append(("Run summary", _md_table(pd.DataFrame([summary])), []))

    md = [f"# nasdun report: {run_dir.resolve().name}\n"]
    body = [f"<h1>nasdun report: {html.escape(run_dir.resolve().name)}</h1>"]
    for title, text, figs in sections:
        md += [f"## {title}\n", text, ""] + [f"![{caption(f)}](figures/{f}.png)\n" for f in figs]
        body += [f"<h2>{html.escape(title)}</h2>", _md_to_html(text)]
        for f in figs:
            data = base64.b64encode((fig_dir / f"{f}.png").read_bytes()).decode()
            words = html.escape(caption(f))
            body.append(f'<figure><img alt="{words}" src="data:image/png;base64,{data}"/><figcaption>{words}</figcaption></figure>')
    if config:
        md += ["## Configuration\n", f"<details><summary>search.yaml</summary>\n\n```yaml\n{config}```\n</details>\n"]
        body.append(f"<details><summary>Configuration (search.yaml)</summary><pre>{html.escape(config)}</pre></details>")
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    md_path.write_text("\n".join(md))
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}"
    )
    head = f"<head><meta charset='utf-8'><title>nasdun report</title><style>{style}</style></head>"
    html_path.write_text(f"<!doctype html><html>{head}<body>{''.join(body)}</body></html>")
    return html_path, md_path


CAPTIONS = (  # figure file stem -> what a reader is shown (the file names stay short)
    (r"conn_average_top(\d+)", "Connections of the averaged architecture: those open in at least half of the top-{0}."),
    (r"lags_average_top(\d+)", "LM lags of the averaged architecture: those open in at least half of the top-{0}."),
    (r"neurons_average_top(\d+)", "Neurons of the averaged architecture: each layer's most frequent type in the top-{0}."),
    (r"conn_top(\d+)_minus_top(\d+)", "Connections more (red) or less (blue) frequent in the top-{0} than in the top-{1}."),
    (r"conn_top(\d+)", "How often each connection is open in the top-{0}."),
    (r"lags_top(\d+)", "How often each LM lag is open in the top-{0}."),
    (r"neurons_top(\d+)", "Neuron type per layer in the top-{0}."),
    (r"best_so_far", "Best validation nmse_db so far against found candidates trained; dashed: the best hand design, marks: every hand design."),
    (r"nmse_vs_connections", "Validation nmse_db against extra connections, hand designs and found networks."),
    (r"nmse_vs_layer_(.+)", "Retraining on {0}: test nmse_db_mean after each layer, mean over seeds."),
)


def caption(stem: str) -> str:
    """A figure's caption from its file stem (:data:`CAPTIONS`); an unknown stem is its own caption."""
    import re

    for pattern, words in CAPTIONS:
        m = re.fullmatch(pattern, stem)
        if m:
            return words.format(*m.groups())
    return stem


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
            text = html.escape(line).replace("`", "")
            out.append(f"<p><b>{text[2:-2]}</b></p>" if text.startswith("**") and text.endswith("**") else f"<p>{text}</p>")
    return "\n".join(out)


def _protocol_note(retrain_dir: Path, saved: SearchSummary) -> str:
    """Where the retraining ran under another protocol than the verdict, the page says so and why it matters."""
    meta = json.loads((retrain_dir / "retrain.json").read_text()) if (retrain_dir / "retrain.json").is_file() else {}
    verdict = saved.verdict_protocol
    mine = meta.get("protocol")
    if not mine or not verdict or str(mine) == str(verdict):
        return ""
    return (
        f"\n\nThis table was trained under `{mine}`; the verdict above is under `{verdict}`. Protocols rank networks"
        f" differently (`nasdun protocols` lists how each ranks against `paper`), so where the two disagree the verdict's"
        f" protocol decides: `nasdun retrain ... --protocol {verdict}` gives this table on the verdict's footing."
    )


def _bold_answer(verdict: str) -> str:
    """The verdict's answer and numbers in bold, its provenance (the closing parenthesis) below them."""
    first, sep, rest = verdict.partition(" (under ")
    return f"**{first}**" + (f"\n\n(under {rest}" if sep else "")
