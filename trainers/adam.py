r"""Adam with a per-candidate step count, learning rate and trainable mask (one update for all P candidates).

For candidate p and element e of a parameter, with gradient g, mask w ∈ {0, 1} (1: the
candidate's current stage trains the element), step count t_p and learning rate α_p:

.. math::
    m &\leftarrow m + (1-\beta_1)\,w\,(g - m) \qquad v \leftarrow v + (1-\beta_2)\,w\,(g^2 - v) \\
    \theta &\leftarrow \theta - \frac{\alpha_p}{1-\beta_1^{t_p}}\;
             \frac{m}{\sqrt{v / (1-\beta_2^{t_p})} + \epsilon}

which is PyTorch's Adam (β = 0.9, 0.999, ε = 1e-8) for the elements a stage trains. The moments
are reset (m = v = 0, t = 0) at every stage start, as the reference code builds a fresh optimiser
per stage, so a frozen element keeps m = 0 and its update is exactly zero. α_p is 0 for a
candidate that no longer trains.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

BETAS = (0.9, 0.999)
EPS = 1e-8


def per_candidate(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (P,) vector shaped to broadcast against a (P, ...) tensor."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def masked_adam_step(
    params: Mapping[str, torch.Tensor],
    grads: Sequence[torch.Tensor],
    m: Mapping[str, torch.Tensor],
    v: Mapping[str, torch.Tensor],
    step: torch.Tensor,
    lr: torch.Tensor,
    wm: Mapping[str, torch.Tensor],
    wv: Mapping[str, torch.Tensor],
    foreach: bool = True,
) -> None:
    """One update, in place. ``step`` (P,) counts this update already; ``lr`` (P,) is α_p;
    ``wm`` / ``wv`` are the masks times (1 - β1) / (1 - β2), precomputed once per stage. ``foreach``: each of the
    update's eight operations once over every parameter (torch's ``_foreach`` kernels; one launch per operation on a GPU
    where the shapes allow) instead of once per parameter; the same per-tensor arithmetic, so the same bits."""
    t = step.clamp(min=1)
    lr_t = lr / (1 - BETAS[0] ** t)
    corr2 = 1 - BETAS[1] ** t
    names = list(params)
    ps, ms, vs, gs = list(params.values()), [m[n] for n in names], [v[n] for n in names], list(grads)
    with torch.no_grad():
        if foreach:
            torch._foreach_lerp_(ms, gs, [wm[n] for n in names])
            torch._foreach_lerp_(vs, torch._foreach_mul(gs, gs), [wv[n] for n in names])
            denom = torch._foreach_div(vs, [per_candidate(corr2, p) for p in ps])
            torch._foreach_sqrt_(denom)
            torch._foreach_add_(denom, EPS)
            torch._foreach_addcdiv_(ps, torch._foreach_mul(ms, [per_candidate(lr_t, p) for p in ps]), denom, value=-1.0)
        else:
            for name, p, g in zip(names, ps, gs, strict=True):
                m[name].lerp_(g, wm[name])
                v[name].lerp_(g * g, wv[name])
                d = (v[name] / per_candidate(corr2, p)).sqrt_().add_(EPS)
                p.addcdiv_(m[name] * per_candidate(lr_t, p), d, value=-1.0)
