r"""Neuron types: pure functions ``f(z, theta) -> u``, the one place where a new type is added.

They use only tensor methods (torch is imported only when one is called), so the genotype can
validate names without loading torch. ``theta`` broadcasts against ``z`` and may be negative.
Each is written with the ops whose backward is one fused kernel (``relu``, ``leaky_relu``):
``clamp`` gives the same values, but its backward is several times slower on CPU
(benchmarks/NOTES.md, row 6).

Two flags of a registered type (docs/design.md §2 item 5) widen a layer beyond its threshold:

* ``support`` (support selection, Chen et al. 2018): in layer k the largest-magnitude ``p_k`` per cent of the
  entries of each sample, where also ``|z| > theta``, bypass the threshold (:func:`support_select`);
  ``p_k = min(SS_STEP * k, SS_MAX)``;
* ``gain`` (GLISTA's gain gate, Wu et al. 2020): the layer's input is scaled entrywise before its linear step,
  :math:`\tilde x \leftarrow g(\tilde x) \odot \tilde x`, :func:`gain_gate`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from nasdun.core.registry import Registry

NEURONS: Registry[Any] = Registry("neuron")


def neuron(
    name: str, piecewise: tuple[float, float] | None = None, support: bool = False, gain: bool = False, letter: str | None = None
) -> Callable[[Any], Any]:
    """Register a neuron type; ``piecewise`` = (symmetric, slope) is its point of the family below, if it has one
    (then the fused kernel takes it with no other edit); ``support`` and ``gain``: the flags of the module docstring;
    ``letter``: its one-letter mark in tables (default: the name's first letter, upper case)."""

    def add(fn: Any) -> Any:
        fn.letter = letter or name[0].upper()
        if piecewise is not None and not (support or gain):
            fn.piecewise = (float(piecewise[0]), float(piecewise[1]))
        fn.support, fn.gain = bool(support), bool(gain)
        return NEURONS.register(name, fn)

    return add


def letter(name: str) -> str:
    """A neuron type's one-letter mark in tables (``soft`` S, ``relu`` R, ``lrelu`` L, ``ss`` P, ``gain`` G, ``gain_ss`` H)."""
    return str(getattr(NEURONS.get(name), "letter", name[0].upper()))


def uses_support(name: str) -> bool:
    return bool(getattr(NEURONS.get(name), "support", False))


def uses_gain(name: str) -> bool:
    return bool(getattr(NEURONS.get(name), "gain", False))


# Support selection: the share of entries per layer, as the public LISTA-CPSS / ALISTA code runs its networks
# (README command lines of the ALISTA repository: ``-p 1.2 -maxp 13``; the models compute ``clip((t+1) * p, 0, maxp)``
# for 0-based layer t).
SS_STEP, SS_MAX = 1.2, 13.0


def support_percent(k: int) -> float:
    """p_k in per cent for 1-based layer ``k``."""
    return min(SS_STEP * k, SS_MAX)


def support_count(k: int, n: int) -> int:
    """How many entries of an n-vector layer k may select: the reference code's threshold is the
    ``(100 - p_k)``-th percentile of |z| with nearest-rank interpolation, i.e. the value at descending rank
    ``round((n - 1) p_k / 100)``; the entries strictly above it are selected (that many, for distinct values)."""
    return int(round((n - 1) * support_percent(k) / 100.0))


def support_select(z: Any, theta: Any, count: int, base: Any) -> Any:
    r"""Support selection around the threshold ``base``: an entry whose magnitude is above both ``theta`` and the
    ``count + 1``-th largest magnitude of its sample passes as it is, the rest go through ``base(z, theta)``.
    The selection is a constant for the gradient (as the reference code's ``stop_gradient``)."""
    u = base(z, theta)
    if count <= 0:
        return u
    mag = z.abs().detach()
    kth = mag.topk(count + 1, dim=-1).values[..., count:]  # (..., 1): the value at descending rank `count`
    keep = (mag > kth) & (mag > theta)
    return u.where(~keep, z)


# GLISTA's gain gate, its piecewise-linear form (the ``relu`` gain of the public GLISTA code, whose theta factor is 1):
#     g(x) = 1 + kappa * relu(1 - relu(nu * |x|))
# kappa, nu: learned scalars per layer, initialised to GAIN_INIT: kappa = 0 makes the untrained gate the identity.
GAIN_INIT = (0.0, 1.0)


def gain_gate(x: Any, kappa: Any, nu: Any) -> Any:
    """g(x) * x with g of the comment above; ``kappa``, ``nu`` broadcast against ``x``."""
    return x * (1.0 + kappa * (1.0 - (nu * x.abs()).relu()).relu())


LEAKY_SLOPE = 0.1


@neuron("soft", piecewise=(1.0, 0.0))
def soft(z: Any, theta: Any) -> Any:
    r"""Soft threshold (ISTA's proximal map): :math:`\eta_\theta(z) = \mathrm{sign}(z)\max(|z|-\theta, 0)`."""
    return z.sign().detach() * (z.abs() - theta).relu()  # sign has zero derivative a.e.: no backward for it


@neuron("relu", piecewise=(0.0, 0.0))
def relu(z: Any, theta: Any) -> Any:
    r"""Shifted ReLU: :math:`\max(z - \theta, 0)`."""
    return (z - theta).relu()


@neuron("lrelu", piecewise=(0.0, LEAKY_SLOPE))
def lrelu(z: Any, theta: Any) -> Any:
    r"""Shifted LeakyReLU, slope 0.1: :math:`\max(w, 0) + 0.1\min(w, 0)`, :math:`w = z - \theta`."""
    import torch.nn.functional as F

    return F.leaky_relu(z - theta, LEAKY_SLOPE)


@neuron("ss", support=True, letter="P")
def ss(z: Any, theta: Any) -> Any:
    r"""Soft threshold with support selection (LISTA-CPSS, TiLISTA, ALISTA): :math:`\eta^{ss}_{\theta, p_k}`; the
    threshold is :func:`soft`, the selection is applied by the model (it needs the layer)."""
    return soft(z, theta)


@neuron("gain", gain=True)
def gain(z: Any, theta: Any) -> Any:
    r"""Soft threshold of a gain-gated layer (GLISTA's gain gate on the layer's input, :func:`gain_gate`)."""
    return soft(z, theta)


@neuron("gain_ss", support=True, gain=True, letter="H")
def gain_ss(z: Any, theta: Any) -> Any:
    r"""Gain gate and support selection together (the public GLISTA network's neuron)."""
    return soft(z, theta)


# Every built-in type is one point of a two-parameter family, so a fused kernel can evaluate a
# layer whose candidates mix types in one pass, with no per-type grouping:
#     u = s * relu(s * z - theta) + slope * min(z - theta, 0),   s = sign(z) if symmetric else 1
# (``s`` is piecewise constant: its derivative is 0 a.e., as in ``soft``). name -> (symmetric, slope), as each
# type declares it when registered (:func:`neuron`). A type without one is still trainable; cohorts that use
# it take the per-type path, and the export refuses it.
class _Family(Mapping[str, tuple[float, float]]):
    """The registered neurons' points of the family, read from the registry each time (a live view)."""

    def _forms(self) -> dict[str, tuple[float, float]]:
        return {name: fn.piecewise for name, fn in NEURONS.items() if getattr(fn, "piecewise", None) is not None}

    def __getitem__(self, name: str) -> tuple[float, float]:
        return self._forms()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._forms())

    def __len__(self) -> int:
        return len(self._forms())


PIECEWISE: Mapping[str, tuple[float, float]] = _Family()


def piecewise(z: Any, theta: Any, symmetric: Any, slope: Any) -> Any:
    """The family above; ``symmetric`` and ``slope`` broadcast against ``z`` (one value per candidate)."""
    s = (z.sign() * symmetric + (1 - symmetric)).detach()
    return s * (s * z - theta).relu() + slope * (z - theta).clamp(max=0)
