"""How a run trains, apart from what it trains: one frozen record passed whole from the interfaces to the trainer.

:class:`RunOptions` holds the device, the arithmetic precision, torch.compile, CUDA graphs, the time box and the checkpoint
interval.
Every layer that trains (``nasdun train``, the promotion, ``retrain``, ``confirm``, ``fidelity``, ``bench``, a search's
workers) takes it as one argument instead of threading its fields through each signature; a field added here reaches
all of them. It is checked when it is made (one line naming the field), so a bad value never reaches a folder or a
training. torch is imported only by :meth:`RunOptions.resolved`, so the CLI checks options before heavy imports.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, replace
from typing import Any

from nasdun.core.errors import NasdunError
from trainers.precision import PRECISIONS

_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


@dataclass(frozen=True)
class RunOptions:
    """What a training runs with; the run's results do not depend on ``minutes`` (unless it stops them) nor on
    ``checkpoint_every_s`` (a resumed run equals an uninterrupted one)."""

    device: str = "auto"  # cpu, cuda, cuda:N, or auto (cuda when torch sees one)
    precision: str = "fp32"  # fp32, tf32 or bf16 (trainers.precision)
    compile: bool = False  # fuse each layer's pointwise work with torch.compile (same maths)
    minutes: float = 0.0  # stop every network still training after this long (0: no limit)
    checkpoint_every_s: float = 300.0  # seconds between checkpoints of the whole trainer state (0: every validation)
    cuda_graphs: bool = False  # replay each stage's training step as one CUDA graph (a CUDA device; same kernels, same bits)

    def __post_init__(self) -> None:
        if not isinstance(self.device, str) or not _DEVICE.fullmatch(self.device):
            raise NasdunError(f"device={self.device!r}; expected cpu, cuda, cuda:N or auto", ("device",))
        if self.precision not in PRECISIONS:
            raise NasdunError(f"precision={self.precision!r}; expected one of {', '.join(PRECISIONS)}", ("precision",))
        if not isinstance(self.compile, bool):
            raise NasdunError(f"compile={self.compile!r}; expected True or False", ("compile",))
        if not isinstance(self.cuda_graphs, bool):
            raise NasdunError(f"cuda_graphs={self.cuda_graphs!r}; expected True or False", ("cuda_graphs",))
        if self.cuda_graphs and (self.compile or self.precision == "bf16"):
            raise NasdunError(
                f"cuda_graphs with {'compile' if self.compile else 'precision bf16'}; expected cuda_graphs alone (fp32 or tf32, eager layers)",
                ("cuda_graphs",),
            )
        for name in ("minutes", "checkpoint_every_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise NasdunError(f"{name}={value!r}; expected a finite number >= 0 (0: {_ZERO[name]})", (name,))

    def resolved(self) -> RunOptions:
        """The same options on a device that exists: ``auto`` -> cuda when torch sees one, else cpu."""
        return replace(self, device=resolve_device(self.device))

    def record(self) -> dict[str, Any]:
        """The fields as plain data (JSON, a worker's payload); :meth:`from_record` reads them back."""
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> RunOptions:
        return cls(**record)


_ZERO = {"minutes": "no time limit", "checkpoint_every_s": "at every validation"}


def resolve_device(name: str) -> str:
    """'auto' -> cuda when available, else cpu; an explicit device must exist."""
    import torch

    if not isinstance(name, str) or not _DEVICE.fullmatch(name):
        raise NasdunError(f"device={name!r}; expected cpu, cuda, cuda:N or auto", ("device",))
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise NasdunError(f"device={name!r} asked for CUDA but torch sees no CUDA device; expected cpu or auto", ("device",))
    return name
