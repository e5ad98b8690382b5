r"""ALISTA's analytic weight (Liu, Chen, Wang, Yin, ICLR 2019), computed from D before any training.

.. math::  \bar W = \arg\min_W \|W^\top D\|_F^2 \quad \text{s.t.}\quad (W^\top D)_{ii} = 1,\ i = 1..n

The problem separates by columns: column i minimises :math:`\|D^\top w\|^2 = w^\top (D D^\top) w` subject to
:math:`d_i^\top w = 1`, whose minimiser (Lagrange) is :math:`w_i = G^{-1} d_i / (d_i^\top G^{-1} d_i)` with
:math:`G = D D^\top`. Where G is singular (a low-rank D) its pseudo-inverse gives the minimiser of least norm
among the minimisers. Computed in float64; the result is (m, n), like D. The public ALISTA code solves the same
problem iteratively in MATLAB (``CalculateW.m``); tests/test_weights.py checks this against a generic solver.
"""

from __future__ import annotations

import torch

from nasdun.core.errors import NasdunError


def analytic_weight(D: torch.Tensor) -> torch.Tensor:
    """:math:`\bar W` (m, n) of the module docstring, in D's dtype, on the CPU."""
    Dd = D.detach().cpu().double()
    G = Dd @ Dd.T  # (m, m)
    V = torch.linalg.pinv(G, hermitian=True) @ Dd  # (m, n): G^{-1} d_i in column i
    scale = (Dd * V).sum(0)  # d_i^T G^{-1} d_i
    if not bool((scale.abs() > 1e-12).all()):
        raise NasdunError("the analytic weight needs every column of D outside the null space of D D^T; a column of D is zero")
    return (V / scale).to(D.dtype)
