"""Neuron types: pure functions ``f(z, theta) -> u``, the one place where a new type is added.

They use only tensor methods (no torch import), so the genotype can validate names without
loading torch. ``theta`` broadcasts against ``z`` and may be negative.
"""

from __future__ import annotations

from typing import Any

from nasdun.registry import Registry

NEURONS: Registry[Any] = Registry("neuron")

LEAKY_SLOPE = 0.1


@NEURONS.register("soft")
def soft(z: Any, theta: Any) -> Any:
    r"""Soft threshold (ISTA's proximal map): :math:`\eta_\theta(z) = \mathrm{sign}(z)\max(|z|-\theta, 0)`."""
    return z.sign() * (z.abs() - theta).clamp(min=0)


@NEURONS.register("relu")
def relu(z: Any, theta: Any) -> Any:
    r"""Shifted ReLU: :math:`\max(z - \theta, 0)`."""
    return (z - theta).clamp(min=0)


@NEURONS.register("lrelu")
def lrelu(z: Any, theta: Any) -> Any:
    r"""Shifted LeakyReLU, slope 0.1: :math:`\max(w, 0) + 0.1\min(w, 0)`, :math:`w = z - \theta`."""
    w = z - theta
    return w.clamp(min=0) + LEAKY_SLOPE * w.clamp(max=0)
