"""Stage-0 steps with and without the frozen layers' graph (trainers/population.py, `prune`), side by side in one process.

    python benchmarks/stage0_prune.py [K] [NAMES]     # default K = 8, the 15 hand designs distinct at K

Times REPS rounds of N training steps of one cohort at stage 0 (and stage 1, where nothing is pruned) of layer K, pruned and
whole alternately (one intra-op thread), and prints the medians and their ratio; checks the parameters are bit-equal after
the same steps both ways.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nasdun.verdict import hand_designs  # noqa: E402
from trainers.population import PopulationTrainer  # noqa: E402
from trainers.problems import make_problem  # noqa: E402
from trainers.protocols import get_protocol  # noqa: E402


def trainer(gs: list, problem: object, prune: bool, layer: int, stage: int) -> PopulationTrainer:
    tr = PopulationTrainer(gs, problem, get_protocol("final"))  # type: ignore[arg-type]
    tr.prune = prune
    tr.jump_to(layer, stage)
    return tr


def main() -> None:
    K = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    gs = list(hand_designs(K, 2).values())
    torch.set_num_threads(1)
    problem = make_problem("small", 0, batch_size=128)
    N, REPS = 20, 5
    for stage in (0, 1):
        times: dict[bool, list[float]] = {True: [], False: []}
        trs = {p: trainer(gs, problem, p, K, stage) for p in (True, False)}
        for tr in trs.values():
            for _ in range(3):
                tr.train_step()  # warm-up
        for _ in range(REPS):
            for prune, tr in trs.items():
                t0 = time.perf_counter()
                for _ in range(N):
                    tr.train_step()
                times[prune].append((time.perf_counter() - t0) / N)
        same = all(torch.equal(trs[True].params[k], trs[False].params[k]) for k in trs[True].params)
        pruned, whole = statistics.median(times[True]), statistics.median(times[False])
        print(
            f"K={K}, {len(gs)} networks, stage {stage} of layer {K}: pruned {1e3 * pruned:.1f} ms/step, whole {1e3 * whole:.1f} ms/step,"
            f" whole/pruned {whole / pruned:.2f}x; parameters bit-equal: {same}"
        )


if __name__ == "__main__":
    main()
