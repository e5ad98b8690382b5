"""The classical solvers the networks unroll, as references: ISTA and FISTA on the LASSO

    min_x  1/2 ||b - A x||^2 + lam ||x||_1,   A = Phi Psi,

run to a fixed number of iterations (1,000 by default) with lam tuned on the validation set, and
scored like a network: NMSE (and for image settings PSNR) of f = Psi x. The step is 1 / L with the
networks' L = 1.001 ||A||_2^2, so K iterations of :func:`solve` equal the untrained K-layer LISTA.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from trainers.model import lipschitz

LAMBDAS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)  # the validation grid


def solve(A: torch.Tensor, b: torch.Tensor, lam: float, iters: int, fista: bool = False) -> torch.Tensor:
    """Codes x (N, n) for measurements b (N, m): ``iters`` steps of ISTA, or of FISTA (Beck & Teboulle's momentum)."""
    L = lipschitz(A)
    A = A.to(b.dtype)
    Wb, Wx, theta = A.T / L, torch.eye(A.shape[1], dtype=b.dtype, device=b.device) - A.T @ A / L, lam / L
    Bb = b @ Wb.T
    x = torch.zeros_like(Bb)
    y, t = x, 1.0
    for _ in range(iters):
        z = (y if fista else x) @ Wx.T + Bb
        new = torch.sign(z) * torch.clamp(z.abs() - theta, min=0.0)
        if fista:
            t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
            y = new + ((t - 1) / t_next) * (new - x)
            t = t_next
        x = new
    return x


def nmse_db(estimate: torch.Tensor, truth: torch.Tensor) -> float:
    """Pooled NMSE in dB (docs/design.md §4)."""
    return float(10 * torch.log10((estimate - truth).double().pow(2).sum() / truth.double().pow(2).sum()))


def tune(problem: Any, fista: bool, iters: int = 1000, lams: tuple[float, ...] = LAMBDAS, tune_on: int = 1024) -> tuple[float, dict[float, float]]:
    """The lam of ``lams`` whose solution has the lowest NMSE of f on the first ``tune_on`` validation samples; and every lam's."""
    A = problem.D.double()
    val_b, val_f = problem.val.b[:tune_on].double(), problem.val.x[:tune_on].double()
    scores = {lam: nmse_db(problem.synthesize(solve(A, val_b, lam, iters, fista)).double(), val_f) for lam in lams}
    return min(scores, key=lambda k: scores[k] if math.isfinite(scores[k]) else math.inf), scores


def reference(problem: Any, fista: bool, iters: int = 1000, lams: tuple[float, ...] = LAMBDAS, tune_on: int = 1024) -> dict[str, Any]:
    """ISTA or FISTA with lam chosen on (the first ``tune_on`` samples of) the validation set; scored on the test set."""
    from trainers.scoring import image_psnr_of

    best, scores = tune(problem, fista, iters, lams, tune_on)
    f = problem.synthesize(solve(problem.D.double(), problem.test.b.double(), best, iters, fista)).double()
    out: dict[str, Any] = {"method": "fista" if fista else "ista", "iterations": iters, "lam": best, "val_nmse_db_by_lam": scores,
                           "val_nmse_db": scores[best], "test_nmse_db": nmse_db(f, problem.test.x.double())}  # fmt: skip
    if problem.layout:
        psnr = image_psnr_of(f, problem.test.x.double(), problem.layout)
        out["psnr"] = dict(zip([name for name, _, _ in problem.layout], psnr.tolist(), strict=True))
        out["test_psnr"] = float(psnr.mean())
    return out
