"""The population trainer's per-candidate state: one object whose :meth:`CandidateState.select` covers every field.

Every field has the candidates on its leading axis (slots). Compaction keeps some slots and
drops the rest; :meth:`select` walks the dataclass's fields by type (tensors, dicts of tensors,
numpy arrays), so a field added here is compacted with the others, and a field of a type it
does not know is an error rather than a silently misaligned candidate.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class CandidateState:
    """Optimiser, stage and bookkeeping state of P candidates (the model's parameters live in the model)."""

    best: dict[str, torch.Tensor]  # best-so-far parameters of the current stage, by parameter name
    m: dict[str, torch.Tensor]  # Adam first moments
    v: dict[str, torch.Tensor]  # Adam second moments
    step: torch.Tensor  # (P,) Adam steps since the stage started
    stage_iter: torch.Tensor  # (P,) iterations in the current stage
    best_val: torch.Tensor  # (P,) best validation nmse_db of the stage
    best_at: torch.Tensor  # (P,) stage iteration of that best
    bad: torch.Tensor  # (P,) a non-finite training loss was seen
    lr_scale: torch.Tensor  # (P,) per-candidate learning-rate factor
    ids: np.ndarray  # (P,) index of the slot's candidate in the trainer's genotypes and results
    t_h: np.ndarray  # (P,) current layer, 1-based (host copy: it changes only at validations)
    s_h: np.ndarray  # (P,) current stage, 0-based
    it_h: np.ndarray  # (P,) the candidate's own training iterations
    active_h: np.ndarray  # (P,) still training
    waiting_h: np.ndarray  # (P,) at a halving rung, waiting for the rest of the cohort
    retries_h: np.ndarray  # (P,) diverged stages restarted at half the rate (the protocol's ``retries``)

    def select(self, keep: np.ndarray) -> CandidateState:
        """The state of slots ``keep`` (in that order), every field."""
        idx: dict[torch.device, torch.Tensor] = {}

        def pick(value: Any, name: str) -> Any:
            if isinstance(value, torch.Tensor):
                if value.device not in idx:
                    idx[value.device] = torch.as_tensor(keep, device=value.device)
                return value.index_select(0, idx[value.device])
            if isinstance(value, np.ndarray):
                return value[keep]
            if isinstance(value, dict):
                return {k: pick(v, f"{name}[{k!r}]") for k, v in value.items()}
            raise TypeError(f"CandidateState.{name} is a {type(value).__name__}; select() knows tensors, numpy arrays and dicts of them")

        return dataclasses.replace(self, **{f.name: pick(getattr(self, f.name), f.name) for f in dataclasses.fields(self)})
