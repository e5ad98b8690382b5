"""A search's summary, ``search.json``: one typed record that the searcher writes after every cohort, the promotion
completes, and the CLI, the API, the report and the studies read.

Its fields are the session's (counts, timing, where the study lives), the screening verdict of
:func:`nasdun.runs.verdict.judge` (flattened, as ``search.json`` has always held it) and, after a promotion, the verdict
under the promotion's protocol (``verdict``, with the screening one kept as ``screening_verdict``, and ``promoted``: the
promotion's figures, :func:`nasdun.orchestration.promotion.promote_search`). It reads as a mapping too (``summary["verdict"]``), which
is what the API returned before the type existed; :meth:`SearchSummary.read` takes a file of an older run (fields it
lacks keep their defaults).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from nasdun.core.errors import NasdunError

FILE = "search.json"
_IMAGE_ONLY = ("best_found_test_psnr", "best_preset_test_psnr", "gain_test_psnr")  # written only where the setting has images


@dataclass
class SearchSummary(Mapping[str, Any]):
    # the session, fixed while it runs
    session: int = 1
    resumed: bool = False
    recovered: dict[str, int] = field(default_factory=dict)  # trials a resume told, trained again, dropped, retried
    concurrency: int = 1  # cohorts in flight
    budget: int = 0
    baselines: list[str] = field(default_factory=list)
    storage: str = ""  # the Optuna study's URL
    # the session so far
    finished: bool = False
    cohorts: int = 0
    candidates_trained: int = 0  # this session
    candidates_total: int = 0
    wall_s: float = 0.0
    trainer_s: float = 0.0
    overhead: float = math.nan  # wall time over the trainers' own time per cohort place
    candidates_per_min: float = math.nan
    best_val_nmse_db: float = math.nan
    params_kept: list[str] = field(default_factory=list)
    stopped_early: str = ""
    # the screening verdict (nasdun.runs.verdict.judge of the table), flattened
    best_found: str | None = None
    best_found_val_nmse_db: float = math.nan
    best_found_test_nmse_db: float = math.nan
    best_preset: str | None = None
    best_preset_name: str | None = None
    best_preset_val_nmse_db: float = math.nan
    best_preset_test_nmse_db: float = math.nan
    gain_db: float = math.nan
    gain_test_db: float = math.nan
    best_is_hand_design: bool = False
    best_found_test_psnr: float | None = None
    best_preset_test_psnr: float | None = None
    gain_test_psnr: float | None = None
    verdict: str = ""  # the answer: after a promotion, under its protocol (nasdun.runs.verdict.trusted_line)
    # the second phase
    screening_verdict: str = ""  # the screening's own line, kept once a promotion has given ``verdict``
    promoted: dict[str, Any] | None = None  # the promotion's figures (nasdun.orchestration.promotion.promote_search)
    verdict_protocol: str = ""  # the protocol ``verdict`` was reached under

    # -- a mapping, as search.json reads ------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key not in _NAMES or (key in _IMAGE_ONLY and getattr(self, key) is None):
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return (name for name in _NAMES if not (name in _IMAGE_ONLY and getattr(self, name) is None))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def record(self) -> dict[str, Any]:
        """As ``search.json`` holds it (the image-only figures where the setting has images)."""
        data = asdict(self)
        return {k: v for k, v in data.items() if k in set(self)}

    def write(self, run: str | Path) -> None:
        """``run/search.json``, atomically (a killed session leaves the last whole record)."""
        from nasdun.runs.results import write_json

        write_json(Path(run) / FILE, self.record())

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> SearchSummary:
        """From figures given by name; a name that is not a field is refused (the schema is this class)."""
        unknown = sorted(set(values) - set(_NAMES))
        if unknown:
            raise NasdunError(f"search summary: unknown field(s) {', '.join(unknown)}; expected fields of nasdun.runs.summary.SearchSummary")
        return cls(**values)

    @classmethod
    def read(cls, run: str | Path) -> SearchSummary:
        """A run's ``search.json``; fields an older file lacks keep their defaults, fields this version does not know are
        left out."""
        path = Path(run) / FILE
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise NasdunError(f"{str(path)!r} cannot be read ({type(err).__name__}); expected the search.json of a nasdun search") from None
        if not isinstance(data, dict):
            raise NasdunError(f"{str(path)!r} holds {type(data).__name__}; expected the search.json of a nasdun search")
        return cls(**{k: v for k, v in data.items() if k in _NAMES})


_NAMES = tuple(f.name for f in fields(SearchSummary))
