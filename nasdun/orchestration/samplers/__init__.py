"""Samplers over the genotype's named decisions, each an ``optuna.samplers.BaseSampler``.

``rl``, ``evolution`` and ``predictor`` are nasdun's own (one private file each, sharing the replayable
history of :mod:`nasdun.orchestration.samplers._history`); ``random``, ``tpe`` and ``nsga2`` are Optuna's. Make one with
:func:`make_sampler`, which puts any sampler that is not a
:class:`~nasdun.orchestration.samplers._history.ReplayableSampler` behind :class:`~nasdun.orchestration.samplers._history.FixedHistory`,
so that every registered sampler, a new plain Optuna one included, keeps the search's replay contract.
Every name is listed in :data:`SAMPLERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from nasdun.core.errors import NasdunError
from nasdun.core.registry import Registry
from search_spaces.genotype import Decision

if TYPE_CHECKING:
    from nasdun.orchestration.samplers._history import ReplayableSampler

SamplerFactory = Callable[..., Any]
SAMPLERS: Registry[SamplerFactory] = Registry("sampler")


@SAMPLERS.register("rl")
def _rl(decisions: tuple[Decision, ...], seed: int, **options: Any) -> Any:
    from nasdun.orchestration.samplers._rl import RLSampler

    return RLSampler(decisions, seed, **options)


@SAMPLERS.register("evolution", aliases=("aging-evolution", "re"))
def _evolution(decisions: tuple[Decision, ...], seed: int, **options: Any) -> Any:
    from nasdun.orchestration.samplers._evolution import EvolutionSampler

    return EvolutionSampler(decisions, seed, **options)


@SAMPLERS.register("predictor", aliases=("bananas",))
def _predictor(decisions: tuple[Decision, ...], seed: int, **options: Any) -> Any:
    from nasdun.orchestration.samplers._predictor import PredictorSampler

    return PredictorSampler(decisions, seed, **options)


@SAMPLERS.register("random")
def _random(decisions: tuple[Decision, ...], seed: int, **options: Any) -> Any:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed, **options)


@SAMPLERS.register("tpe")
def _tpe(decisions: tuple[Decision, ...], seed: int, **options: Any) -> Any:
    import optuna

    return optuna.samplers.TPESampler(seed=seed, **{"multivariate": True, "n_startup_trials": 10, **options})


@SAMPLERS.register("nsga2")
def _nsga2(decisions: tuple[Decision, ...], seed: int, **options: Any) -> Any:
    import optuna

    return optuna.samplers.NSGAIISampler(seed=seed, **options)


NOT_APPLICABLE = {"cmaes": "CMA-ES needs numeric decisions and every nasdun decision is categorical"}  # Optuna's, not offered


def sampler_factory(name: str) -> SamplerFactory:
    """The registered sampler ``name``; an Optuna sampler that cannot serve this space is refused saying why."""
    if str(name).lower() in NOT_APPLICABLE:
        raise NasdunError(f"sampler {name!r} does not apply: {NOT_APPLICABLE[str(name).lower()]}; expected one of: {', '.join(SAMPLERS.names())}")
    return SAMPLERS.get(name)


def make_sampler(name: str, decisions: tuple[Decision, ...], seed: int = 0, options: Mapping[str, Any] | None = None) -> ReplayableSampler:
    """The sampler ``name`` over ``decisions``, replayable (an Optuna sampler behind FixedHistory); bad options are one-line errors."""
    from optuna.samplers import BaseSampler

    from nasdun.orchestration.samplers._history import FixedHistory, ReplayableSampler

    factory = sampler_factory(name)
    try:
        sampler = factory(decisions, seed, **dict(options or {}))
    except TypeError as err:
        raise NasdunError(f"sampler {name!r}: bad option ({err})") from None
    if isinstance(sampler, ReplayableSampler):
        return sampler
    if not isinstance(sampler, BaseSampler):
        raise NasdunError(f"sampler {name!r} made a {type(sampler).__name__}; expected an optuna.samplers.BaseSampler")
    return FixedHistory(sampler)
