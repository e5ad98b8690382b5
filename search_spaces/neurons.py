"""Neuron types: pure functions ``f(z, theta) -> u``, the one place where a new type is added.

They use only tensor methods (torch is imported only when one is called), so the genotype can
validate names without loading torch. ``theta`` broadcasts against ``z`` and may be negative.
Each is written with the ops whose backward is one fused kernel (``relu``, ``leaky_relu``):
``clamp`` gives the same values, but its backward is several times slower on CPU
(benchmarks/NOTES.md, row 6).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from nasdun.registry import Registry

NEURONS: Registry[Any] = Registry("neuron")


def neuron(name: str, piecewise: tuple[float, float] | None = None) -> Callable[[Any], Any]:
    """Register a neuron type; ``piecewise`` = (symmetric, slope) is its point of the family below, if it has one
    (then the fused kernel and the export take it with no other edit)."""

    def add(fn: Any) -> Any:
        if piecewise is not None:
            fn.piecewise = (float(piecewise[0]), float(piecewise[1]))
        return NEURONS.register(name, fn)

    return add


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
