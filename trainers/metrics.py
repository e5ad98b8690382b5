r"""NMSE in dB, both definitions of docs/design.md §4, batched over candidates and layers.

* ``nmse_db`` (pooled): :math:`10\log_{10}\big(\sum_s\|\hat x_s - x_s\|^2 / \sum_s\|x_s\|^2\big)`.
* ``nmse_db_mean`` (the design-space paper's code): mean over samples of
  :math:`10\log_{10}(\|\hat x_s - x_s\|^2 / \|x_s\|^2)`; samples with x* = 0 have no defined
  ratio and are left out of the mean (documented in docs/protocol.md).

Per-sample squared norms are summed in the model's dtype, everything after that in float64,
so chunked evaluation equals one-shot evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_FLOOR = 1e-30  # an exact recovery reads as -300 dB rather than -inf


@dataclass
class NmseAccumulator:
    """Running sums for both NMSE definitions over sample chunks; shape (...) = (layers, P)."""

    err: torch.Tensor | None = None
    ref: torch.Tensor | None = None
    db_sum: torch.Tensor | None = None
    count: torch.Tensor | None = None

    def add(self, xhat: torch.Tensor, x: torch.Tensor) -> None:
        """``xhat`` (..., N, n) against ``x`` (N, n)."""
        err = (xhat - x).pow(2).sum(-1).double()  # (..., N); per-sample sums in the model's dtype
        ref = x.pow(2).sum(-1).double()  # (N,)
        ok = ref > 0
        db = 10 * torch.log10(torch.clamp(err / torch.where(ok, ref, 1.0), min=_FLOOR))
        parts = (err.sum(-1), ref.sum().expand(err.shape[:-1]), (db * ok).sum(-1), ok.sum().double().expand(err.shape[:-1]))
        if self.err is None or self.ref is None or self.db_sum is None or self.count is None:
            self.err, self.ref, self.db_sum, self.count = (t.clone() for t in parts)
        else:
            self.err, self.ref = self.err + parts[0], self.ref + parts[1]
            self.db_sum, self.count = self.db_sum + parts[2], self.count + parts[3]

    def nmse_db(self) -> torch.Tensor:
        assert self.err is not None and self.ref is not None
        return 10 * torch.log10(torch.clamp(self.err / self.ref, min=_FLOOR))

    def nmse_db_mean(self) -> torch.Tensor:
        assert self.db_sum is not None and self.count is not None
        return self.db_sum / self.count.clamp(min=1)
