"""Named training protocols: one YAML file each in this folder, parsed into :class:`Protocol`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nasdun.config import from_mapping, load_yaml
from nasdun.errors import NasdunError
from nasdun.registry import Registry

HERE = Path(__file__).parent


@dataclass(frozen=True)
class Protocol:
    """The stage-wise protocol (DESIGN.md section 5).

    For each layer t = 1..K, one stage per learning rate in ``lrs``: the first trains layer t's
    new parameters, every later one all parameters of layers 1..t (the reference code has
    three: 5e-4, 1e-4, 1e-5; a screening protocol may drop the fine-tuning stages).
    Validation every ``val_every`` iterations; a stage ends when its best validation NMSE is
    ``patience`` iterations old or after ``max_iters``; a candidate whose validation NMSE is non-finite or above
    ``diverge_db`` (or whose training loss is non-finite) fails. With ``rungs``, successive
    halving: after the last stage of each rung layer the cohort keeps its best
    ``ceil(n / eta)`` (at least ``min_survivors``) and stops the rest.
    """

    name: str = "custom"
    description: str = ""
    lrs: tuple[float, ...] = (5e-4, 1e-4, 1e-5)
    patience: int = 4000
    max_iters: int = 200_000
    val_every: int = 10
    batch_size: int = 128
    lam: float = 0.4
    coef_init: str = "ones"
    diverge_db: float = 20.0
    rungs: tuple[int, ...] = ()  # successive halving after these layers (empty: off)
    eta: int = 2
    min_survivors: int = 1

    def __post_init__(self) -> None:
        if list(self.rungs) != sorted(set(self.rungs)) or any(r < 1 for r in self.rungs):
            raise NasdunError(f"protocol {self.name}: rungs={list(self.rungs)}; expected increasing layers >= 1")
        if self.eta < 2 or self.min_survivors < 1:
            raise NasdunError(f"protocol {self.name}: eta={self.eta}, min_survivors={self.min_survivors}; expected eta >= 2, min_survivors >= 1")
        if len(self.lrs) < 1 or any(not lr > 0 for lr in self.lrs):
            raise NasdunError(f"protocol {self.name}: lrs={list(self.lrs)}; expected one or more positive learning rates (one per stage)")
        for key in ("patience", "max_iters", "val_every", "batch_size"):
            if getattr(self, key) < 1:
                raise NasdunError(f"protocol {self.name}: {key}={getattr(self, key)}; expected an integer >= 1")
        if self.max_iters % self.val_every or self.patience % self.val_every:
            raise NasdunError(
                f"protocol {self.name}: patience ({self.patience}) and max_iters ({self.max_iters}) must be multiples of val_every ({self.val_every})"
            )

    @property
    def stages_per_layer(self) -> int:
        return len(self.lrs)


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
