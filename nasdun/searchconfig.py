"""The search configuration: a typed dataclass read from YAML (unknown keys are errors)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasdun.config import from_mapping, load_yaml
from nasdun.errors import NasdunError
from search_spaces.genotype import Genotype, SearchSpace

HERE = Path(__file__).parent
CONFIGS = HERE / "configs"


@dataclass(frozen=True)
class SearchConfig:
    """A search, as written in YAML (unknown keys are errors); see ``nasdun/configs/*.yaml``."""

    sampler: str = "evolution"
    sampler_options: dict[str, Any] = field(default_factory=dict)  # sampler name -> its options
    budget: int = 24  # distinct trained candidates
    minutes: float = 0.0  # > 0: no new cohort is started after this many minutes of a session (in-flight ones finish)
    cohort: int = 6  # candidates per Ray Tune trial (one population-trainer run)
    setting: str = "small"
    protocol: str = "search"
    layers: int = 8
    max_lag: int = 2
    neurons: tuple[str, ...] = ("soft", "relu", "lrelu")
    search_conn: bool = True
    search_neurons: bool = True
    search_lags: bool = True
    seed: int = 0
    cpus_per_trial: int = 1
    gpus_per_trial: float = 0.0
    max_concurrent: int = 0  # 0: as many as the cluster's resources allow
    max_failures: int = 2  # Ray Tune retries of a cohort whose worker died
    retrain_duplicates: bool = False
    start_from: tuple[str, ...] = ()  # presets or genotype .json files proposed first (seeds of the initial population)
    compile: bool = False
    storage: str | None = None  # SQLAlchemy URL; default sqlite:///DIR/optuna.db
    promote_top: int = 0  # > 0: when the search ends, its top-k (validation) are trained under promote_protocol (DIR/promoted)
    promote_protocol: str = "paper"

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise NasdunError(f"budget={self.budget}; expected an integer >= 1 (candidates to train)")
        if not self.minutes >= 0:
            raise NasdunError(f"minutes={self.minutes}; expected a number >= 0 (0: no time limit)")
        if self.cohort < 1:
            raise NasdunError(f"cohort={self.cohort}; expected an integer >= 1")
        if self.cpus_per_trial < 1 or self.gpus_per_trial < 0 or self.max_concurrent < 0 or self.max_failures < 0:
            raise NasdunError("cpus_per_trial >= 1, gpus_per_trial >= 0, max_concurrent >= 0 and max_failures >= 0 are expected")
        if self.promote_top < 0:
            raise NasdunError(f"promote_top={self.promote_top}; expected an integer >= 0 (0: no promotion phase)")

    def options_for(self, sampler: str) -> dict[str, Any]:
        from nasdun.samplers import SAMPLERS

        key = SAMPLERS.canonical(sampler)
        return next((dict(v) for k, v in self.sampler_options.items() if SAMPLERS.canonical(k) == key), {})

    def space(self) -> SearchSpace:
        return SearchSpace(self.layers, self.max_lag, tuple(self.neurons), self.search_conn, self.search_neurons, self.search_lags)

    def start_genotypes(self) -> list[Genotype]:
        """``start_from`` resolved at this K and encoded in this space (a one-line error otherwise)."""
        from search_spaces.presets import resolve_arch

        space, out = self.space(), []
        for token in self.start_from:
            try:
                g = resolve_arch(token, self.layers, self.max_lag)[1]
                space.encode(g)
            except NasdunError as err:
                raise NasdunError(f"start_from {token!r}: {err}") from None
            out.append(g)
        return out

    def validate(self) -> None:
        """Resolve every name now, so a bad config fails before Ray starts."""
        from nasdun.samplers import SAMPLERS
        from trainers.problems import get_setting
        from trainers.protocols import get_protocol

        proto = get_protocol(self.protocol)
        too_deep = [r for r in proto.rungs if r >= self.layers]
        if too_deep:
            raise NasdunError(
                f"protocol {proto.name} halves after layers {too_deep}, but the search has layers={self.layers}; expected rungs < layers"
            )
        SAMPLERS.get(self.sampler)
        for name, opts in self.sampler_options.items():
            SAMPLERS.get(name)
            if not isinstance(opts, dict):
                raise NasdunError(f"sampler_options.{name}={opts!r}; expected a mapping of option -> value")
        get_setting(self.setting)
        self.space()
        self.start_genotypes()
        if self.promote_top:
            get_protocol(self.promote_protocol)


def load_config(path: str | None, overrides: dict[str, Any]) -> SearchConfig:
    """A YAML file (or a shipped config's name) plus CLI overrides; no ``--config``: the demo."""
    source = path or "demo"
    file = Path(source) if source.endswith((".yaml", ".yml")) else CONFIGS / f"{source}.yaml"
    if not file.is_file():
        shipped = ", ".join(sorted(p.stem for p in CONFIGS.glob("*.yaml")))
        raise NasdunError(f"config {source!r} not found; expected a YAML file or one of: {shipped}")
    data = {**load_yaml(file), **{k: v for k, v in overrides.items() if v is not None}}
    cfg = from_mapping(SearchConfig, data, str(file))
    cfg.validate()
    return cfg
