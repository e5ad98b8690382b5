r"""Weight parameterisations of the linear step: one per network, a decision of the genotype (docs/design.md §2 item 5).

Layer k maps its (LWA-mixed, possibly gain-gated) input :math:`\tilde x` and the measurements b to z(k):

* ``free`` (LISTA, the design-space paper): :math:`z = W_b b + W_x \tilde x`, two matrices shared by all layers;
* ``coupled`` (weight coupling, LISTA-CP with tied weights): :math:`z = \tilde x + W (b - D \tilde x)`, one W;
* ``coupled_untied`` (LISTA-CP / LISTA-CPSS as published, Chen et al. 2018): :math:`z = \tilde x + W_k (b - D \tilde x)`,
  a W per layer;
* ``tied_step`` (TiLISTA, Liu et al. 2019): :math:`z = \tilde x + \gamma_k W (b - D \tilde x)`, one W, a learned step
  per layer;
* ``analytic`` (ALISTA, Liu et al. 2019): :math:`z = \tilde x + \gamma_k \bar W (b - D \tilde x)`, :math:`\bar W` fixed
  before training (:func:`trainers.weights.analytic_weight`); only steps and thresholds are learned.

Initialisation as the reference code: W = D^T / L (so the untrained coupled and tied networks are ISTA),
gamma = 1; the analytic W is not scaled by L (its diagonal constraint already normalises it). Each kind is a
record of flags the model reads; a kind that fits them is one registration here.
"""

from __future__ import annotations

from dataclasses import dataclass

from nasdun.core.registry import Registry


@dataclass(frozen=True)
class WeightKind:
    """How a network parameterises its linear step (see the module docstring)."""

    name: str
    display: str
    residual: bool  # z = x + step * W (b - D x); else the free form Wb b + Wx x
    untied: bool = False  # a W per layer (owned by its layer); else one W (owned by layer 1)
    step: bool = False  # a learned step gamma_k per layer; else gamma = 1
    analytic: bool = False  # W is computed from D before training and never trained


WEIGHTS: Registry[WeightKind] = Registry("weight parameterisation")
DEFAULT_WEIGHTS = "free"


def _add(kind: WeightKind) -> None:
    WEIGHTS.register(kind.name, kind)


_add(WeightKind("free", "free tied Wb, Wx", residual=False))
_add(WeightKind("coupled", "coupled, one W", residual=True))
_add(WeightKind("coupled_untied", "coupled, a W per layer", residual=True, untied=True))
_add(WeightKind("tied_step", "one W, a step per layer", residual=True, step=True))
_add(WeightKind("analytic", "analytic W, a step per layer", residual=True, step=True, analytic=True))
