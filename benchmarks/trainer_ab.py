"""A trainer switch on and off, side by side in one process: time per training step and the bits after the same steps.

    python benchmarks/trainer_ab.py FLAG [K] [STAGE ...] [--random P] [--device D] [--steps N] [--reps R]
    # FLAG: prune, compact_masks, foreach_adam, wide_mix, tied_grads or cuda_graphs (--device cuda); default K = 8, stages 0 1,
    # the 15 hand designs, cpu, N = 20, R = 5

``prune``: stage-0 steps without the frozen layers' graph; ``compact_masks``: Adam's masks per (candidate, layer),
broadcast, instead of full-size; ``foreach_adam``: Adam's update as one foreach operation per step of it over every
parameter instead of one per parameter (trainers/population.py, trainers/adam.py). Each is the same maths, so the parameters must be bit-equal.
``wide_mix``: the LWA pre-mixes as one batched matmul over a history buffer instead of one kernel per origin
(trainers/model.py, switched on the trainer): the same sums in another order, so the parameters are compared by their largest relative gap.
``tied_grads``: W_x's (and a shared W's) gradient as one matmul over the layers' uses instead of one per layer and
their sum (trainers/model.py): likewise the same sums in another order.
``cuda_graphs``: each stage's step captured once and replayed as one CUDA graph (a CUDA device): the same kernels, so
bit-equal; the first steps of each side include the warm-up and capture.
Times R rounds of N training steps of one cohort (the hand designs distinct at K, or with ``--random P`` P random
genotypes of the classic space, as ``nasdun bench`` draws them) at the given stages of layer K on ``small``'s data,
the switch on and off alternately (one intra-op thread on a CPU), and prints the medians, their ratio and the aten
compute operations of one step each way (what becomes a kernel launch on a GPU; ``nasdun.runs.bench.count_ops``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nasdun.runs.bench import count_ops  # noqa: E402
from nasdun.runs.verdict import hand_designs  # noqa: E402
from search_spaces.genotype import classic_space  # noqa: E402
from trainers.population import PopulationTrainer  # noqa: E402
from trainers.problems.make import make_problem  # noqa: E402
from trainers.protocols import get_protocol  # noqa: E402

FLAGS = ("prune", "compact_masks", "foreach_adam", "wide_mix", "tied_grads", "cuda_graphs")


def trainer(gs: list, problem: object, flag: str, on: bool, layer: int, stage: int) -> PopulationTrainer:
    tr = PopulationTrainer(gs, problem, get_protocol("final"))  # type: ignore[arg-type]
    setattr(tr, flag, on)
    tr.jump_to(layer, stage)  # rebuilds the per-stage state under the switch
    return tr


def main() -> None:
    ap = argparse.ArgumentParser(description="a trainer switch on and off, side by side")
    ap.add_argument("flag", choices=FLAGS)
    ap.add_argument("K", nargs="?", type=int, default=8)
    ap.add_argument("stages", nargs="*", type=int)
    ap.add_argument("--random", type=int, default=0, metavar="P", help="P random genotypes of the classic space (default: the hand designs)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=20, help="steps per timed round")
    ap.add_argument("--reps", type=int, default=5, help="timed rounds per side")
    a = ap.parse_args()
    flag, K, stages = a.flag, a.K, a.stages or [0, 1]
    if flag == "cuda_graphs" and not a.device.startswith("cuda"):
        raise SystemExit(f"cuda_graphs on device {a.device}; expected --device cuda (CUDA graphs replay GPU kernels)")
    if a.random:
        space, rng = classic_space(K), np.random.default_rng(0)
        gs = [space.decode({d.name: d.choices[rng.integers(len(d.choices))] for d in space.decisions()}) for _ in range(a.random)]
    else:
        gs = list(hand_designs(K, 2).values())
    torch.set_num_threads(1)
    problem = make_problem("small", 0, batch_size=128, device=a.device)

    def sync() -> None:
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()

    for stage in stages:
        times: dict[bool, list[float]] = {True: [], False: []}
        trs = {on: trainer(gs, problem, flag, on, K, stage) for on in (True, False)}
        for tr in trs.values():
            for _ in range(3):
                tr.train_step()  # warm-up
        for _ in range(a.reps):
            for on, tr in trs.items():
                sync()
                t0 = time.perf_counter()
                for _ in range(a.steps):
                    tr.train_step()
                sync()
                times[on].append((time.perf_counter() - t0) / a.steps)
        same = all(torch.equal(trs[True].params[k], trs[False].params[k]) for k in trs[True].params)
        with torch.no_grad():
            gap = max(float((p - trs[False].params[k]).abs().max() / p.abs().max().clamp(min=1e-30)) for k, p in trs[True].params.items())
        on_s, off_s = statistics.median(times[True]), statistics.median(times[False])
        ops = {on: count_ops(tr.train_step)["compute"] for on, tr in trs.items()}  # one more step each, after the comparison
        print(
            f"{flag}: K={K}, {len(gs)} networks, stage {stage} of layer {K}, {a.device}: on {1e3 * on_s:.1f} ms/step, off {1e3 * off_s:.1f}"
            f" ms/step, off/on {off_s / on_s:.2f}x; parameters bit-equal: {same} (largest relative gap {gap:.1e});"
            f" compute ops per step on / off {ops[True]:,} / {ops[False]:,}",
            flush=True,
        )


if __name__ == "__main__":
    main()
