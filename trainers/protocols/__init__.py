"""Named training protocols: one YAML file each in this folder, parsed into :class:`Protocol`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nasdun.core.config import from_mapping, load_yaml
from nasdun.core.errors import NasdunError
from nasdun.core.registry import Registry

if TYPE_CHECKING:
    import torch

HERE = Path(__file__).parent
SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class Protocol:
    r"""The stage-wise protocol (docs/design.md §5).

    For each layer t = 1..K, one stage per learning rate in ``lrs``: the first trains layer t's
    new parameters, every later one all parameters of layers 1..t (the reference code has
    three: 5e-4, 1e-4, 1e-5; a screening protocol may drop the fine-tuning stages).
    Validation every ``val_every`` iterations, on the first ``val_subset`` samples of the validation set (docs/design.md
    §5: the stage rule reads the subset; the full set scores the parameters each stage keeps and the final result;
    a validation set of at most ``val_subset`` samples is used whole); a stage ends when its best validation NMSE is
    ``patience`` iterations old or after ``max_iters``; a candidate whose validation NMSE is non-finite or above
    ``diverge_db`` (or whose training loss is non-finite) fails; with ``retries`` > 0 it first restarts the stage from
    the stage's best parameters with its learning rates halved, up to ``retries`` times (the rates stay halved for its
    later stages), and fails only when they are spent. With ``rungs``, successive
    halving: after the last stage of each rung layer the cohort keeps its best
    ``ceil(n / eta)`` (at least ``min_survivors``) and stops the rest.

    Inside a stage the learning rate is the stage's ``lrs[s]`` times a schedule of the stage's
    iteration i (0 at the stage start): ``constant`` (1, the reference code), or ``cosine``

    .. math::  f(i) = \min\Bigl(1, \tfrac{i + 1}{w}\Bigr)\,
               \Bigl(r + (1 - r)\,\tfrac{1}{2}\bigl(1 + \cos \tfrac{\pi\, i}{c}\bigr)\Bigr)

    with ``w = warmup`` (0: no warm-up), ``r = min_lr_ratio`` and ``c`` the stage's cap: a stage then decays towards its end
    at its cap instead of waiting on patience at one rate. The cap is ``max_iters``, except for the last
    layer's last stage (all layers trained on the loss at x(K)) with ``final_iters`` > 0: a longer
    end-to-end pass at the end.
    """

    name: str = "custom"
    description: str = ""
    lrs: tuple[float, ...] = (5e-4, 1e-4, 1e-5)
    patience: int = 4000
    max_iters: int = 200_000
    val_every: int = 10
    val_subset: int = 1024  # samples of the validation set the stage rule reads (the reference TF code's ~1,000)
    batch_size: int = 128
    lam: float = 0.4
    coef_init: str = "ones"
    diverge_db: float = 20.0
    retries: int = 0  # restarts of a diverged stage at half the rate before the candidate fails (0: it fails at once)
    rungs: tuple[int, ...] = ()  # successive halving after these layers (empty: off)
    eta: int = 2
    min_survivors: int = 1
    schedule: str = "constant"  # the learning rate inside a stage: constant or cosine (see above)
    warmup: int = 0  # linear warm-up iterations at each stage start (cosine only)
    min_lr_ratio: float = 0.0  # cosine: the rate at the stage's cap, as a share of the stage's rate
    final_iters: int = 0  # the cap of the last layer's last stage (all layers, the loss at x(K)): an end-to-end pass; 0: max_iters

    def __post_init__(self) -> None:
        for key in ("patience", "max_iters", "val_every", "val_subset", "batch_size"):
            if getattr(self, key) < 1:
                raise NasdunError(f"protocol {self.name}: {key}={getattr(self, key)}; expected an integer >= 1")
        if list(self.rungs) != sorted(set(self.rungs)) or any(r < 1 for r in self.rungs):
            raise NasdunError(f"protocol {self.name}: rungs={list(self.rungs)}; expected increasing layers >= 1")
        if self.eta < 2 or self.min_survivors < 1:
            raise NasdunError(f"protocol {self.name}: eta={self.eta}, min_survivors={self.min_survivors}; expected eta >= 2, min_survivors >= 1")
        if len(self.lrs) < 1 or any(not 0 < lr < math.inf for lr in self.lrs):
            raise NasdunError(f"protocol {self.name}: lrs={list(self.lrs)}; expected one or more finite positive learning rates (one per stage)")
        if not 0 <= self.lam < math.inf:
            raise NasdunError(f"protocol {self.name}: lam={self.lam}; expected a finite threshold weight >= 0 (the reference: 0.4)")
        if self.retries < 0:
            raise NasdunError(f"protocol {self.name}: retries={self.retries}; expected an integer >= 0 (restarts of a diverged stage)")
        if not math.isfinite(self.diverge_db):
            raise NasdunError(f"protocol {self.name}: diverge_db={self.diverge_db}; expected a finite nmse_db limit (the reference: 20.0)")
        if self.final_iters < 0 or self.final_iters % self.val_every:
            raise NasdunError(
                f"protocol {self.name}: final_iters={self.final_iters}; expected 0 or a positive multiple of val_every ({self.val_every})"
            )
        if self.schedule not in SCHEDULES:
            raise NasdunError(f"protocol {self.name}: schedule={self.schedule!r}; expected one of {', '.join(SCHEDULES)}")
        if self.warmup < 0 or not 0 <= self.min_lr_ratio <= 1 or (self.schedule == "constant" and (self.warmup or self.min_lr_ratio)):
            raise NasdunError(
                f"protocol {self.name}: warmup={self.warmup}, min_lr_ratio={self.min_lr_ratio} with schedule {self.schedule!r};"
                " expected warmup >= 0 and 0 <= min_lr_ratio <= 1, both only with schedule cosine"
            )
        if self.max_iters % self.val_every or self.patience % self.val_every:
            raise NasdunError(
                f"protocol {self.name}: patience ({self.patience}) and max_iters ({self.max_iters}) must be multiples of val_every ({self.val_every})"
            )

    @property
    def stages_per_layer(self) -> int:
        return len(self.lrs)

    def stage_cap(self, layer: int, stage: int, layers: int) -> int:
        """The iteration cap of ``stage`` (0-based) of ``layer`` in a network of ``layers`` layers."""
        last = layer == layers and stage == self.stages_per_layer - 1
        return self.final_iters if last and self.final_iters else self.max_iters

    def lr_factor(self, stage_iter: torch.Tensor, cap: torch.Tensor) -> torch.Tensor | None:
        """The schedule's factor f(i) for each candidate's stage iteration and stage cap (None for ``constant``: the rate as is)."""
        import torch

        if self.schedule == "constant":
            return None
        i = stage_iter.to(torch.float64)
        warm = ((i + 1) / self.warmup).clamp(max=1.0) if self.warmup else torch.ones_like(i)
        r = self.min_lr_ratio
        return warm * (r + (1 - r) * 0.5 * (1 + torch.cos(math.pi * torch.minimum(i, cap) / cap)))


PROTOCOLS: Registry[Protocol] = Registry("protocol")
for _path in sorted(HERE.glob("*.yaml")):
    PROTOCOLS.register(_path.stem, from_mapping(Protocol, {"name": _path.stem, **load_yaml(_path)}, str(_path.name)))


def get_protocol(name: str | Protocol) -> Protocol:
    """A registered protocol by name, a YAML file path, or a Protocol as is."""
    if isinstance(name, Protocol):
        return name
    if str(name).endswith((".yaml", ".yml")):
        path = Path(name)
        return from_mapping(Protocol, {"name": path.stem, **load_yaml(path, "protocol")}, str(path))
    return PROTOCOLS.get(name)


def agreement(protocol: str | Protocol) -> dict[str, object] | None:
    """How well ``protocol`` is measured to rank like ``paper`` (``references/agreement.yaml``): its Spearman and
    median |Δ| against the reference table named in ``reference``; None where it has not been measured."""
    name = protocol.name if isinstance(protocol, Protocol) else Path(str(protocol)).stem
    for reference, rows in load_yaml(HERE / "references" / "agreement.yaml").items():
        if name in rows:
            return {"reference": reference, **rows[name]}
    return None
