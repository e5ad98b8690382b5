"""`nasdun fidelity`: does a cheap protocol rank architectures like an expensive one?

N random genotypes plus the hand designs are trained under a reference protocol (cached in
``OUT/<reference>/`` and reused when the same candidates, setting and seed are asked again)
and under each cheaper protocol. A cheap protocol's ranking orders candidates by the rung they
reached (deeper first; successive halving) and then by validation nmse_db; the reference
ranks by validation nmse_db. Reported per cheap protocol: Spearman's rho and Kendall's tau-b
against the reference (and rho over the random genotypes alone, since the hand designs sit
at the top under every protocol and lift rho), the overlap of the top-25% sets, whether the reference's top 5 all
sit inside the cheap top 25%, the cost ratio (reference candidate-steps / cheap ones), and the share of
stages that ended at the protocol's cap rather than on patience (near 1: the protocol is a fixed iteration
budget, and every network is still improving when a stage ends).

A long reference (``paper``: hours per four networks at ``small``, K = 8, on 2 CPU cores;
docs/results/fidelity.md) is built in chunks (``reference_chunk`` networks per training run, ``OUT/<reference>/partNN/``):
runs of the same setting and seed train on the same data in the same order, so a network's
result does not depend on its chunk. ``max_chunks`` bounds the chunks trained in one call; the
report then covers the networks whose reference is finished, and says that it is partial. The
cheap protocols are trained on exactly those networks, in the reference's chunks
(``OUT/<protocol>/partNN/``, for the same reason), so that a chunk trained once is reused as the
reference grows; a halving protocol cuts inside its cohort, so it trains the finished networks as
one cohort (``OUT/<protocol>/``), and a halving reference is not chunked.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.readers.plots import frontier_figure, scatter_figure
from nasdun.core.errors import NasdunError
from nasdun.runs.ranks import kendall, spearman, spearman_interval
from nasdun.runs.results import check_study_dir, read_table
from search_spaces.neurons import letter
from trainers.options import RunOptions


def cheap_rank(df: pd.DataFrame) -> pd.Series:
    """1 = best: deeper rung first, then lower validation nmse_db; failures last."""
    rung = df["rung"].fillna(0) if "rung" in df.columns else pd.Series(0, index=df.index)
    val = df["val_nmse_db"].where(df["status"] != "failed", np.inf).fillna(np.inf)
    order = sorted(df.index, key=lambda i: (-rung[i], val[i], i))
    return pd.Series({i: r for r, i in enumerate(order, start=1)}).reindex(df.index)


def _name(protocol: str) -> str:
    return Path(protocol).stem if protocol.endswith((".yaml", ".yml")) else protocol


def spearman_ref_ok(ref: pd.DataFrame, cheap: pd.DataFrame) -> float:
    """Spearman over the networks the reference trained without failure (a network that diverges only
    in long training ranks last under the reference, wherever a short protocol puts it): how well a cheap
    protocol predicts the reference's value, apart from whether the network survives it."""
    ok = ref.index[ref["status"] != "failed"]
    return spearman(cheap_rank(ref.loc[ok]), cheap_rank(cheap.loc[ok])) if len(ok) > 2 else math.nan


def capped_share(run_dirs: Sequence[Path], names: Sequence[str], max_iters: int) -> float:
    """The share of ``names``' stages (``run.json`` stage records of ``run_dirs``) that ran ``max_iters``
    iterations, i.e. ended at the cap, not on patience (nor by divergence or halving)."""
    iters = [st["iters"] for d in run_dirs for n, sts in json.loads((Path(d) / "run.json").read_text())["stages"].items() if n in names for st in sts]
    return sum(i >= max_iters for i in iters) / len(iters) if iters else math.nan


def reference_chunks(archs: list[tuple[str, Any]], n_random: int, size: int) -> list[list[tuple[str, Any]]]:
    """The reference's networks in training runs of ``size`` (0: one run of all), hand designs spread.

    ``archs`` is the random genotypes (first ``n_random``) then the hand designs. The order
    merges the two groups evenly, each network at (i + 1/2) / len(group) of the way (hand
    designs first on a tie), so that every prefix of finished chunks holds both kinds in
    about their overall shares and a partly built reference already ranks random genotypes
    among hand designs. Fixed for given groups and size, so a rerun finds its chunks again.
    Hand designs outside the classic space (:data:`search_spaces.genotype.CLASSIC`: the field's designs added
    2026-12-06) come after, in chunks of their own, so the chunks of the reference built before them stay as they were.
    """
    if size <= 0:
        return [list(archs)]  # one run, in the given order (as before chunks existed)
    hand = archs[n_random:]
    classic = [a for a in hand if _classic(a[1])]
    groups = [classic, archs[:n_random]]
    keyed = [((i + 0.5) / len(g), k, a) for k, g in enumerate(groups) for i, a in enumerate(g)]
    order = [a for _, _, a in sorted(keyed, key=lambda t: (t[0], t[1]))]
    later = [a for a in hand if not _classic(a[1])]
    return [order[i : i + size] for i in range(0, len(order), size)] + [later[i : i + size] for i in range(0, len(later), size)]


def _classic(g: Any) -> bool:
    """Whether genotype ``g`` is a point of the classic space (free weights, soft / relu / lrelu neurons)."""
    from search_spaces.genotype import CLASSIC

    return g.weights in CLASSIC["weights"] and all(n in CLASSIC["neurons"] for n in g.neurons)


def rung_study(run_dirs: str | Path | Sequence[str | Path], randoms: Sequence[str] = ()) -> pd.DataFrame:
    """How well a halving rung after layer t would rank, read from stage-wise runs (no training).

    A rung after layer t compares each candidate's best validation nmse_db of layer t's last
    stage (``run.json`` stage records). Per t < K: Spearman and Kendall of that value against
    the run's final validation nmse_db, Spearman over ``randoms`` alone, and how many of the
    final top 5 are in the top half at layer t (the survivors of one eta = 2 cut of all of them).
    Several runs (a reference trained in chunks on the same data) are read as one cohort, in order.
    """
    dirs = [Path(run_dirs)] if isinstance(run_dirs, str | Path) else [Path(d) for d in run_dirs]
    final = pd.concat([read_table(d).set_index("name")["val_nmse_db"].astype(float) for d in dirs])
    at: dict[str, dict[int, float]] = {}
    cohort: list[str] = []
    for d in dirs:
        meta = json.loads((d / "run.json").read_text())
        for name, stages in meta["stages"].items():
            for st in stages:  # in order: the last record of a layer is its last stage
                at.setdefault(name, {})[int(st["layer"])] = float(st["best_val_nmse_db"])
        cohort += list(meta["archs"])  # ties go to the earlier network of the cohort, as in halving
    names = [n for n in cohort if n in final.index and math.isfinite(final[n]) and n in at]
    K = max(max(v) for v in at.values())
    final = final[names]
    top5 = set(final.sort_values(kind="stable").index[:5])
    rows = []
    for t in range(1, K):
        value = pd.Series({n: at[n].get(t, math.nan) for n in names})
        rnd = [n for n in randoms if n in value.index]
        half = set(value.sort_values(kind="stable").index[: math.ceil(len(value) / 2)])
        rows.append(
            {
                "layer": t,
                "spearman": spearman(value, final),
                "kendall": kendall(value, final),
                "spearman_random": spearman(value[rnd], final[rnd]) if len(rnd) > 2 else math.nan,
                "final_top5_in_top_half": len(top5 & half),
            }
        )
    return pd.DataFrame(rows)


def study_networks(n_genotypes: int, layers: int, genotype_seed: int) -> list[tuple[str, Any]]:
    """The networks of a fidelity study: ``r000``... (``n_genotypes`` uniform draws of the classic space at
    ``layers``, from ``genotype_seed``: :data:`search_spaces.genotype.CLASSIC`, the space the shipped references were drawn
    from), then every hand design of the preset registry that has ``layers`` layers."""
    from search_spaces.genotype import classic_space
    from search_spaces.presets import existing

    space = classic_space(layers)
    rng = np.random.default_rng(genotype_seed)
    archs = [(f"r{i:03d}", space.decode({d.name: d.choices[rng.integers(len(d.choices))] for d in space.decisions()})) for i in range(n_genotypes)]
    return archs + existing(layers)


def run_fidelity(
    n_genotypes: int,
    setting: str,
    layers: int,
    reference: str,
    protocols: Sequence[str],
    seed: int,
    out: str | Path,
    options: RunOptions = RunOptions(),
    genotype_seed: int | None = None,
    force: bool = False,
    reference_chunk: int = 0,
    max_chunks: int | None = None,
    reference_table: str | Path | None = None,
) -> pd.DataFrame:
    """Train, rank, compare; ``seed`` is the run seed (training set and batch order; the
    dictionary, validation and test sets belong to the setting), ``genotype_seed`` (default:
    ``seed``) draws the random genotypes, so one set of genotypes can be studied under other
    training randomness.

    With ``reference_table`` (:mod:`analysis.readers.reference`), the reference is that table, not trained: the study
    (networks, setting, K, seeds, chunks, reference protocol) is the table's, and the arguments that name it
    are ignored; each protocol is trained on the table's networks in the table's chunks. Every reference this
    function trains is written as such a table too (``OUT/reference.csv``)."""
    from nasdun.runs.training import holds_run, train_or_reuse
    from trainers.protocols import get_protocol

    table = None
    if reference_table is not None:
        from analysis.readers.reference import load_reference

        table = load_reference(reference_table)
        a = table.attrs
        setting, layers, seed, genotype_seed, reference = (
            str(a["setting"]),
            int(a["layers"]),
            int(a["seed"]),
            int(a["genotype_seed"]),
            str(a["protocol"]),
        )
        n_genotypes, reference_chunk, max_chunks = int(table["study_genotypes"].iloc[0]), int(table["chunk_size"].iloc[0]), None

    if n_genotypes < 0:
        raise NasdunError(f"genotypes={n_genotypes}; expected an integer >= 0", ("genotypes",))
    if not protocols:
        raise NasdunError("protocols=[] names no cheaper protocol to compare with the reference", ("protocols",))
    if reference_chunk < 0:
        raise NasdunError(f"reference_chunk={reference_chunk}; expected an integer >= 0 (0: the reference in one run)", ("reference_chunk",))
    if max_chunks is not None and max_chunks < 0:
        raise NasdunError(f"chunks={max_chunks}; expected an integer >= 0 (reference chunks to train in this call)", ("chunks",))
    if table is None and reference_chunk and get_protocol(reference).rungs:
        raise NasdunError(f"reference_chunk={reference_chunk} with reference {_name(reference)!r}: a halving protocol ranks inside its cohort, "
                          "so chunks would change it; expected reference_chunk=0 or a reference without rungs", ("reference_chunk",))  # fmt: skip
    archs = study_networks(n_genotypes, layers, seed if genotype_seed is None else genotype_seed)
    own = {"fidelity.csv", "fidelity.md", "figures", "rungs.csv", "networks.csv", "reference.csv", _name(reference), *map(_name, protocols)}

    def ours(name: str) -> bool:  # the study's files, and the training runs of any earlier call (other protocols)
        path = Path(out) / name
        return name in own or (path.is_dir() and any(path.glob("train.json")) or any(path.glob("*/train.json")))

    out_dir = check_study_dir(out, ours, force)
    out_dir.mkdir(parents=True, exist_ok=True)

    def trained(run_dir: Path, nets: list[tuple[str, Any]], proto: str, cheap: bool = False) -> pd.DataFrame:
        reuse = holds_run(run_dir, nets, setting, seed, proto)
        earlier = cheap and not reuse and holds_run(run_dir, archs, setting, seed, proto, subset=True)  # a cheap ranking of fewer of these networks
        doing = f"{_name(proto)}: reusing {run_dir}" if reuse else f"training {len(nets)} networks with {_name(proto)} in {run_dir}"
        print(f"fidelity: {doing}", flush=True)
        return train_or_reuse(run_dir, nets, setting, proto, seed, force or earlier, options).set_index("name")

    chunks = reference_chunks(archs, n_genotypes, reference_chunk)
    ref_dirs = [out_dir / _name(reference)] if reference_chunk == 0 else [out_dir / _name(reference) / f"part{i:02d}" for i in range(len(chunks))]
    ref_parts: list[tuple[Path, list[tuple[str, Any]], pd.DataFrame]] = []  # the finished chunks
    if table is not None:
        ref_parts = _table_parts(table, archs, chunks, ref_dirs)
    budget = math.inf if max_chunks is None else max_chunks
    for run_dir, nets in zip(ref_dirs, chunks, strict=True) if table is None else ():
        if not holds_run(run_dir, nets, setting, seed, reference):
            if budget <= 0:
                continue  # left for a later call: the report covers the finished chunks
            budget -= 1
        ref_parts.append((run_dir, nets, trained(run_dir, nets, reference)))
    if table is None and ref_parts:
        _write_reference_table(
            out_dir / "reference.csv", ref_parts, chunks, archs, n_genotypes, reference_chunk, seed if genotype_seed is None else genotype_seed
        )
    done = [n for n, _ in archs if any(n in t.index for _, _, t in ref_parts)]
    if len(done) < len(archs):
        print(f"fidelity: partial reference: {len(done)} of {len(archs)} networks trained with {_name(reference)}", flush=True)
    if len(done) < 3:
        raise NasdunError(
            f"{len(done)} networks have their {_name(reference)} reference trained; a ranking needs at least 3 (raise chunks=N)", ("chunks",)
        )
    tables = {reference: pd.concat([t for _, _, t in ref_parts]).loc[done]}
    dirs = {reference: [d for d, _, _ in ref_parts]}
    compared = [(n, g) for n, g in archs if n in done]  # a cheap protocol trains the networks it is compared on
    for proto in protocols:
        if reference_chunk and not get_protocol(proto).rungs:  # in the reference's chunks: each reused once trained
            dirs[proto] = [out_dir / _name(proto) / d.name for d, _, _ in ref_parts]
            tables[proto] = pd.concat([trained(d, nets, proto) for d, (_, nets, _) in zip(dirs[proto], ref_parts, strict=True)]).loc[done]
        else:
            dirs[proto] = [out_dir / _name(proto)]
            tables[proto] = trained(dirs[proto][0], compared, proto, cheap=True).loc[done]
    capped = {p: capped_share(dirs[p], done, get_protocol(p).max_iters) for p in protocols}
    capped[reference] = math.nan if table is not None else capped_share(dirs[reference], done, get_protocol(reference).max_iters)
    ref = tables[reference]
    randoms = [n for n, _ in archs[:n_genotypes] if n in done]  # the hand designs are easy to rank; rho without them too
    rows = []
    for proto in protocols:
        agreement = rank_agreement(ref, tables[proto], randoms)
        rows.append({"protocol": _name(proto), "reference": _name(reference), "candidates": len(done), "networks_total": len(archs),
                     **agreement, "stages_at_cap": capped[proto], "ref_stages_at_cap": capped[reference]})  # fmt: skip
        both = pd.DataFrame({"reference val_nmse_db": ref["val_nmse_db"], f"{_name(proto)} rank": cheap_rank(tables[proto]),
                             "reference rank": cheap_rank(ref)})  # fmt: skip
        both["kind"] = ["random" if n.startswith("r") and n[1:].isdigit() else "hand design" for n in both.index]
        scatter_figure(both, "reference rank", f"{_name(proto)} rank", "kind", out_dir / "figures", f"rank_{_name(proto)}",
                       f"{_name(proto)} vs {_name(reference)} ranks")  # fmt: skip
    result = pd.DataFrame(rows)
    result.to_csv(out_dir / "fidelity.csv", index=False)
    frontier_figure(result, out_dir / "figures", "frontier", _name(reference))
    no_rungs = pd.DataFrame(columns=["layer", "spearman", "kendall", "spearman_random", "final_top5_in_top_half"])  # a table has no stage records
    rungs = rung_study([d for d, _, _ in ref_parts], randoms) if table is None else no_rungs
    rungs.to_csv(out_dir / "rungs.csv", index=False)
    networks = network_table(dict(archs), tables, reference, list(protocols))
    networks.to_csv(out_dir / "networks.csv")
    where = f"setting `{setting}`, K = {layers}, seed {seed}" + (
        "" if genotype_seed in (None, seed) else f" (genotypes drawn with seed {genotype_seed})"
    )
    if reference_chunk:
        where += f"; reference (and each non-halving cheap protocol) in runs of {reference_chunk} networks on the same data"
    if len(done) < len(archs):
        where += f". **Partial reference: {len(done)} of {len(archs)} networks trained so far**"
    where += (
        f"; reference read from the table {table.attrs['path']}"
        if table is not None
        else f"; {capped[reference]:.0%} of the reference's stages ended at its cap of {get_protocol(reference).max_iters:,} iterations"
    )
    (out_dir / "fidelity.md").write_text(fidelity_markdown(rows, rungs, networks, _name(reference), list(protocols), len(randoms), where))
    return result


def rank_agreement(ref: pd.DataFrame, cheap: pd.DataFrame, randoms: Sequence[str]) -> dict[str, float]:
    """How a cheap protocol's results (``cheap``) rank the networks the reference (``ref``) ranks, both indexed by the
    same network names: Spearman with its interval and Kendall of :func:`cheap_rank`, over the random genotypes alone
    (``randoms``) and without the reference's failures; the value gaps; the top-quarter overlap; the cost ratio."""
    ref_rank, rank = cheap_rank(ref), cheap_rank(cheap)
    n = len(ref)
    quarter = max(1, math.ceil(n / 4))
    top, ref_top, ref_top5 = set(rank[rank <= quarter].index), set(ref_rank[ref_rank <= quarter].index), set(ref_rank[ref_rank <= 5].index)
    rho = spearman(ref_rank, rank)
    low, high = spearman_interval(rho, n)
    random_rho = spearman(cheap_rank(ref.loc[list(randoms)]), cheap_rank(cheap.loc[list(randoms)])) if len(randoms) > 2 else math.nan
    both_ok = ref.index[(ref["status"] != "failed") & (cheap["status"] == "ok")]
    delta = (cheap.loc[both_ok, "val_nmse_db"] - ref.loc[both_ok, "val_nmse_db"]).astype(float)
    some = len(delta) > 0
    return {
        "spearman": rho,
        "spearman_low95": low,
        "spearman_high95": high,
        "kendall": kendall(ref_rank, rank),
        "spearman_random": random_rho,
        "spearman_ref_ok": spearman_ref_ok(ref, cheap),
        "median_abs_delta_db": float(delta.abs().median()) if some else math.nan,
        "median_delta_db": float(delta.median()) if some else math.nan,
        "within_1db": float((delta.abs() <= 1.0).mean()) if some else math.nan,
        "top25_overlap": len(top & ref_top) / quarter,
        "ref_top5_in_cheap_top25": int(len(ref_top5 & top)),
        "cost_ratio": float(ref["iterations"].sum() / max(1, cheap["iterations"].sum())),
        "ref_candidate_steps": int(ref["iterations"].sum()),
        "cheap_candidate_steps": int(cheap["iterations"].sum()),
    }


def fidelity_markdown(rows: Sequence[dict[str, Any]], rungs: pd.DataFrame, networks: pd.DataFrame, reference: str, protocols: list[str],
                      n_random: int, where: str) -> str:  # fmt: skip
    """``fidelity.md``: the agreement table (:func:`rank_agreement` rows), the rung table, the per-network values."""
    done = int(rows[0]["candidates"]) if rows else 0
    quarter = max(1, math.ceil(done / 4))
    lines = [
        "| protocol | Spearman | 95% interval | Kendall | Spearman, random only | Spearman, reference failures left out | top-25% overlap "
        "| ref top-5 in cheap top-25% | median \\|Δ\\| dB | median Δ dB | within 1 dB | cost ratio | stages at cap |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [
            f"{r['spearman']:.3f}",
            f"{r['spearman_low95']:.2f} to {r['spearman_high95']:.2f}",
            f"{r['kendall']:.3f}",
            f"{r['spearman_random']:.3f}",
            f"{r['spearman_ref_ok']:.3f}",
            f"{r['top25_overlap']:.2f}",
            f"{r['ref_top5_in_cheap_top25']}/5" + (f" (at most {quarter})" if quarter < 5 else ""),
            f"{r['median_abs_delta_db']:.2f}",
            f"{r['median_delta_db']:+.2f}",
            f"{r['within_1db']:.0%}",
            f"{r['cost_ratio']:.2f}",
            f"{r['stages_at_cap']:.0%}",
        ]
        lines.append(f"| {r['protocol']} | {' | '.join(cells)} |")
    hand = done - n_random
    rung_lines = (
        f"\nA halving rung after layer t, read from the `{reference}` run (each network's value at the end of layer t "
        "against its final value):\n\n| layer | Spearman | Kendall | Spearman, random only | final top 5 in the top half |\n"
        "|---|---|---|---|---|\n"
        if len(rungs)
        else ""
    ) + "".join(
        f"| {r.layer} | {r.spearman:.3f} | {r.kendall:.3f} | {r.spearman_random:.3f} | {r.final_top5_in_top_half}/5 |\n" for r in rungs.itertuples()
    )
    return (
        f"Ranking agreement with `{reference}` over {done} networks ({n_random} random + {hand} hand design{'s' * (hand != 1)}), {where}"
        ". Δ: a protocol's validation nmse_db minus the reference's, over the networks both train without failure.\n\n"
        + "\n".join(lines)
        + "\n"
        + rung_lines
        + "\nValidation nmse_db per network, best under the reference first (neurons: S soft threshold, R ReLU, L leaky ReLU, layer 1 first; "
        "a failed network ranks last):\n\n" + networks_markdown(networks, reference, protocols)
    )


def _table_parts(table: pd.DataFrame, archs: list[tuple[str, Any]], chunks: list[list[tuple[str, Any]]],
                 ref_dirs: list[Path]) -> list[tuple[Path, list[tuple[str, Any]], pd.DataFrame]]:  # fmt: skip
    """The reference's finished chunks read from its table: each network's genotype must be the one this study draws,
    in the chunk the study puts it in; a chunk is finished when the table holds all of its networks."""
    from analysis.readers.reference import as_results

    drawn = dict(archs)
    where = f"reference table {table.attrs['path']}"
    wrong = [n for n in table.index if n not in drawn or drawn[n].hash != str(table.loc[n, "hash"])]
    if wrong:
        raise NasdunError(f"{where}: {', '.join(wrong)} is not the network nasdun fidelity draws at genotype seed {table.attrs['genotype_seed']}, "
                          f"K = {table.attrs['layers']}; expected the table of a `nasdun fidelity` study")  # fmt: skip
    chunk_of = {n: i for i, c in enumerate(chunks) for n, _ in c}
    moved = [n for n in table.index if int(table.loc[n, "chunk"]) != chunk_of[n]]
    if moved:
        raise NasdunError(f"{where}: {', '.join(moved)} in another chunk than the study's (chunk size {len(chunks[0])}); expected the study's chunks")
    results = as_results(table)
    return [(d, nets, results.loc[[n for n, _ in nets]]) for d, nets in zip(ref_dirs, chunks, strict=True) if all(n in table.index for n, _ in nets)]


def _write_reference_table(path: Path, parts: list[tuple[Path, list[tuple[str, Any]], pd.DataFrame]], chunks: list[list[tuple[str, Any]]],
                           archs: list[tuple[str, Any]], n_genotypes: int, chunk_size: int, genotype_seed: int) -> None:  # fmt: skip
    """The trained reference as a table (:mod:`analysis.readers.reference`) that a later `nasdun fidelity --reference-table` reads."""
    from analysis.readers.reference import reference_rows, write_reference

    kind = {n: "random" for n, _ in archs[:n_genotypes]} | {n: "hand design" for n, _ in archs[n_genotypes:]}
    chunk_of = {n: i for i, c in enumerate(chunks) for n, _ in c}
    rows = []
    for run_dir, nets, results in parts:
        meta = json.loads((run_dir / "run.json").read_text())
        for row in reference_rows(results, meta, chunk_of[nets[0][0]], genotype_seed, kind):
            rows.append({**row, "study_genotypes": n_genotypes, "chunk_size": chunk_size})
    write_reference(rows, path)


def network_table(genotypes: dict[str, Any], tables: dict[str, pd.DataFrame], reference: str, protocols: list[str]) -> pd.DataFrame:
    """One row per network, best under ``reference`` first: its neurons, the reference's validation and test nmse_db,
    iterations and status, and each protocol's validation nmse_db (NaN where it failed) and status (``stopped``: by halving)."""
    ref = tables[reference]
    rows = pd.DataFrame(
        {
            "neurons": ["".join(letter(n) for n in genotypes[name].neurons) for name in ref.index],
            "reference_val_nmse_db": ref["val_nmse_db"].where(ref["status"] != "failed"),
            "reference_test_nmse_db": ref["test_nmse_db"].where(ref["status"] != "failed"),
            "reference_iterations": ref["iterations"],
            "reference_status": ref["status"],
            "reference_reason": ref["reason"].astype(object).where(ref["reason"].notna(), ""),
        },
        index=ref.index,
    )
    for proto in protocols:
        t = tables[proto]
        rows[f"{_name(proto)}_val_nmse_db"] = t["val_nmse_db"].where(t["status"] != "failed")
        rows[f"{_name(proto)}_status"] = t["status"]
    return rows.loc[cheap_rank(ref).sort_values(kind="stable").index]


def networks_markdown(networks: pd.DataFrame, reference: str, protocols: list[str]) -> str:
    """:func:`network_table` as Markdown."""
    names = [_name(p) for p in protocols]
    lines = [f"| network | neurons | `{_name(reference)}` | iterations | " + " | ".join(f"`{n}`" for n in names) + " |",
             "|---|---|---|---|" + "---|" * len(names)]  # fmt: skip
    for name, r in networks.iterrows():
        ref = f"{r['reference_val_nmse_db']:.2f} (test {r['reference_test_nmse_db']:.2f})"
        if r["reference_status"] == "failed":
            ref = f"failed: {r['reference_reason']}"
        cheap = [{"failed": "failed", "stopped": f"{r[f'{n}_val_nmse_db']:.2f} (stopped)"}.get(r[f"{n}_status"], f"{r[f'{n}_val_nmse_db']:.2f}")
                 for n in names]  # fmt: skip
        lines.append(f"| {name} | {r['neurons']} | {ref} | {int(r['reference_iterations']):,} | " + " | ".join(cheap) + " |")
    return "\n".join(lines) + "\n"
