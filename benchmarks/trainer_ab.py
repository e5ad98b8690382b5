"""A trainer switch on and off, side by side in one process: time per training step and the bits after the same steps.

    python benchmarks/trainer_ab.py FLAG [K] [STAGE ...]    # FLAG: prune or compact_masks; default K = 8, stages 0 1

``prune``: stage-0 steps without the frozen layers' graph; ``compact_masks``: Adam's masks per (candidate, layer),
broadcast, instead of full-size (trainers/population.py). Each is the same maths, so the parameters must be bit-equal.
Times REPS rounds of N training steps of one cohort (the 15 hand designs distinct at K) at the given stages of layer K,
the switch on and off alternately (one intra-op thread), and prints the medians and their ratio.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nasdun.runs.verdict import hand_designs  # noqa: E402
from trainers.population import PopulationTrainer  # noqa: E402
from trainers.problems.make import make_problem  # noqa: E402
from trainers.protocols import get_protocol  # noqa: E402

FLAGS = ("prune", "compact_masks")


def trainer(gs: list, problem: object, flag: str, on: bool, layer: int, stage: int) -> PopulationTrainer:
    tr = PopulationTrainer(gs, problem, get_protocol("final"))  # type: ignore[arg-type]
    setattr(tr, flag, on)
    tr.jump_to(layer, stage)  # rebuilds the per-stage state under the switch
    return tr


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in FLAGS:
        sys.exit(f"usage: trainer_ab.py FLAG [K] [STAGE ...]; FLAG one of {', '.join(FLAGS)}")
    flag = sys.argv[1]
    K = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    stages = [int(v) for v in sys.argv[3:]] or [0, 1]
    gs = list(hand_designs(K, 2).values())
    torch.set_num_threads(1)
    problem = make_problem("small", 0, batch_size=128)
    N, REPS = 20, 5
    for stage in stages:
        times: dict[bool, list[float]] = {True: [], False: []}
        trs = {on: trainer(gs, problem, flag, on, K, stage) for on in (True, False)}
        for tr in trs.values():
            for _ in range(3):
                tr.train_step()  # warm-up
        for _ in range(REPS):
            for on, tr in trs.items():
                t0 = time.perf_counter()
                for _ in range(N):
                    tr.train_step()
                times[on].append((time.perf_counter() - t0) / N)
        same = all(torch.equal(trs[True].params[k], trs[False].params[k]) for k in trs[True].params)
        on_s, off_s = statistics.median(times[True]), statistics.median(times[False])
        print(
            f"{flag}: K={K}, {len(gs)} networks, stage {stage} of layer {K}: on {1e3 * on_s:.1f} ms/step, off {1e3 * off_s:.1f} ms/step,"
            f" off/on {off_s / on_s:.2f}x; parameters bit-equal: {same}"
        )


if __name__ == "__main__":
    main()
