"""The stage-wise population trainer: P candidates trained at once, each as if alone.

Every candidate p carries its own layer ``t[p]``, stage ``s[p]``, iteration counters,
patience counter, Adam state and best-so-far parameters. Candidate p's training batch at
its own iteration i is the batch the problem serves for iteration i, so its data stream does
not depend on the cohort; one step runs the batched forward up to the deepest active layer
and takes for each candidate the squared error of its own x(t[p]):

.. math::  \\ell_p = \\frac{1}{2B}\\sum_{s=1}^{B} \\|x_s(t_p) - x^*_s\\|^2, \\qquad
           \\mathcal L = \\sum_{p\\ \\mathrm{active}} \\ell_p .

Candidates share no parameters, so :math:`\\partial\\mathcal L/\\partial\\phi_p =
\\partial\\ell_p/\\partial\\phi_p`: the gradient each candidate sees is the one it would see
alone. Adam is applied per element with per-candidate step counts, learning rates and a
trainable mask (the parameters its stage may move), and is reset at each stage start (the
reference code builds a fresh optimizer per stage). At each stage start and every
``val_every`` iterations the candidate's x(t[p]) is scored on the validation set
(``nmse_db``); the best parameters of a stage are restored when the stage ends. A candidate
that diverges fails, or, under a protocol with ``retries``, first restarts the stage from
those parameters at half its rate.

**Successive halving** (a protocol with ``rungs``): a candidate that finishes the last stage
of a rung layer waits; when every live candidate waits, the best ``ceil(n / eta)`` (at least
``min_survivors``) by validation nmse_db continue and the rest are ``stopped``. Candidates
that no longer train (finished, failed, stopped) are compacted out of the batched tensors,
so they cost nothing afterwards; a survivor's numbers are unchanged by either, since its
data, validations and decisions depend only on its own counters.

The trainer knows nothing of Ray and returns metrics.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasdun.core.errors import NasdunError
from search_spaces.genotype import Genotype
from trainers.adam import BETAS, masked_adam_step, per_candidate
from trainers.host_memory import keep_freed_memory
from trainers.model import UnrolledLISTA
from trainers.options import RunOptions
from trainers.precision import autocast, precision_scope
from trainers.problems.make import Problem, Split
from trainers.protocols import Protocol
from trainers.scoring import CandidateResult, Progress, evaluate, image_psnr
from trainers.state import CandidateState
from trainers.threads import check_threads, thread_scope

__all__ = ["CandidateResult", "PopulationTrainer", "Progress", "evaluate", "train_population"]

COMPACT_FRACTION = 0.25  # compact once this share of the slots no longer trains
GRAPH_WARMUP = 1  # eager steps on a side stream before a CUDA graph is captured (more before a run's first capture)
MODEL_SWITCHES = ("wide_mix", "tied_grads")  # the model's switches (class attributes of UnrolledLISTA), kept when a compaction rebuilds it


def _model_switch(name: str, what: str) -> property:
    """A switch of the model (one of MODEL_SWITCHES, a class attribute of :class:`UnrolledLISTA`, off by default: not
    faster on CPU) set on the trainer, which keeps it across the compactions that rebuild the model."""

    def get(self: PopulationTrainer) -> bool:
        return bool(getattr(self.model, name))

    def set_(self: PopulationTrainer, on: bool) -> None:
        setattr(self.model, name, on)

    return property(get, set_, doc=f"{what} (:attr:`trainers.model.UnrolledLISTA.{name}`).")


class PopulationTrainer:
    """Trains P genotypes on one problem with one protocol; see the module docstring.

    Slots (the leading axis of every tensor) are compacted as candidates stop training;
    ``ids[slot]`` is the candidate's index in ``genotypes`` and in :attr:`results`.
    """

    def __init__(
        self,
        genotypes: Sequence[Genotype],
        problem: Problem,
        protocol: Protocol,
        lr_scale: Sequence[float] | None = None,
        progress: Callable[[Progress], None] | None = None,
        options: RunOptions = RunOptions(),
        checkpoint: str | Path | None = None,
        threads: int | None = None,
    ) -> None:
        if problem.batch_size != protocol.batch_size:
            raise NasdunError(f"problem batch size {problem.batch_size} differs from protocol {protocol.name}'s {protocol.batch_size}")
        if not isinstance(options, RunOptions):
            raise NasdunError(f"options={options!r}; expected a trainers.options.RunOptions", ("options",))
        self.problem, self.protocol, self.progress, self.options = problem, protocol, progress, options  # the device is the problem's
        self.checkpoint = None if checkpoint is None else Path(checkpoint)  # trainers/checkpoint.py
        self.threads = check_threads(threads)  # on a CPU, the run's fixed intra-op thread count (trainers/threads.py)
        self.prune = True  # stage-0 steps without the frozen layers' graph (False: the whole graph, for the equality test)
        self.compact_masks = True  # Adam's masks per (candidate, layer), broadcast (False: full-size, for the equality test)
        self.foreach_adam = True  # Adam's update as one foreach operation per step of it over every parameter (False: per parameter)
        self.cuda_graphs = options.cuda_graphs  # each stage's step replayed as one CUDA graph (_graphed_step; a CUDA device)
        self._graph: tuple[tuple[int, ...], Any, torch.Tensor, torch.Tensor] | None = None  # (batch shapes, graph, static b, x)
        self._graph_warm = 0  # eager steps since the graph was dropped (a capture follows GRAPH_WARMUP of them)
        self._captures = 0  # graphs captured in this run
        if problem.D.device.type == "cpu":
            keep_freed_memory()
        if options.cuda_graphs and problem.D.device.type != "cuda":
            raise NasdunError(f"cuda_graphs on device {problem.D.device}; expected a CUDA device (CUDA graphs replay GPU kernels)", ("cuda_graphs",))
        self.model = UnrolledLISTA(genotypes, problem.D, lam=protocol.lam, coef_init=protocol.coef_init, compile=options.compile)  # on D's device
        K, P, dev = self.model.K, self.model.P, problem.D.device
        bad_rungs = [r for r in protocol.rungs if not 1 <= r < K]
        if bad_rungs:
            raise NasdunError(f"protocol {protocol.name}: rungs {bad_rungs} are not layers 1..{K - 1} of this K={K} cohort")
        scale = [1.0] * P if lr_scale is None else list(lr_scale)
        if len(scale) != P:
            raise NasdunError(f"lr_scale has {len(scale)} entries; expected one per candidate ({P})")
        self.lrs = torch.tensor(protocol.lrs, dtype=problem.D.dtype, device=dev)
        # The stage rule's validation set (docs/design.md §5): the first val_subset samples; the whole set where it is no larger.
        val = problem.val
        self.val_rule = val if val.x.shape[0] <= protocol.val_subset else type(val)(val.b[: protocol.val_subset], val.x[: protocol.val_subset])
        self._bind_params()
        # Control state (layer, stage, counters, flags) lives on the host (it changes only at
        # validations, which read the device anyway); _sync_state mirrors it to the device and
        # rebuilds the per-stage caches, so a training step needs no host-device synchronisation.
        self.c = CandidateState(
            best={k: v.detach().clone() for k, v in self.params.items()},
            m={k: torch.zeros_like(v) for k, v in self.params.items()},
            v={k: torch.zeros_like(v) for k, v in self.params.items()},
            step=torch.zeros(P, dtype=problem.D.dtype, device=dev),
            stage_iter=torch.zeros(P, dtype=torch.long, device=dev),
            best_val=torch.full((P,), math.inf, dtype=torch.float64, device=dev),
            best_at=torch.zeros(P, dtype=torch.long, device=dev),
            bad=torch.zeros(P, dtype=torch.bool, device=dev),
            lr_scale=torch.tensor(scale, dtype=problem.D.dtype, device=dev),
            ids=np.arange(P),
            t_h=np.ones(P, dtype=np.int64),
            s_h=np.zeros(P, dtype=np.int64),
            it_h=np.zeros(P, dtype=np.int64),
            active_h=np.ones(P, dtype=bool),
            waiting_h=np.zeros(P, dtype=bool),
            retries_h=np.zeros(P, dtype=np.int64),
        )
        self.results = [CandidateResult(g) for g in genotypes]
        self.iteration = 0  # steps taken by the cohort
        self._sync_state()

    def _bind_params(self) -> None:
        self.params = dict(self.model.named_parameters())
        self.layer_of = self.model.param_layers()

    def _sync_state(self) -> None:
        self._drop_graph()  # the step reads what is rebuilt here
        dev = self.c.step.device
        self.t = torch.as_tensor(self.c.t_h, device=dev)
        self.s = torch.as_tensor(self.c.s_h, device=dev)
        self.active = torch.as_tensor(self.c.active_h, device=dev)
        self._active_f = self.active.to(self.c.step.dtype)
        self._lr = self.lrs[self.s.clamp(max=len(self.protocol.lrs) - 1)] * self.c.lr_scale * self._active_f
        caps = [self.protocol.stage_cap(int(t), int(s), self.model.K) for t, s in zip(self.c.t_h, self.c.s_h, strict=True)]
        self._cap = torch.tensor(caps, dtype=torch.long, device=dev)  # each candidate's current stage cap
        live = self.c.t_h[self.c.active_h]
        self._T = int(live.max()) if live.size else 1
        self._val_layers = sorted({int(t) for t in np.minimum(self.c.t_h, self._T)})  # the validated layers, on the host
        self._loss_layers = {int(k): (self.active & (self.t == int(k))) for k in np.unique(live)}
        self._wm, self._wv = {}, {}
        for name, p in self.params.items():
            mask = self._trainable(name, p).to(p.dtype)
            self._wm[name], self._wv[name] = (1 - BETAS[0]) * mask, (1 - BETAS[1]) * mask  # trainers.adam's w * (1 - beta)
        # Stage 0 of layer t trains only layer t's new parameters: with every active candidate in a stage 0, layers below
        # the shallowest t run without a graph, and Adam skips the parameters no candidate may move (their update is
        # exactly zero: masked, with moments reset at the stage start). Same bits, a smaller backward (docs/design.md §5).
        act = self.c.active_h
        in_stage0 = bool(act.any()) and bool((self.c.s_h[act] == 0).all())
        self._frozen = int(self.c.t_h[act].min()) - 1 if in_stage0 and self.prune else 0
        moving = torch.stack([self._wm[name].any() for name in self.params]).cpu().tolist() if self.prune else [True] * len(self.params)
        self._moving = dict(zip(self.params, moving, strict=True))
        self._moving_params = {name: p for name, p in self.params.items() if self._moving[name]}  # what a step differentiates and steps

    wide_mix = _model_switch("wide_mix", "The model's LWA pre-mix in one pass per layer")
    tied_grads = _model_switch("tied_grads", "The tied weights' gradients (W_x, a shared W) as one matmul over the layers")

    def jump_to(self, layer: int, stage: int) -> None:
        """Put every active candidate at (layer, stage) with fresh moments (benchmarks, tests)."""
        if not (1 <= layer <= self.model.K and 0 <= stage < self.protocol.stages_per_layer):
            raise NasdunError(f"jump_to({layer}, {stage}) is outside layers 1..{self.model.K}, stages 0..{self.protocol.stages_per_layer - 1}")
        self.c.t_h[self.c.active_h], self.c.s_h[self.c.active_h] = layer, stage
        self._sync_state()
        self._reset_moments(self.active)

    # -- one iteration ------------------------------------------------------------------------
    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each active candidate's batch of its own iteration: shared (B, .) while they agree."""
        its = np.unique(self.c.it_h[self.c.active_h])
        if its.size == 1:
            return self.problem.train_batch(int(its[0]))
        pairs = {int(i): self.problem.train_batch(int(i)) for i in np.unique(self.c.it_h)}
        b = torch.stack([pairs[int(i)][0] for i in self.c.it_h])  # (P, B, m)
        x = torch.stack([pairs[int(i)][1] for i in self.c.it_h])  # (P, B, n)
        return b, x

    def train_step(self) -> None:
        b, x = self._batch()
        if self.cuda_graphs:
            self._graphed_step(b, x)
        else:
            self._step(b, x)
        self.iteration += 1
        self.c.it_h += self.c.active_h

    def _step(self, b: torch.Tensor, x: torch.Tensor) -> None:
        """One iteration's device work on batch (b, x): forward, loss, gradients, Adam, the device counters. No host
        synchronisation and no host state, so a CUDA graph can replay it (:meth:`_graphed_step`)."""
        with autocast(self.options.precision, self.c.step.device):
            outs = self.model(b, self._T, frozen=self._frozen)
        loss_p = torch.zeros_like(self.c.step)
        for k, sel in self._loss_layers.items():  # usually one or two distinct layers
            err = 0.5 * (self.problem.synthesize(outs[k - 1].float()) - x).pow(2).sum((-2, -1)) / x.shape[-2]  # (P,)
            loss_p = torch.where(sel, err, loss_p)
        self.c.bad |= self.active & ~torch.isfinite(loss_p)
        grads = torch.autograd.grad(loss_p.sum(), list(self._moving_params.values()), materialize_grads=True)
        self._adam(grads)
        self.c.stage_iter += self.active.long()

    def _graphed_step(self, b: torch.Tensor, x: torch.Tensor) -> None:
        """:meth:`_step` as one CUDA graph: captured once the stage's state is settled (after GRAPH_WARMUP eager steps on a
        side stream, as CUDA graphs require), then replayed on static copies of each batch; the same kernels on the same
        tensors, so the same bits. Whatever the step reads from the host (the stage's masks, rates, moving parameters, the
        model after a compaction, the state tensors rebound at a stage start) is rebuilt only in :meth:`_sync_state` and
        :meth:`_reset_moments` (which every stage start calls), and they drop the graph; a batch of another shape (candidates at
        other iterations) is captured afresh."""
        key = (*b.shape, *x.shape)
        if self._graph is not None and self._graph[0] == key:
            _, graph, sb, sx = self._graph
            sb.copy_(b)
            sx.copy_(x)
            graph.replay()
            return
        self._graph = None
        if self._graph_warm < (GRAPH_WARMUP if self._captures else GRAPH_WARMUP + 2):  # a run's first capture warms up longer
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._step(b, x)
            torch.cuda.current_stream().wait_stream(side)
            self._graph_warm += 1
            return
        sb, sx = b.clone(), x.clone()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # recorded, not run: the replay below takes this iteration's step
            self._step(sb, sx)
        graph.replay()
        self._graph, self._captures = (key, graph, sb, sx), self._captures + 1

    def _drop_graph(self) -> None:
        self._graph, self._graph_warm = None, 0

    def _adam(self, grads: Sequence[torch.Tensor]) -> None:
        """The masked per-candidate Adam update (:mod:`trainers.adam`) of the active candidates, on the parameters some
        active candidate may move (``_moving_params``, in the order of ``grads``)."""
        self.c.step += self._active_f
        factor = self.protocol.lr_factor(self.c.stage_iter, self._cap)  # the schedule inside the stage (None: constant)
        lr = self._lr if factor is None else self._lr * factor.to(self._lr.dtype)
        masked_adam_step(self._moving_params, grads, self.c.m, self.c.v, self.c.step, lr, self._wm, self._wv, foreach=self.foreach_adam)

    def _trainable(self, name: str, p: torch.Tensor) -> torch.Tensor:
        """Elements candidate q may move: its layer t's new parameters in stage 0, else layers <= t. A mask depends on the
        candidate and the layer alone, so it is kept at their shape and broadcast against ``p`` (for ``Wx``: (P, 1, 1), not
        P·n² values read at every step); ``compact_masks=False`` expands it to ``p``'s shape (the same values)."""
        layer = self.layer_of[name]  # broadcastable to p, its candidate axis included
        t = per_candidate(self.t, p)
        s0 = per_candidate(self.s == 0, p)
        act = per_candidate(self.active, p)
        mask = act & torch.where(s0, layer == t, layer <= t)
        return mask if self.compact_masks else mask.expand(p.shape).contiguous()

    # -- validation and stage logic ----------------------------------------------------------
    def _validate(self) -> torch.Tensor:
        """Validation nmse_db of each candidate's x(t[p]) on the stage rule's set, shape (P,)."""
        return self._score(self.val_rule)

    def _validate_full(self) -> np.ndarray:
        """Validation nmse_db of each candidate's x(t[p]) on the whole validation set (the kept parameters' score)."""
        return self._score(self.problem.val).cpu().numpy()

    def _score(self, split: Split) -> torch.Tensor:
        """nmse_db of each candidate's x(t[p]) on ``split``, the layers taken from the host (no read-back before it runs)."""
        with autocast(self.options.precision, self.c.step.device):
            acc = evaluate(self.model, split, self._T, layer=self.t.clamp(max=self._T), psi=self.problem.psi, layers=self._val_layers)
        return acc.nmse_db()

    def _record_best(self, val: torch.Tensor, mask: torch.Tensor) -> None:
        improved = mask & (val < self.c.best_val)
        self.c.best_val = torch.where(improved, val, self.c.best_val)
        self.c.best_at = torch.where(improved, self.c.stage_iter, self.c.best_at)
        with torch.no_grad():
            for name, p in self.params.items():
                best = self.c.best[name]
                torch.where(per_candidate(improved, p), p, best, out=best)  # in place: no parameter-sized temporary

    def _reset_moments(self, mask: torch.Tensor) -> None:
        self._drop_graph()
        self.c.step = torch.where(mask, 0, self.c.step)
        for name in self.params:
            keep = ~per_candidate(mask, self.c.m[name])
            self.c.m[name].mul_(keep)
            self.c.v[name].mul_(keep)

    def _start_stage(self, mask: torch.Tensor) -> None:
        """Fresh optimizer and patience for the candidates in ``mask``; score their starting point."""
        self.c.stage_iter = torch.where(mask, 0, self.c.stage_iter)
        self.c.best_val = torch.where(mask, math.inf, self.c.best_val)
        self.c.best_at = torch.where(mask, 0, self.c.best_at)
        self._reset_moments(mask)
        self._record_best(self._validate(), mask)

    def _restore_best(self, p: int) -> None:
        with torch.no_grad():
            for name, t in self.params.items():
                t[p].copy_(self.c.best[name][p])

    def _after_validation(self, val: torch.Tensor, elapsed: float) -> None:
        proto = self.protocol
        diverged = self.active & (self.c.bad | ~torch.isfinite(val) | (val > proto.diverge_db))
        self._record_best(val, self.active & ~diverged)
        stale = (self.c.stage_iter - self.c.best_at >= proto.patience) | (self.c.stage_iter >= self._cap)
        ended = self.active & ~diverged & stale
        if not bool((diverged | ended).any()):
            return
        host = torch.stack([diverged.long(), ended.long(), self.c.bad.long(), self.c.stage_iter]).cpu().numpy()
        val_h, best_h = val.cpu().numpy(), self.c.best_val.cpu().numpy()
        started = np.zeros_like(self.c.active_h)
        for p in map(int, np.flatnonzero(host[0] | host[1])):
            self._restore_best(p)  # best of the stage; for a failed candidate, finite numbers
        full_h = self._validate_full() if self.val_rule is not self.problem.val and host[1].any() else None
        for p in map(int, np.flatnonzero(host[0] | host[1])):
            r, t, s = self.results[self.c.ids[p]], int(self.c.t_h[p]), int(self.c.s_h[p])
            if host[0][p]:
                why = "non-finite training loss" if host[2][p] else f"validation nmse_db {val_h[p]:.4g} (limit {proto.diverge_db})"
                tries = int(self.c.retries_h[p])
                if tries < proto.retries:  # restart the stage from its best parameters (restored above) at half the rate
                    r.stages.append({"layer": t, "stage": s + 1, "iters": int(host[3][p]), "best_val_nmse_db": float(best_h[p]),
                                     "diverged": why, "lr_scale": float(self.c.lr_scale[p])})  # fmt: skip
                    self.c.retries_h[p] = tries + 1
                    r.reason = f"{tries + 1} restart{'s' * (tries > 0)} at half the rate, the last at layer {t} stage {s + 1} ({why})"
                    self.c.lr_scale[p] *= 0.5
                    self.c.bad[p] = False
                    started[p] = True
                    continue
                after = f" (after {tries} restart{'s' * (tries > 1)} at half the rate)" if tries else ""
                r.status, r.reason = "failed", f"diverged at layer {t} stage {s + 1}{after}: {why}"
                r.iterations = int(self.c.it_h[p])
            else:
                r.stages.append({"layer": t, "stage": s + 1, "iters": int(host[3][p]), "best_val_nmse_db": float(best_h[p])})
                if full_h is not None:  # the kept parameters scored on the whole validation set
                    r.stages[-1]["kept_val_nmse_db_full"] = float(full_h[p])
                last_stage = s + 1 == proto.stages_per_layer
                if last_stage and t in proto.rungs:
                    self.c.waiting_h[p] = True  # at a rung: wait for the rest of the cohort
                elif last_stage and t == self.model.K:
                    r.iterations = int(self.c.it_h[p])
                else:
                    self.c.t_h[p], self.c.s_h[p] = (t, s + 1) if not last_stage else (t + 1, 0)
                    started[p] = True
                    continue
            r.wall_s = elapsed
            self.c.active_h[p] = False
        self._sync_state()
        if started.any():
            self._start_stage(torch.as_tensor(started, device=self.c.step.device))
        if self.c.waiting_h.any() and not self.c.active_h.any():
            self._halve(elapsed)
        elif self.c.active_h.any() and (~self.c.active_h & ~self.c.waiting_h).mean() >= COMPACT_FRACTION:
            self._compact()

    def _halve(self, elapsed: float) -> None:
        """Every live candidate waits at the same rung: keep the best ceil(n / eta), stop the rest."""
        proto = self.protocol
        waiting = np.flatnonzero(self.c.waiting_h)
        layer = int(self.c.t_h[waiting[0]])
        rung = proto.rungs.index(layer) + 1
        scores = self.c.best_val.cpu().numpy()
        # rank by the rung's validation nmse_db; ties go to the earlier candidate of the cohort
        order = sorted(waiting, key=lambda p: (scores[p], self.c.ids[p]))
        keep = max(proto.min_survivors, math.ceil(len(order) / proto.eta))
        for rank, p in enumerate(order):
            r = self.results[self.c.ids[p]]
            r.rung, r.rung_layer = rung, layer
            if rank >= keep:
                r.status = "stopped"
                r.reason = f"stopped at rung {rung} (layer {layer}): rank {rank + 1} of {len(order)}, kept {keep}"
                r.iterations, r.wall_s = int(self.c.it_h[p]), elapsed
        survivors = np.array(order[:keep])
        self.c.waiting_h[:] = False
        self.c.t_h[survivors], self.c.s_h[survivors] = layer + 1, 0
        self.c.active_h[survivors] = True
        if not self._compact():  # every candidate survived the rung: nothing to drop, the new stages still to be seen
            self._sync_state()
        self._start_stage(self.active.clone())

    def _compact(self) -> bool:
        """Score and drop the slots that no longer train; every per-candidate tensor shrinks. False: none to drop."""
        keep = np.flatnonzero(self.c.active_h | self.c.waiting_h)
        drop = np.flatnonzero(~(self.c.active_h | self.c.waiting_h))
        if drop.size == 0:
            return False
        self._store(drop)
        idx = torch.as_tensor(keep, device=self.c.step.device)
        old, switches = self.params, {name: getattr(self.model, name) for name in MODEL_SWITCHES}
        self.model = UnrolledLISTA(
            [self.results[i].genotype for i in self.c.ids[keep]], self.problem.D, self.protocol.lam, self.protocol.coef_init, self.options.compile
        )
        for name, on in switches.items():
            setattr(self.model, name, on)
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                p.copy_(_fit_slots(name, old[name].index_select(0, idx), p))
        self._bind_params()
        self.c = self.c.select(keep)  # every per-candidate field (trainers/state.py)
        for per_name in (self.c.best, self.c.m, self.c.v):  # W's moments and best copy shrink with it; a parameter
            for name in list(per_name):  # no kept candidate has (a gain gate's kappa, nu) goes with its state
                if name in self.params:
                    per_name[name] = _fit_slots(name, per_name[name], self.params[name])
                else:
                    del per_name[name]
        self._sync_state()
        return True

    def _store(self, slots: np.ndarray) -> None:
        """Final parameters and per-layer curves of ``slots``, into their results."""
        with autocast(self.options.precision, self.c.step.device):
            val, test = evaluate(self.model, self.problem.val, psi=self.problem.psi), evaluate(self.model, self.problem.test, psi=self.problem.psi)
            psnr = {}
            if self.problem.layout:  # image settings: each test image's PSNR at each depth a candidate ends at
                ends = [self.results[self.c.ids[p]] for p in slots]
                for d in {int(r.rung_layer) if r.status == "stopped" else self.model.K for r in ends}:
                    psnr[d] = image_psnr(self.model, self.problem.test, self.problem.layout, self.problem.psi, d)
        curves = {
            "val_nmse_db": val.nmse_db(),
            "val_nmse_db_mean": val.nmse_db_mean(),
            "test_nmse_db": test.nmse_db(),
            "test_nmse_db_mean": test.nmse_db_mean(),
        }
        for p in map(int, slots):
            r = self.results[self.c.ids[p]]
            r.params = self.model.candidate_state(p)
            if r.status == "failed":
                continue
            if r.status == "ok":
                r.rung = len(self.protocol.rungs)
            depth = r.rung_layer if r.status == "stopped" else self.model.K
            r.rung_layer = depth
            r.curves = {key: [float(v) for v in c[:depth, p]] for key, c in curves.items()}
            r.val_nmse_db, r.val_nmse_db_mean = r.curves["val_nmse_db"][-1], r.curves["val_nmse_db_mean"][-1]
            r.test_nmse_db, r.test_nmse_db_mean = r.curves["test_nmse_db"][-1], r.curves["test_nmse_db_mean"][-1]
            if psnr:
                r.psnr = {name: float(v) for (name, _, _), v in zip(self.problem.layout, psnr[depth][p], strict=True)}

    # -- the whole run ------------------------------------------------------------------------
    def run(self) -> list[CandidateResult]:
        """Train until every candidate has finished, failed or been stopped (or ``minutes`` ran out).

        With ``checkpoint``: an existing checkpoint there is restored first (the run continues where
        it was cut), and the whole state is saved there every ``options.checkpoint_every_s`` seconds, at
        validation boundaries (:mod:`trainers.checkpoint`); the caller removes it when done.
        """
        from trainers.checkpoint import restore_checkpoint, save_checkpoint

        with precision_scope(self.options.precision), thread_scope(self.threads, self.c.step.device):
            if self.checkpoint is not None and self.checkpoint.is_file():
                start = time.perf_counter() - restore_checkpoint(self, self.checkpoint)
            else:
                start = time.perf_counter()
                self._start_stage(self.active.clone())
            saved = time.perf_counter()
            while self.c.active_h.any():
                for _ in range(self.protocol.val_every):
                    self.train_step()
                elapsed = time.perf_counter() - start
                self._after_validation(self._validate(), elapsed)
                if self.options.minutes and elapsed >= 60 * self.options.minutes and (self.c.active_h | self.c.waiting_h).any():
                    self._stop_all(elapsed)
                if self.progress is not None:
                    self._report(elapsed)
                if self.checkpoint is not None and self.c.active_h.any() and time.perf_counter() - saved >= self.options.checkpoint_every_s:
                    save_checkpoint(self, self.checkpoint, elapsed)
                    saved = time.perf_counter()
            self._store(np.arange(len(self.c.ids)))
        return self.results

    def _stop_all(self, elapsed: float) -> None:
        """The time limit: every candidate still training stops where it is, with its stage's best
        parameters restored; its row is ``stopped`` and scored at the layer it reached."""
        for p in map(int, np.flatnonzero(self.c.active_h | self.c.waiting_h)):
            r, t, s = self.results[self.c.ids[p]], int(self.c.t_h[p]), int(self.c.s_h[p])
            if self.c.active_h[p]:
                self._restore_best(p)
                r.stages.append(
                    {"layer": t, "stage": s + 1, "iters": int(self.c.stage_iter[p]), "best_val_nmse_db": float(self.c.best_val[p]), "cut": True}
                )
            r.status, r.rung_layer, r.iterations, r.wall_s = "stopped", t, int(self.c.it_h[p]), elapsed
            where = f"layer {t} of {self.model.K}, stage {s + 1} of {self.protocol.stages_per_layer}"
            r.reason = f"time limit of {self.options.minutes:g} min reached at {where}, iteration {int(self.c.it_h[p])}"
        self.c.active_h[:] = False
        self.c.waiting_h[:] = False
        self._sync_state()

    def _report(self, elapsed: float) -> None:
        assert self.progress is not None
        status = [r.status for r in self.results]
        n_active = int(self.c.active_h.sum())
        live = self.c.active_h
        per_layer, K = self.protocol.stages_per_layer, self.model.K
        # the work done, as a share of the protocol's whole: a stage of layer t weighs its cap times t (its iterations
        # run t layers), the current stage counts its iterations so far, a candidate that left the cohort counts whole.
        # Stages that end on patience before their cap make this a lower bound, never a share that stalls in a long pass.
        caps = np.array([self.protocol.stage_cap(t, s, K) for t in range(1, K + 1) for s in range(per_layer)])
        work = np.cumsum(np.concatenate([[0], caps * np.repeat(np.arange(1, K + 1), per_layer)]))
        at = (self.c.t_h[live] - 1) * per_layer + self.c.s_h[live]
        inside = np.minimum(self.c.stage_iter.cpu().numpy()[live], caps[at]) * self.c.t_h[live]
        share = float((work[at] + inside).sum()) / work[-1] + (len(status) - int(live.sum()))
        self.progress(
            Progress(
                iteration=self.iteration,
                active=n_active,
                done=len(status) - n_active - int(self.c.waiting_h.sum()) - status.count("failed"),
                failed=status.count("failed"),
                total=len(status),
                best_layer=self._T if n_active else self.model.K,
                elapsed_s=elapsed,
                layers=self.model.K,
                min_layer=int(self.c.t_h[live].min()) if n_active else self.model.K,
                stage=int(self.c.s_h[live].max()) + 1 if n_active else per_layer,
                stages_per_layer=per_layer,
                fraction_done=share / len(status),
                deadline_s=60 * self.options.minutes,
            )
        )


def _fit_slots(name: str, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` (kept candidates' values of parameter ``name``) for the compacted model's ``like``: the same, except a
    shared ``W`` whose per-layer slots go when no untied candidate is left (K slots -> 1): the others read slot 0 alone
    (:meth:`trainers.model.UnrolledLISTA._residual_weights`), so slot 0 is each one's W, its moments and its best copy."""
    if t.shape == like.shape:
        return t
    if name != "W" or like.shape[1] != 1 or t.shape[2:] != like.shape[2:]:
        raise RuntimeError(f"compaction: {name} {tuple(t.shape)} cannot become {tuple(like.shape)}")
    return t[:, :1].contiguous()


def train_population(
    genotypes: Sequence[Genotype],
    problem: Problem,
    protocol: Protocol,
    lr_scale: Sequence[float] | None = None,
    progress: Callable[[Progress], None] | None = None,
    options: RunOptions = RunOptions(),
    checkpoint: str | Path | None = None,
    threads: int | None = None,
) -> list[CandidateResult]:
    """Train ``genotypes`` together under ``protocol``; one result per genotype, in order.

    ``options`` (:class:`trainers.options.RunOptions`; the device is the problem's): ``compile`` fuses each layer's
    pointwise work with torch.compile (same maths; faster on long runs, ~30 s of compilation on a 2-core CPU);
    ``precision`` is ``fp32``, ``tf32`` or ``bf16`` (:mod:`trainers.precision`); ``minutes`` > 0 stops every candidate
    still training after that long (checked at validations): its row is ``stopped`` at the layer it reached.
    ``checkpoint``: a file to save the whole state to every ``options.checkpoint_every_s`` and to resume from
    if it exists (:mod:`trainers.checkpoint`); the results equal an uninterrupted run's. ``threads``: a CPU training's
    intra-op threads, fixed for the run (None: 1, :mod:`trainers.threads` says why).
    """
    return PopulationTrainer(genotypes, problem, protocol, lr_scale, progress, options, checkpoint, threads).run()
