r"""HyperLISTA (Chen, Liu, Wang, Yin, NeurIPS 2021): what analytic tuning reaches without training.

K iterations of ALISTA's update with momentum and support selection whose per-layer parameters are not learned but
computed, sample by sample, from the current iterate, with three scalars c1, c2, c3 for the whole network:

.. math::
    x^{(k+1)} &= \eta^{p^{(k)}}_{\theta^{(k)}}\Big(x^{(k)} + \bar W^\top (b - A x^{(k)}) + \beta^{(k)} (x^{(k)} - x^{(k-1)})\Big) \\
    \theta^{(k)} &= c_1\, \mu\, \| A^+ (A x^{(k)} - b) \|_1 \qquad
    \beta^{(k)} = c_2\, \mu\, \| x^{(k)} \|_0 \qquad
    p^{(k)} = \min\Big(1,\ c_3 \log \frac{\| A^+ b \|_1}{\| A^+ (A x^{(k)} - b) \|_1}\Big)^+

from x(0) = x(-1) = 0, where :math:`\bar W` is ALISTA's analytic weight (:mod:`trainers.analytic`; ``diag(W̄ᵀA) = 1``, so
the step is 1), :math:`\mu = \max_{i \ne j} |\bar w_i^\top a_j|` the generalised mutual coherence, :math:`A^+` the
pseudo-inverse, and :math:`\eta^{p}_{\theta}` the soft threshold with support selection: the largest-magnitude
fraction p of a sample's entries (those above θ) pass as they are. The paper's p is a share of the n entries; the
public code (``models/adaptive_mm_alista.py`` of the HyperLISTA repository, read for the form) clips it to [0, 1] as
here. c1, c2, c3 are chosen by a grid search on training samples (:func:`tune`); nothing is backpropagated.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import torch

from trainers.analytic import analytic_weight

C1 = (0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)  # the grid of tune(): threshold, momentum, support selection
C2 = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)
C3 = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)


@dataclass(frozen=True)
class Operator:
    """What HyperLISTA computes from A once: W̄ᵀ (n, m), A⁺ (n, m), μ; float64."""

    A: torch.Tensor
    WT: torch.Tensor
    pinv: torch.Tensor
    mu: float

    @classmethod
    def of(cls, A: torch.Tensor) -> Operator:
        A = A.detach().cpu().double()
        W = analytic_weight(A)  # (m, n)
        G = (W.T @ A).abs()
        G.fill_diagonal_(0.0)
        return cls(A, W.T.contiguous(), torch.linalg.pinv(A), float(G.max()))


def support_threshold(z: torch.Tensor, theta: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Soft threshold of z (N, n) at theta (N, 1), except that the ``floor(p n)`` largest-magnitude entries of each
    sample (p (N, 1) in [0, 1]) that are above theta pass unchanged (entries tied at the cut stay thresholded, as in
    :func:`search_spaces.neurons.support_select`)."""
    n = z.shape[-1]
    mag = z.abs()
    soft = torch.sign(z) * (mag - theta).clamp(min=0.0)
    count = (p * n).floor().long().clamp(0, n)  # (N, 1)
    if not bool(count.any()):
        return soft
    ranked = torch.cat([mag.sort(dim=-1, descending=True).values, mag.new_full((mag.shape[0], 1), -1.0)], dim=-1)
    kth = ranked.gather(-1, count)  # the magnitude at descending rank `count` (-1 past the end: every entry)
    keep = (mag > kth) & (mag > theta)  # the `count` largest, for distinct magnitudes
    return torch.where(keep, z, soft)


def solve(op: Operator, b: torch.Tensor, layers: int, c: tuple[float, float, float]) -> torch.Tensor:
    """x(layers) (N, n) for measurements b (N, m), with the scalars c = (c1, c2, c3); float64."""
    c1, c2, c3 = c
    b = b.double()
    x = prev = b.new_zeros(b.shape[0], op.A.shape[1])
    l1_b = (b @ op.pinv.T).abs().sum(-1, keepdim=True)
    for _ in range(layers):
        r = x @ op.A.T - b  # (N, m): A x - b
        l1_r = (r @ op.pinv.T).abs().sum(-1, keepdim=True)
        theta = c1 * op.mu * l1_r
        beta = c2 * op.mu * (x != 0).sum(-1, keepdim=True).double()
        p = (c3 * torch.log(l1_b / l1_r.clamp(min=1e-300))).clamp(0.0, 1.0) if c3 else torch.zeros_like(theta)
        z = x - r @ op.WT.T + beta * (x - prev)
        x, prev = support_threshold(z, theta, p), x
    return x


def _nmse_db(estimate: torch.Tensor, truth: torch.Tensor) -> float:
    err = float((estimate - truth).pow(2).sum() / truth.pow(2).sum())
    return 10 * math.log10(err) if err > 0 and math.isfinite(err) else (-math.inf if err == 0 else math.inf)


Scalars = tuple[float, float, float]


def tune(
    problem: Any, layers: int, tune_on: int = 1024, grid: tuple[tuple[float, ...], ...] = (C1, C2, C3), op: Operator | None = None
) -> tuple[Scalars, float]:
    """The (c1, c2, c3) of the grid whose x(layers), through the problem's synthesis, has the lowest pooled NMSE on the
    first ``tune_on`` training samples; and that NMSE (dB). ``op``: the problem's operator, when already computed."""
    op = op or Operator.of(problem.D)
    b, f = problem.train.b[:tune_on].double(), problem.train.x[:tune_on].double()
    best: Scalars = (math.nan, math.nan, math.nan)
    best_db = math.inf
    for c1, c2, c3 in itertools.product(*grid):
        db = _nmse_db(problem.synthesize(solve(op, b, layers, (c1, c2, c3))).double(), f)
        if db < best_db:
            best, best_db = (c1, c2, c3), db
    return best, best_db


def reference(problem: Any, layers: int, tune_on: int = 1024) -> dict[str, Any]:
    """HyperLISTA at ``layers`` iterations, its three scalars tuned on training data; scored like a network (pooled
    nmse_db of f on the validation and test sets)."""
    from trainers.scoring import image_psnr_of

    op = Operator.of(problem.D)
    c, train_db = tune(problem, layers, tune_on, op=op)
    scores: dict[str, Any] = {"method": "hyperlista", "layers": layers, "c": list(c), "mu": op.mu, "train_nmse_db": train_db}
    for split in ("val", "test"):
        data = getattr(problem, split)
        f = problem.synthesize(solve(op, data.b, layers, c)).double()
        scores[f"{split}_nmse_db"] = _nmse_db(f, data.x.double())
        if split == "test" and problem.layout:
            psnr = image_psnr_of(f, data.x.double(), problem.layout)
            scores["test_psnr"] = float(psnr.mean())
    return scores
