"""Where the second CPU core goes (NOTES, session 5): one batched trainer on 2 threads against the
same candidates split over processes of one thread each, measured side by side in one run.

    PYTHONPATH=. python benchmarks/threads_vs_procs.py --seconds 4 --rounds 2

Each configuration is `nasdun.runs.bench.measure` (the bench's candidate-step, validation included)
in freshly spawned processes; rates of concurrent processes are summed. Needs torch only.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp

import torch

from nasdun.runs.bench import BenchSize, measure
from trainers.host_memory import keep_freed_memory
from trainers.options import RunOptions

# (label, candidates per process, threads per process, processes)
CONFIGS = (
    ("single: P=1, 1 process, 2 threads", 1, 2, 1),
    ("P=16, 1 process, 2 threads", 16, 2, 1),
    ("P=16, 1 process, 1 thread", 16, 1, 1),
    ("P=8 x 2 processes, 1 thread each", 8, 1, 2),
    ("P=16 x 2 processes, 1 thread each", 16, 1, 2),
)


def _rate(args: tuple[int, int, float]) -> float:
    P, threads, seconds = args
    keep_freed_memory()
    torch.set_num_threads(threads)
    return measure(BenchSize(), P, RunOptions("cpu"), seconds)["steps_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=2)
    a = parser.parse_args()
    ctx = mp.get_context("spawn")
    rates: dict[str, list[float]] = {label: [] for label, *_ in CONFIGS}
    for r in range(a.rounds):
        for label, P, threads, procs in CONFIGS:
            with ctx.Pool(procs) as pool:
                rates[label].append(sum(pool.map(_rate, [(P, threads, a.seconds)] * procs)))
            print(f"round {r + 1}  {label:36s} {rates[label][-1]:7.1f} candidate-steps/s", flush=True)
    single = sum(rates[CONFIGS[0][0]]) / a.rounds
    print()
    for label, vals in rates.items():
        mean = sum(vals) / len(vals)
        print(f"{label:36s} {' / '.join(f'{v:.0f}' for v in vals):>13s}  mean {mean:6.0f}  x{mean / single:.2f} single")


if __name__ == "__main__":
    main()
