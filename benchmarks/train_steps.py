"""N training steps of one cohort at one stage of layer K, one intra-op thread: a whole process to time against the same
script on another commit (two worktrees, each on ``PYTHONPATH``), where the switch-by-switch ``trainer_ab.py`` cannot
compare (the change is not a switch).

    PYTHONPATH=TREE python benchmarks/train_steps.py [K] [STAGE] [--random P] [--steps N]
    # default K = 16, stage 1, the 15 hand designs, N = 150

Builds the cohort (the hand designs distinct at K, or ``--random P`` random genotypes of the classic space drawn as
``trainer_ab.py`` draws them) on ``small``'s data under ``final``, jumps to the stage, runs three warm-up steps and N
timed ones, and prints the time per step, the compute operations of one more step (``nasdun.runs.bench.count_ops``)
and a checksum of the parameters (equal
checksums: the same bits on both commits).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    from nasdun.runs.bench import count_ops
    from nasdun.runs.verdict import hand_designs
    from search_spaces.genotype import classic_space
    from trainers.population import PopulationTrainer
    from trainers.problems.make import make_problem
    from trainers.protocols import get_protocol

    ap = argparse.ArgumentParser(description="N training steps of one cohort, one thread")
    ap.add_argument("K", nargs="?", type=int, default=16)
    ap.add_argument("stage", nargs="?", type=int, default=1)
    ap.add_argument("--random", type=int, default=0, metavar="P", help="P random genotypes of the classic space (default: the hand designs)")
    ap.add_argument("--steps", type=int, default=150)
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.random:
        space, rng = classic_space(a.K), np.random.default_rng(0)
        gs = [space.decode({d.name: d.choices[rng.integers(len(d.choices))] for d in space.decisions()}) for _ in range(a.random)]
    else:
        gs = list(hand_designs(a.K, 2).values())
    tr = PopulationTrainer(gs, make_problem("small", 0, batch_size=128), get_protocol("final"))
    tr.jump_to(a.K, a.stage)
    for _ in range(3):
        tr.train_step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        tr.train_step()
    per_step = (time.perf_counter() - t0) / a.steps
    ops = count_ops(tr.train_step)["compute"]
    checksum = sum(float(p.detach().double().sum()) for p in tr.params.values())
    print(f"K={a.K} stage {a.stage}, {len(gs)} networks: {1e3 * per_step:.1f} ms/step, {ops:,} compute ops/step, checksum {checksum:.17g}")


if __name__ == "__main__":
    main()
