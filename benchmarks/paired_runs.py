"""Two runs of the same networks at the same seed, trained two ways (another protocol file, another rule): how far
each network's values move and whether the ranking holds.

    python benchmarks/paired_runs.py A B     # A, B: run directories, or results.csv files kept elsewhere (benchmarks/data)

Prints a Markdown table: per network the test and validation nmse_db (pooled) of A and B and B − A, then the median
and largest |B − A| and the Spearman and Kendall correlations of the two test rankings, over the networks that
finished in both (a network that failed in either is listed with its reason and left out of the statistics).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd
from scipy.stats import kendalltau, spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nasdun.runs.results import read_table  # noqa: E402
from search_spaces.presets import display_name  # noqa: E402


def _read(run: str) -> pd.DataFrame:
    path = Path(run)
    if path.is_file():  # a kept table: read (and checked) as its run directory would be
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copyfile(path, Path(tmp) / "results.csv")
            return read_table(Path(tmp)).set_index("name")
    return read_table(path).set_index("name")


def paired(a_run: str, b_run: str) -> str:
    a, b = _read(a_run), _read(b_run)
    if set(a.index) != set(b.index) or set(a["seed"]) != set(b["seed"]) or a["seed"].nunique() != 1:
        raise SystemExit(f"{a_run} and {b_run} must hold the same networks at one seed; they hold {sorted(a.index)} at"
                         f" {sorted(set(a['seed']))} and {sorted(b.index)} at {sorted(set(b['seed']))}")  # fmt: skip
    both = [n for n in a.index if a.loc[n, "status"] == "ok" and b.loc[n, "status"] == "ok"]
    d = pd.DataFrame({"a": a.loc[both, "test_nmse_db"], "b": b.loc[both, "test_nmse_db"],
                      "a_val": a.loc[both, "val_nmse_db"], "b_val": b.loc[both, "val_nmse_db"]}).sort_values("a")  # fmt: skip
    d["delta"], d["delta_val"] = d["b"] - d["a"], d["b_val"] - d["a_val"]
    lines = ["| network | test A | test B | B − A (test) | val A | val B | B − A (val) |", "|---|---|---|---|---|---|---|"]
    for name, r in d.iterrows():
        cells = f"{r['a']:.3f} | {r['b']:.3f} | {r['delta']:+.3f} | {r['a_val']:.3f} | {r['b_val']:.3f} | {r['delta_val']:+.3f}"
        lines.append(f"| {display_name(str(name))} | {cells} |")
    for name in sorted(set(a.index) - set(both)):
        why = "; ".join(f"{side}: {t.loc[name, 'status']} {t.loc[name, 'reason'] or ''}".strip() for side, t in (("A", a), ("B", b)))
        lines.append(f"| {display_name(str(name))} | {why} | | | | | |")
    rho, tau = spearmanr(d["a"], d["b"])[0], kendalltau(d["a"], d["b"])[0]
    lines.append("")
    lines.append(
        f"{len(d)} networks in both: median |B − A| {d['delta'].abs().median():.3f} dB test, {d['delta_val'].abs().median():.3f} dB val;"
        f" largest {d['delta'].abs().max():.3f} dB test ({display_name(str(d['delta'].abs().idxmax()))});"
        f" test ranking Spearman {rho:.3f}, Kendall {tau:.3f}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python benchmarks/paired_runs.py A B")
    print(paired(sys.argv[1], sys.argv[2]))
