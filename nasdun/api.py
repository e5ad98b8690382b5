"""The library's pipelines: what each `nasdun` command does, callable from Python with the same result.

The CLI parses arguments and calls these; a notebook calls them directly (``import nasdun``
re-exports them lazily, see :mod:`nasdun`). Each returns data (a search's summary, DataFrames, dicts) and
writes the same run directory as the command. Their errors name Python arguments (``force=True``,
``rank=3``); the command line alone says them as its flags (``--force``, ``--rank 3``: :func:`nasdun.cli.flag_words`).
"""

from __future__ import annotations

import functools
import inspect
from collections import abc
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from nasdun.errors import NasdunError
from nasdun.summary import SearchSummary

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
        return fn(*args, **kwargs)  # its errors name Python parameters already (nasdun.errors.NasdunError)

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

    ``config`` is a :class:`~nasdun.searchconfig.SearchConfig`, a YAML path or a shipped config's
    name (``demo``, ``paper``; default ``demo``); ``overrides`` are any of its fields (``budget=48``,
    ``sampler="rl"``, ``baselines=False``, ``promote_top=8`` ...); ``force`` replaces a non-empty ``out``. Returns the search's
    summary (:class:`nasdun.summary.SearchSummary`, what ``search.json`` holds; it reads as a mapping too, ``fig["verdict"]``),
    among them the verdict against the hand designs (:mod:`nasdun.verdict`):
    ``verdict`` (under the promotion's protocol unless ``promote_top=0``: :func:`nasdun.verdict.trusted_line`), ``promoted`` (its
    figures), and the screening comparison (``screening_verdict``, ``best_found``, ``best_preset``, ``gain_db``).
    """
    from dataclasses import fields

    from nasdun.driver import run_search
    from nasdun.searchconfig import SearchConfig, load_config

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
    **keywords: Any,
) -> Any:
    """Train architectures (presets, genotype files or :class:`~search_spaces.Genotype` objects; ``hand``: every hand design) together;
    returns the results table (a DataFrame; ``df.attrs`` holds the ISTA reference, the wall time and the run folder, ``out``).

    How it trains is one :class:`~trainers.options.RunOptions` (``options``), or its fields given as keywords
    (``device="cpu"``, ``precision="tf32"``, ``compile=True``, ``minutes=5``, ``checkpoint_every_s=60``); the other
    keywords are :func:`nasdun.training.run_train`'s (``overwrite``, ``lr_scale``)."""
    import dataclasses
    import time

    from nasdun.training import run_train
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

    if not isinstance(archs, str) and not archs:
        raise NasdunError("train(): archs=[]; expected at least one architecture (a preset name, a genotype file or a Genotype)")
    if isinstance(archs, str):
        named = resolve_archs(archs, layers)
    else:
        named = []
        for a in archs:
            named += [(f"g{a.hash}", a)] if isinstance(a, Genotype) else resolve_archs(str(a), layers)
    from trainers.operators import setting_label

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
    from nasdun.results import load_runs

    return load_runs(list(runs))


@_python_errors
def judge(run: str | Path) -> dict[str, Any]:
    """Best found network vs best hand design of a run (see :func:`nasdun.verdict.judge`)."""
    from nasdun.results import read_table
    from nasdun.verdict import judge

    return judge(read_table(run).to_dict("records"))


@_python_errors
def load_network(run: str | Path, name: str | None = None, rank: int | None = None, device: str = "cpu") -> Any:
    """A run's trained network (row ``name``, or the ``rank``-th best by validation with kept parameters) as a
    P = 1 :class:`~trainers.model.UnrolledLISTA`; ``net(b)[-1]`` is x(K) for measurements ``b`` (B, m)."""
    from nasdun.export import pick_row
    from nasdun.results import load_network as _load

    return _load(run, pick_row(run, name, rank)["name"], device)


@_python_errors
def export_network(run: str | Path, out: str | Path, name: str | None = None, rank: int | None = None, force: bool = False) -> dict[str, Any]:
    """Write a run's trained network as a self-contained ``torch.export`` program (see :mod:`nasdun.export`)."""
    from nasdun.export import export_network as _export

    return _export(run, out, name=name, rank=rank, force=force)


def presets(layers: int = 16) -> Mapping[str, Any]:
    """The hand designs at ``layers`` layers, by name."""
    from search_spaces.presets import PRESETS, preset

    return {name: preset(name, layers) for name in PRESETS.names()}


def settings() -> Mapping[str, Any]:
    """The registered problem settings, by name."""
    from trainers.problems import SETTINGS

    return dict(SETTINGS.items())
