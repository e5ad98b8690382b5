"""A search's weights store, ``DIR/params.pt``: the trained parameters of its best candidates and every hand design.

The driver keeps it (:class:`KeptParams`): a worker writes its cohort's parameters to a file of its own,
and when the cohort's rows are in the table the store folds them in, keeping the top ``keep`` rows by
validation nmse_db (status ok; ties by hash, the order of :func:`nasdun.runs.results.top_k`) and every hand
design, then removes the cohort's file. :func:`nasdun.runs.results.load_network` reads a kept network back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from search_spaces.genotype import Genotype

FILE = "params.pt"


class KeptParams:
    """``DIR/params.pt`` as the driver holds it: row name -> (genotype, parameters); ``meta`` is what
    :func:`nasdun.runs.results.load_network` needs to rebuild a network (setting, seed, lam, coef_init)."""

    def __init__(self, run_dir: Path, keep: int, meta: Mapping[str, Any]) -> None:
        self.dir, self.keep, self.meta = run_dir, keep, dict(meta)
        self.kept: dict[str, tuple[Genotype, Any]] = {}
        if (run_dir / FILE).is_file():
            from nasdun.runs.results import read_params

            blob = read_params(run_dir / FILE)
            self.kept = {name: (Genotype.from_json(v["genotype"]), v["params"]) for name, v in blob["networks"].items()}

    def names(self) -> list[str]:
        return sorted(self.kept)

    def fold_in(self, rows: Iterable[Mapping[str, Any]], new: Sequence[Mapping[str, Any]], params_file: str | None) -> None:
        """Fold a finished cohort's parameters (``params_file``, its rows ``new``) into the store, given every row of
        the table (``rows``, ``new`` among them); the file is removed once folded in. No file (a worker whose file
        system the driver cannot see): the table is complete, the parameters are not kept."""
        import torch

        from nasdun.runs.results import save_params
        from nasdun.runs.verdict import preset_of

        if not params_file or not Path(params_file).is_file():
            return
        by_hash = torch.load(params_file, map_location="cpu", weights_only=True)
        fresh = {str(r["name"]): (Genotype.from_json(str(r["genotype"])), by_hash[str(r["hash"])]) for r in new if str(r["hash"]) in by_hash}
        ok = sorted((r for r in rows if r.get("status") == "ok" and math.isfinite(float(r["val_nmse_db"]))), key=_rank_key)
        wanted = [str(r["name"]) for r in ok[: self.keep]] + [str(r["name"]) for r in ok if preset_of(dict(r))]
        pool = {**self.kept, **fresh}
        kept = {name: pool[name] for name in dict.fromkeys(wanted) if name in pool}
        if kept.keys() != self.kept.keys():
            save_params(self.dir, kept, self.meta)
            self.kept = kept
        Path(params_file).unlink()


def _rank_key(row: Mapping[str, Any]) -> tuple[float, str]:
    """Rows by validation nmse_db, ties by hash (the order of nasdun.runs.results.top_k)."""
    return float(row["val_nmse_db"]), str(row["hash"])
