"""Validation chunk size on a GPU: the trainer at paper size with the evaluation budget (floats held per chunk) set to each
value, side by side in one run. torch only (runs with the GPU machine's python3 from a copy of the tree):

    PYTHONPATH=. python3 benchmarks/eval_chunk.py [--device cuda] [--P 64,256] [--budgets 26,28,30] [--seconds 2]

Prints one JSON line per (budget, P): candidate-steps/s and the share of time in validation.
"""

import argparse
import json

from nasdun.runs.bench import measure, paper_size
from trainers import scoring
from trainers.options import RunOptions

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("--device", default="cuda")
p.add_argument("--P", default="64,256")
p.add_argument("--budgets", default="26,28,30", help="log2 of the floats one evaluation chunk may hold")
p.add_argument("--seconds", type=float, default=2.0)
a = p.parse_args()
kind = a.device.split(":")[0]
for P in map(int, a.P.split(",")):
    for log2 in map(int, a.budgets.split(",")):
        scoring.EVAL_FLOATS[kind] = 1 << log2
        r = measure(paper_size(), P, RunOptions(a.device), a.seconds)
        print(json.dumps({"device": a.device, "P": P, "eval_floats_log2": log2, **r}), flush=True)
