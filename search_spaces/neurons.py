"""Neuron types: pure functions ``f(z, theta) -> u``, the one place where a new type is added.

They use only tensor methods (torch is imported only when one is called), so the genotype can
validate names without loading torch. ``theta`` broadcasts against ``z`` and may be negative.
Each is written with the ops whose backward is one fused kernel (``relu``, ``leaky_relu``):
``clamp`` gives the same values, but its backward is several times slower on CPU
(benchmarks/NOTES.md, row 6).
"""

from __future__ import annotations

from typing import Any

from nasdun.registry import Registry

NEURONS: Registry[Any] = Registry("neuron")

LEAKY_SLOPE = 0.1


@NEURONS.register("soft")
def soft(z: Any, theta: Any) -> Any:
    r"""Soft threshold (ISTA's proximal map): :math:`\eta_\theta(z) = \mathrm{sign}(z)\max(|z|-\theta, 0)`."""
    return z.sign().detach() * (z.abs() - theta).relu()  # sign has zero derivative a.e.: no backward for it


@NEURONS.register("relu")
def relu(z: Any, theta: Any) -> Any:
    r"""Shifted ReLU: :math:`\max(z - \theta, 0)`."""
    return (z - theta).relu()


@NEURONS.register("lrelu")
def lrelu(z: Any, theta: Any) -> Any:
    r"""Shifted LeakyReLU, slope 0.1: :math:`\max(w, 0) + 0.1\min(w, 0)`, :math:`w = z - \theta`."""
    import torch.nn.functional as F

    return F.leaky_relu(z - theta, LEAKY_SLOPE)


# Every built-in type is one point of a two-parameter family, so a fused kernel can evaluate a
# layer whose candidates mix types in one pass, with no per-type grouping:
#     u = s * relu(s * z - theta) + slope * min(z - theta, 0),   s = sign(z) if symmetric else 1
# (``s`` is piecewise constant: its derivative is 0 a.e., as in ``soft``). name -> (symmetric, slope).
# A type missing here is still trainable; cohorts that use it take the per-type path.
PIECEWISE: dict[str, tuple[float, float]] = {"soft": (1.0, 0.0), "relu": (0.0, 0.0), "lrelu": (0.0, LEAKY_SLOPE)}


def piecewise(z: Any, theta: Any, symmetric: Any, slope: Any) -> Any:
    """The family above; ``symmetric`` and ``slope`` broadcast against ``z`` (one value per candidate)."""
    s = (z.sign() * symmetric + (1 - symmetric)).detach()
    return s * (s * z - theta).relu() + slope * (z - theta).clamp(max=0)
