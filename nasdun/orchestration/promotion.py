"""The second phase of a search (and `nasdun promote`): train a run's top-k fully, then give the verdict there.

A search run with a cheap protocol ranks many candidates; ``promote`` takes its best ``k``
distinct genotypes by validation nmse_db (status ``ok`` only: with successive halving, the
top rung) and trains them together under a longer protocol, on the run's own setting and
seed (read from its rows), so the data are the ones the screening saw. A search's own
promotion (:func:`promote_search`) also trains every hand design, so that its verdict compares
found and hand designs under the protocol whose ranking is trusted. It writes the usual
results table in ``OUT`` and ``promote.md``: each finalist's screening value and rank next to
its promoted value and rank, and Spearman's rho between the two. :func:`second_phase` is what a search runs when its
screening ends (:func:`nasdun.orchestration.driver.run_search`): it trains on the search's Ray workers, as its cohorts did.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from nasdun.core.errors import Interrupted, NasdunError
from nasdun.runs.ranks import spearman
from nasdun.runs.results import load_runs, only_value, ranked, top_k
from search_spaces.genotype import Genotype
from trainers.options import RunOptions

if TYPE_CHECKING:
    from nasdun.orchestration.searchconfig import ResolvedSearch
    from nasdun.runs.summary import SearchSummary
    from trainers.protocols import Protocol


def finalists(df: pd.DataFrame, k: int, hand_designs: bool = False, hand_top: int | None = None) -> pd.DataFrame:
    """The rows to promote: the ``k`` best distinct genotypes by validation nmse_db (:func:`nasdun.runs.results.top_k`);
    with ``hand_designs``, the ``k`` best *found* ones (rows without a ``preset``) and then every hand design of the
    run (rows with one, in trial order; each genotype once, whatever its screening status): the sides of the verdict.
    With ``hand_top``, only the ``hand_top`` hand designs best by screening validation nmse_db (among those trained to
    the end), best first."""
    if not hand_designs:
        return top_k(df, k)
    from nasdun.runs.verdict import hand_design_rows

    hand = hand_design_rows(df)
    found = ranked(df[~hand]).head(k)
    if hand_top is not None:
        return pd.concat([found, ranked(df[hand]).head(hand_top)])
    designs = df[hand].sort_values("trial_number", kind="mergesort") if "trial_number" in df else df[hand]  # the table: finishing order
    return pd.concat([found, designs.drop_duplicates("hash", keep="first")])


def run_promote(
    run: str | Path, k: int, protocol: str | Protocol, out: str | Path, options: RunOptions = RunOptions(), force: bool = False,
    hand_designs: bool = False, hand_top: int | None = None, workers: tuple[int, int, float] = (1, 1, 0.0),
) -> pd.DataFrame:  # fmt: skip
    """Train the top-``k`` of ``run`` (with ``hand_designs``: and every hand design, :func:`finalists`) under ``protocol``
    into ``out``; returns the comparison table (``promote.csv``; its ``preset`` column marks the hand designs). ``workers``
    (cohorts, CPUs and GPUs each): trained as that many cohorts on Ray workers (:func:`nasdun.runs.training.run_train`)."""
    from nasdun.runs.training import run_train
    from nasdun.runs.verdict import display, preset_of

    label = Path(protocol).stem if isinstance(protocol, str) else protocol.name  # a file protocol is named by its stem
    df = load_runs([run])
    setting, seed = only_value(df, "setting", str(run)), int(only_value(df, "seed", str(run)))
    chosen = finalists(df, k, hand_designs, hand_top)
    archs = [(str(r["name"]), Genotype.from_json(str(r["genotype"]))) for _, r in chosen.iterrows()]
    n, cpus, gpus = workers
    promoted = run_train(archs, setting, protocol, seed, out, options, overwrite=force, workers=n, cpus=cpus, gpus=gpus).set_index("name")
    table = pd.DataFrame(
        {
            "name": [n for n, _ in archs],
            "preset": [preset_of(r.to_dict()) for _, r in chosen.iterrows()],
            "screen_val_nmse_db": chosen["val_nmse_db"].astype(float).to_numpy(),
            "screen_rank": chosen["val_nmse_db"].astype(float).rank(method="first").astype(int).to_numpy(),
        }
    ).set_index("name")
    for col in ("status", "val_nmse_db", "test_nmse_db", "test_nmse_db_mean", "hash"):
        table[col] = promoted.loc[table.index, col] if col in promoted.columns else math.nan
    if "test_psnr" in promoted.columns:
        table["test_psnr"] = promoted.loc[table.index, "test_psnr"]
    table["rank"] = table["val_nmse_db"].astype(float).rank(method="first").astype(int)
    both = table["screen_val_nmse_db"].notna() & table["val_nmse_db"].notna()
    rho = spearman(table.loc[both, "screen_val_nmse_db"], table.loc[both, "val_nmse_db"]) if both.sum() > 2 else float("nan")
    designs = " found networks and every hand design" if hand_top is None else f" found networks and the {hand_top} best-screened hand designs"
    what = f"Top {k}" + (designs if hand_designs else "")
    lines = [
        f"{what} of `{run}` (setting `{setting}`, seed {seed}) trained with `{label}`; "
        f"Spearman between screening and promoted validation nmse_db: {rho:.3f}.",
        "",
        "| name | hand design | screening val | screening rank | promoted val | promoted test | promoted rank |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in table.sort_values("rank").iterrows():  # by the promoted rank: the verdict's order, its winner first and in bold
        values = f"{r['screen_val_nmse_db']:.2f}", f"{r['val_nmse_db']:.2f}", f"{r['test_nmse_db']:.2f}"
        cells = [display(str(r["preset"])) if r["preset"] else "", values[0], str(int(r["screen_rank"])), values[1], values[2], str(int(r["rank"]))]
        if int(r["rank"]) == 1:
            name, cells = f"**{name}**", [f"**{c}**" if c else c for c in cells]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    hyper = _hyperlista(setting, seed, int(only_value(df, "layers", str(run))), Path(out))
    lines += ["", f"Without training: HyperLISTA at the same depth (ALISTA's analytic W, momentum and support selection; its three"
              f" scalars c = ({', '.join(f'{c:g}' for c in hyper['c'])}) by grid search on training data, nothing backpropagated)"
              f" reaches val {hyper['val_nmse_db']:.2f}, test {hyper['test_nmse_db']:.2f} dB: what analytic tuning gives."]  # fmt: skip
    (Path(out) / "promote.md").write_text("\n".join(lines) + "\n")
    table["protocol"] = label
    table.reset_index().to_csv(Path(out) / "promote.csv", index=False)  # written last: the mark of a finished promotion
    return table.reset_index()


def _hyperlista(setting: str, seed: int, layers: int, out: Path) -> dict[str, Any]:
    """HyperLISTA at ``layers`` iterations on the promotion's data (``hyperlista.json`` in ``out``, read back when there)."""
    import json

    from nasdun.runs.results import write_json
    from trainers.hyperlista import reference
    from trainers.problems.make import make_problem

    path = out / "hyperlista.json"
    if path.is_file():
        return dict(json.loads(path.read_text()))
    hyper = reference(make_problem(setting, seed, batch_size=64), layers)
    write_json(path, hyper)
    return hyper


PROMOTED = "promoted"


def ray_running() -> bool:
    import ray

    return bool(ray.is_initialized())


def promote_search(run: str | Path, search: ResolvedSearch) -> dict[str, Any]:
    """A search's own second phase: its top ``promoted_k`` found networks and every hand design it trained, under
    ``search.promote_protocol``, in RUN/promoted, with the search's precision and compile settings and its device
    (a GPU when its trials had one), on its setting and seed. The returned figures (``search.json``'s ``promoted``) hold the
    verdict computed there (:func:`nasdun.runs.verdict.judge` of the promoted rows).

    Idempotent, so ``--resume`` can always call it: a finished promotion of the same finalists
    under the same protocol is read, not redone; a finished one of other finalists (the search
    went on after it) is kept as ``promoted.N`` and the new top-k promoted; an unfinished one (no ``promote.csv``)
    continues from its checkpoints when it trains the same networks the same way, and is redone otherwise. Trained as
    the search's cohorts are: as many cohorts side by side as the search ran, on its Ray workers.
    """
    from nasdun.runs.verdict import hand_design_rows, judge

    run, start, cfg = Path(run), time.perf_counter(), search.cfg
    if search.promote_protocol is None:
        raise NasdunError(f"promote_top=0 for {run}: the search has no promotion phase; expected promote_top >= 1 or null")
    k, protocol = cfg.promoted_k, search.promote_protocol.name
    out = run / PROMOTED
    rows = load_runs([run])
    chosen = finalists(rows, k, hand_designs=True, hand_top=cfg.promote_hand)
    names = [str(n) for n in chosen["name"]]
    screened = int(hand_design_rows(rows).sum())
    found_screened = int((~hand_design_rows(rows) & (rows["status"] == "ok")).sum())
    done = out / "promote.csv"
    reused = False
    if done.is_file():
        old = pd.read_csv(done)
        reused = [str(n) for n in old["name"]] == names and "protocol" in old and set(old["protocol"].astype(str)) == {protocol}
        if not reused:
            n = 1 + sum(1 for _ in run.glob(f"{PROMOTED}.*"))
            out.rename(run / f"{PROMOTED}.{n}")
    if reused:
        table = pd.read_csv(done)
    else:
        from nasdun.orchestration.raycluster import concurrency
        from nasdun.runs.verdict import ranks_like

        workers = (concurrency(cfg) if ray_running() else 1, cfg.cpus_per_trial, cfg.gpus_per_trial)
        n_hand = int(hand_design_rows(chosen).sum())
        which = f"the {n_hand} of {screened} that screened best" if n_hand < screened else f"all {n_hand}"
        n_found = len(names) - n_hand
        finds = f"the top {n_found} found network{'s' * (n_found > 1)}" if n_found else "no found network (none finished screening); only"
        print(
            f"phase 2 of 2, the verdict: {finds} and the hand design{'s' * (n_hand != 1)} ({which}) trained again under {protocol}, which"
            f" {ranks_like(protocol)}; the screening above ranks them, this decides",
            flush=True,
        )
        try:
            table = run_promote(  # force: an unfinished promotion here is continued (the same run) or replaced (another one)
                run, k, search.promote_protocol, out, search.options, force=True, hand_designs=True, hand_top=cfg.promote_hand,
                workers=workers,
            )  # fmt: skip
        except KeyboardInterrupt:
            raise Interrupted(str(run)) from None  # the promotion continues from its checkpoints
    setting, seed, layers = (only_value(rows, key, str(run)) for key in ("setting", "seed", "layers"))
    hyper = _hyperlista(str(setting), int(seed), int(layers), out)
    verdict = judge(table.to_dict("records"))
    found = table[~hand_design_rows(table)]
    both = found["screen_val_nmse_db"].notna() & found["val_nmse_db"].notna()
    return {
        "top_k": k,
        "out": str(out),
        "protocol": protocol,
        "precision": cfg.precision,
        "reused": reused,
        "wall_s": 0.0 if reused else time.perf_counter() - start,
        "found": len(found),
        "hand_designs": len(table) - len(found),
        "hand_designs_screened": screened,
        "found_screened": found_screened,
        "hyperlista_val_nmse_db": hyper["val_nmse_db"],
        "hyperlista_test_nmse_db": hyper["test_nmse_db"],
        "best": verdict["best_found"] if not verdict["best_is_hand_design"] else verdict["best_preset_name"],
        "best_val_nmse_db": min(verdict["best_found_val_nmse_db"], verdict["best_preset_val_nmse_db"]),
        "spearman_screen_vs_promoted": spearman(found.loc[both, "screen_val_nmse_db"], found.loc[both, "val_nmse_db"])
        if both.sum() > 2
        else math.nan,
        **{f"verdict_{key}": value for key, value in verdict.items()},
    }


def second_phase(run: Path, search: ResolvedSearch, fig: SearchSummary) -> SearchSummary:
    """A search's second phase (its run still locked): the top-k found networks and the hand designs under the
    promotion's protocol (:func:`promote_search`), and the verdict there; with ``promote_top`` 0 the verdict stays the
    screening's, marked as such. Writes and returns the completed summary."""
    from nasdun.runs.verdict import trusted_line

    fig.screening_verdict = fig.verdict
    if search.promote_protocol is not None:
        fig.promoted = promote_search(run, search)
    fig.verdict = trusted_line(fig.promoted, fig, search.cfg.protocol)
    fig.verdict_protocol = fig.promoted["protocol"] if fig.promoted else str(search.cfg.protocol)
    fig.write(run)
    return fig
