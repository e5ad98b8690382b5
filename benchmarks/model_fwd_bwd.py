"""Forward + backward of the batched model alone (no trainer), eager or compiled (NOTES rows 10, 11).

    PYTHONPATH=. python benchmarks/model_fwd_bwd.py --P 1,16,64 --modes eager,layer,whole

``layer``: the model's own ``compile=True`` (neuron + LM mix of a layer as one kernel);
``whole``: torch.compile of the whole forward and loss (an experiment: one compilation per
depth and frozen set, which the stage-wise protocol cannot afford). Random genotypes of the
full space at the `small` size, loss = sum of squared outputs of every layer. Needs torch only.
The trainer's CPU heap policy applies (``NASDUN_CPU_HEAP=system`` for the C library's default:
NOTES row 12); the minor page faults of the whole run are printed at the end.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from search_spaces.genotype import classic_space
from trainers.host_memory import keep_freed_memory
from trainers.model import UnrolledLISTA


def fwd_bwd_ms(P: int, mode: str, m: int, n: int, K: int, batch: int, reps: int = 20) -> tuple[float, float]:
    """Median milliseconds of one forward + backward, and seconds the first call took (compilation)."""
    space = classic_space(K)
    rng = np.random.default_rng(0)
    gs = [space.decode({d.name: d.choices[rng.integers(len(d.choices))] for d in space.decisions()}) for _ in range(P)]
    gen = torch.Generator().manual_seed(0)
    model = UnrolledLISTA(gs, torch.randn(m, n, generator=gen) / m**0.5, compile=mode == "layer")
    b = torch.randn(batch, m, generator=gen)

    def loss(b: torch.Tensor) -> torch.Tensor:
        return sum((o * o).sum() for o in model(b))  # type: ignore[return-value]

    fn = torch.compile(loss) if mode == "whole" else loss
    start = time.perf_counter()
    fn(b).backward()
    first = time.perf_counter() - start
    for _ in range(5):
        fn(b).backward()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(reps):
            fn(b).backward()
        times.append((time.perf_counter() - start) / reps)
    return 1e3 * float(np.median(times)), first


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--P", default="1,16,64")
    ap.add_argument("--modes", default="eager,layer,whole")
    ap.add_argument("--m", type=int, default=50)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    heap = keep_freed_memory()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, m={args.m} n={args.n} K={args.layers} B={args.batch}")
    for P in (int(p) for p in args.P.split(",")):
        for mode in args.modes.split(","):
            ms, first = fwd_bwd_ms(P, mode, args.m, args.n, args.layers, args.batch)
            print(f"P={P:<4d} {mode:6s} {ms:8.2f} ms fwd+bwd  {ms / P:7.3f} ms per candidate  first call {first:6.1f} s")
    print(f"heap: {heap}; minor page faults {resource.getrusage(resource.RUSAGE_SELF).ru_minflt}")


if __name__ == "__main__":
    main()
