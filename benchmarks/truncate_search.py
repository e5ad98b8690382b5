"""A shorter screening phase read off a longer one-slot search: the cohorts that started within the
first M minutes, written as a run directory `nasdun promote` accepts.

    PYTHONPATH=. python benchmarks/truncate_search.py runs/eq-screen-warm-s4 --minutes 15 --out runs/eq-screen15-s4

Exact for a search run with one cohort at a time: such a search is repeatable (docs/search.md),
and its `minutes` limit only stops new cohorts, so a run with `minutes: M` trains exactly the
cohorts that started in the first M minutes of a longer run (up to timing jitter at the
boundary). Cohort start and end times come from Ray Tune's result of each cohort
(`timestamp` minus `time_total_s`). Prints the screening wall time (first start to last end).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import yaml


def cohort_times(run: Path) -> dict[int, tuple[float, float]]:
    """Cohort -> (start, end) in epoch seconds, from the cohorts' Ray Tune results."""
    times = {}
    for result in run.glob("tune/session-1/cohort-*/result.json"):
        r = json.loads(result.read_text().splitlines()[0])
        cohort = int(result.parent.name.split("-")[1])
        times[cohort] = (r["timestamp"] - r["time_total_s"], float(r["timestamp"]))
    if not times:
        raise SystemExit(f"{run}: no tune/session-1/cohort-*/result.json; expected a finished one-session nasdun search")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True)
    a = parser.parse_args()
    if a.out.exists():
        raise SystemExit(f"--out {str(a.out)!r} exists; expected a new directory (nothing is overwritten)")
    times = cohort_times(a.run)
    t0 = min(start for start, _ in times.values())
    keep = sorted(c for c, (start, _) in times.items() if start - t0 < 60 * a.minutes)
    table = pd.read_csv(a.run / "results.csv", keep_default_na=False, na_values=[""])
    table = table[table["cohort"].isin(keep)]
    cfg = yaml.safe_load((a.run / "search.yaml").read_text())
    cfg["minutes"] = a.minutes
    a.out.mkdir(parents=True)
    table.to_csv(a.out / "results.csv", index=False)
    (a.out / "search.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    wall = (max(times[c][1] for c in keep) - t0) / 60
    print(f"{a.out}: {len(keep)} cohorts, {len(table)} candidates, screening wall {wall:.2f} min (of {a.run})")


if __name__ == "__main__":
    main()
