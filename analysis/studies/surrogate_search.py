"""The samplers on a surrogate of this space, at budgets a 2-core machine cannot train (issue 18, item 2).

A real search trains every candidate (about 9 s each at ``small``, K = 8, ``s2x370`` on 2 cores), so the
study of docs/results/samplers.md stops at 40 candidates, where no sampler reaches the hand designs cold.
Here each candidate is scored instead by an *oracle*: per data seed of a finished ``nasdun compare-samplers``
study, a random forest fitted on every genotype trained at that seed (all samplers' candidates and the hand
designs; the searches of one seed share one dataset), as the surrogate NAS benchmarks do (NAS-Bench-301).
The search itself is the real one: the driver's :class:`nasdun.orchestration.searcher.CohortSearcher` over an
:class:`nasdun.orchestration.experiment.Experiment` with the study's config (sampler and options, cohort size, search
space), ``--in-flight`` cohorts in flight, only the training replaced. Simulated seed r searches with sampler seed r on the oracle of data
seed ``r mod S`` (S data seeds).

Reported per sampler, median over the simulated seeds (a run that never gets there counts as infinite):
the candidates needed to beat the oracle's value of LISTA and of the best hand design (both scored by the
same oracle; the hand designs themselves do not count as found), and the best-so-far value at checkpoints.
With two or more samplers, the first one's median candidates over the best other sampler's, with a paired
bootstrap interval over the seeds (issue 18's goal: at most 0.5).
The oracle's 5-fold cross-validated Spearman (how well it ranks genotypes it was not fitted on) is printed
with it, and ``--check`` compares the simulated runs at the real study's budget and seeds with the real
runs, so the surrogate's own error is on the page next to what it predicts.

    python -m analysis.studies.surrogate_search runs/samplers8 --samplers predictor,tpe,rl,evolution,random \\
        --seeds 0-19 --budget 200 --out runs/surrogate8

Writes ``--out``/``<sampler>-seed<r>/`` (each simulated search's own results table and study),
``surrogate.json`` and ``surrogate.md``. A finished simulated search is reused, not rerun.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.readers.searchstats import best_so_far, median_or_none
from analysis.studies.samplers_study import candidates_to_beat
from nasdun.core.errors import NasdunError
from nasdun.orchestration.samplers._predictor import PredictorSampler
from search_spaces.genotype import Genotype, classic_space

TREES = 500


def pools(study: Path) -> dict[int, pd.DataFrame]:
    """Per search seed of a compare-samplers study: distinct finished found genotypes and their validation nmse_db."""
    frames = [pd.read_csv(f) for f in sorted((study / "runs").glob("*/results.csv"))]
    if not frames:
        raise SystemExit(f"{study}/runs/*/results.csv: none found; expected a compare-samplers study directory")
    df = pd.concat(frames)
    df = df[(df["status"] == "ok") & df["preset"].isna()].drop_duplicates(["seed", "hash"])
    return {int(s): g.reset_index(drop=True) for s, g in df.groupby("seed")}


class Oracle:
    """A random forest of one data seed's trained genotypes (validation nmse_db), on the predictor's encoding
    (the decisions' one-hot and the share of each choice per kind of decision)."""

    def __init__(self, genotypes: list[Genotype], values: np.ndarray, hand: dict[str, Genotype], seed: int) -> None:
        from sklearn.ensemble import RandomForestRegressor

        self.space = classic_space(genotypes[0].layers, genotypes[0].max_lag)  # the space the reference's genotypes were drawn from
        self._probe = PredictorSampler(self.space.decisions(), seed=seed)
        X = self.features(genotypes)
        self.forest = RandomForestRegressor(TREES, random_state=seed, n_jobs=1).fit(X, values)
        self.cv_spearman = _cv_spearman(X, values, seed)
        self.hand = {name: float(v) for name, v in zip(hand, self.forest.predict(self.features(list(hand.values()))), strict=True)}
        self._cache: dict[str, float] = {}

    def features(self, genotypes: list[Genotype]) -> np.ndarray:
        return np.stack([self._probe.encode(self.space.encode(g)) for g in genotypes])

    def __call__(self, g: Genotype) -> float:
        if g.hash not in self._cache:
            self._cache[g.hash] = float(self.forest.predict(self.features([g]))[0])
        return self._cache[g.hash]


def _cv_spearman(X: np.ndarray, y: np.ndarray, seed: int) -> float:
    from scipy.stats import spearmanr
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.model_selection import KFold

    pred = np.zeros(len(y))
    for train, test in KFold(5, shuffle=True, random_state=seed).split(X):
        pred[test] = RandomForestRegressor(TREES, random_state=seed, n_jobs=1).fit(X[train], y[train]).predict(X[test])
    return float(spearmanr(pred, y).statistic)


def oracles(study: Path) -> dict[int, Oracle]:
    """One oracle per data seed of a compare-samplers study: its searches' distinct genotypes and its hand designs."""
    out = {}
    for seed, found in pools(study).items():  # each seed's distinct trained genotypes, hand designs apart
        hand = hand_designs(study, seed)
        rows = pd.concat([found, hand]).drop_duplicates("hash")
        genotypes = [Genotype.from_json(g) for g in rows["genotype"]]
        named = {str(n): Genotype.from_json(g) for n, g in zip(hand["name"], hand["genotype"], strict=True)}
        out[seed] = Oracle(genotypes, rows["val_nmse_db"].to_numpy(float), named, seed)
    return out


def hand_designs(study: Path, seed: int) -> pd.DataFrame:
    """The hand designs the cold study trained for ``seed`` (status ok); LISTA among them, as the first bar."""
    path = study / "hand" / f"seed{seed}" / "results.csv"
    if not path.is_file():
        raise SystemExit(f"{path}: missing; expected the cold study's hand designs for seed {seed}")
    hand = pd.read_csv(path)
    hand = hand[(hand["status"] == "ok") & np.isfinite(hand["val_nmse_db"])]
    if "lista" not in set(hand["name"]):
        raise SystemExit(f"{path}: no trained LISTA; expected the hand designs of a cold `nasdun compare-samplers` study")
    return hand


def simulate(cfg: Any, score: Callable[[Genotype], float], out: Path, in_flight: int) -> pd.DataFrame:
    """One search of ``cfg.budget`` distinct candidates in ``out``, scored by ``score`` instead of trained. The driver's
    own searcher (:class:`nasdun.orchestration.searcher.CohortSearcher`) asks the cohorts, ``in_flight`` of them at once, and each is told back
    as soon as the searcher can go no further: the order in which a real search with ``in_flight`` workers is told
    (which cohort finishes first does not change its proposals, see :meth:`~nasdun.orchestration.experiment.Experiment.ask_cohort`)."""
    import io

    from ray.tune.search import Searcher

    from nasdun.orchestration.driver import CohortSearcher
    from nasdun.orchestration.experiment import Experiment
    from nasdun.runs.progress import ProgressLine
    from nasdun.runs.results import read_table

    done = out / "done.json"
    record = {"budget": cfg.budget, "in_flight": in_flight, "sampler": cfg.sampler, "seed": cfg.seed, "options": cfg.options_for(cfg.sampler)}
    if done.is_file() and json.loads(done.read_text()) == record:
        return read_table(out)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    out.mkdir(parents=True)
    searcher = CohortSearcher(Experiment.open(out, cfg), ProgressLine("surrogate", stream=io.StringIO()), in_flight)
    inflight: list[tuple[str, dict[str, Any]]] = []
    for i in range(10 * cfg.budget + 10):  # each step asks or tells a cohort: ample for a budget in cohorts of >= 1
        suggestion = searcher.suggest(f"trial-{i}")
        if suggestion is Searcher.FINISHED:
            break
        if suggestion is not None:
            inflight.append((f"trial-{i}", suggestion))
            continue
        trial_id, oldest = inflight.pop(0)
        metrics = [{"status": "ok", "val_nmse_db": v, "test_nmse_db": v, "iterations": 0}
                   for v in (score(Genotype.from_json(g)) for g in oldest["genotypes"])]  # fmt: skip
        searcher.on_trial_complete(trial_id, {"candidates": metrics, "trainer_wall_s": 0.0})
    else:
        raise SystemExit(f"{out}: the search did not finish within {10 * cfg.budget + 10} steps; not marked done")
    done.write_text(json.dumps(record))
    return read_table(out)


def study_config(config: str, sampler: str, seed: int, budget: int, options: dict[str, Any]) -> Any:
    """The study's search config for one simulated search: cold, this sampler and seed, its options updated by ``options``."""
    from nasdun.orchestration.searchconfig import load_config

    overrides: dict[str, Any] = {"sampler": sampler, "seed": seed, "budget": budget, "baselines": False}
    if options:
        base = load_config(config, {})
        overrides["sampler_options"] = {**base.sampler_options, sampler: {**base.options_for(sampler), **options}}
    return load_config(config, overrides)


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or not (hi or lo).isdigit() or int(hi or lo) < int(lo):
            raise SystemExit(f"--seeds {text!r}: bad part {part!r}; expected seeds like 0-9 or 0,1,2")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def _fmt(x: float | None, total: int, reached: int) -> str:
    return f"not reached ({reached}/{total})" if x is None else f"{x:.0f} ({reached}/{total})"


def summary(tables: dict[str, dict[int, pd.DataFrame]], bars: dict[int, dict[str, float]], checkpoints: Iterable[int]) -> list[dict[str, Any]]:
    """Per sampler: median candidates to beat LISTA and the best hand design, runs that got there, median best-so-far."""
    rows = []
    for sampler, runs in tables.items():
        need_lista = [candidates_to_beat(df, bars[seed]["lista"]) for seed, df in runs.items()]
        need_best = [candidates_to_beat(df, bars[seed]["best"]) for seed, df in runs.items()]
        curves = [best_so_far(df.assign(sampler=sampler))[sampler] for df in runs.values()]
        row: dict[str, Any] = {
            "sampler": sampler,
            "runs": len(runs),
            "to_lista": median_or_none(need_lista),
            "lista_reached": sum(n is not None for n in need_lista),
            "to_best_hand": median_or_none(need_best),
            "best_reached": sum(n is not None for n in need_best),
        }
        for n in checkpoints:
            row[f"best@{n}"] = float(np.median([c[min(n, len(c)) - 1] for c in curves]))
        rows.append(row)
    return rows


def ratio_interval(needs: dict[str, list[int | None]], bar: str, budget: int, reps: int = 4000, seed: int = 0) -> dict[str, Any]:
    """The first sampler's median candidates to beat ``bar`` over the best (smallest) median of the others, with a
    95 % bootstrap interval and the share of bootstrap samples at or below 0.5 (issue 18's goal).

    ``needs`` maps each sampler to its runs' candidates (None: not within ``budget``), the runs in the same order of
    simulated seed for every sampler; seeds are resampled together (paired: seed r of every sampler searched the
    same oracle). Censoring is resolved against the first sampler: when the others' best median is beyond the
    budget, the ratio is at most first / budget and counts as that bound; when the first sampler's median is
    beyond the budget, the ratio is unknown and counts as infinite (never at or below 0.5)."""
    names = list(needs)
    if len(names) < 2 or len({len(v) for v in needs.values()}) != 1:
        runs = [len(v) for v in needs.values()]
        raise NasdunError(f"ratio_interval: samplers {names} with runs {runs}; expected two or more samplers with equally many runs")
    arr = np.array([[math.inf if n is None else n for n in needs[s]] for s in names], dtype=float)

    def ratio(a: np.ndarray) -> np.ndarray:
        med = np.median(a, axis=-1)  # (..., samplers)
        first, rival = med[..., 0], np.minimum(med[..., 1:].min(axis=-1), budget)
        return np.where(np.isinf(first), math.inf, first / rival)

    rng = np.random.default_rng(seed)
    idx = rng.integers(arr.shape[1], size=(reps, arr.shape[1]))
    boot = ratio(np.transpose(arr[:, idx], (1, 0, 2)))  # (reps, samplers, runs) -> (reps,)
    rival_meds = np.median(arr[1:], axis=-1)
    return {"bar": bar, "sampler": names[0], "rival": names[1 + int(np.argmin(rival_meds))], "ratio": float(ratio(arr)),
            "bound": bool(np.isinf(rival_meds.min())), "budget": budget, "low": float(np.quantile(boot, 0.025, method="lower")),
            "high": float(np.quantile(boot, 0.975, method="higher")), "share_at_most_half": float(np.mean(boot <= 0.5)), "reps": reps}  # fmt: skip


def _ratio_line(r: dict[str, Any]) -> str:
    def f(x: float) -> str:
        return "beyond the budget" if math.isinf(x) else f"{x:.2f}"

    if math.isinf(r["ratio"]):
        head = f"{r['sampler']} to beat {r['bar']}: its median run does not get there within {r['budget']} candidates"
    else:
        at_most = "at most " if r["bound"] else ""
        head = f"{r['sampler']} against the best other sampler ({r['rival']}) to beat {r['bar']}: {at_most}{r['ratio']:.2f}x the candidates"
    return (f"{head} (95 % bootstrap interval over seeds {f(r['low'])} to {f(r['high'])}; {100 * r['share_at_most_half']:.0f} % of "
            f"{r['reps']} resamples at or below 0.5x).")  # fmt: skip


def markdown(rows: list[dict[str, Any]], checkpoints: list[int]) -> str:
    at = " | ".join(f"best at {n}" for n in checkpoints)
    head = f"| sampler | candidates to beat LISTA (runs that did) | to beat the best hand design | {at} |"
    lines = [head, "|" + "---|" * (3 + len(checkpoints))]
    for r in rows:
        cells = [r["sampler"], _fmt(r["to_lista"], r["runs"], r["lista_reached"]), _fmt(r["to_best_hand"], r["runs"], r["best_reached"])]
        lines.append("| " + " | ".join(cells + [f"{r[f'best@{n}']:.2f}" for n in checkpoints]) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", type=Path, help="a finished cold `nasdun compare-samplers` directory (its runs/ and hand/)")
    ap.add_argument("--samplers", default="predictor,tpe,rl,evolution,random")
    ap.add_argument("--seeds", default="0-9", help="simulated seeds, e.g. 0-19 or 0,1,2")
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--in-flight", type=int, default=2, help="cohorts in flight (the study's: 2)")
    ap.add_argument("--options", default="{}", help="JSON options for the samplers, e.g. '{\"climbs\": 8}' (a variant)")
    ap.add_argument("--label", default="", help="a name for this variant in the tables (default: the sampler's)")
    ap.add_argument("--check", action="store_true", help="also compare with the real runs at the study's budget and seeds")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if not (args.study / "study.json").is_file():
        raise SystemExit(f"{args.study}: no study.json; expected a finished `nasdun compare-samplers` directory")
    spec = json.loads((args.study / "study.json").read_text())
    try:
        options = json.loads(args.options)
    except json.JSONDecodeError:
        options = None
    if not isinstance(options, dict):
        raise SystemExit(f"--options {args.options!r}; expected a JSON object of sampler options, e.g. '{{\"climbs\": 8}}'")
    samplers, seeds = args.samplers.split(","), _seeds(args.seeds)
    if args.budget < 1 or args.in_flight < 1:
        raise SystemExit(f"budget={args.budget}, in_flight={args.in_flight}; expected integers >= 1")
    try:
        run(args, spec, options, samplers, seeds)
    except NasdunError as err:
        raise SystemExit(f"surrogate_search: {err}") from None


def run(args: argparse.Namespace, spec: dict[str, Any], options: dict[str, Any], samplers: list[str], seeds: list[int]) -> None:
    by_seed = oracles(args.study)
    data = sorted(by_seed)
    bars = {}
    for r in seeds:
        o = by_seed[data[r % len(data)]]
        bars[r] = {"lista": o.hand["lista"], "best": min(o.hand.values())}
    print("oracle per data seed: 5-fold Spearman " + ", ".join(f"{k}: {o.cv_spearman:.2f}" for k, o in by_seed.items()), flush=True)
    tables: dict[str, dict[int, pd.DataFrame]] = {}
    for s in samplers:
        label = args.label or s
        tables[label] = {}
        for r in seeds:
            run = args.out / f"{label}-seed{r}"
            cfg = study_config(spec["config"], s, r, args.budget, options)
            tables[label][r] = simulate(cfg, by_seed[data[r % len(data)]], run, args.in_flight)
            best = tables[label][r]["val_nmse_db"].min()
            print(f"{label} seed {r}: best {best:.2f} (oracle's LISTA {bars[r]['lista']:.2f}, best hand {bars[r]['best']:.2f})", flush=True)
    checkpoints = sorted({n for n in (spec["budget"], 80, 120, 160, 200, args.budget) if n <= args.budget})
    rows = summary(tables, bars, checkpoints)
    text = [
        f"Surrogate searches: study `{args.study}`, budget {args.budget}, {len(seeds)} simulated seeds, {args.in_flight} cohorts in flight.",
        "Oracle (random forest, per data seed): 5-fold Spearman " + ", ".join(f"{o.cv_spearman:.2f}" for o in by_seed.values()) + ".",
        "",
        markdown(rows, checkpoints),
    ]
    ratios = []
    if len(tables) > 1:
        for key, name in (("lista", "LISTA"), ("best", "the best hand design")):
            needs = {lab: [candidates_to_beat(runs[r], bars[r][key]) for r in seeds] for lab, runs in tables.items()}
            ratios.append(ratio_interval(needs, name, args.budget))
        text += [""] + [_ratio_line(r) for r in ratios]
    report: dict[str, Any] = {"study": str(args.study), "budget": args.budget, "seeds": seeds, "in_flight": args.in_flight, "options": options,
                              "oracle_cv_spearman": {k: o.cv_spearman for k, o in by_seed.items()},
                              "oracle_hand": {k: o.hand for k, o in by_seed.items()}, "rows": rows, "ratios": ratios}  # fmt: skip
    if args.check:
        real = {s: {k: pd.read_csv(args.study / "runs" / f"{s}-seed{k}" / "results.csv") for k in data} for s in samplers}
        short = {s: {k: tables[args.label or s][k].sort_values("trial_number").head(spec["budget"]) for k in data if k in seeds} for s in samplers}
        real_hand = {k: hand_designs(args.study, k).set_index("name")["val_nmse_db"] for k in data}
        real_bars = {k: {"lista": float(h["lista"]), "best": float(h.min())} for k, h in real_hand.items()}
        check_rows = [{**r, "sampler": f"{r['sampler']} (real)"} for r in summary(real, real_bars, [spec["budget"]])]
        check_rows += [{**r, "sampler": f"{r['sampler']} (surrogate)"} for r in summary(short, bars, [spec["budget"]])]
        check_rows.sort(key=lambda r: r["sampler"])
        text += ["", f"Check at the study's budget ({spec['budget']}) and seeds ({', '.join(map(str, data))}): real runs and simulated ones.", "",
                 markdown(check_rows, [spec["budget"]])]  # fmt: skip
        report["check"] = check_rows
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = f"-{args.label}" if args.label else ""
    (args.out / f"surrogate{suffix}.json").write_text(json.dumps(report, indent=2))
    (args.out / f"surrogate{suffix}.md").write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
