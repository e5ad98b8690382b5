"""Throughput of training on `image_cs50` against `small` (docs/results/image-cs.md), side by side.

The six hand designs at K (default 8) are trained together under a fixed-length stage-wise protocol
(every stage exactly ``--iters`` iterations: patience = cap), on each setting in turn, alternated
over ``--rounds`` rounds so machine drift hits both alike. Reported: candidate-steps per second
(networks x iterations / wall time, validation included) and the ratio image_cs50 / small.

    PYTHONPATH=. python benchmarks/image_throughput.py --layers 8 --iters 30 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

from search_spaces.presets import resolve_archs
from trainers.population import train_population
from trainers.problems.make import make_problem
from trainers.protocols import get_protocol


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    proto = replace(get_protocol("search"), name="fixed", patience=args.iters, max_iters=args.iters)
    nets = [g for _, g in resolve_archs("hand", args.layers)]
    problems = {name: make_problem(name, 0, batch_size=proto.batch_size) for name in ("small", "image_cs50")}
    rates: dict[str, list[float]] = {name: [] for name in problems}
    for r in range(args.rounds):
        for name, problem in problems.items():
            t0 = time.perf_counter()
            results = train_population(nets, problem, proto)
            wall = time.perf_counter() - t0
            rates[name].append(sum(res.iterations for res in results) / wall)
            print(f"round {r + 1} {name:10s} {rates[name][-1]:8.1f} candidate-steps/s ({wall:.1f} s)", flush=True)
    mean = {name: sum(v) / len(v) for name, v in rates.items()}
    print(json.dumps({"layers": args.layers, "iters_per_stage": args.iters, "candidate_steps_per_s": mean,
                      "ratio_image_over_small": mean["image_cs50"] / mean["small"]}))  # fmt: skip


if __name__ == "__main__":
    main()
