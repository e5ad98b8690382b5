"""Samplers over the genotype's named decisions, each an ``optuna.samplers.BaseSampler``.

``rl``, ``evolution`` and ``predictor`` are nasdun's own (one private file each, sharing the replayable
history of :mod:`nasdun.samplers._history`); ``random`` and the Optuna built-ins are Optuna's
(``tpe`` and ``nsga2`` behind :class:`~nasdun.samplers._history.FixedHistory`, so they read the same
history).
Make one with :func:`make_sampler`; every name is listed in :data:`SAMPLERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from nasdun.errors import NasdunError
from nasdun.registry import Registry
from search_spaces.genotype import Decision

SamplerFactory = Callable[..., Any]
SAMPLERS: Registry[SamplerFactory] = Registry("sampler")


@SAMPLERS.register("rl")
def _rl(decisions: tuple[Decision, ...], seed: int, **options: Any) -> Any:
    from nasdun.samplers._rl import RLSampler

    return RLSampler(decisions, seed, **options)


@SAMPLERS.register("evolution", aliases=("aging-evolution", "re"))
def _evolution(decisions: tuple[Decision, ...], seed: int, **options: Any) -> Any:
    from nasdun.samplers._evolution import EvolutionSampler

    return EvolutionSampler(decisions, seed, **options)


@SAMPLERS.register("predictor", aliases=("bananas",))
def _predictor(decisions: tuple[Decision, ...], seed: int, **options: Any) -> Any:
    from nasdun.samplers._predictor import PredictorSampler

    return PredictorSampler(decisions, seed, **options)


@SAMPLERS.register("random")
def _random(decisions: tuple[Decision, ...], seed: int, **options: Any) -> Any:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed, **options)


@SAMPLERS.register("tpe")
def _tpe(decisions: tuple[Decision, ...], seed: int, **options: Any) -> Any:
    import optuna

    from nasdun.samplers._history import FixedHistory

    return FixedHistory(optuna.samplers.TPESampler(seed=seed, **{"multivariate": True, "n_startup_trials": 10, **options}))


@SAMPLERS.register("nsga2")
def _nsga2(decisions: tuple[Decision, ...], seed: int, **options: Any) -> Any:
    import optuna

    from nasdun.samplers._history import FixedHistory

    return FixedHistory(optuna.samplers.NSGAIISampler(seed=seed, **options))


NOT_APPLICABLE = {"cmaes": "CMA-ES needs numeric decisions and every nasdun decision is categorical"}  # Optuna's, not offered


def sampler_factory(name: str) -> SamplerFactory:
    """The registered sampler ``name``; an Optuna sampler that cannot serve this space is refused saying why."""
    if str(name).lower() in NOT_APPLICABLE:
        raise NasdunError(f"sampler {name!r} does not apply: {NOT_APPLICABLE[str(name).lower()]}; expected one of: {', '.join(SAMPLERS.names())}")
    return SAMPLERS.get(name)


def make_sampler(name: str, decisions: tuple[Decision, ...], seed: int = 0, options: Mapping[str, Any] | None = None) -> Any:
    """The sampler ``name`` over ``decisions``; bad options are one-line errors."""
    factory = sampler_factory(name)
    try:
        return factory(decisions, seed, **dict(options or {}))
    except TypeError as err:
        raise NasdunError(f"sampler {name!r}: bad option ({err})") from None
