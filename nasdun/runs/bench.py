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

from nasdun.core.errors import NasdunError
from trainers.host_memory import heap_policy
from trainers.options import RunOptions
from trainers.precision import autocast, precision_scope


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


def _trainer(size: BenchSize, P: int, options: RunOptions, seed: int = 0, protocol: Any = None) -> Any:
    from search_spaces.genotype import classic_space
    from trainers.population import PopulationTrainer
    from trainers.problems.make import Setting, make_problem
    from trainers.protocols import Protocol

    setting = Setting("bench", "benchmark", m=size.m, n=size.n, n_train=max(4 * size.batch, 2048), n_val=size.val, n_test=size.batch)
    problem = make_problem(setting, seed, batch_size=size.batch, device=options.resolved().device)
    space = classic_space(size.layers)  # the classic space: throughput comparable with the measurements before the new kinds
    rng = np.random.default_rng(seed)
    gs = [space.decode({d.name: d.choices[rng.integers(len(d.choices))] for d in space.decisions()}) for _ in range(P)]
    proto = Protocol(name="bench", batch_size=size.batch, patience=10**6, max_iters=10**7) if protocol is None else protocol
    tr = PopulationTrainer(gs, problem, proto, options=options)
    tr.jump_to(size.layers, min(1, proto.stages_per_layer - 1))
    return tr


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(size: BenchSize, P: int, options: RunOptions, seconds: float = 3.0) -> dict[str, float]:
    """Steady-state candidate-steps/s of a P-candidate trainer (on ``options``' device, precision, compile), and the
    share spent validating."""
    options = options.resolved()
    with precision_scope(options.precision):
        return _measure(_trainer(size, P, options), options.device, seconds)


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


def _packing_worker(args: tuple[BenchSize, RunOptions, float, int]) -> float:
    size, options, seconds, threads = args
    torch.set_num_threads(threads)
    return measure(size, 1, options, seconds)["steps_per_s"]


def packing(size: BenchSize, options: RunOptions, procs: int, seconds: float) -> float:
    """Sum of the rates of ``procs`` concurrent single-candidate processes on one device (eager: ``options.compile``
    is not used)."""
    import multiprocessing as mp

    options = replace(options.resolved(), compile=False)
    threads = max(1, (os.cpu_count() or 1) // procs) if options.device == "cpu" else 1
    with mp.get_context("spawn").Pool(procs) as pool:
        rates = pool.map(_packing_worker, [(size, options, seconds, threads)] * procs)
    return float(sum(rates))


def matmul_rate(options: RunOptions, seconds: float = 1.0) -> float:
    """Measured float32 matmul TFLOP/s of ``options``' device under its precision (fp32: TF32 off)."""
    options = options.resolved()
    device, precision = options.device, options.precision
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


def run_bench(size: BenchSize, options: RunOptions, batched: list[int], procs: int, seconds: float) -> dict[str, Any]:
    """Single, packing and batched rates at ``size`` under ``options.precision`` (with ``options.compile``: compiled
    batched rates beside the eager ones); see the module docstring."""
    if not batched or any(p < 1 for p in batched) or procs < 0:
        raise NasdunError(f"P={batched} and procs={procs}: expected one or more P >= 1 and procs >= 0", ("P", "procs"))
    eager = replace(options.resolved(), compile=False)
    device, precision = eager.device, eager.precision
    single = measure(size, 1, eager, seconds)
    pack = packing(size, eager, procs, seconds) if procs > 0 else math.nan
    rates = {}
    val_share = {}
    for P in batched:
        r = measure(size, P, eager, seconds)
        rates[P], val_share[P] = r["steps_per_s"], r["val_share"]
    fused = replace(eager, compile=True)
    compiled = {P: measure(size, P, fused, seconds)["steps_per_s"] for P in batched} if options.compile else {}
    peak = max([*rates.values(), *compiled.values()]) if rates else single["steps_per_s"]
    mm = matmul_rate(eager)
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


def count_ops(fn: Any) -> dict[str, int]:
    """The aten operations ``fn()`` dispatches (what becomes kernels: a CPU op or a GPU launch each), split into compute
    and views (free on every device), counted below autograd with a dispatch mode."""
    from torch.utils._python_dispatch import TorchDispatchMode

    counts = {"compute": 0, "views": 0}

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            counts["views" if getattr(func, "is_view", False) else "compute"] += 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return counts


def measure_protocol(size: BenchSize, P: int, protocol: str, options: RunOptions, seconds: float = 3.0) -> dict[str, Any]:
    """What ``protocol`` really runs, per candidate: every layer's stage 0 (pruned: only layer t's parameters move), its
    later stages (layers 1..t), the end-to-end pass where it has one, and validation on its ``val_subset`` every
    ``val_every`` iterations (plus the whole set at each stage end where the set is larger), each timed at its own depth
    and weighted by the iterations the protocol gives it at its caps (a protocol with patience may end stages earlier:
    then this is its longest run). Returns the shares of time, candidate-steps/s over the whole protocol, and the aten
    operations of one step (stage 0 and a later stage at layer K)."""
    from trainers.protocols import get_protocol

    proto = get_protocol(protocol)
    options = options.resolved()
    device = options.device
    K, every = size.layers, proto.val_every
    never = 10**9 - 10**9 % every  # the stages never end while they are measured
    with precision_scope(options.precision):
        endless = replace(proto, patience=never, max_iters=never, final_iters=0, batch_size=size.batch)
        tr = _trainer(size, P, options, protocol=endless)
        budget = seconds / (2 * K + K)

        def timed(fn: Any) -> float:
            fn()  # warm-up at this depth
            _sync(device)
            n, t0 = 0, time.perf_counter()
            while n < 3 or time.perf_counter() - t0 < budget:
                fn()
                n += 1
            _sync(device)
            return (time.perf_counter() - t0) / n

        step: dict[tuple[int, int], float] = {}
        val: dict[int, float] = {}
        full: dict[int, float] = {}
        stages = proto.stages_per_layer
        for t in range(1, K + 1):
            for s in (0, 1) if stages > 1 else (0,):
                tr.jump_to(t, s)
                step[(t, s)] = timed(tr.train_step)
            val[t] = timed(tr._validate)
            full[t] = timed(tr._validate_full) if tr.val_rule is not tr.problem.val else 0.0
        tr.jump_to(K, stages - 1)
        ops_later = count_ops(tr.train_step)
        tr.jump_to(K, 0)
        ops_stage0 = count_ops(tr.train_step)
    time_of = {"stage 0": 0.0, "later stages": 0.0, "end-to-end pass": 0.0, "validation": 0.0}
    iterations = 0
    for t in range(1, K + 1):
        for s in range(stages):
            cap = proto.stage_cap(t, s, K)
            part = "stage 0" if s == 0 else "end-to-end pass" if (t == K and s == stages - 1 and proto.final_iters) else "later stages"
            time_of[part] += cap * step[(t, min(s, 1))]
            time_of["validation"] += (cap // every + 1) * val[t] + full[t]  # every val_every, at the stage start, the kept ones
            iterations += cap
    total = sum(time_of.values())
    return {
        "protocol": proto.name,
        "P": P,
        "iterations_per_candidate": iterations,
        "candidate_steps_per_s": P * iterations / total,
        "share": {k: v / total for k, v in time_of.items()},
        "ops_per_step": {"later stage, layer K": ops_later, "stage 0, layer K": ops_stage0},
        "ms_per_step": {f"layer {t} stage {s}": 1e3 * v for (t, s), v in step.items()},
    }


def format_protocol(res: dict[str, Any]) -> str:
    """The human-readable form of :func:`measure_protocol`'s result."""
    shares = ", ".join(f"{k} {100 * v:.0f}%" for k, v in res["share"].items())
    ops = "; ".join(f"{k}: {v['compute']} compute + {v['views']} view ops" for k, v in res["ops_per_step"].items())
    return (
        f"protocol {res['protocol']}, P={res['P']}: {res['iterations_per_candidate']:,} iterations per candidate at its caps,"
        f" {res['candidate_steps_per_s']:.1f} candidate-steps/s over the whole protocol\n  time: {shares}\n  one step: {ops}"
    )


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
