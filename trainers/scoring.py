"""Scoring a batched model (both NMSE definitions) and the per-candidate result record."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from nasdun.core.errors import NasdunError
from search_spaces.genotype import Genotype
from trainers.metrics import NmseAccumulator
from trainers.model import UnrolledLISTA
from trainers.problems.make import Split, synthesize
from trainers.rows import metric_names

# Per evaluation chunk: candidates x samples x n x layers, by device type. On a CPU, small enough that a
# chunk's pointwise work stays in cache (a 1,024-sample validation of 16 candidates at `small`: 80 -> 46 ms,
# benchmarks/NOTES.md row 7). A device type not listed gets eval_floats()'s rule.
EVAL_FLOATS: dict[str, int] = {"cpu": 1 << 21}


def eval_floats(device: torch.device) -> int:
    """Floats one evaluation chunk may hold on ``device``: EVAL_FLOATS by type, else (CUDA) a 64th of the
    device's memory, between 2^26 and 2^30 floats.

    Measured on an H200 (2026-12-04, docs/results/gpu.md, benchmarks/eval_chunk.py): at paper size with P = 256
    a 2^26 budget leaves 16 samples per chunk and the trainer runs at 453 candidate-steps/s; 2^28, 952; 2^30,
    1,056. The rule reads the device's total memory, not its free memory, so one device model always chunks
    alike (the sums' order, hence the last bits, do not depend on what else runs).
    """
    if device.type in EVAL_FLOATS:
        return EVAL_FLOATS[device.type]
    if device.type == "cuda":
        return gpu_eval_floats(torch.cuda.get_device_properties(device).total_memory)
    return 1 << 26


def gpu_eval_floats(total_bytes: int) -> int:
    """A 64th of a GPU's memory in floats, between 2^26 (a 4 GiB card) and 2^30 (64 GiB and up)."""
    return int(min(1 << 30, max(1 << 26, total_bytes // 64)))


@dataclass
class CandidateResult:
    """What the trainer reports for one candidate.

    NMSE values are at layer K, except for a candidate ``stopped`` by successive halving:
    its values are at ``rung_layer``, the last layer it was trained to. ``rung`` counts the
    rungs it passed (a candidate trained to the end of a halving protocol has passed them all).
    """

    genotype: Genotype
    status: str = "ok"  # "ok", "failed" or "stopped" (successive halving)
    reason: str = ""
    rung: int = 0
    rung_layer: int = 0
    iterations: int = 0
    wall_s: float = 0.0
    val_nmse_db: float = math.nan
    val_nmse_db_mean: float = math.nan
    test_nmse_db: float = math.nan
    test_nmse_db_mean: float = math.nan
    curves: dict[str, list[float]] = field(default_factory=dict)  # "{split}_{metric}" -> per layer
    stages: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, torch.Tensor] = field(default_factory=dict)
    psnr: dict[str, float] = field(default_factory=dict)  # image settings: test image -> PSNR (dB) at its final layer

    def metrics(self) -> dict[str, Any]:
        """The plain-data part (what a results-table row and a Ray report carry)."""
        out = {k: getattr(self, k) for k in metric_names()}  # the row's trainer part (trainers.rows.METRICS)
        if self.psnr:  # image settings: the mean and each test image's PSNR as columns
            out["test_psnr"] = sum(self.psnr.values()) / len(self.psnr)
            out.update({f"psnr_{name}": value for name, value in self.psnr.items()})
        return out


@dataclass
class Progress:
    """A snapshot passed to the progress callback at each validation."""

    iteration: int
    active: int
    done: int
    failed: int
    total: int
    best_layer: int
    elapsed_s: float
    layers: int = 0  # K
    min_layer: int = 0  # the shallowest layer a candidate still in training is at
    stage: int = 0  # the latest stage (1-based) among candidates in training
    stages_per_layer: int = 0
    fraction_done: float = 0.0  # stages finished over all stages of all candidates
    deadline_s: float = 0.0  # 0: no time limit

    def eta_s(self) -> float:
        """Seconds left, assuming the remaining stages take as long as the finished ones on average
        (deeper layers cost more, so this is a lower bound early on); capped by the time limit."""
        eta = self.elapsed_s * (1 - self.fraction_done) / self.fraction_done if self.fraction_done > 0 else float("inf")
        return min(eta, max(self.deadline_s - self.elapsed_s, 0.0)) if self.deadline_s else eta


def _chunks(model: UnrolledLISTA, split: Split, T: int) -> Iterator[tuple[int, int]]:
    n = max(split.x.shape[1], model.Wx.shape[-1])
    budget = eval_floats(split.x.device)
    chunk = max(1, budget // max(1, model.P * n * T))
    for start in range(0, split.x.shape[0], chunk):
        yield start, min(start + chunk, split.x.shape[0])


def evaluate(
    model: UnrolledLISTA,
    split: Split,
    upto: int | None = None,
    layer: torch.Tensor | None = None,
    psi: torch.Tensor | None = None,
    layers: Sequence[int] | None = None,
) -> NmseAccumulator:
    """Both NMSE sums for every layer 1..upto and every candidate: shapes (upto, P).

    With ``layer`` (P,) of 1-based layers, only candidate p's x(layer[p]) is scored: shapes (P,); ``layers``, its
    distinct values where the caller has them on the host (the trainer's validation: then nothing is read back from
    the device before the evaluation is queued; else they are read from ``layer``).
    With a synthesis basis ``psi`` (n_f, n), what is scored is psi x against the split's signals.
    """
    T = (model.K if layer is None else int(layer.max())) if upto is None else upto
    acc = NmseAccumulator()
    if layer is None:
        layers = []
    else:
        layers = sorted({int(v) for v in (layer.tolist() if layers is None else layers)})
    if layers and layers[-1] != T:
        raise NasdunError(f"evaluate: the deepest selected layer is {layers[-1]}, but upto={T}")
    with torch.no_grad():
        for start, end in _chunks(model, split, T):
            outs = model(split.b[start:end], T)
            if layer is None:
                acc.add(synthesize(torch.stack(outs), psi), split.x[start:end])  # (T, P, N, n)
                continue
            sel = outs[T - 1]
            for k in layers[:-1]:  # each candidate's own x(layer[p]), (P, N, n)
                sel = torch.where((layer == k).view(-1, 1, 1), outs[k - 1], sel)
            acc.add(synthesize(sel, psi), split.x[start:end])
    return acc


def image_psnr(model: UnrolledLISTA, split: Split, layout: Sequence[tuple[str, int, int]], psi: torch.Tensor | None, layer: int) -> torch.Tensor:
    """PSNR (dB) of each test image rebuilt from its blocks at ``layer``, pixels clipped to [0, 1]: shape (P, images).
    The blocks tile each image exactly, so an image's MSE is the mean over its blocks' pixels."""
    sq = torch.zeros(model.P, split.x.shape[0], dtype=torch.float64, device=split.x.device)
    with torch.no_grad():
        for start, end in _chunks(model, split, layer):
            f = synthesize(model(split.b[start:end], layer)[layer - 1], psi).clamp(0.0, 1.0)
            sq[:, start:end] = (f - split.x[start:end]).double().pow(2).sum(-1)
    return _psnr(sq, layout, split.x.shape[1])


def image_psnr_of(f: torch.Tensor, truth: torch.Tensor, layout: Sequence[tuple[str, int, int]]) -> torch.Tensor:
    """PSNR (dB) of each test image from reconstructed blocks ``f`` (N, n_f), clipped to [0, 1]: shape (images,)."""
    sq = (f.clamp(0.0, 1.0) - truth).double().pow(2).sum(-1)
    return _psnr(sq[None], layout, truth.shape[1])[0]


def _psnr(sq: torch.Tensor, layout: Sequence[tuple[str, int, int]], block: int) -> torch.Tensor:
    """Per-block squared errors (P, N), blocks in image order, to each image's PSNR (P, images)."""
    out, first = [], 0
    for _, h, w in layout:
        count = (h * w) // block
        mse = sq[:, first : first + count].sum(-1) / (h * w)
        out.append(10 * torch.log10(1.0 / mse.clamp(min=1e-30)))
        first += count
    return torch.stack(out, dim=1)
