"""The `nasdun` command line: parses arguments once and calls the public API.

Every user error surfaces as one line ``nasdun: error: ...`` and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nasdun.errors import NasdunError
from trainers.host_memory import requested_policy

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    def add(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = fn
        return fn

    return add


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2, like every other user error
        raise NasdunError(f"{self.prog}: {message}")


def _number(cast: Callable[[str], Any], low: float, kind: str) -> Callable[[str], Any]:
    """An argparse type: ``cast`` of the text, at least ``low``; a one-line error otherwise."""

    def parse(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        if not value >= low:  # also refuses NaN
            raise argparse.ArgumentTypeError(f"{value} must be >= {low:g}")
        return value

    return parse


_positive_int = _number(int, 1, "an integer")
_nonneg_int = _number(int, 0, "an integer")
_nonneg_float = _number(float, 0, "a number")
_seconds = _number(float, 0.1, "a number of seconds")


def _names(text: str) -> list[str]:
    """The items of a comma list, blanks dropped: ``"lista, 2no,"`` -> ``["lista", "2no"]``."""
    return [v.strip() for v in text.split(",") if v.strip()]


def _int_list(text: str) -> list[int]:
    """An argparse type: a comma list of integers >= 0, e.g. ``11,12,13``."""
    return [_nonneg_int(v) for v in _names(text)]


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="nasdun", description="Architecture search over unrolled sparse-recovery networks (LISTA and relatives).")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    t = sub.add_parser("train", help="train architectures together on one setting; write a results table")
    t.add_argument("--arch", default="lista,lfista,dense,2no,3no,meng2021", help="comma list of presets and genotype .json files")
    t.add_argument("--setting", default="small", help="problem setting (see `nasdun settings`)")
    t.add_argument("--layers", type=_positive_int, default=8, help="K, the number of layers")
    t.add_argument("--protocol", default="search", help="training protocol name or YAML file (see `nasdun protocols`)")
    t.add_argument("--seed", type=_nonneg_int, default=0, help="seed of the training stream")
    t.add_argument("--out", default=None, help="run directory (default runs/train-<setting>-<time>)")
    t.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    t.add_argument("--overwrite", action="store_true", help="allow a non-empty --out")
    t.add_argument("--compile", action="store_true", help="fuse each layer's pointwise work with torch.compile")

    se = sub.add_parser("search", help="architecture search on Ray Tune (no --config: the CPU demo)")
    se.add_argument("--config", default=None, help="YAML file or shipped config name (demo, paper)")
    se.add_argument("--resume", metavar="DIR", default=None, help="finish the budget of an interrupted search in DIR")
    se.add_argument("--sampler", default=None, help="rl, evolution, random, tpe, nsga2")
    se.add_argument("--budget", type=_positive_int, default=None, help="distinct candidates to train")
    se.add_argument("--cohort", type=_positive_int, default=None, help="candidates per Ray Tune trial")
    se.add_argument("--minutes", type=_nonneg_float, default=None, help="start no new cohort after this many minutes (0: no limit)")
    se.add_argument("--setting", default=None)
    se.add_argument("--protocol", default=None)
    se.add_argument("--layers", type=_positive_int, default=None)
    se.add_argument("--seed", type=_nonneg_int, default=None)
    se.add_argument("--start-from", default=None, help="comma list of presets / genotype files proposed first, e.g. lista,2no,3no")
    se.add_argument("--promote-top", type=_nonneg_int, default=None, help="when the search ends, train its top-k under --promote-protocol (0: no)")
    se.add_argument("--promote-protocol", default=None, help="protocol of the promotion phase (default paper)")
    se.add_argument("--out", default=None, help="experiment directory (default runs/search-<time>)")
    se.add_argument("--address", default=None, help="an existing Ray cluster (e.g. auto or host:6379); default: a local Ray")
    se.add_argument("--storage", default=None, help="Optuna storage URL (default sqlite:///DIR/optuna.db)")
    se.add_argument("--num-cpus", type=_positive_int, default=None, help="CPUs of the local Ray (default: all)")

    av = sub.add_parser("average", help="top-k averaged architecture of one or more runs")
    av.add_argument("runs", nargs="+", help="run directories (results.csv)")
    av.add_argument("--top-k", type=_positive_int, default=50)
    av.add_argument("--threshold", type=float, default=0.5)
    av.add_argument("--sampler", default=None, help="only this sampler's rows")
    av.add_argument("--out", default="avg.json")

    hm = sub.add_parser("heatmap", help="connectivity / lag / neuron heatmaps of a run, or of one architecture")
    hm.add_argument("runs", nargs="*", help="run directories (results.csv)")
    hm.add_argument("--top-k", type=_positive_int, default=50)
    hm.add_argument("--diff", type=_positive_int, default=None, help="also draw top-k minus top-DIFF")
    hm.add_argument("--sampler", default=None)
    hm.add_argument("--arch", default=None, help="instead of runs: presets or genotype .json files (comma list)")
    hm.add_argument("--layers", type=_positive_int, default=16, help="K for --arch presets")
    hm.add_argument("--out", default="heatmaps")

    rt = sub.add_parser("retrain", help="retrain an architecture against the hand designs on several settings and seeds")
    rt.add_argument("--arch", required=True, help="the architecture(s) to retrain, e.g. avg.json")
    rt.add_argument("--against", default="lista,lfista,dense,2no,3no,meng2021")
    rt.add_argument("--settings", default="noiseless", help="comma list of settings")
    rt.add_argument("--seeds", type=_positive_int, default=3)
    rt.add_argument("--protocol", default="paper")
    rt.add_argument("--layers", type=_positive_int, default=16)
    rt.add_argument("--device", default="auto")
    rt.add_argument("--compile", action="store_true")
    rt.add_argument("--out", required=True)

    pm = sub.add_parser("promote", help="train a (screening) run's top-k under a longer protocol, on the run's setting and seed")
    pm.add_argument("run")
    pm.add_argument("--top-k", type=_positive_int, default=8)
    pm.add_argument("--protocol", default="paper")
    pm.add_argument("--device", default="auto")
    pm.add_argument("--compile", action="store_true")
    pm.add_argument("--out", required=True)

    cf = sub.add_parser("confirm", help="compare runs by their top-k retrained on fresh training seeds (no selection bias)")
    cf.add_argument("runs", nargs="+")
    cf.add_argument("--top-k", type=_positive_int, default=3)
    cf.add_argument("--seeds", type=_int_list, default=[101, 102, 103], help="comma list of fresh run seeds")
    cf.add_argument("--protocol", required=True, help="the protocol every finalist is retrained with")
    cf.add_argument("--against", default="", help="comma list of hand designs to train alongside as anchors")
    cf.add_argument("--device", default="auto")
    cf.add_argument("--compile", action="store_true")
    cf.add_argument("--out", required=True)

    rp = sub.add_parser("report", help="HTML + Markdown report of a run (and of a retraining)")
    rp.add_argument("run")
    rp.add_argument("--top-k", type=_positive_int, default=50)
    rp.add_argument("--retrain", default=None, help="a nasdun retrain directory to include")
    rp.add_argument("--out", default=None, help="default RUN/report")
    rp.add_argument("--with", dest="others", nargs="*", default=[], help="other runs to compare with (best-so-far, top-k agreement)")

    cp = sub.add_parser("compare", help="agreement of the top-k sets of two runs")
    cp.add_argument("run_a")
    cp.add_argument("run_b")
    cp.add_argument("--top-k", type=_positive_int, default=50)

    fi = sub.add_parser("fidelity", help="ranking agreement of cheap protocols with a reference protocol")
    fi.add_argument("--genotypes", type=_nonneg_int, default=32, help="random genotypes (plus the hand designs)")
    fi.add_argument("--setting", default="small")
    fi.add_argument("--layers", type=_positive_int, default=8)
    fi.add_argument("--reference", default="paper", help="the expensive protocol (trained once, cached in OUT)")
    fi.add_argument("--protocols", default="search", help="comma list of cheaper protocols")
    fi.add_argument("--seed", type=_nonneg_int, default=0, help="run seed: training set and batch order")
    fi.add_argument("--genotype-seed", type=_nonneg_int, default=None, help="seed of the random genotypes (default: --seed)")
    fi.add_argument("--device", default="auto")
    fi.add_argument("--compile", action="store_true")
    fi.add_argument("--out", required=True)

    b = sub.add_parser("bench", help="trainer throughput: single, packing baseline and batched P")
    b.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    b.add_argument("--paper-size", action="store_true", help="m=250, n=500, K=16, batch 128, 10,240 validation samples")
    b.add_argument("--m", type=_positive_int, default=50)
    b.add_argument("--n", type=_positive_int, default=100)
    b.add_argument("--layers", type=_positive_int, default=8)
    b.add_argument("--batch", type=_positive_int, default=128)
    b.add_argument("--val", type=_positive_int, default=1024, help="validation samples")
    b.add_argument("--P", default="16", help="comma list of batched cohort sizes")
    b.add_argument("--procs", type=_nonneg_int, default=2, help="processes of the packing baseline (0: skip)")
    b.add_argument("--seconds", type=_seconds, default=3.0, help="measuring time per configuration")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.add_argument("--compile", action="store_true", help="also measure the torch.compile'd trainer")

    sub.add_parser("presets", help="list the hand designs")
    sub.add_parser("settings", help="list the problem settings")
    sub.add_parser("protocols", help="list the training protocols")
    return p


@command("train")
def _train(args: argparse.Namespace) -> int:
    import time

    from nasdun.train import run_train
    from search_spaces.presets import resolve_archs

    archs = resolve_archs(args.arch, args.layers)
    out = args.out or f"runs/train-{args.setting}-{time.strftime('%Y%m%d-%H%M%S')}"
    df = run_train(archs, args.setting, args.protocol, args.seed, out, args.device, args.overwrite, compile=args.compile)
    cols = ["name", "status", "test_nmse_db", "test_nmse_db_mean", "val_nmse_db", "iterations", "n_extra"]
    print(df[cols].to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    ista = df.attrs["ista"]
    print(f"ISTA, {args.layers} iterations (untrained LISTA): test_nmse_db {ista['test_nmse_db']:.2f}")
    print(f"wall {df.attrs['wall_s']:.1f}s; results in {out}/results.csv")
    return 0 if (df["status"] == "ok").all() else 1


@command("search")
def _search(args: argparse.Namespace) -> int:
    import time

    from nasdun.config import from_mapping, load_yaml
    from nasdun.search import SearchConfig, load_config, run_search

    names = ("sampler", "budget", "minutes", "cohort", "setting", "protocol", "layers", "seed", "storage", "promote_top", "promote_protocol")
    overrides = {k: getattr(args, k) for k in names}
    if args.start_from is not None:
        overrides["start_from"] = tuple(_names(args.start_from))
    if args.resume:
        if args.config:
            raise NasdunError("--config cannot be combined with --resume (the directory's search.yaml is used)")
        if args.out and args.out != args.resume:
            raise NasdunError("--out cannot be combined with --resume (results stay in the resumed directory)")
        fig = run_search(args.resume, resume=True, address=args.address, num_cpus=args.num_cpus, overrides=overrides)
        out = args.resume
    else:
        cfg = load_config(args.config, overrides)
        out = args.out or f"runs/search-{time.strftime('%Y%m%d-%H%M%S')}"
        fig = run_search(out, cfg, address=args.address, num_cpus=args.num_cpus)
    print(
        f"trained {fig['candidates_trained']} candidates this session ({fig['candidates_total']}/{fig['budget']} in all) in {fig['wall_s']:.0f}s"
        f" | best val nmse_db {fig['best_val_nmse_db']:.2f} | {fig['candidates_per_min']:.1f} candidates/min"
        f" | overhead x{fig['overhead']:.2f} over the trainers' own time"
    )
    if fig["stopped_early"]:
        print(f"stopped early: {fig['stopped_early']}")
    print(f"results in {out}/results.csv; Optuna study in {fig['storage']}")
    cfg = from_mapping(SearchConfig, load_yaml(Path(out) / "search.yaml"), str(Path(out) / "search.yaml"))  # as run, overrides included
    if cfg.promote_top:
        from analysis.promote import PROMOTED, promote_search
        from nasdun.results import write_json

        promoted = promote_search(out, cfg.promote_top, cfg.promote_protocol, compile=cfg.compile)
        write_json(Path(out) / "search.json", {**fig, "promoted": promoted})
        how = "read back (already done)" if promoted["reused"] else f"trained in {promoted['wall_s']:.0f}s"
        print(
            f"promoted top {cfg.promote_top} with {cfg.promote_protocol}: {how} | best {promoted['best']}"
            f" val {promoted['best_val_nmse_db']:.2f} test {promoted['best_test_nmse_db']:.2f} nmse_db | {out}/{PROMOTED}/promote.md"
        )
    return 0


@command("average")
def _average(args: argparse.Namespace) -> int:
    from analysis.average import average, load_runs, write_average

    g, freq, members = average(load_runs(args.runs, args.sampler), args.top_k, args.threshold)
    write_average(args.out, g, freq, members, top_k=args.top_k, threshold=args.threshold, runs=list(args.runs), sampler=args.sampler)
    print(f"averaged top-{args.top_k}: hash {g.hash}, {g.n_extra} extra connections, {sum(map(len, g.lags))} open lags")
    print(f"arch string {g.to_arch_string()}; neurons {','.join(g.neurons)}")
    print(f"written to {args.out}")
    return 0


@command("heatmap")
def _heatmap(args: argparse.Namespace) -> int:
    from analysis.heatmaps import genotype_heatmap, run_heatmaps
    from search_spaces.presets import resolve_archs

    if args.arch:
        for name, g in resolve_archs(args.arch, args.layers):
            genotype_heatmap(g, name, args.out)
    elif args.runs:
        run_heatmaps(args.runs, args.out, args.top_k, args.diff, args.sampler)
    else:
        raise NasdunError("heatmap needs run directories or --arch")
    print(f"figures (PNG and SVG) in {args.out}")
    return 0


@command("retrain")
def _retrain(args: argparse.Namespace) -> int:
    from analysis.retrain import run_retrain

    settings = _names(args.settings)
    tables = run_retrain(args.arch, args.against, settings, args.seeds, args.protocol, args.layers, args.out, args.device, args.compile)
    print((Path(args.out) / "table1.md").read_text())
    print(f"tables, curves and per-run results in {args.out} ({len(tables['table1'])} settings)")
    return 0


@command("promote")
def _promote(args: argparse.Namespace) -> int:
    from analysis.promote import run_promote

    run_promote(args.run, args.top_k, args.protocol, args.out, args.device, args.compile)
    print((Path(args.out) / "promote.md").read_text())
    return 0


@command("confirm")
def _confirm(args: argparse.Namespace) -> int:
    from analysis.confirm import run_confirm

    against = _names(args.against)
    run_confirm(args.runs, args.top_k, args.seeds, args.protocol, args.out, against, args.device, args.compile)
    print((Path(args.out) / "confirm.md").read_text())
    return 0


@command("report")
def _report(args: argparse.Namespace) -> int:
    from analysis.report import build_report

    html_path, md_path = build_report(args.run, args.out, args.top_k, args.retrain, args.others)
    print(f"report: {html_path} (self-contained) and {md_path}")
    return 0


@command("compare")
def _compare(args: argparse.Namespace) -> int:
    from analysis.average import load_runs
    from analysis.searchstats import best_trained, topk_agreement

    runs = {run: load_runs([run]) for run in (args.run_a, args.run_b)}
    for run, df in runs.items():
        b = best_trained(df)
        print(
            f"{run}: {b['trained']} candidates, {b['fully_trained']} trained to the end ({b['stopped']} stopped early); "
            f"best by validation {b['name']}: val nmse_db {b['val_nmse_db']:.2f}, test nmse_db {b['test_nmse_db']:.2f}"
        )
    res = topk_agreement(runs[args.run_a], runs[args.run_b], args.top_k)
    share = f"{res['overlap']} shared genotypes ({100 * res['overlap_fraction']:.0f}%)"
    print(f"top-{res['k']}: {share}; connection-frequency Pearson r = {res['conn_freq_pearson']:.3f}")
    return 0


@command("fidelity")
def _fidelity(args: argparse.Namespace) -> int:
    from analysis.fidelity import run_fidelity

    protocols = _names(args.protocols)
    run_fidelity(
        args.genotypes, args.setting, args.layers, args.reference, protocols, args.seed, args.out, args.device, args.compile, args.genotype_seed
    )
    print((Path(args.out) / "fidelity.md").read_text())
    return 0


@command("bench")
def _bench(args: argparse.Namespace) -> int:
    import json

    from nasdun.bench import BenchSize, paper_size, run_bench
    from nasdun.train import resolve_device

    try:
        sizes = [int(v) for v in args.P.split(",") if v.strip()]
    except ValueError:
        raise NasdunError(f"--P {args.P!r}; expected a comma list of integers such as 16,64,128") from None
    size = paper_size() if args.paper_size else BenchSize(args.m, args.n, args.layers, args.batch, args.val)
    res = run_bench(size, resolve_device(args.device), sizes, args.procs, args.seconds, args.compile)
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"device {res['device']}, torch {res['torch']}, size {res['size']}")
    print(f"single (P=1)           {res['single_steps_per_s']:10.1f} candidate-steps/s")
    print(f"packing ({res['packing_procs']} procs x P=1) {res['packing_steps_per_s']:10.1f} candidate-steps/s")
    for P, rate in res["batched"].items():
        print(
            f"batched P={P:<4d}          {rate:10.1f} candidate-steps/s  x{rate / res['single_steps_per_s']:.2f} single"
            f"  validation {100 * res['val_share'][P]:.0f}% of time"
        )
    for P, rate in res["batched_compiled"].items():
        print(f"batched P={P:<4d} compiled {rate:10.1f} candidate-steps/s  x{rate / res['single_steps_per_s']:.2f} single")
    print(
        f"{res['gflop_per_step']:.3f} GFLOP/candidate-step; best {res['achieved_tflops']:.3f} TFLOP/s ="
        f" {100 * res['fraction_of_matmul']:.1f}% of measured fp32 matmul {res['matmul_tflops']:.3f} TFLOP/s;"
        f" peak memory {res['peak_memory_mb']:.0f} MiB"
    )
    print(f"CPU heap: {res['cpu_heap']}")
    return 0


@command("presets")
def _presets(args: argparse.Namespace) -> int:
    from search_spaces.presets import PRESETS, preset

    for name, fn in PRESETS.items():
        g = preset(name, 16)
        doc = (fn.__doc__ or "").strip().splitlines()[0]
        print(f"{name:10s} K=16 extra={g.n_extra:3d} lags={sum(len(q) for q in g.lags):2d} hash={g.hash}  {doc}")
    return 0


@command("settings")
def _settings(args: argparse.Namespace) -> int:
    from trainers.problems import SETTINGS

    for name, s in SETTINGS.items():
        print(f"{name:20s} m={s.m:<4d} n={s.n:<5d} train={s.n_train:<6d} val={s.n_val:<5d} test={s.n_test:<5d} {s.description}")
    return 0


@command("protocols")
def _protocols(args: argparse.Namespace) -> int:
    from trainers.protocols import PROTOCOLS

    for name, pr in PROTOCOLS.items():
        print(f"{name:8s} patience={pr.patience:<5d} max_iters={pr.max_iters:<6d} batch={pr.batch_size:<4d} {pr.description}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        requested_policy()  # a bad NASDUN_CPU_HEAP fails here, not inside a Ray worker
        return COMMANDS[args.command](args)
    except NasdunError as err:
        print(f"nasdun: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nasdun: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
