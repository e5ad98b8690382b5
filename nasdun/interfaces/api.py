"""The library's pipelines: what each `nasdun` command does, callable from Python with the same result.

The CLI parses arguments and calls these; a notebook calls them directly (``import nasdun``
re-exports them lazily, see :mod:`nasdun`). Each returns data (a search's summary, DataFrames, dicts) and
writes the same run directory as the command. Their errors name Python arguments (``force=True``,
``rank=3``); the command line alone says them as its flags (``--force``, ``--rank 3``: :func:`nasdun.interfaces.cli.flag_words`).
"""

from __future__ import annotations

import functools
import inspect
import operator
from collections import abc
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from nasdun.core.errors import NasdunError
from nasdun.runs.summary import SearchSummary

F = TypeVar("F", bound=Callable[..., Any])


def _accepts(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the annotation ``hint`` at its outer level (``bool`` is not an ``int`` here)."""
    import types
    import typing

    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(value, h) for h in typing.get_args(hint))
    if hint is None or hint is type(None):
        return value is None
    target = origin or hint
    if not isinstance(target, type):
        return True  # a form this check does not read: left to the function
    if target is int and isinstance(value, bool):
        return False
    if target is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if target in (Sequence, abc.Sequence) and isinstance(value, str):
        return False
    return isinstance(value, target)


def _expected(hint: Any) -> str:
    import types
    import typing

    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    names = ["None" if a is type(None) else getattr(typing.get_origin(a) or a, "__name__", str(a)) for a in args]
    return " or ".join(dict.fromkeys(names))


def _python_errors(fn: F) -> F:
    """``fn`` with its arguments checked against its annotations: one :class:`NasdunError` naming the argument, its
    value and what was expected, never a deep ``TypeError``."""
    import typing

    sig = inspect.signature(fn)
    hints = typing.get_type_hints(fn)

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        name = getattr(fn, "__name__", "nasdun")
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError as err:
            raise NasdunError(f"{name}(): {err}; see help(nasdun.{name.removesuffix('_pipeline')})") from None
        for arg, value in bound.arguments.items():
            kind = sig.parameters[arg].kind
            if kind in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL):
                continue
            hint = hints.get(arg, Any)
            if not _accepts(value, hint):
                raise NasdunError(f"{name.removesuffix('_pipeline')}(): {arg}={value!r}; expected {_expected(hint)}")
        return fn(*args, **kwargs)  # its errors name Python parameters already (nasdun.core.errors.NasdunError)

    return call  # type: ignore[return-value]


def search_pipeline(
    out: str | Path,
    config: str | Path | Any | None = None,
    *,
    resume: bool = False,
    address: str | None = None,
    num_cpus: int | None = None,
    force: bool = False,
    **overrides: Any,
) -> SearchSummary:
    """Run (or with ``resume`` finish) a search into ``out``, its promotion phase included.

    ``config`` is a :class:`~nasdun.orchestration.searchconfig.SearchConfig`, a YAML path or a shipped config's
    name (``demo``, ``paper``; default ``demo``); ``overrides`` are any of its fields (``budget=48``,
    ``sampler="rl"``, ``baselines=False``, ``promote_top=8`` ...); ``force`` replaces a non-empty ``out``. Returns the search's
    summary (:class:`nasdun.runs.summary.SearchSummary`, what ``search.json`` holds; it reads as a mapping too, ``fig["verdict"]``),
    among them the verdict against the hand designs (:mod:`nasdun.runs.verdict`):
    ``verdict`` (under the promotion's protocol unless ``promote_top=0``: :func:`nasdun.runs.verdict.trusted_line`), ``promoted`` (its
    figures), and the screening comparison (``screening_verdict``, ``best_found``, ``best_preset``, ``gain_db``).
    """
    from dataclasses import fields

    from nasdun.orchestration.driver import run_search
    from nasdun.orchestration.searchconfig import SearchConfig, load_config

    known = {f.name for f in fields(SearchConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:  # named here, not blamed on a config file the caller never wrote
        raise NasdunError(
            f"search(): unknown argument(s) {', '.join(unknown)}; expected search's own or SearchConfig fields ({', '.join(sorted(known))})"
        )
    if num_cpus is not None and (isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < 1):
        raise NasdunError(f"num_cpus={num_cpus!r}; expected an integer >= 1 (or leave it out: every CPU)", ("num_cpus",))
    if resume:
        if config is not None:
            raise NasdunError("a config cannot be given with resume (the directory's search.yaml is used)")
        return run_search(out, resume=True, address=address, num_cpus=num_cpus, overrides=overrides)
    cfg = config.with_overrides(overrides) if isinstance(config, SearchConfig) else load_config(None if config is None else str(config), overrides)
    return run_search(out, cfg, address=address, num_cpus=num_cpus, force=force)


search = _python_errors(search_pipeline)  # `nasdun search` calls search_pipeline (its arguments come parsed and typed)
search.__name__ = search.__qualname__ = "search"


@_python_errors
def train(
    archs: str | Sequence[str] = "hand",
    setting: str = "small",
    layers: int = 8,
    protocol: str = "search",
    seed: int = 0,
    out: str | Path | None = None,
    options: Any = None,
    resume: str | Path | None = None,
    **keywords: Any,
) -> Any:
    """Train architectures (presets, genotype files or :class:`~search_spaces.Genotype` objects; ``hand``: every hand design) together;
    returns the results table (a DataFrame; ``df.attrs`` holds the ISTA reference, the wall time and the run folder, ``out``).

    How it trains is one :class:`~trainers.options.RunOptions` (``options``), or its fields given as keywords
    (``device="cpu"``, ``precision="tf32"``, ``compile=True``, ``minutes=5``, ``checkpoint_every_s=60``); the other
    keywords are :func:`nasdun.runs.training.run_train`'s (``overwrite``, ``lr_scale``). ``resume``: finish the interrupted
    train in that folder from its last checkpoint (its networks, setting and protocol are the folder's; of the options only
    ``checkpoint_every_s`` applies)."""
    import dataclasses
    import time

    from nasdun.runs.training import run_train
    from search_spaces.genotype import Genotype
    from search_spaces.presets import resolve_archs
    from trainers.options import RunOptions

    fields = {f.name for f in dataclasses.fields(RunOptions)}
    given = {k: keywords.pop(k) for k in list(keywords) if k in fields}
    if options is not None and not isinstance(options, RunOptions):
        raise NasdunError(f"train(): options={options!r}; expected a trainers.options.RunOptions or None", ("options",))
    if options is not None and given:
        raise NasdunError(f"train(): options and {', '.join(sorted(given))} both given; expected the record or its fields, not both", ("options",))
    opts = options if options is not None else RunOptions(**given)
    if resume is not None:
        from nasdun.runs.training import resume_train

        df = resume_train(resume, opts.checkpoint_every_s)
        df.attrs["out"] = str(resume)
        return df

    if not isinstance(archs, str) and not archs:
        raise NasdunError("train(): archs=[]; expected at least one architecture (a preset name, a genotype file or a Genotype)")
    if isinstance(archs, str):
        named = resolve_archs(archs, layers)
    else:
        named = []
        for a in archs:
            named += [(f"g{a.hash}", a)] if isinstance(a, Genotype) else resolve_archs(str(a), layers)
    from trainers.problems.operators import setting_label

    accepted = (set(inspect.signature(run_train).parameters) - {"archs", "setting", "protocol", "seed", "out", "options"}) | fields
    unknown = sorted(set(keywords) - accepted)
    if unknown:
        raise NasdunError(f"train(): unknown argument(s) {', '.join(unknown)}; expected any of {', '.join(sorted(accepted))}")
    out = out or f"runs/train-{setting_label(setting)}-{time.strftime('%Y%m%d-%H%M%S')}"
    df = run_train(named, setting, protocol, seed, out, opts, **keywords)
    df.attrs["out"] = str(out)  # where the run went (the default folder is named by the time)
    return df


@_python_errors
def read_results(*runs: str | Path) -> Any:
    """The results table(s) of run directories as one DataFrame (a ``run`` column names each)."""
    from nasdun.runs.results import load_runs

    return load_runs(list(runs))


@_python_errors
def judge(run: str | Path) -> dict[str, Any]:
    """Best found network vs best hand design of a run (see :func:`nasdun.runs.verdict.judge`)."""
    from nasdun.runs.results import read_table
    from nasdun.runs.verdict import judge

    return judge(read_table(run).to_dict("records"))


@_python_errors
def load_network(run: str | Path, name: str | None = None, rank: int | None = None, device: str = "cpu") -> Any:
    """A run's trained network (row ``name``, or the ``rank``-th best by validation with kept parameters) as a
    P = 1 :class:`~trainers.model.UnrolledLISTA`; ``net(b)[-1]`` is x(K) for measurements ``b`` (B, m)."""
    from nasdun.runs.export import pick_row
    from nasdun.runs.results import load_network as _load

    return _load(run, pick_row(run, name, rank)["name"], device)


@_python_errors
def export_network(run: str | Path, out: str | Path, name: str | None = None, rank: int | None = None, force: bool = False) -> dict[str, Any]:
    """Write a run's trained network as a self-contained ``torch.export`` program (see :mod:`nasdun.runs.export`)."""
    from nasdun.runs.export import export_network as _export

    return _export(run, out, name=name, rank=rank, force=force)


def presets(layers: int = 16) -> Mapping[str, Any]:
    """The hand designs at ``layers`` layers, by name."""
    from search_spaces.presets import PRESETS, preset

    return {name: preset(name, layers) for name in PRESETS.names()}


def settings() -> Mapping[str, Any]:
    """The registered problem settings, by name."""
    from trainers.problems.make import SETTINGS

    return dict(SETTINGS.items())


def protocols() -> Mapping[str, Any]:
    """The registered training protocols, by name."""
    from trainers.protocols import PROTOCOLS

    return dict(PROTOCOLS.items())


# -- the other commands, one function each (the CLI parses, calls one of these, prints) -------------------------------


def _options(options: Any) -> Any:
    from trainers.options import RunOptions

    if options is None:
        return RunOptions()
    if not isinstance(options, RunOptions):
        raise NasdunError(f"options={options!r}; expected a nasdun.RunOptions or None", ("options",))
    return options


def _list(value: str | Sequence[Any]) -> list[Any]:
    """A comma list given as one string (``"lista,2no"``) or as a sequence."""
    return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else list(value)


def _ints(value: str | Sequence[int], name: str, example: str) -> list[int]:
    """Integers given as a comma list (``"101,102"``) or as a sequence; a word that is not one is named with ``name``."""
    try:  # a word as written; any other value must already be an integer (16.5 is refused, not cut to 16)
        return [int(v) if isinstance(v, str) else operator.index(v) for v in _list(value)]
    except (TypeError, ValueError):
        raise NasdunError(f"{name}={value!r}; expected a comma list of integers such as {example}", (name,)) from None


def _paths(runs: str | Path | Sequence[str | Path]) -> list[str | Path]:
    return [str(runs)] if isinstance(runs, str | Path) else [str(r) for r in runs]


@_python_errors
def average(
    runs: str | Path | Sequence[str | Path], out: str | Path = "avg.json", top_k: int = 50, threshold: float = 0.5, sampler: str | None = None,
    force: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """``nasdun average``: the top-``top_k`` averaged architecture of one or more runs (connections and lags open in at
    least ``threshold`` of them, each layer's most frequent neuron), written to ``out`` (JSON that ``train`` reads as an
    architecture). Returns ``genotype``, ``top_k`` (as used: all rows when the runs hold fewer; ``note`` says so),
    ``frequencies`` and ``members`` (the averaged rows)."""
    from analysis.readers.average import average as _average
    from analysis.readers.average import write_average
    from nasdun.runs.results import check_out_file, load_runs, resolve_top_k

    names = _paths(runs)
    check_out_file(out, force)
    df = load_runs(names, sampler)
    k, note = resolve_top_k(df, top_k)
    g, freq, members = _average(df, k, threshold)
    write_average(out, g, freq, members, top_k=k, threshold=threshold, runs=names, sampler=sampler)
    return {"genotype": g, "top_k": k, "note": note, "frequencies": freq, "members": members, "out": str(out)}


@_python_errors
def heatmap(
    runs: str | Path | Sequence[str | Path] = (), out: str | Path = "heatmaps", top_k: int = 50, threshold: float = 0.5, diff: int | None = None,
    sampler: str | None = None, arch: str | None = None, layers: int = 16, force: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """``nasdun heatmap``: connection, lag and neuron frequency figures (PNG and SVG in ``out``) of the top-``top_k`` of
    ``runs`` (with ``diff``: also top-k minus top-diff), or of the architectures ``arch`` (presets or genotype files, a
    comma list, at ``layers`` layers) instead. Returns ``out`` and ``note`` (when the runs hold fewer than ``top_k``)."""
    from analysis.readers.heatmaps import genotype_heatmap, run_heatmaps
    from nasdun.runs.results import check_out_dir
    from search_spaces.presets import resolve_archs

    names = _paths(runs)
    if arch and names:
        raise NasdunError(f"arch={arch!r} and runs both given; expected run directories or architectures, not both", ("arch",))
    if not arch and not names:
        raise NasdunError("heatmap needs run directories (runs=['runs/qs']) or architectures (arch='alista')", ("arch",))
    archs = resolve_archs(arch, layers) if arch else []  # bad names fail before anything is written
    check_out_dir(out, force)  # the figures create it once the runs have been read
    note = ""
    for name, g in archs:
        genotype_heatmap(g, name, out)
    if not archs:
        note = run_heatmaps(names, out, top_k, diff, sampler, threshold)["note"]
    return {"out": str(out), "note": note}


@_python_errors
def retrain(
    arch: str, out: str | Path, against: str = "hand", settings: str | Sequence[str] = "noiseless", seeds: int = 3, protocol: str = "paper",
    layers: int | None = None, options: Any = None, force: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """``nasdun retrain``: ``arch`` (genotype files or presets, a comma list) and the hand designs ``against`` retrained
    on each of ``settings`` (a comma list or a list) over ``seeds`` seeds (0..seeds-1) under ``protocol``, at ``layers``
    layers (default: the first genotype file's, else 16), into ``out``. Returns the tables by name (``table1``: the
    Table-1-style summary, one row per setting; its ``attrs["layers"]``: the depth trained)."""
    from analysis.studies.retrain import run_retrain
    from search_spaces.presets import infer_layers

    depth = layers or infer_layers(arch) or 16
    tables = run_retrain(arch, against, _list(settings), seeds, protocol, depth, out, _options(options), force=force)
    tables["table1"].attrs["layers"] = depth  # the depth trained (inferred when not given)
    return tables


@_python_errors
def promote(run: str | Path, out: str | Path, top_k: int = 8, protocol: str = "paper", options: Any = None, force: bool = False) -> Any:
    """``nasdun promote``: a (screening) run's top ``top_k`` trained again under ``protocol`` on the run's setting and
    seed, into ``out``. Returns the comparison table (screening and promoted values and ranks; ``promote.csv``)."""
    from nasdun.orchestration.promotion import run_promote

    return run_promote(run, top_k, protocol, out, _options(options), force=force)


@_python_errors
def confirm(
    runs: str | Path | Sequence[str | Path], out: str | Path, protocol: str, top_k: int = 3, seeds: str | Sequence[int] = (101, 102, 103),
    against: str | Sequence[str] = "", options: Any = None, force: bool = False,
) -> Any:  # fmt: skip
    """``nasdun confirm``: the top ``top_k`` of each run (and the hand designs ``against``) retrained under ``protocol``
    on fresh ``seeds``, into ``out`` (continued where an interrupted one stopped). Returns the per-network table."""
    from analysis.studies.confirm import run_confirm

    seed_list = _ints(seeds, "seeds", "101,102,103")
    return run_confirm(_paths(runs), top_k, seed_list, protocol, out, _list(against), _options(options), force=force)


@_python_errors
def report(
    run: str | Path, out: str | Path | None = None, top_k: int = 50, retrain: str | Path | None = None, others: Sequence[str | Path] = (),
    force: bool = False,
) -> tuple[Path, Path]:  # fmt: skip
    """``nasdun report``: the run's report (``out``, default RUN/report), opening with the verdict against the hand
    designs; a ``retrain`` directory's table and ``others`` runs beside it. Returns the HTML (self-contained) and Markdown paths."""
    from analysis.readers.report import build_report

    return build_report(run, out, top_k, retrain, list(others), force=force)


@_python_errors
def repair(run: str | Path) -> dict[str, Any]:
    """``nasdun repair``: a search's study rebuilt from its results table, or missing rows from its study, where they
    disagree. Returns what was done (``repaired``, ``rows_rebuilt``, ``renumbered``, ``study_rebuilt``, ...)."""
    from nasdun.orchestration.record import repair as _repair

    return _repair(run)


@_python_errors
def reconstruct(run: str | Path, image: str = "camera", out: str | Path | None = None, iterations: int = 1000, force: bool = False) -> dict[str, Any]:
    """``nasdun reconstruct``: one test image of an image setting through Φᵀb, ISTA, FISTA (``iterations`` each), LISTA and
    the run's best network, into ``out`` (default RUN/reconstruct). Returns the PSNR of each (``psnr_db``) and ``out``."""
    from analysis.studies.reconstruct import reconstruct as _reconstruct

    where = out or str(Path(run) / "reconstruct")
    return {**_reconstruct(run, image, where, force=force, iters=iterations), "out": str(where)}


@_python_errors
def classical(
    setting: str = "image_cs50", iterations: int = 1000, layers: int = 8, out: str | Path | None = None, force: bool = False
) -> dict[str, Any]:
    """``nasdun classical``: ISTA and FISTA at ``iterations`` (λ tuned on validation) and HyperLISTA at ``layers`` layers
    (three scalars tuned on training data, no training) on ``setting``; written to ``out`` (JSON) if given. Returns the
    setting's name and ``references``: one dict per method (``method``, ``test_nmse_db``, ...)."""
    from nasdun.runs.results import check_out_file, write_json
    from trainers.classical import reference
    from trainers.hyperlista import reference as hyperlista
    from trainers.problems.make import get_setting, make_problem

    if out:
        check_out_file(out, force)
    s = get_setting(setting)
    problem = make_problem(s, 0, batch_size=min(64, s.n_train))
    refs = [reference(problem, fista, iters=iterations) for fista in (False, True)]
    result = {"setting": s.name, "references": [*refs, hyperlista(problem, layers)]}
    if out:
        write_json(Path(out), result)
    return result


@_python_errors
def compare(run_a: str | Path, run_b: str | Path, top_k: int = 50) -> dict[str, Any]:
    """``nasdun compare``: each run's best trained network, and the agreement of the two runs' top ``top_k`` sets.
    Returns ``best`` (run -> its figures) and ``agreement`` (``k``, ``overlap``, ``overlap_fraction``, ``conn_freq_pearson``)."""
    from analysis.readers.searchstats import best_trained, topk_agreement
    from nasdun.runs.results import load_runs

    a, b = load_runs([run_a]), load_runs([run_b])
    return {"best": {str(run_a): best_trained(a), str(run_b): best_trained(b)}, "agreement": topk_agreement(a, b, top_k)}


@_python_errors
def compare_samplers(
    out: str | Path, budget: int, samplers: str | Sequence[str] = "rl,evolution,random,tpe,predictor", seeds: str | Sequence[int] = (0, 1, 2),
    baselines: bool = False, confirm_seeds: int = 0, confirm_protocol: str | Sequence[str] | None = None, config: str | None = None,
    address: str | None = None, num_cpus: int | None = None, force: bool = False, **overrides: Any,
) -> dict[str, Any]:  # fmt: skip
    """``nasdun compare-samplers``: one search per sampler and seed, side by side, into ``out`` (run again to continue);
    ``overrides``: the searches' ``setting``, ``protocol``, ``layers``, ``cohort``. Returns the study's summary
    (``median_candidates_to_beat`` per sampler, ...)."""
    from analysis.studies.samplers_study import run_sampler_study

    unknown = sorted(set(overrides) - {"setting", "protocol", "layers", "cohort"})
    if unknown:
        raise NasdunError(f"compare_samplers(): unknown argument(s) {', '.join(unknown)}; expected setting, protocol, layers or cohort")
    seed_list = _ints(seeds, "seeds", "101,102,103")
    confirm = None if confirm_protocol is None else _list(confirm_protocol)
    return run_sampler_study(
        _list(samplers), seed_list, budget, out, config=config, baselines=baselines, confirm_seeds=confirm_seeds, confirm_protocols=confirm,
        overrides={k: v for k, v in overrides.items() if v is not None}, address=address, num_cpus=num_cpus, force=force,
    )  # fmt: skip


@_python_errors
def fidelity(
    out: str | Path, genotypes: int = 32, setting: str = "small", layers: int = 8, reference: str = "paper",
    protocols: str | Sequence[str] = "search", seed: int = 0, genotype_seed: int | None = None, reference_chunk: int = 0,
    chunks: int | None = None, reference_table: str | Path | None = None, options: Any = None, force: bool = False,
) -> Any:  # fmt: skip
    """``nasdun fidelity``: how well cheap ``protocols`` rank ``genotypes`` random networks (and the hand designs) against
    the ``reference`` protocol (trained once, cached in ``out``, in chunks of ``reference_chunk``, at most ``chunks`` now),
    or against a ``reference_table`` (a CSV or a shipped name such as ``paper_small_k8``: then the study is the table's,
    and none of its own arguments may be given). Returns the per-protocol agreement table (``fidelity.csv``)."""
    from analysis.studies.fidelity import run_fidelity

    if reference_table:  # the study is the table's: none of its own arguments may be given
        study = {"genotypes": genotypes, "setting": setting, "layers": layers, "reference": reference, "seed": seed,
                 "genotype_seed": genotype_seed, "reference_chunk": reference_chunk, "chunks": chunks}  # fmt: skip
        defaults = inspect.signature(fidelity_pipeline).parameters
        given = {k: v for k, v in study.items() if v != defaults[k].default}
        if given:
            said = ", ".join(f"{k}={v!r}" for k, v in given.items())
            table = str(reference_table)
            raise NasdunError(f"{said} cannot be given with reference_table={table!r}: the study is the table's", (*given, "reference_table"))
    return run_fidelity(
        genotypes, setting, layers, reference, _list(protocols), seed, out, _options(options), genotype_seed, force=force,
        reference_chunk=reference_chunk, max_chunks=chunks, reference_table=reference_table,
    )  # fmt: skip


fidelity_pipeline = fidelity.__wrapped__  # type: ignore[attr-defined]


@_python_errors
def bench(
    P: str | Sequence[int] = "16", m: int = 50, n: int = 100, layers: int = 8, batch: int = 128, val: int = 1024, paper_size: bool = False,
    procs: int = 2, seconds: float = 3.0, protocol: str | None = None, options: Any = None,
) -> Any:  # fmt: skip
    """``nasdun bench``: trainer throughput at (``m``, ``n``, ``layers``, ``batch``, ``val``) or ``paper_size``: single,
    the ``procs``-process packing baseline and batched cohorts of each ``P``; or, with ``protocol``, what that protocol
    runs (every stage and validation in its proportions), one dict per P. Returns the report (a dict, or a list with
    ``protocol``)."""
    from nasdun.runs.bench import BenchSize, measure_protocol, run_bench
    from nasdun.runs.bench import paper_size as paper

    sizes = _ints(P, "P", "16,64,128")
    size = paper() if paper_size else BenchSize(m, n, layers, batch, val)
    if protocol:
        return [measure_protocol(size, p, protocol, _options(options), seconds) for p in sizes]
    return run_bench(size, _options(options), sizes, procs, seconds)
