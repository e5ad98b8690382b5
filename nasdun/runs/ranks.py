"""Rank correlations, as the verdict's provenance, the promotion, the fidelity studies and the benchmarks use them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rho (``scipy.stats.spearmanr``: Pearson correlation of average ranks); nan where a ranking is constant."""
    import warnings

    from scipy.stats import spearmanr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant input: rho is undefined, said by the nan
        return float(spearmanr(np.asarray(a, dtype=float), np.asarray(b, dtype=float)).statistic)


def spearman_interval(rho: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Approximate ``level`` confidence interval of Spearman's rho over ``n`` pairs: Fisher's z with
    Bonett and Wright's (2000) variance (1 + rho^2 / 2) / (n - 3); (nan, nan) for n <= 3 or an undefined rho."""
    from statistics import NormalDist

    if n <= 3 or not math.isfinite(rho):
        return math.nan, math.nan
    z = math.atanh(min(max(rho, -0.999999), 0.999999))
    half = NormalDist().inv_cdf(0.5 + level / 2) * math.sqrt((1 + rho * rho / 2) / (n - 3))
    return math.tanh(z - half), math.tanh(z + half)


def kendall(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b (``scipy.stats.kendalltau``: ties in either ranking accounted for); nan where a ranking is constant."""
    import warnings

    from scipy.stats import kendalltau

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(kendalltau(np.asarray(a, dtype=float), np.asarray(b, dtype=float)).statistic)
