"""The `nasdun` command line: each command is its arguments, one call to its function of the API
(:mod:`nasdun.interfaces.api`, one per command: docs/api.md) and the printing of what it returns.

Every user error surfaces as one line ``nasdun: error: ...`` and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasdun.core.errors import Interrupted, NasdunError, place_error
from trainers.host_memory import requested_policy
from trainers.precision import PRECISIONS

if TYPE_CHECKING:
    from trainers.options import RunOptions

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    def add(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = fn
        return fn

    return add


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2, like every other user error
        command = self.prog.removeprefix("nasdun").strip()  # "train" for a subcommand, "" for nasdun itself
        raise NasdunError(f"{command}: {message}" if command else message)


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


def _device_options() -> argparse.ArgumentParser:
    """The options every training command shares (a parent parser)."""
    d = argparse.ArgumentParser(add_help=False)
    d.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available)")
    d.add_argument("--compile", action="store_true", help="fuse each layer's pointwise work with torch.compile (same maths)")
    d.add_argument("--precision", default="fp32", choices=PRECISIONS, help="matmul precision (docs/gpu.md)")
    d.add_argument("--cuda-graphs", action="store_true", help="replay each stage's training step as one CUDA graph (a CUDA device; same bits)")
    return d


def _run_options(args: argparse.Namespace) -> RunOptions:
    """The training options of a command's arguments as the one record the layers below take (trainers.options)."""
    from trainers.options import RunOptions

    extra = {"minutes": args.minutes, "checkpoint_every_s": args.checkpoint_every} if hasattr(args, "checkpoint_every") else {}
    return RunOptions(device=args.device, precision=args.precision, compile=args.compile, cuda_graphs=args.cuda_graphs, **extra)


def _force_option() -> argparse.ArgumentParser:
    f = argparse.ArgumentParser(add_help=False)
    f.add_argument("--force", action="store_true", help="allow --out to overwrite an existing file or a non-empty directory")
    return f


def _search_options() -> argparse.ArgumentParser:
    """What a search is run on and where: the options `search` and `compare-samplers` share (a parent parser)."""
    s = argparse.ArgumentParser(add_help=False)
    s.add_argument("--config", default=None, help="YAML file or shipped config name: demo (the CPU demo, the default) or paper")
    _config_option(s, "--cohort", type=_positive_int, help="candidates trained together per Ray Tune trial")
    _config_option(s, "--setting", help="problem setting")
    _config_option(s, "--protocol", help="training protocol name or YAML file")
    _config_option(s, "--layers", type=_positive_int, help="K, the number of layers")
    s.add_argument("--address", default=None, help="an existing Ray cluster (auto or host:port); default: a local Ray")
    s.add_argument("--num-cpus", type=_positive_int, default=None, help="CPUs of the local Ray (default: all)")
    return s


# A search option that overrides a SearchConfig field: its dest -> whether its help shows the config's default (the
# demo's value). Filled by _config_option as the parser is built; `search` reads its overrides from it.
CONFIG_OPTIONS: dict[str, bool] = {}


def _config_option(parser: argparse.ArgumentParser, *flags: str, show_default: bool = True, **kw: Any) -> None:
    """An option that overrides the search config's field of the same name (default None: the config's value)."""
    action = parser.add_argument(*flags, default=None, **kw)
    CONFIG_OPTIONS[action.dest] = show_default


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown as they are: an option whose default comes from the search config (:data:`CONFIG_OPTIONS`) gives
    the demo config's value (``(default: the config's budget; demo: 24)``) instead of argparse's ``(default: None)``."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is not None and action.default is not argparse.SUPPRESS:
            return super()._get_help_string(action) or text
        if CONFIG_OPTIONS.get(action.dest) and (value := _demo_value(action.dest)) is not None:
            return f"{text} (default: the config's {action.dest}; demo: {value})"
        return text


def _demo_value(key: str) -> Any:
    from nasdun.core.config import from_mapping, load_yaml
    from nasdun.orchestration.searchconfig import CONFIGS, SearchConfig

    demo = from_mapping(SearchConfig, load_yaml(CONFIGS / "demo.yaml"), "demo.yaml")
    return getattr(demo, key, None)


def build_parser() -> argparse.ArgumentParser:
    from nasdun import __version__

    fmt = _Help
    p = _Parser(prog="nasdun", description="Architecture search over unrolled sparse-recovery networks (LISTA and relatives).")
    p.add_argument("--version", action="version", version=f"nasdun {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    dev, force, searching = _device_options(), _force_option(), _search_options()

    def add(name: str, help: str, *parents: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, parents=list(parents), formatter_class=fmt)

    t = add("train", "train architectures together on one setting; write a results table", dev)
    t.add_argument("--arch", default="hand", help="comma list of presets and genotype .json files; hand: every hand design")
    t.add_argument("--setting", default="small", help="problem setting (see `nasdun settings`)")
    t.add_argument("--layers", type=_positive_int, default=8, help="K, the number of layers")
    t.add_argument("--protocol", default="search", help="training protocol name or YAML file (see `nasdun protocols`)")
    t.add_argument("--seed", type=_nonneg_int, default=0, help="seed of the training stream")
    t.add_argument("--out", default=None, help="run directory (default runs/train-<setting>-<time>)")
    t.add_argument("--force", "--overwrite", dest="force", action="store_true", help="allow --out to be a non-empty directory (its run is replaced)")
    t.add_argument("--minutes", type=_nonneg_float, default=0.0, help="stop every network still training after M minutes (0: no limit)")
    t.add_argument(
        "--checkpoint-every", type=_nonneg_float, default=300.0, help="seconds between checkpoints of the whole trainer (0: every validation)"
    )
    t.add_argument(
        "--resume", metavar="DIR", default=None, help="finish an interrupted train in DIR from its last checkpoint (other options are read from DIR)"
    )

    se = add("search", "architecture search on Ray Tune; ends with how the best found network compares with the hand designs", force, searching)
    se.add_argument("--resume", metavar="DIR", default=None, help="finish the budget of an interrupted search in DIR (or promote it)")
    _config_option(se, "--sampler", help=f"one of: {', '.join(_sampler_names())}")
    _config_option(se, "--budget", type=_positive_int, help="distinct candidates to train, baselines included")
    _config_option(se, "--minutes", type=_nonneg_float, help="start no new cohort after this many minutes (0: no limit)")
    _config_option(se, "--seed", type=_nonneg_int, help="seed of the sampler and the training stream")
    _config_option(se, "--no-baselines", dest="baselines", action="store_false", show_default=False,
                   help="do not train the hand designs first (config: baselines: false); the run then cannot say whether it beat them")  # fmt: skip
    se.add_argument("--start-from", default=None, help="comma list of presets / genotype files proposed after the baselines (warm start)")
    _config_option(se, "--no-retry-failed", dest="retry_failed", action="store_false", show_default=False,
                   help="on --resume, do not train again the cohorts whose worker was lost (config: retry_failed: false)")  # fmt: skip
    _config_option(se, "--keep-params", type=_nonneg_int, help="keep the trained parameters of the top-k (and the baselines)")
    _config_option(se, "--promote-top", type=_nonneg_int, metavar="K", show_default=False,
                   help="when the search ends, train its top K found networks and every hand design under --promote-protocol and give"
                        " the verdict there (default from the config: max(3, 10%% of the budget); demo: 1; 0: a screening verdict)")  # fmt: skip
    _config_option(se, "--promote-hand", type=_nonneg_int, metavar="N", show_default=False,
                   help="the promotion trains the N hand designs that screened best, not every one (default from the config: all;"
                        " demo: 1); the verdict's line says so")  # fmt: skip
    _config_option(se, "--promote-protocol", help="protocol of the promotion phase")
    _config_option(se, "--precision", choices=PRECISIONS, help="matmul precision of the trainers")
    se.add_argument("--track", default=None, help="comma list of experiment trackers fed per candidate: tensorboard (DIR/tensorboard), mlflow")
    se.add_argument("--out", default=None, help="experiment directory (default runs/search-<time>)")
    _config_option(se, "--storage", show_default=False, help="Optuna storage URL (default sqlite:///DIR/optuna.db)")

    cs = add("compare-samplers", "samplers searched side by side over seeds: candidates to beat the hand designs, top-k agreement", force, searching)
    cs.add_argument("--samplers", default="rl,evolution,random,tpe,predictor", help="comma list of samplers")
    cs.add_argument("--seeds", type=_int_list, default="0,1,2", help="comma list of search seeds")
    cs.add_argument("--budget", type=_positive_int, required=True, help="candidates per search")
    cs.add_argument("--baselines", action="store_true", help="train the hand designs first in every search (without it the searches start cold)")
    cs.add_argument("--confirm-seeds", type=_nonneg_int, default=0, help="retrain each sampler's top-1 on this many fresh seeds")
    cs.add_argument("--confirm-protocol", type=_names, default=None,
                    help="comma list of confirmation protocols, PROTOCOL or PROTOCOL:SEEDS (default: the search's)")  # fmt: skip
    cs.add_argument("--out", required=True, help="the study directory (run again to continue it)")

    av = add("average", "top-k averaged architecture of one or more runs", force)
    av.add_argument("runs", nargs="+", help="run directories (results.csv)")
    av.add_argument("--top-k", type=_positive_int, default=50, help="candidates averaged (all of them if the runs hold fewer)")
    av.add_argument("--threshold", type=float, default=0.5, help="keep a connection or lag present in at least this share of the top-k")
    av.add_argument("--sampler", default=None, help="only this sampler's rows")
    av.add_argument("--out", default="avg.json", help="the averaged genotype (JSON, readable by --arch)")

    hm = add("heatmap", "connectivity / lag / neuron heatmaps of a run, or of one architecture", force)
    hm.add_argument("runs", nargs="*", help="run directories (results.csv)")
    hm.add_argument("--top-k", type=_positive_int, default=50, help="candidates averaged (all of them if the runs hold fewer)")
    hm.add_argument("--threshold", type=float, default=0.5, help="threshold of the averaged architecture that is drawn too")
    hm.add_argument("--diff", type=_positive_int, default=None, help="also draw top-k minus top-DIFF")
    hm.add_argument("--sampler", default=None, help="only this sampler's rows")
    hm.add_argument("--arch", default=None, help="instead of runs: presets or genotype .json files (comma list)")
    hm.add_argument("--layers", type=_positive_int, default=16, help="K for --arch presets")
    hm.add_argument("--out", default="heatmaps", help="directory of the figures (PNG and SVG)")

    rt = add("retrain", "retrain an architecture against the hand designs on several settings and seeds", dev, force)
    rt.add_argument("--arch", required=True, help="the architecture(s) to retrain, e.g. avg.json (comma list)")
    rt.add_argument("--against", default="hand", help="hand designs trained alongside (hand: every one)")
    rt.add_argument("--settings", default="noiseless", help="comma list of settings")
    rt.add_argument("--seeds", type=_positive_int, default=3, help="training seeds per setting (0..N-1)")
    rt.add_argument("--protocol", default="paper", help="training protocol name or YAML file")
    rt.add_argument("--layers", type=_positive_int, default=None, help="K (default: that of the first --arch genotype file, else 16)")
    rt.add_argument("--out", required=True, help="a new directory")

    pm = add("promote", "train a (screening) run's top-k under a longer protocol, on the run's setting and seed", dev, force)
    pm.add_argument("run", help="a search run directory")
    pm.add_argument("--top-k", type=_positive_int, default=8, help="finalists")
    pm.add_argument("--protocol", default="paper", help="training protocol name or YAML file")
    pm.add_argument("--out", required=True, help="a new directory")

    cf = add("confirm", "compare runs by their top-k retrained on fresh training seeds (no selection bias)", dev, force)
    cf.add_argument("runs", nargs="+", help="run directories of one setting and depth")
    cf.add_argument("--top-k", type=_positive_int, default=3, help="finalists per run")
    cf.add_argument("--seeds", type=_int_list, default="101,102,103", help="comma list of fresh run seeds")
    cf.add_argument("--protocol", required=True, help="the protocol every finalist is retrained with")
    cf.add_argument("--against", default="", help="comma list of hand designs to train alongside as anchors")
    cf.add_argument("--out", required=True, help="a new directory (or one of an interrupted confirm)")

    rp = add("report", "HTML + Markdown report of a run (and of a retraining)", force)
    rp.add_argument("run", help="a run directory")
    rp.add_argument("--top-k", type=_positive_int, default=50, help="candidates averaged (all of them if the run holds fewer)")
    rp.add_argument("--retrain", default=None, help="a nasdun retrain directory to include")
    rp.add_argument("--out", default=None, help="default RUN/report")
    rp.add_argument("--with", dest="others", nargs="*", default=[], help="other runs to compare with (best-so-far, top-k agreement)")

    rc = add("reconstruct", "one test image of an image setting through Phi^T b, ISTA, FISTA, LISTA and the best network, each with its PSNR", force)
    rc.add_argument("run", help="a train or search run directory on an image setting (with params.pt)")
    rc.add_argument("--image", default="camera", help="a test image of the setting")
    rc.add_argument("--out", default=None, help="default RUN/reconstruct")
    rc.add_argument("--iterations", type=_positive_int, default=1000, help="ISTA / FISTA iterations")

    cl = add("classical", "ISTA and FISTA (lambda tuned on validation), and HyperLISTA at K layers (3 scalars tuned on training"
             " data, no training): the solvers the networks unroll and what analytic tuning reaches", force)  # fmt: skip
    cl.add_argument("--setting", default="image_cs50", help="problem setting or problem file")
    cl.add_argument("--iterations", type=_positive_int, default=1000, help="iterations of ISTA and FISTA")
    cl.add_argument("--layers", type=_positive_int, default=8, help="K, HyperLISTA's iterations (the networks' layers)")
    cl.add_argument("--out", default=None, help="a JSON file to write the figures to")

    ex = add("export", "write a trained network as a torch.export program that plain PyTorch loads (torch.export.load)", force)
    ex.add_argument("run", help="a search or train run directory (with params.pt)")
    ex.add_argument("--rank", type=_positive_int, default=None, help="the N-th best by validation among networks with saved parameters")
    ex.add_argument("--name", default=None, help="the row name, e.g. t00013 or lista")
    ex.add_argument("--out", required=True, help="the file to write, e.g. net.pt2")

    rep = add("repair", "rebuild a search's study from its results table, or missing rows from its study, when they disagree")
    rep.add_argument("run", help="a search run directory (with search.yaml)")

    cp = add("compare", "agreement of the top-k sets of two runs")
    cp.add_argument("run_a", help="a run directory")
    cp.add_argument("run_b", help="another run directory")
    cp.add_argument("--top-k", type=_positive_int, default=50, help="candidates compared per run (all of them if a run holds fewer)")

    fi = add("fidelity", "ranking agreement of cheap protocols with a reference protocol", dev, force)
    fi.add_argument("--genotypes", type=_nonneg_int, default=32, help="random genotypes (plus the hand designs)")
    fi.add_argument("--setting", default="small", help="problem setting")
    fi.add_argument("--layers", type=_positive_int, default=8, help="K")
    fi.add_argument("--reference", default="paper", help="the expensive protocol (trained once, cached in OUT)")
    fi.add_argument("--protocols", default="search", help="comma list of cheaper protocols")
    fi.add_argument("--seed", type=_nonneg_int, default=0, help="run seed: training set and batch order")
    fi.add_argument("--genotype-seed", type=_nonneg_int, default=None, help="seed of the random genotypes (default: --seed)")
    fi.add_argument("--reference-chunk", type=_nonneg_int, default=0, help="train the reference in runs of this many networks (same data); 0: one")
    fi.add_argument("--chunks", type=_nonneg_int, default=None, help="train at most this many missing reference chunks now; report on the finished")
    fi.add_argument("--reference-table", default=None,
                    help="rank against this reference table instead of training the reference (a CSV, or a shipped name such as paper_small_k8);"
                         " the study (networks, setting, K, seeds, chunks) is the table's")  # fmt: skip
    fi.add_argument("--out", required=True, help="a new directory (or one holding its cached reference)")

    b = add("bench", "trainer throughput: single, packing baseline and batched P", dev)
    b.add_argument("--paper-size", action="store_true", help="m=250, n=500, K=16, batch 128, 10,240 validation samples")
    b.add_argument("--m", type=_positive_int, default=50, help="measurements")
    b.add_argument("--n", type=_positive_int, default=100, help="code length")
    b.add_argument("--layers", type=_positive_int, default=8, help="K")
    b.add_argument("--batch", type=_positive_int, default=128, help="training batch")
    b.add_argument("--val", type=_positive_int, default=1024, help="validation samples")
    b.add_argument("--P", default="16", help="comma list of batched cohort sizes")
    b.add_argument("--procs", type=_nonneg_int, default=2, help="processes of the packing baseline (0: skip)")
    b.add_argument("--seconds", type=_seconds, default=3.0, help="measuring time per configuration")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.add_argument("--protocol", default=None,
                   help="what this protocol runs: every layer's stages and validation timed at their depth, in its proportions")  # fmt: skip

    add("presets", "list the hand designs")
    add("settings", "list the problem settings")
    add("protocols", "list the training protocols")
    return p


def _sampler_names() -> list[str]:
    from nasdun.orchestration.samplers import SAMPLERS

    return SAMPLERS.names()


@command("train")
def _train(args: argparse.Namespace) -> int:
    from nasdun.interfaces import api

    if args.resume:
        df = api.train(options=_run_options(args), resume=args.resume)
    else:
        df = api.train(args.arch, args.setting, args.layers, args.protocol, args.seed, args.out, _run_options(args), overwrite=args.force)
    return _print_train(df, df.attrs["out"], int(df["layers"].iloc[0]) if len(df) else args.layers)


def _print_train(df: Any, out: str, layers: int) -> int:
    cols = ["name", "status", "test_nmse_db", "test_nmse_db_mean", "val_nmse_db", "iterations", "n_extra"]
    cols += [c for c in ("test_psnr",) if c in df.columns and df[c].notna().any()]  # image settings: the test images' mean PSNR (dB)
    print(df[cols].to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    for rec in df[(df["status"] != "ok") | df["reason"].fillna("").astype(bool)].to_dict("records"):  # and an ok row's restarts
        print(f"{rec['name']}: {rec['status']}: {rec['reason']}")
    ista = df.attrs["ista"]
    print(f"ISTA, {layers} iterations (untrained LISTA): test_nmse_db {ista['test_nmse_db']:.2f}")
    print(f"wall {df.attrs['wall_s']:.1f}s; results in {out}/results.csv")
    return 0 if (df["status"] != "failed").all() else 1


@command("search")
def _search(args: argparse.Namespace) -> int:
    import time

    _ray_auth(args.address)
    from nasdun.interfaces import api
    from nasdun.runs.results import point_latest

    overrides = {k: getattr(args, k) for k in CONFIG_OPTIONS if getattr(args, k, None) is not None}  # the config fields given
    if args.start_from is not None:
        overrides["start_from"] = tuple(_names(args.start_from))
    if args.track is not None:
        overrides["track"] = tuple(_names(args.track))
    if args.resume:
        if args.config:
            raise NasdunError("--config cannot be combined with --resume (the directory's search.yaml is used)")
        if args.out and args.out != args.resume:
            raise NasdunError("--out cannot be combined with --resume (results stay in the resumed directory)")
        out = args.resume
        fig = api.search_pipeline(out, resume=True, address=args.address, num_cpus=args.num_cpus, **overrides)
    else:
        out = args.out or f"runs/search-{time.strftime('%Y%m%d-%H%M%S')}"
        fig = api.search_pipeline(out, args.config, address=args.address, num_cpus=args.num_cpus, force=args.force, **overrides)
    latest = point_latest(out) if not args.out and not args.resume else None  # the default folder: runs/latest names it
    print(
        f"trained {fig.candidates_trained} candidates this session ({fig.candidates_total}/{fig.budget} in all) in {fig.wall_s:.0f}s"
        f" | {fig.candidates_per_min:.1f} candidates/min"
        + (f" | overhead x{fig.overhead:.2f} over the trainers' own time" if fig.overhead == fig.overhead else "")
    )
    if fig.stopped_early:
        print(f"stopped early: {fig.stopped_early}")
    print(f"run folder {out}" + (f" ({latest} points at it: the commands after a search take {latest})" if latest else "")
          + f": results.csv, parameters of {len(fig.params_kept)} networks in params.pt, the Optuna study {fig.storage}")  # fmt: skip
    promoted = fig.promoted
    if promoted:
        how = "read back (already done)" if promoted["reused"] else f"trained in {promoted['wall_s']:.0f}s"
        found, hand = promoted["found"], promoted["hand_designs"]
        what = f"the top {found} found network{'s' * (found != 1)} and {hand} hand design{'s' * (hand != 1)}"
        print(f"promoted {what} with {promoted['protocol']}: {how} | {promoted['out']}/promote.md")
    print(fig.verdict)  # the last line: did the search beat the hand designs?
    return 0


def _ray_auth(address: str | None) -> None:
    """For a local Ray: its token authentication (Ray's default) chosen explicitly, so Ray does not print its notice on
    every search. It must be set before Ray is imported (docs/search.md, "Ray's token notice"); a mode the user set is
    kept, and a cluster (``--address``) keeps its own."""
    import os

    if not address and "ray" not in sys.modules:
        os.environ.setdefault("RAY_AUTH_MODE", "token")


@command("average")
def _average(args: argparse.Namespace) -> int:
    from nasdun.interfaces import api

    avg = api.average(args.runs, args.out, args.top_k, args.threshold, args.sampler, force=args.force)
    g = avg["genotype"]
    if avg["note"]:
        print(avg["note"])
    print(f"averaged top-{avg['top_k']}: hash {g.hash}, {g.n_extra} extra connections, {sum(map(len, g.lags))} open lags")
    print(f"arch string {g.to_arch_string()}; neurons {','.join(g.neurons)}; the whole genotype: {g.to_spec()}")
    print(f"written to {args.out}")
    return 0


@command("heatmap")
def _heatmap(args: argparse.Namespace) -> int:
    from nasdun.interfaces import api

    drawn = api.heatmap(args.runs, args.out, args.top_k, args.threshold, args.diff, args.sampler, args.arch, args.layers, force=args.force)
    if drawn["note"]:
        print(drawn["note"])
    print(f"figures (PNG and SVG) in {args.out}")
    return 0


@command("retrain")
def _retrain(args: argparse.Namespace) -> int:
    from nasdun.interfaces import api

    tables = api.retrain(args.arch, args.out, args.against, args.settings, args.seeds, args.protocol, args.layers, _run_options(args), args.force)
    print((Path(args.out) / "table1.md").read_text())
    print(f"tables, curves and per-run results in {args.out} ({len(tables['table1'])} settings, K = {tables['table1'].attrs['layers']})")
    return 0


@command("promote")
def _promote(args: argparse.Namespace) -> int:
    from nasdun.interfaces import api

    api.promote(args.run, args.out, args.top_k, args.protocol, _run_options(args), force=args.force)
    print((Path(args.out) / "promote.md").read_text())
    return 0


@command("confirm")
def _confirm(args: argparse.Namespace) -> int:
    from nasdun.interfaces import api

    api.confirm(args.runs, args.out, args.protocol, args.top_k, args.seeds, args.against, _run_options(args), force=args.force)
    print((Path(args.out) / "confirm.md").read_text())
    return 0


@command("report")
def _report(args: argparse.Namespace) -> int:
    from nasdun.interfaces import api

    html_path, md_path = api.report(args.run, args.out, args.top_k, args.retrain, args.others, force=args.force)
    print(f"report: {html_path} (self-contained) and {md_path}")
    return 0


@command("repair")
def _repair(args: argparse.Namespace) -> int:
    from nasdun.interfaces import api

    done = api.repair(args.run)
    if not done["repaired"]:
        print(f"{args.run}: results.csv ({done['rows']} rows) and the study ({done['trials']} trials) agree; nothing to repair")
        return 0
    said = []
    if done["rows_rebuilt"]:
        val_only = f", {done['rows_val_only']} of them with the validation value only" if done["rows_val_only"] else ""
        said.append(f"{done['rows_rebuilt']} row(s) rebuilt from the study{val_only} (old table kept as results.csv.before-repair)")
    if done["renumbered"]:
        said.append(f"{done['renumbered']} row(s) that repeated a trial number renumbered")
    if done["study_rebuilt"]:
        kept = f" (the old one kept in the same storage as study {done['old_study']!r})" if done["old_study"] else ""
        said.append(f"the study rebuilt from the table's {done['rows']} rows{kept}")
    print(f"repaired {args.run}: " + "; ".join(said) + f". Continue with `nasdun search --resume {args.run}`")
    return 0


@command("reconstruct")
def _reconstruct(args: argparse.Namespace) -> int:
    from nasdun.interfaces import api

    rec = api.reconstruct(args.run, args.image, args.out, args.iterations, force=args.force)
    print(f"{args.image}: " + ", ".join(f"{label} {v:.2f} dB" for label, v in rec["psnr_db"].items()))
    print(f"written to {rec['out']}/reconstruct-{args.image}.png (and .svg, .json)")
    return 0


@command("classical")
def _classical(args: argparse.Namespace) -> int:
    from nasdun.interfaces import api

    *refs, hyper = api.classical(args.setting, args.iterations, args.layers, args.out, force=args.force)["references"]
    for r in refs:
        images = ", ".join(f"{k} {v:.2f}" for k, v in r.get("psnr", {}).items())
        psnr = f"; PSNR mean {r['test_psnr']:.2f} dB ({images})" if "psnr" in r else ""
        print(f"{r['method']:5s} {r['iterations']} it., lambda {r['lam']:g} (tuned on validation): test nmse_db {r['test_nmse_db']:.2f}{psnr}")
    psnr = f"; PSNR mean {hyper['test_psnr']:.2f} dB" if "test_psnr" in hyper else ""
    c = ", ".join(f"{v:g}" for v in hyper["c"])
    print(f"hyperlista K={args.layers}, c = ({c}) (tuned on training data, no training): test nmse_db {hyper['test_nmse_db']:.2f}{psnr}")
    return 0


@command("export")
def _export(args: argparse.Namespace) -> int:
    from nasdun.interfaces import api

    meta = api.export_network(args.run, args.out, name=args.name, rank=args.rank, force=args.force)
    what = f" ({meta['preset_display']})" if meta["preset"] else ""
    where = f" from the promotion (trained under {meta['protocol']}, as the verdict compares it)" if meta["promoted"] else ""
    print(
        f"exported {meta['name']}{what}{where}, K={meta['layers']}, setting {meta['setting']} (m={meta['m']}, n={meta['n']}):"
        f" val nmse_db {meta['metrics']['val_nmse_db']:.2f}, test {meta['metrics']['test_nmse_db']:.2f}"
    )
    if meta["preset"] and args.rank is not None:
        print(f"note: the rank-{args.rank} network is a hand design, {meta['preset_display']}: the search found none better;"
              " `--name tNNNNN` exports a found one")  # fmt: skip
    what = "x" if meta["n_out"] == meta["n"] and "Psi" not in meta["output"] else "f"
    print(
        f"written to {args.out}: net = torch.export.load({str(args.out)!r}).module(); {what} = net(b)"
        f"  # b: (B, {meta['m']}) float32 -> {what}: (B, {meta['n_out']})"
    )
    return 0


@command("compare-samplers")
def _compare_samplers(args: argparse.Namespace) -> int:
    _ray_auth(args.address)
    from nasdun.interfaces import api

    searches = {k: getattr(args, k) for k in ("setting", "protocol", "layers", "cohort")}
    summary = api.compare_samplers(
        args.out, args.budget, args.samplers, args.seeds, args.baselines, args.confirm_seeds, args.confirm_protocol, args.config,
        args.address, args.num_cpus, force=args.force, **searches,
    )  # fmt: skip
    for s, med in summary["median_candidates_to_beat"].items():
        print(f"{s}: median candidates to beat the best hand design: {'not reached' if med is None else f'{med:g}'}")
    print(f"tables in {args.out}/samplers.md; figures in {args.out}/figures")
    return 0


@command("compare")
def _compare(args: argparse.Namespace) -> int:
    from nasdun.interfaces import api

    both = api.compare(args.run_a, args.run_b, args.top_k)
    for run, b in both["best"].items():
        print(
            f"{run}: {b['trained']} candidates, {b['fully_trained']} trained to the end ({b['stopped']} stopped early); "
            f"best by validation {b['name']}: val nmse_db {b['val_nmse_db']:.2f}, test nmse_db {b['test_nmse_db']:.2f}"
        )
    res = both["agreement"]
    share = f"{res['overlap']} shared genotypes ({100 * res['overlap_fraction']:.0f}%)"
    print(f"top-{res['k']}: {share}; connection-frequency Pearson r = {res['conn_freq_pearson']:.3f}")
    return 0


@command("fidelity")
def _fidelity(args: argparse.Namespace) -> int:
    from nasdun.interfaces import api

    api.fidelity(
        args.out, args.genotypes, args.setting, args.layers, args.reference, args.protocols, args.seed, args.genotype_seed,
        args.reference_chunk, args.chunks, args.reference_table, _run_options(args), force=args.force,
    )  # fmt: skip
    print((Path(args.out) / "fidelity.md").read_text())
    return 0


@command("bench")
def _bench(args: argparse.Namespace) -> int:
    import json

    from nasdun.interfaces import api
    from nasdun.runs.bench import format_protocol, format_report

    res = api.bench(
        args.P, args.m, args.n, args.layers, args.batch, args.val, args.paper_size, args.procs, args.seconds, args.protocol, _run_options(args)
    )
    if args.protocol:
        for one in res:
            print(json.dumps(one) if args.json else format_protocol(one))
        return 0
    print(json.dumps(res) if args.json else format_report(res))
    return 0


@command("presets")
def _presets(args: argparse.Namespace) -> int:
    from nasdun.interfaces import api
    from search_spaces.presets import PRESETS

    for name, g in api.presets(16).items():
        doc = (PRESETS.get(name).__doc__ or "").strip().splitlines()[0]
        print(f"{name:10s} K=16 extra={g.n_extra:3d} lags={sum(len(q) for q in g.lags):2d} hash={g.hash}  {doc}")
    return 0


@command("settings")
def _settings(args: argparse.Namespace) -> int:
    from nasdun.interfaces import api

    for name, s in api.settings().items():
        print(f"{name:20s} m={s.m:<4d} n={s.n:<5d} train={s.n_train:<6d} val={s.n_val:<5d} test={s.n_test:<5d} {s.description}")
    return 0


@command("protocols")
def _protocols(args: argparse.Namespace) -> int:
    from nasdun.interfaces import api

    for name, pr in api.protocols().items():
        extra = f" retries={pr.retries}" if pr.retries else ""
        rule = f"patience={pr.patience:<5d} max_iters={pr.max_iters:<6d} val_every={pr.val_every:<3d} batch={pr.batch_size:<4d}{extra}"
        print(f"{name:8s} {rule} {pr.description}")
    return 0


ALIASES = {"archs": "arch"}  # a Python parameter whose flag has another name


def flag_words(err: NasdunError, parser: argparse.ArgumentParser | None) -> str:
    """``err``'s message as the command line says it: each parameter it names (``err.params``, written ``name=value``)
    as the command's flag (``top_k=3`` -> ``--top-k 3``, ``force=True`` -> ``--force``, ``resume=True`` -> ``--resume DIR``),
    from ``parser``'s own table of options. Below the CLI nothing names a flag (tests/test_cli.py holds both sides)."""
    import re

    message = str(err)
    if parser is None or not err.params:
        return message
    actions = {a.dest: a for a in parser._actions if a.option_strings}

    def one(m: re.Match[str]) -> str:
        name, value = m.group(1), m.group(2)
        action = actions.get(ALIASES.get(name, name))
        if action is None:
            return m.group(0)
        flag = action.option_strings[0]
        if action.nargs == 0:
            return flag  # a switch: force=True
        if value == "True":
            return f"{flag} {action.metavar or action.dest.upper()}"  # resume=True: the flag and what it takes
        return f"{flag} {value}"

    names = "|".join(re.escape(n) for n in sorted(err.params, key=len, reverse=True))
    return re.sub(rf"\b({names})=('(?:[^'\\]|\\.)*'|\[[^\]]*\]|[^\s;,)]+)", one, message)


def _subparser(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.ArgumentParser | None:
    """The parser of the command ``argv`` names (None before a command is known)."""
    words = list(sys.argv[1:] if argv is None else argv)
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    if sub is None:
        return None
    command = next((w for w in words if w in sub.choices), None)
    return sub.choices[command] if command else None


def _check_names(args: argparse.Namespace) -> None:
    """The registry names a command was given (samplers, settings, protocols), checked against the registries before
    anything heavy (torch, Ray, Optuna) is imported: a misspelt name is one line at once, not after seconds of imports."""
    from nasdun.orchestration.samplers import sampler_factory
    from trainers.problems.settings import get_setting, is_problem_file
    from trainers.protocols import get_protocol

    def given(*attrs: str) -> list[str]:
        return [v for a in attrs if isinstance(getattr(args, a, None), str) for v in _names(getattr(args, a))]

    if args.command in ("search", "compare-samplers"):  # (average's and heatmap's --sampler filters rows: any label)
        for name in given("sampler", "samplers"):
            sampler_factory(name)
    for name in given("setting", "settings"):
        if not is_problem_file(name):  # a problem file is read (and hashed) once, where it is used
            get_setting(name)
    for name in given("protocol", "promote_protocol", "protocols"):
        get_protocol(name)
    if isinstance(getattr(args, "device", None), str):  # before any folder is made (this one imports torch)
        from trainers.options import resolve_device

        resolve_device(args.device)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        requested_policy()  # a bad NASDUN_CPU_HEAP fails here, not inside a Ray worker
        _check_names(args)
        return COMMANDS[args.command](args)
    except NasdunError as err:
        print(f"nasdun: error: {flag_words(err, _subparser(parser, argv))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `nasdun presets | head`: the reader left; nothing more to say
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes at exit
        return 0
    except OSError as err:
        if err.filename is None:
            raise
        print(f"nasdun: error: {place_error(err)}", file=sys.stderr)  # one line, like every other user error
        return 2
    except Interrupted as stop:
        print(f"nasdun: interrupted; what finished is kept: continue with `nasdun search --resume {stop.run}`", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("nasdun: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
