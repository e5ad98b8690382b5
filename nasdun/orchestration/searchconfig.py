"""The search configuration: a typed dataclass read from YAML (unknown keys are errors), and the search it resolves to.

A :class:`SearchConfig` is what the user wrote (a file, then overrides: :meth:`SearchConfig.with_overrides`);
:meth:`SearchConfig.resolve` checks every name in it once and returns a :class:`ResolvedSearch`, the object
a start or a resume builds and passes down: to the experiment, the searcher (whose cohort payload it
builds, :meth:`ResolvedSearch.payload`) and the promotion.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasdun.core.config import from_mapping, load_yaml
from nasdun.core.errors import NasdunError
from search_spaces.genotype import Decision, Genotype, SearchSpace
from trainers.options import RunOptions
from trainers.precision import check_precision

if TYPE_CHECKING:
    from nasdun.orchestration.samplers._history import ReplayableSampler
    from trainers.protocols import Protocol

CONFIGS = Path(__file__).resolve().parent.parent / "configs"  # nasdun/configs: the shipped search configs


@dataclass(frozen=True)
class SearchConfig(SearchSpace):
    """A search, as written in YAML (unknown keys are errors); see ``nasdun/configs/*.yaml``.

    Its search-space fields (``layers``, ``max_lag``, ``neurons``: every registered neuron unless
    listed, ``search_conn``, ``search_neurons``, ``search_lags``, ``default_neuron``) are those of
    :class:`~search_spaces.genotype.SearchSpace`, which it extends, so they are declared once.
    """

    sampler: str = "evolution"
    sampler_options: dict[str, Any] = field(default_factory=dict)  # sampler name -> its options
    budget: int = 24  # distinct trained candidates
    minutes: float = 0.0  # > 0: no new cohort is started after this many minutes of a session (in-flight ones finish)
    cohort: int = 6  # candidates per Ray Tune trial (one population-trainer run)
    setting: str = "small"
    protocol: str = "search"
    seed: int = 0
    cpus_per_trial: int = 1
    gpus_per_trial: float = 0.0
    max_concurrent: int = 0  # 0: as many as the cluster's resources allow
    max_failures: int = 2  # Ray Tune retries of a cohort whose worker died
    retrain_duplicates: bool = False
    baselines: bool = True  # the hand designs this space can express are the first candidates (see baseline_genotypes)
    start_from: tuple[str, ...] = ()  # presets or genotype .json files proposed first, after the baselines (warm start)
    retry_failed: bool = True  # on --resume, train again the cohorts whose worker was lost for good (not candidates that diverged)
    checkpoint_minutes: float = 5.0  # a cohort saves its whole trainer state this often (a retried or redone cohort continues); 0: off
    keep_params: int = 10  # trained parameters of the top-k candidates (and every baseline) kept in DIR/params.pt
    compile: bool = False
    precision: str = "fp32"  # fp32, tf32 or bf16 (trainers.precision)
    storage: str | None = None  # SQLAlchemy URL; default sqlite:///DIR/optuna.db
    # When the search ends, its top-k found networks and every hand design are trained under promote_protocol (DIR/promoted),
    # and the verdict is computed there. None: k = max(3, 10 % of the budget); 0: no promotion (a screening verdict).
    promote_top: int | None = None
    promote_protocol: str = "final"
    # The hand designs the promotion trains: None, every one the search trained; N, the N that screened best (a demo that
    # must stay short: 15 hand designs under final cost minutes); the verdict's line names the choice.
    promote_hand: int | None = None
    track: tuple[str, ...] = ()  # experiment trackers fed as cohorts end: tensorboard, mlflow (nasdun.runs.tracking)

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.setting, str) and self.setting.endswith((".yaml", ".yml")):  # a problem file: absolute, so Ray workers find it
            object.__setattr__(self, "setting", str(Path(self.setting).resolve()))
        if self.budget < 1:
            raise NasdunError(f"budget={self.budget}; expected an integer >= 1 (candidates to train)")
        if not self.minutes >= 0:
            raise NasdunError(f"minutes={self.minutes}; expected a number >= 0 (0: no time limit)")
        if self.cohort < 1:
            raise NasdunError(f"cohort={self.cohort}; expected an integer >= 1")
        if self.cpus_per_trial < 1 or self.gpus_per_trial < 0 or self.max_concurrent < 0 or self.max_failures < 0:
            raise NasdunError("cpus_per_trial >= 1, gpus_per_trial >= 0, max_concurrent >= 0 and max_failures >= 0 are expected")
        check_precision(self.precision)
        if not self.checkpoint_minutes >= 0:
            raise NasdunError(f"checkpoint_minutes={self.checkpoint_minutes}; expected a number >= 0 (0: no checkpoints)")
        if self.keep_params < 0:
            raise NasdunError(f"keep_params={self.keep_params}; expected an integer >= 0 (parameters of the top-k kept)")
        if self.promote_hand is not None and (isinstance(self.promote_hand, bool) or not isinstance(self.promote_hand, int) or self.promote_hand < 1):
            raise NasdunError(f"promote_hand={self.promote_hand!r}; expected an integer >= 1 (the best-screened hand designs) or null (every one)")
        if self.promote_top is not None and self.promote_top < 0:
            raise NasdunError(
                f"promote_top={self.promote_top}; expected an integer >= 0 (0: no promotion phase) or null (max(3, 10 % of the budget))"
            )

    @property
    def promoted_k(self) -> int:
        """The found networks the promotion trains: ``promote_top``, or max(3, ceil(budget / 10)) when it is None."""
        return max(3, -(-self.budget // 10)) if self.promote_top is None else self.promote_top

    def options_for(self, sampler: str) -> dict[str, Any]:
        from nasdun.orchestration.samplers import SAMPLERS

        key = SAMPLERS.canonical(sampler)
        return next((dict(v) for k, v in self.sampler_options.items() if SAMPLERS.canonical(k) == key), {})

    def space(self) -> SearchSpace:
        """The search space alone (the fields this config inherits from SearchSpace)."""
        return SearchSpace(**{f.name: getattr(self, f.name) for f in fields(SearchSpace)})

    def baseline_genotypes(self) -> dict[str, Genotype]:
        """With ``baselines``: the hand designs at this K that this space can express, by name (none otherwise)."""
        from nasdun.runs.verdict import hand_designs

        if not self.baselines:
            return {}
        space, out = self.space(), {}
        for name, g in hand_designs(self.layers, self.max_lag).items():
            try:
                space.encode(g)
            except NasdunError:  # e.g. 2no in a space without lags: not a point of this search
                continue
            out[name] = g
        return out

    def start_genotypes(self, baselines: Mapping[str, Genotype] | None = None) -> list[Genotype]:
        """The first candidates: the baselines (``baselines`` if already computed, else :meth:`baseline_genotypes`), then
        ``start_from`` resolved at this K (a one-line error if one is not in this space); a genotype listed twice is proposed once."""
        from search_spaces.presets import resolve_arch

        hand = self.baseline_genotypes() if baselines is None else baselines
        space, out = self.space(), list(hand.values())
        for token in self.start_from:
            try:
                g = resolve_arch(token, self.layers, self.max_lag)[1]
                space.encode(g)
            except NasdunError as err:
                raise NasdunError(f"start_from {token!r}: {err}") from None
            if all(g != o for o in out):
                out.append(g)
        return out

    def to_mapping(self) -> dict[str, Any]:
        """The config as plain data (``search.yaml``; :meth:`with_overrides` and :func:`~nasdun.core.config.from_mapping` read it back)."""
        data = asdict(self)
        data["neurons"] = list(self.neurons)
        return {f.name: data[f.name] for f in fields(self)}

    def with_overrides(self, overrides: Mapping[str, Any], what: str = "overrides") -> SearchConfig:
        """This config with ``overrides`` (field -> value, only the fields given: None is a value, e.g. ``promote_top=None``)
        applied and typed like a YAML file's keys (an unknown field or a value of the wrong type is a one-line error); a
        comma string is accepted for a list field (``start_from="lista,2no"``)."""
        return from_mapping(SearchConfig, {**self.to_mapping(), **_listed(overrides)}, what)

    def resolve(self) -> ResolvedSearch:
        """Every name resolved once (protocols, setting, sampler and its options, start genotypes, trackers), so a bad
        config fails before Ray starts; the result is what the search passes down."""
        from nasdun.orchestration.samplers import SAMPLERS, make_sampler, sampler_factory
        from nasdun.runs.tracking import check_trackers
        from trainers.problems.make import get_setting
        from trainers.protocols import get_protocol

        proto = get_protocol(self.protocol)
        too_deep = [r for r in proto.rungs if r >= self.layers]
        if too_deep:
            raise NasdunError(
                f"protocol {proto.name} halves after layers {too_deep}, but the search has {self.layers} layers; "
                f"expected rungs < layers: use layers={max(too_deep) + 1} or more, or a protocol file whose rungs fit "
                f"(e.g. sh2x500 halves after layer 4)",
                ("layers",),
            )
        sampler_factory(self.sampler)
        for name, opts in self.sampler_options.items():
            SAMPLERS.get(name)
            if not isinstance(opts, dict):
                raise NasdunError(f"sampler_options.{name}={opts!r}; expected a mapping of option -> value")
        setting = get_setting(self.setting)
        space = self.space()
        decisions = space.decisions()
        make_sampler(self.sampler, decisions, self.seed, self.options_for(self.sampler))  # bad options refused before Ray starts
        hand = self.baseline_genotypes()
        start = tuple(self.start_genotypes(hand))
        promote = get_protocol(self.promote_protocol) if self.promoted_k else None
        check_trackers(self.track)
        return ResolvedSearch(self, proto, setting, space, decisions, tuple(hand), start, promote)


@dataclass(frozen=True)
class ResolvedSearch:
    """A search with every name resolved, built once at start or resume (:meth:`SearchConfig.resolve`) and passed down:
    the experiment proposes from its space and start genotypes, the searcher sends :meth:`payload` to the workers,
    the promotion trains under :attr:`promote_protocol` with the search's precision, compile and device."""

    cfg: SearchConfig
    protocol: Protocol
    setting: Any  # a registered Setting or OperatorSetting (trainers.problems.make.get_setting)
    space: SearchSpace
    decisions: tuple[Decision, ...]
    baselines: tuple[str, ...]  # the hand designs this search trains first, by name (SearchConfig.baseline_genotypes)
    start: tuple[Genotype, ...]  # the baselines, then start_from: the first candidates
    promote_protocol: Protocol | None  # None: no promotion phase (promote_top 0)

    @property
    def device(self) -> str:
        """Where the promotion trains: a GPU when the search's trials had one, else the CPU."""
        return "auto" if self.cfg.gpus_per_trial > 0 else "cpu"

    @property
    def options(self) -> RunOptions:
        """How the search's cohorts and its promotion train: its precision and compile setting on :attr:`device` (a worker
        trains on its own device), saving every ``checkpoint_minutes`` (with 0 the cohorts do not checkpoint, and the
        promotion keeps the default interval)."""
        cfg = self.cfg
        every = 60 * cfg.checkpoint_minutes if cfg.checkpoint_minutes > 0 else RunOptions.checkpoint_every_s
        return RunOptions(self.device, cfg.precision, cfg.compile, checkpoint_every_s=every)

    def sampler(self) -> ReplayableSampler:
        """A fresh sampler of this search (its state comes from the study it is attached to)."""
        from nasdun.orchestration.samplers import make_sampler

        return make_sampler(self.cfg.sampler, self.decisions, self.cfg.seed, self.cfg.options_for(self.cfg.sampler))

    def payload(self, cohort: int, genotypes: list[Genotype], params_path: Path) -> dict[str, Any]:
        """What a worker trains one cohort from (:func:`nasdun.runs.worker.cohort_report`): all data, so a remote worker
        needs no YAML file of this machine (the protocol travels resolved)."""
        cfg = self.cfg
        return {
            "cohort": cohort,
            "genotypes": [g.to_json() for g in genotypes],
            "setting": cfg.setting,
            "protocol": asdict(self.protocol),
            "seed": cfg.seed,
            "cpus": cfg.cpus_per_trial,
            "options": self.options.record(),
            "params_path": str(params_path.resolve()),
            "checkpoint": cfg.checkpoint_minutes > 0,
        }


def load_config(path: str | None, overrides: Mapping[str, Any]) -> SearchConfig:
    """A YAML file (or a shipped config's name) with ``overrides`` (the fields given) applied; no ``--config``: the demo.
    Not yet resolved: :meth:`SearchConfig.resolve` checks its names."""
    source = path or "demo"
    file = Path(source) if source.endswith((".yaml", ".yml")) else CONFIGS / f"{source}.yaml"
    if not file.is_file():
        shipped = ", ".join(sorted(p.stem for p in CONFIGS.glob("*.yaml")))
        raise NasdunError(f"config {source!r} not found; expected a YAML file or one of: {shipped}")
    return from_mapping(SearchConfig, {**load_yaml(file), **_listed(overrides)}, str(file))


def _listed(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` with a comma string given for a list field split into its items (``"lista, 2no"``: two)."""
    given = dict(overrides)
    for name in ("start_from", "track", "neurons"):
        if isinstance(given.get(name), str):
            given[name] = [v.strip() for v in given[name].split(",") if v.strip()]
    return given
