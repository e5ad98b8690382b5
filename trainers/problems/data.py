"""A problem's data, whatever kind of setting drew it: :class:`Split`, :class:`Problem`, and the two rules
every kind shares, the seed derivation (:func:`derive`) and the noise (:func:`add_noise`).

Both setting kinds (:class:`trainers.problems.make.Setting`, :class:`trainers.problems.operators.OperatorSetting`)
build their :class:`Problem` from here; this module imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from trainers.problems.seeds import derive


def synthesize(x: torch.Tensor, psi: torch.Tensor | None) -> torch.Tensor:
    """The scored signal of codes ``x`` (..., n) under a synthesis basis ``psi`` (n_f, n): f = psi x, or x without one."""
    return x if psi is None else x @ psi.T.to(x.dtype)


@dataclass
class Split:
    """One sample set: measurements ``b`` (N, m) and ground truth ``x`` (N, n): the code, or with a
    synthesis basis Psi the signal f (N, n_f) that the network's f = Psi x is scored against."""

    b: torch.Tensor
    x: torch.Tensor


@dataclass
class Problem:
    """A setting's data, on one device."""

    setting: Any  # the Setting or OperatorSetting that drew it
    seed: int
    D: torch.Tensor
    train: Split
    val: Split
    test: Split
    batch_size: int
    psi: torch.Tensor | None = None  # synthesis basis (n_f, n): what is scored is x @ psi.T; None: x itself
    layout: tuple[tuple[str, int, int], ...] = ()  # image settings: (name, height, width) of the test images, in block order
    _perm: torch.Tensor | None = None
    _perm_epoch: int = -1

    def synthesize(self, x: torch.Tensor) -> torch.Tensor:
        """The scored signal of codes ``x`` (..., n): f = Psi x, or x without a basis."""
        return synthesize(x, self.psi)

    @property
    def batches_per_epoch(self) -> int:
        return max(1, self.train.x.shape[0] // self.batch_size)

    def train_batch(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch of global iteration ``iteration``: a seeded permutation per epoch."""
        epoch, pos = divmod(iteration, self.batches_per_epoch)
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(derive(self.setting.seed, self.seed, 7, epoch))
            self._perm = torch.randperm(self.train.x.shape[0], generator=g).to(self.train.x.device)
            self._perm_epoch = epoch
        assert self._perm is not None
        idx = self._perm[pos * self.batch_size : (pos + 1) * self.batch_size]
        return self.train.b[idx], self.train.x[idx]


def add_noise(y: torch.Tensor, snr_db: float, g: torch.Generator) -> torch.Tensor:
    """Per sample, Gaussian noise of std = std(y) * 10^(-SNR/20), std over the m entries dividing by m (as the reference code)."""
    std = y.std(dim=1, keepdim=True, correction=0) * 10 ** (-snr_db / 20)
    return y + std * torch.randn(y.shape, generator=g, dtype=torch.float64)
