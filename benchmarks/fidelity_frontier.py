"""The fidelity frontier: every protocol measured against the `paper` reference, Spearman and median |Δ| against cost.

Reads trainers/protocols/references/agreement.yaml (the measured figures; docs/results/fidelity.md says how each
was measured) and draws docs/img/fidelity_frontier.png with analysis.readers.plots.frontier_figure; prints the table.

    python benchmarks/fidelity_frontier.py [OUT_DIR]
"""

import sys
from pathlib import Path

import pandas as pd

from analysis.readers.plots import frontier_figure
from nasdun.core.config import load_yaml
from trainers.protocols import HERE

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "docs" / "img"
rows = [{"protocol": name, **fig} for name, fig in load_yaml(HERE / "references" / "agreement.yaml")["paper_small_k8"].items() if name != "paper"]
table = pd.DataFrame(rows).sort_values("cost_ratio")
frontier_figure(table, out, "fidelity_frontier", "paper")
print(table.to_string(index=False))
