"""Reinforcement learning: a recurrent controller trained by REINFORCE (Zoph & Le 2017)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from nasdun.core.errors import NasdunError
from nasdun.orchestration.samplers._history import HistorySampler, Observation
from search_spaces.genotype import Choice, Decision


class Controller(nn.Module):
    """An LSTM that emits the decisions in order; each choice comes from a softmax over that
    decision's choices, and the chosen choice's embedding is the next input."""

    def __init__(self, decisions: tuple[Decision, ...], hidden: int = 64, tanh_constant: float = 2.5) -> None:
        super().__init__()
        self.sizes = [len(d.choices) for d in decisions]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).tolist()
        total = int(sum(self.sizes))
        self.embed = nn.Embedding(total + 1, hidden)  # the last row is the start token
        self.cell = nn.LSTMCell(hidden, hidden)
        self.head = nn.Linear(hidden, total)
        self.hidden, self.tanh_constant, self.start = hidden, tanh_constant, total

    def forward(
        self, actions: torch.Tensor | None = None, batch: int = 1, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample (``actions`` None) or score given ``actions`` (B, D); returns actions, log-prob (B,), entropy (B,)."""
        B = batch if actions is None else actions.shape[0]
        h = c = torch.zeros(B, self.hidden)
        inp = self.embed(torch.full((B,), self.start, dtype=torch.long))
        chosen, logp, ent = [], torch.zeros(B), torch.zeros(B)
        for d, (off, size) in enumerate(zip(self.offsets, self.sizes, strict=True)):
            h, c = self.cell(inp, (h, c))
            logits = self.tanh_constant * torch.tanh(self.head(h)[:, off : off + size])  # logit clipping, as Zoph & Le
            log_probs = torch.log_softmax(logits, dim=-1)
            a = torch.multinomial(log_probs.exp(), 1, generator=generator)[:, 0] if actions is None else actions[:, d]
            logp = logp + log_probs.gather(1, a[:, None])[:, 0]
            ent = ent - (log_probs.exp() * log_probs).sum(-1)
            chosen.append(a)
            inp = self.embed(a + off)
        return torch.stack(chosen, 1), logp, ent


class RLSampler(HistorySampler):
    """REINFORCE on reward = -validation nmse_db.

    Every ``batch_size`` finished trials, one Adam step (``lr``) on
    :math:`-\\frac1B\\sum_i (R_i - b)\\log\\pi(a_i) - w_H \\frac1B\\sum_i H_i`, with the baseline
    b an exponential moving average of rewards (``baseline_decay``) and an entropy bonus
    ``entropy_weight``. A failed trial gets the worst reward seen so far. Proposals are samples
    of the current controller drawn with a generator seeded by the trial number.
    """

    def __init__(
        self,
        decisions: tuple[Decision, ...],
        seed: int = 0,
        hidden: int = 64,
        lr: float = 0.005,
        batch_size: int = 8,
        baseline_decay: float = 0.9,
        entropy_weight: float = 0.001,
        tanh_constant: float = 2.5,
    ) -> None:
        super().__init__(decisions, seed)
        if batch_size < 1 or lr <= 0 or not 0 <= baseline_decay < 1 or hidden < 1:
            raise NasdunError(
                f"rl: batch_size={batch_size}, lr={lr}, baseline_decay={baseline_decay}, hidden={hidden}; "
                "expected batch_size >= 1, lr > 0, 0 <= baseline_decay < 1, hidden >= 1"
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.controller = Controller(decisions, hidden, tanh_constant)
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=lr)
        self.batch_size, self.baseline_decay, self.entropy_weight = batch_size, baseline_decay, entropy_weight
        self.baseline: float | None = None
        self.worst: float | None = None
        self.updates = 0
        self._buffer: list[tuple[dict[str, Choice], float]] = []

    def observe(self, obs: Observation) -> None:
        reward = None if obs.value is None or not math.isfinite(obs.value) else -obs.value
        if reward is None:
            if self.worst is None:
                return  # nothing to compare a failure with yet
            reward = self.worst
        self.worst = reward if self.worst is None else min(self.worst, reward)
        self._buffer.append((obs.params, reward))
        if len(self._buffer) == self.batch_size:
            self._update()

    def _update(self) -> None:
        rewards = torch.tensor([r for _, r in self._buffer])
        if self.baseline is None:
            self.baseline = float(rewards.mean())
        actions = torch.tensor([[d.choices.index(p[d.name]) for d in self.decisions] for p, _ in self._buffer])
        _, logp, ent = self.controller(actions)
        adv = rewards - self.baseline
        loss = -(adv * logp).mean() - self.entropy_weight * ent.mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        for r in rewards.tolist():
            self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * r
        self.updates += 1
        self._buffer.clear()

    def propose(self, rng: np.random.Generator, number: int) -> dict[str, Choice]:
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        with torch.no_grad():
            actions, _, _ = self.controller(batch=1, generator=gen)
        return {d.name: d.choices[int(a)] for d, a in zip(self.decisions, actions[0].tolist(), strict=True)}
