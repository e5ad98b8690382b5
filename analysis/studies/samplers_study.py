"""`nasdun compare-samplers`: several samplers searched under one setting, protocol, cohort size and budget, over
several seeds, and compared the way a user pays for them — candidates needed to beat the best hand design —
and the way the design-space paper claims they agree (section 3.2: top sets "largely overlapped").

Layout of OUT: ``runs/<sampler>-seed<s>/`` one search each (resumed if cut short: run the command again);
``hand/seed<s>/`` the hand designs trained once per seed for a cold study (``--no-baselines``); ``avg-<sampler>.json``
the top-k averaged architecture of each sampler (its seeds pooled); ``confirm/seed<s>/`` each sampler's top-1 retrained
on fresh seeds with the hand designs (``confirm/<protocol>/seed<s>/`` under a protocol other than the search's);
``samplers.md`` / ``samplers.json`` the tables; ``figures/``.
"""

from __future__ import annotations

import json
import math
import shutil
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nasdun.core.errors import NasdunError
from nasdun.runs.summary import SearchSummary


def run_sampler_study(
    samplers: list[str], seeds: list[int], budget: int, out: str | Path, config: str | None = None, baselines: bool = False,
    confirm_seeds: int = 0, confirm_protocols: list[str] | None = None, overrides: dict[str, Any] | None = None, address: str | None = None,
    num_cpus: int | None = None, force: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Run (or continue) the study into ``out``; returns what ``samplers.json`` holds."""
    from nasdun.orchestration.driver import run_search
    from nasdun.orchestration.samplers import SAMPLERS
    from nasdun.orchestration.searchconfig import load_config
    from nasdun.runs.results import write_json

    if len(samplers) < 1 or len(set(samplers)) != len(samplers):
        raise NasdunError(f"samplers={','.join(samplers)}; expected distinct sampler names", ("samplers",))
    if not seeds or len(set(seeds)) != len(seeds):
        raise NasdunError(f"seeds={seeds}; expected distinct seeds", ("seeds",))
    for s in samplers:
        SAMPLERS.get(s)
    confirms = [_seeded(p, confirm_seeds) for p in confirm_protocols or []]
    labels = [_label(p) for p, _ in confirms]  # an unknown protocol is refused before any search runs
    if len(set(labels)) != len(labels):
        raise NasdunError(f"confirm_protocol={','.join(confirm_protocols or [])}; expected distinct protocols", ("confirm_protocol",))
    if unseeded := [p for p, n in confirms if n == 0]:  # not silently skipped
        raise NasdunError(
            f"confirm_protocol={','.join(unseeded)} with confirm_seeds=0; expected PROTOCOL:SEEDS or confirm_seeds=N >= 1",
            ("confirm_protocol", "confirm_seeds"),
        )
    fixed = {**(overrides or {}), "budget": budget, "baselines": baselines, "promote_top": 0}  # the study compares screenings
    cfgs = {(s, k): load_config(config, {**fixed, "sampler": s, "seed": k}) for k in seeds for s in samplers}  # seed by seed: a cut study is balanced
    for cfg in cfgs.values():
        cfg.resolve()  # every search's names checked before the first one runs
    base = cfgs[(samplers[0], seeds[0])]
    out_dir = Path(out)
    spec = {"samplers": samplers, "seeds": seeds, "budget": budget, "baselines": baselines, "setting": base.setting, "protocol": base.protocol,
            "layers": base.layers, "cohort": base.cohort, "config": config, "overrides": overrides or {}}  # fmt: skip
    if (out_dir / "study.json").is_file() and json.loads((out_dir / "study.json").read_text()) != json.loads(json.dumps(spec)) and not force:
        raise NasdunError(
            f"{out_dir} holds a sampler study of another specification (study.json); use another out=DIR or pass force=True", ("out", "force")
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "study.json", spec)
    for (s, k), cfg in cfgs.items():
        run = out_dir / "runs" / f"{s}-seed{k}"
        if (run / "search.yaml").is_file() and (changed := _changed(run, cfg)):
            if not force:
                raise NasdunError(
                    f"{run} is a search with other {', '.join(changed)} than this study asks; use another out=DIR or pass force=True to redo it",
                    ("out", "force"),
                )
            shutil.rmtree(run)
        if _finished(run, budget):
            continue
        print(f"compare-samplers: {s}, seed {k}", flush=True)
        resume = (run / "search.yaml").is_file()
        run_search(
            run,
            None if resume else cfg,
            resume=resume,
            address=address,
            num_cpus=num_cpus,
            overrides={"budget": budget, "promote_top": 0} if resume else None,
        )
    thresholds = {k: _hand_threshold(out_dir, cfgs[(samplers[0], k)], baselines, force) for k in seeds}
    summary = summarize(out_dir, samplers, seeds, budget, thresholds)
    if confirms or confirm_seeds:
        summary["confirm"] = {_label(p): _confirm(out_dir, summary, base, n, p, force) for p, n in confirms or [(base.protocol, confirm_seeds)]}
    write_json(out_dir / "samplers.json", summary)
    (out_dir / "samplers.md").write_text(markdown(summary, spec))
    return summary


# beside the search space, what decides a search's candidates and values (its budget may grow: a finished search is then continued)
RESULT_FIELDS = ("sampler", "cohort", "setting", "protocol", "seed", "retrain_duplicates", "baselines", "start_from", "precision")


def _changed(run: Path, cfg: Any) -> list[str]:
    """The fields (and sampler options) in which the search in ``run`` differs from ``cfg``."""
    from dataclasses import fields

    from nasdun.orchestration.record import load_saved_config
    from search_spaces.genotype import SearchSpace

    held = load_saved_config(run)
    changed = [f for f in (*(f.name for f in fields(SearchSpace)), *RESULT_FIELDS) if getattr(held, f) != getattr(cfg, f)]
    return changed + (["sampler options"] if held.options_for(held.sampler) != cfg.options_for(cfg.sampler) else [])


def _finished(run: Path, budget: int) -> bool:
    if not (run / "search.json").is_file():
        return False
    rec = SearchSummary.read(run)
    return rec.finished and rec.budget == budget


def _hand_threshold(out_dir: Path, cfg: Any, baselines: bool, force: bool) -> dict[str, Any]:
    """The best hand design's validation value for a seed: from each search's own baseline rows, or (cold) from the
    hand designs trained once with that seed, setting and protocol (the data a search of that seed trains on)."""
    from nasdun.runs.training import train_or_reuse
    from nasdun.runs.verdict import display
    from search_spaces.presets import HAND, resolve_archs

    if baselines:
        return {}
    run = out_dir / "hand" / f"seed{cfg.seed}"
    df = train_or_reuse(run, resolve_archs(HAND, cfg.layers), cfg.setting, cfg.protocol, cfg.seed, force)
    ok = df[df["status"] == "ok"].sort_values("val_nmse_db")
    best = ok.iloc[0]
    return {"name": display(str(best["name"])), "val_nmse_db": float(best["val_nmse_db"]), "test_nmse_db": float(best["test_nmse_db"])}


def candidates_to_beat(rows: pd.DataFrame, threshold: float) -> int | None:
    """The 1-based count of candidates (in trial order, hand designs included) after which a found network beats
    ``threshold`` on validation; None if none does."""
    from nasdun.runs.verdict import preset_of

    rows = rows.sort_values("trial_number")
    for i, row in enumerate(rows.to_dict("records"), start=1):
        if not preset_of(row) and row["status"] == "ok" and float(row["val_nmse_db"]) < threshold:
            return i
    return None


def summarize(out_dir: Path, samplers: list[str], seeds: list[int], budget: int, thresholds: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Curves, candidates to beat, averaged architectures and pairwise agreement (figures under OUT/figures)."""
    from analysis.readers.average import average, write_average
    from analysis.readers.plots import best_so_far_figure, save
    from analysis.readers.searchstats import best_so_far, median_or_none
    from nasdun.runs.results import load_runs, resolve_top_k
    from nasdun.runs.verdict import judge

    tables = {s: {k: load_runs([out_dir / "runs" / f"{s}-seed{k}"]) for k in seeds} for s in samplers}
    per_run: list[dict[str, Any]] = []
    medians: dict[str, dict[str, list[float]]] = {}
    for s in samplers:
        curves = []
        for k in seeds:
            df = tables[s][k]
            curve = best_so_far(df.assign(sampler=s))[s]
            curves.append(curve)
            hand = thresholds[k] or _own_hand(df, judge)
            need = candidates_to_beat(df, hand["val_nmse_db"]) if hand else None
            ok = df[df["status"] == "ok"]
            per_run.append({"sampler": s, "seed": k, "candidates": len(df), "best_val_nmse_db": float(ok["val_nmse_db"].min()),
                            "hand": hand.get("name", ""), "hand_val_nmse_db": hand.get("val_nmse_db", math.nan),
                            "candidates_to_beat": need})  # fmt: skip
        n = min(len(c) for c in curves)
        arr = np.array([c[:n] for c in curves])
        medians[s] = {"median": np.median(arr, axis=0).tolist(), "low": arr.min(axis=0).tolist(), "high": arr.max(axis=0).tolist()}
    needs = {s: [r["candidates_to_beat"] for r in per_run if r["sampler"] == s] for s in samplers}
    median_need = {s: median_or_none(v) for s, v in needs.items()}
    _band_figure(medians, out_dir / "figures", save)
    best_so_far_figure({s: m["median"] for s, m in medians.items()}, out_dir / "figures", "best_so_far_median")
    ks = sorted({max(1, round(0.1 * budget))} | ({50} if budget >= 100 else set()))
    pooled = {s: pd.concat(list(tables[s].values()), ignore_index=True) for s in samplers}
    averaged = {}
    for s in samplers:
        k, _ = resolve_top_k(pooled[s], ks[-1])
        g, freq, members = average(pooled[s], k)
        write_average(out_dir / f"avg-{s}.json", g, freq, members, sampler=s, top_k=k, seeds=seeds)
        averaged[s] = {"top_k": k, "arch_string": g.to_arch_string(), "spec": g.to_spec(), "hash": g.hash, "n_extra": g.n_extra}
    agreement = [{"a": a, "b": b, **_agree(pooled[a], pooled[b], k)} for k in ks for a, b in combinations(samplers, 2)]
    k_run = max(1, round(0.1 * budget))
    seed_pairs = []  # per-run top-k: one sampler at two seeds (the noise floor) against two samplers at two seeds
    for a, b in [(s, s) for s in samplers] + list(combinations(samplers, 2)):
        pairs = [(i, j) for i in seeds for j in seeds if (i < j if a == b else i != j)]
        if pairs:
            each = [_agree(tables[a][i], tables[b][j], k_run) for i, j in pairs]
            mean = {m: _nanmean([e[m] for e in each]) for m in ("overlap_fraction", "conn_r", "neuron_r", "lag_r")}
            seed_pairs.append({"a": a, "b": b, "k": k_run, "pairs": len(pairs), **mean})
    return {"runs": per_run, "median_candidates_to_beat": median_need, "curves": medians, "averaged": averaged, "agreement": agreement,
            "seed_pairs": seed_pairs}  # fmt: skip


def _agree(a: pd.DataFrame, b: pd.DataFrame, k: int) -> dict[str, Any]:
    """Top-k agreement of two tables: shared genotypes, and the correlation of their connection, neuron and lag frequencies."""
    from analysis.readers.average import frequencies
    from analysis.readers.searchstats import topk_agreement
    from nasdun.runs.results import top_k
    from search_spaces.genotype import Genotype

    res = topk_agreement(a, b, k)
    fa, fb = (frequencies([Genotype.from_json(x) for x in top_k(t, res["k"])["genotype"]]) for t in (a, b))
    return {"k": res["k"], "overlap": res["overlap"], "overlap_fraction": res["overlap_fraction"], "conn_r": res["conn_freq_pearson"],
            "neuron_r": _pearson(fa.neurons, fb.neurons), "lag_r": _pearson(fa.lags, fb.lags)}  # fmt: skip


def _own_hand(df: pd.DataFrame, judge: Any) -> dict[str, Any]:
    c = judge(df.to_dict("records"))
    if c["best_preset"] is None:
        return {}
    from nasdun.runs.verdict import display

    return {"name": display(c["best_preset"]), "val_nmse_db": c["best_preset_val_nmse_db"], "test_nmse_db": c["best_preset_test_nmse_db"]}


def _nanmean(values: list[float]) -> float:
    """Mean of the defined values (a correlation is undefined when a top-k set never varies); nan if none is."""
    defined = [v for v in values if not math.isnan(v)]
    return float(np.mean(defined)) if defined else math.nan


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    x, y = a.ravel(), b.ravel()
    return float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else float("nan")


def _band_figure(medians: dict[str, dict[str, list[float]]], out_dir: Path, save: Any) -> None:
    from analysis.readers.plots import PALETTE, PAPER_WIDTH, _plt

    plt, _ = _plt()
    fig, ax = plt.subplots(figsize=(PAPER_WIDTH * 0.6, 2.8))
    for i, (s, m) in enumerate(medians.items()):
        x = np.arange(1, len(m["median"]) + 1)
        low, high = np.array(m["low"]), np.array(m["high"])
        ok = np.isfinite(low) & np.isfinite(high)
        ax.step(x, m["median"], where="post", color=PALETTE[i % len(PALETTE)], label=s, linewidth=1.2)
        ax.fill_between(x[ok], low[ok], high[ok], step="post", color=PALETTE[i % len(PALETTE)], alpha=0.15, linewidth=0)
    ax.set_xlabel("candidates trained")
    ax.set_ylabel("best validation nmse_db (median, range over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    save(fig, out_dir, "best_so_far_band")


def _seeded(item: str, seeds: int) -> tuple[str, int]:
    """``"paper:1"`` -> ``("paper", 1)``: a confirmation protocol with its own number of fresh seeds (else ``seeds``)."""
    name, sep, n = item.rpartition(":")
    if not sep:
        return item, seeds
    if not n.isdigit() or int(n) < 1 or not name:
        raise NasdunError(f"confirm_protocol={item!r}; expected PROTOCOL or PROTOCOL:SEEDS with SEEDS a positive integer", ("confirm_protocol",))
    return name, int(n)


def _label(protocol: str) -> str:
    """A protocol's name in the study's tables: ``my/ref1000.yaml`` -> ``ref1000``."""
    from trainers.protocols import get_protocol

    return get_protocol(protocol).name


def _confirm(out_dir: Path, summary: dict[str, Any], base: Any, seeds: int, protocol: str, force: bool) -> dict[str, Any]:
    """Each sampler's top-1 (its seeds pooled) retrained with the hand designs on fresh seeds 1000, 1001, ... under ``protocol``:
    in ``confirm/seedN`` under the search's protocol, in ``confirm/<protocol name>/seedN`` under another."""
    from nasdun.runs.results import load_runs, top_k
    from nasdun.runs.training import train_or_reuse
    from search_spaces.genotype import Genotype
    from search_spaces.presets import HAND, resolve_archs

    archs: dict[str, Genotype] = {}
    for s in summary["averaged"]:
        runs = sorted((out_dir / "runs").glob(f"{s}-seed*"))
        best = top_k(load_runs(runs), 1).iloc[0]
        archs[f"top1-{s}"] = Genotype.from_json(str(best["genotype"]))
    nets = list(archs.items()) + resolve_archs(HAND, base.layers)
    label, rows = _label(protocol), []
    where = out_dir / "confirm" if label == _label(base.protocol) else out_dir / "confirm" / label
    for seed in range(1000, 1000 + seeds):
        print(f"compare-samplers: top-1s and hand designs under {label}, seed {seed}", flush=True)
        df = train_or_reuse(where / f"seed{seed}", nets, base.setting, protocol, seed, force)  # a changed top-1 is trained
        rows.append(df.assign(confirm_seed=seed))
    table = pd.concat(rows).groupby("name")[["val_nmse_db", "test_nmse_db"]].agg(["mean", "std"])
    return {str(n): {"val_mean": float(r[("val_nmse_db", "mean")]), "test_mean": float(r[("test_nmse_db", "mean")]),
                     "test_std": float(r[("test_nmse_db", "std")]) if seeds > 1 else math.nan, "seeds": seeds}
            for n, r in table.iterrows()}  # fmt: skip


def markdown(summary: dict[str, Any], spec: dict[str, Any]) -> str:
    """The study's tables, with what was compared."""
    lines = [
        f"Samplers {', '.join(spec['samplers'])}; seeds {', '.join(map(str, spec['seeds']))}; budget {spec['budget']} candidates each; "
        f"setting `{spec['setting']}`, protocol `{spec['protocol']}`, K = {spec['layers']}, cohorts of {spec['cohort']}; "
        + ("hand designs trained first in every search (baselines)." if spec["baselines"]
           else "cold (no hand designs in the searches; they were trained once per seed as the bar)."),
        "",
        "## Candidates needed to beat the best hand design (validation)",
        "| sampler | per seed | median |",
        "|---|---|---|",
    ]  # fmt: skip
    for s in spec["samplers"]:
        mine = [r["candidates_to_beat"] for r in summary["runs"] if r["sampler"] == s]
        per = ", ".join("not reached" if n is None else str(n) for n in mine)
        med = summary["median_candidates_to_beat"][s]
        lines.append(f"| {s} | {per} | {'not reached' if med is None else f'{med:g}'} |")
    lines += ["", "## Best validation nmse_db per run", "| sampler | seed | best found | best hand design |", "|---|---|---|---|"]
    for r in summary["runs"]:
        lines.append(f"| {r['sampler']} | {r['seed']} | {r['best_val_nmse_db']:.2f} | {r['hand']} {r['hand_val_nmse_db']:.2f} |")
    lines += ["", "## Agreement of the samplers' top-k (seeds pooled)", "| k | pair | shared genotypes | connection r | neuron r | lag r |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for a in summary["agreement"]:
        shared = f"{a['overlap']} ({100 * a['overlap_fraction']:.0f}%)"
        lines.append(f"| {a['k']} | {a['a']} / {a['b']} | {shared} | {a['conn_r']:.2f} | {a['neuron_r']:.2f} | {a['lag_r']:.2f} |")
    if summary.get("seed_pairs"):
        k = summary["seed_pairs"][0]["k"]
        lines += ["", f"## Same sampler at two seeds against two samplers at two seeds (each run's top-{k}; means over seed pairs)",
                  "A sampler agrees with another as much as it agrees with itself when the second kind of row matches the first.", "",
                  "| pair | seed pairs | shared genotypes | connection r | neuron r | lag r |", "|---|---|---|---|---|---|"]  # fmt: skip
        for a in summary["seed_pairs"]:
            pair = f"{a['a']} (itself)" if a["a"] == a["b"] else f"{a['a']} / {a['b']}"
            lines.append(
                f"| {pair} | {a['pairs']} | {100 * a['overlap_fraction']:.0f}% | {a['conn_r']:.2f} | {a['neuron_r']:.2f} | {a['lag_r']:.2f} |"
            )
    lines += ["", "## Averaged architectures", "| sampler | top-k | architecture | extra connections |", "|---|---|---|---|"]
    for s, a in summary["averaged"].items():
        lines.append(f"| {s} | {a['top_k']} | `{a['arch_string']}` | {a['n_extra']} |")
    if summary.get("confirm"):
        protos = list(summary["confirm"])
        first = summary["confirm"][protos[0]]
        seeds = {p: next(iter(summary["confirm"][p].values()))["seeds"] for p in protos}
        lines += ["", "## Top-1 of each sampler retrained on fresh seeds (with the hand designs)",
                  f"Sorted by validation under `{protos[0]}`; nmse_db, mean over the fresh seeds (test ± std; one seed: test alone).", "",
                  "| network | " + " | ".join(f"`{p}` val | `{p}` test ({seeds[p]} seed{'s' if seeds[p] > 1 else ''})" for p in protos) + " |",
                  "|---|" + "---|---|" * len(protos)]  # fmt: skip
        for name in sorted(first, key=lambda n: first[n]["val_mean"]):
            cells = [summary["confirm"][p].get(name) for p in protos]
            lines.append(f"| {name} | " + " | ".join("— | —" if r is None else f"{r['val_mean']:.2f} | {r['test_mean']:.2f}"
                                                   + ("" if r["seeds"] == 1 else f" ± {r['test_std']:.2f}") for r in cells) + " |")  # fmt: skip
    lines += ["", "Figures: `figures/best_so_far_band.png` (median and range over seeds), `figures/best_so_far_median.png`."]
    return "\n".join(lines) + "\n"
