"""`nasdun bench`: trainer throughput in candidate-steps per second (torch only: no Ray, no Optuna).

What one measurement is: the population trainer's own iteration (batched forward to the
deepest layer, per-candidate loss, backward, masked per-candidate Adam) plus its validation
and stage bookkeeping every ``val_every`` iterations, with every candidate in the most
expensive stage (layer K, stage 2: all parameters train, full depth). Candidates are random
genotypes of the full design space, drawn from a fixed seed.

* ``single``: P = 1 in this process.
* ``packing``: ``procs`` processes on the same device, each training P = 1 at the same time
  (what fractional-GPU trials do); their rates are summed.
* ``batched``: P candidates in one trainer.
"""

from __future__ import annotations

import math
import os
import platform
import resource
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from nasdun.errors import NasdunError
from trainers.host_memory import heap_policy
from trainers.precision import autocast, check_precision, precision_scope


@dataclass(frozen=True)
class BenchSize:
    m: int = 50
    n: int = 100
    layers: int = 8
    batch: int = 128
    val: int = 1024

    def flops_per_step(self) -> float:
        """Matmul FLOPs of one candidate-step (forward + backward ~ 3x forward)."""
        fwd = 2 * self.batch * self.m * self.n + (self.layers - 1) * (2 * self.batch * self.n**2 + 2 * self.batch * self.n * self.layers / 2)
        return 3 * fwd


def _trainer(size: BenchSize, P: int, device: str, seed: int = 0, compile: bool = False, precision: str = "fp32") -> Any:
    from search_spaces.genotype import classic_space
    from trainers.population import PopulationTrainer
    from trainers.problems import Setting, make_problem
    from trainers.protocols import Protocol

    setting = Setting("bench", "benchmark", m=size.m, n=size.n, n_train=max(4 * size.batch, 2048), n_val=size.val, n_test=size.batch)
    problem = make_problem(setting, seed, batch_size=size.batch, device=device)
    space = classic_space(size.layers)  # the classic space: throughput comparable with the measurements before the new kinds
    rng = np.random.default_rng(seed)
    gs = [space.decode({d.name: d.choices[rng.integers(len(d.choices))] for d in space.decisions()}) for _ in range(P)]
    proto = Protocol(name="bench", batch_size=size.batch, patience=10**6, max_iters=10**7)
    tr = PopulationTrainer(gs, problem, proto, compile=compile, precision=precision)
    tr.jump_to(size.layers, 1)
    return tr


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(size: BenchSize, P: int, device: str, seconds: float = 3.0, compile: bool = False, precision: str = "fp32") -> dict[str, float]:
    """Steady-state candidate-steps/s of a P-candidate trainer, and the share spent validating."""
    with precision_scope(precision):
        return _measure(_trainer(size, P, device, compile=compile, precision=precision), device, seconds)


def _measure(tr: Any, device: str, seconds: float) -> dict[str, float]:
    P = tr.model.P
    every = tr.protocol.val_every

    def block() -> float:
        for _ in range(every):
            tr.train_step()
        _sync(device)  # the training steps' kernels finish here, so none of them is counted as validation
        t0 = time.perf_counter()
        tr._after_validation(tr._validate(), 0.0)
        _sync(device)
        return time.perf_counter() - t0

    block()  # warm-up (allocator, kernels)
    _sync(device)
    steps, val_s, start = 0, 0.0, time.perf_counter()
    while True:
        val_s += block()
        steps += every
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and steps >= 2 * every:
            break
    return {"steps_per_s": P * steps / elapsed, "val_share": val_s / elapsed}


def _packing_worker(args: tuple[BenchSize, str, float, int, str]) -> float:
    size, device, seconds, threads, precision = args
    torch.set_num_threads(threads)
    return measure(size, 1, device, seconds, precision=precision)["steps_per_s"]


def packing(size: BenchSize, device: str, procs: int, seconds: float, precision: str = "fp32") -> float:
    """Sum of the rates of ``procs`` concurrent single-candidate processes on one device."""
    import multiprocessing as mp

    threads = max(1, (os.cpu_count() or 1) // procs) if device == "cpu" else 1
    with mp.get_context("spawn").Pool(procs) as pool:
        rates = pool.map(_packing_worker, [(size, device, seconds, threads, precision)] * procs)
    return float(sum(rates))


def matmul_rate(device: str, precision: str = "fp32", seconds: float = 1.0) -> float:
    """Measured float32 matmul TFLOP/s of the device under ``precision`` (fp32: TF32 off)."""
    n = 4096 if device.startswith("cuda") else 1024
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    with precision_scope(precision), autocast(precision, device):
        for _ in range(2):
            a @ b
        _sync(device)
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            reps += 1
        _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e12


def peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_bench(
    size: BenchSize, device: str, batched: list[int], procs: int, seconds: float, compile: bool = False, precision: str = "fp32"
) -> dict[str, Any]:
    """Single, packing and batched (and compiled) rates at ``size`` under ``precision``; see the module docstring."""
    check_precision(precision)
    if not batched or any(p < 1 for p in batched) or procs < 0:
        raise NasdunError(f"P={batched} and procs={procs}: expected one or more P >= 1 and procs >= 0", ("P", "procs"))
    single = measure(size, 1, device, seconds, precision=precision)
    pack = packing(size, device, procs, seconds, precision) if procs > 0 else math.nan
    rates = {}
    val_share = {}
    for P in batched:
        r = measure(size, P, device, seconds, precision=precision)
        rates[P], val_share[P] = r["steps_per_s"], r["val_share"]
    compiled = {P: measure(size, P, device, seconds, compile=True, precision=precision)["steps_per_s"] for P in batched} if compile else {}
    peak = max([*rates.values(), *compiled.values()]) if rates else single["steps_per_s"]
    mm = matmul_rate(device, precision)
    name = (
        torch.cuda.get_device_name(device)
        if device.startswith("cuda")
        else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    )
    return {
        "device": name,
        "torch": torch.__version__,
        "precision": precision,
        "size": {**size.__dict__},
        "single_steps_per_s": single["steps_per_s"],
        "packing_procs": procs,
        "packing_steps_per_s": pack,
        "batched": rates,
        "batched_compiled": compiled,
        "val_share": val_share,
        "gflop_per_step": size.flops_per_step() / 1e9,
        "achieved_tflops": peak * size.flops_per_step() / 1e12,
        "matmul_tflops": mm,
        "fraction_of_matmul": peak * size.flops_per_step() / 1e12 / mm,
        "peak_memory_mb": peak_memory_mb(device),
        "cpu_heap": heap_policy(),
    }


def paper_size() -> BenchSize:
    return replace(BenchSize(), m=250, n=500, layers=16, batch=128, val=10240)


def format_report(res: dict[str, Any]) -> str:
    """The human-readable form of :func:`run_bench`'s result (what ``nasdun bench`` prints)."""
    lines = [
        f"device {res['device']}, torch {res['torch']}, size {res['size']}, precision {res['precision']}",
        f"single (P=1)           {res['single_steps_per_s']:10.1f} candidate-steps/s",
        f"packing ({res['packing_procs']} procs x P=1) {res['packing_steps_per_s']:10.1f} candidate-steps/s",
    ]
    for P, rate in res["batched"].items():
        lines.append(
            f"batched P={P:<4d}          {rate:10.1f} candidate-steps/s  x{rate / res['single_steps_per_s']:.2f} single"
            f"  validation {100 * res['val_share'][P]:.0f}% of time"
        )
    for P, rate in res["batched_compiled"].items():
        lines.append(f"batched P={P:<4d} compiled {rate:10.1f} candidate-steps/s  x{rate / res['single_steps_per_s']:.2f} single")
    lines.append(
        f"{res['gflop_per_step']:.3f} GFLOP/candidate-step; best {res['achieved_tflops']:.3f} TFLOP/s ="
        f" {100 * res['fraction_of_matmul']:.1f}% of measured fp32 matmul {res['matmul_tflops']:.3f} TFLOP/s;"
        f" peak memory {res['peak_memory_mb']:.0f} MiB"
    )
    lines.append(f"CPU heap: {res['cpu_heap']}")
    return "\n".join(lines)
