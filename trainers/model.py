r"""One batched unrolled network that evaluates P genotypes (same K, J, m, n) at once.

Layer k of candidate p (docs/design.md §2), from x(0) = 0:

.. math::
    \tilde x(k-1) &= \frac{1}{|P(k)|}\sum_{i \in P(k)} c_{k,i}\, x(i)          && \text{(LWA pre-mix)} \\
    \tilde x(k-1) &\leftarrow g_k(\tilde x(k-1)) \odot \tilde x(k-1)              && \text{(gain gate, gain neurons only)} \\
    z(k) &= W_b b + W_x \tilde x(k-1)                                            && \text{(linear step, ``free`` weights)} \\
    z(k) &= \tilde x(k-1) + \gamma_k W_k (b - D \tilde x(k-1))                   && \text{(the residual kinds)} \\
    u(k) &= \mathrm{neuron}_k(z(k); \theta_k)                                   && \text{(support selection where flagged)} \\
    x(k) &= \Big(1 - h_k - \sum_j q_{k,j}\beta_{k,j}\Big) x(k-1)
            + \sum_j q_{k,j}\beta_{k,j}\, x(k-1-j) + h_k u(k)                    && \text{(LM post-mix)}

with h_k fixed to 1 where layer k has no open lag. The linear step is the network's weight
parameterisation (:mod:`search_spaces.weights`: W_k one matrix or one per layer, gamma_k learned or 1, W fixed for
``analytic``); gain gates and support selection are flags of the neuron type (:mod:`search_spaces.neurons`).
Gates, neuron choices, lags and kinds are masks (buffers); parameters are stacked along a leading candidate axis
P, so candidates of different kinds train in one cohort. P = 1 is the same code path, and it is the code the
export traces (:mod:`nasdun.runs.export`): the update rule is written once, here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from nasdun.core.errors import NasdunError
from search_spaces.genotype import Genotype, common_size
from search_spaces.neurons import GAIN_INIT, NEURONS, PIECEWISE, gain_gate, piecewise, support_count, support_select, uses_gain, uses_support
from search_spaces.weights import WEIGHTS

COEF_INITS = ("ones", "identity")


def lipschitz(D: torch.Tensor) -> float:
    """L = 1.001 ||D||_2^2 (the reference code's step constant)."""
    return 1.001 * float(torch.linalg.matrix_norm(D.double(), ord=2)) ** 2


def lm_coefficients(h: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The LM post-mix of every layer as coefficients (..., 2 + J) on [u(k), x(k-1), x(k-2), ..., x(k-1-J)]:
    h_k, 1 - h_k - sum_j q_kj beta_kj (over every lag, x(0)'s included) and q_kj beta_kj (``h`` (...,) = h_k, ``q`` (..., J) =
    q_k * beta_k; a closed lag's q is 0). The post-mix of the module docstring, stated once: the eager path, the compiled
    kernel and so the export read it."""
    return torch.cat([h[..., None], (1.0 - h - q.sum(-1))[..., None], q], dim=-1)


def fused_layer(names: tuple[str, ...]) -> Callable[..., torch.Tensor]:
    """Neuron choice and LM post-mix of one layer as a single pointwise function (for torch.compile).

    Same maths as the eager path: the neurons are the registry's, the post-mix the coefficients of
    :func:`lm_coefficients` on [u, x(k-1), x(k-2), ...]. When every type in ``names`` is in the piecewise-linear family
    (:data:`search_spaces.neurons.PIECEWISE`) each candidate's type is two numbers and one
    formula serves them all; otherwise every type is evaluated and each candidate takes its own.
    """
    fns = [NEURONS.get(name) for name in names]
    family = all(name in PIECEWISE for name in names)

    def layer(z, theta, kind, coefs, *history):  # type: ignore[no-untyped-def]
        if family:  # kind = (symmetric, slope) per candidate
            u = piecewise(z, theta, kind[:, 0, None, None], kind[:, 1, None, None])
        else:  # kind = one-hot neuron type per candidate
            u = fns[0](z, theta)
            for t in range(1, len(fns)):
                u = torch.where(kind[:, t, None, None] > 0, fns[t](z, theta), u)
        out = coefs[:, 0, None, None] * u
        for j, x in enumerate(history, start=1):
            out = out + coefs[:, j, None, None] * x
        return out

    return layer


class _Combine(torch.autograd.Function):
    """``out[p] = sum_j c[p, j] * xs[j][p]``: per-candidate weighted sum of (P, ...) tensors.

    The LWA pre-mix and the LM post-mix are both this. Autograd through ``stack`` + ``einsum``
    (a batched matmul with an inner dimension of one in its backward) or through a chain of
    ``addcmul`` is several times slower on CPU than this forward (in-place ``addcmul_`` into one
    buffer, nothing copied or saved but references) and backward (``c[p, j] * g`` for each
    input, ``vecdot`` for each coefficient): benchmarks/NOTES.md, row 8.
    """

    @staticmethod
    def forward(ctx, c: torch.Tensor, *xs: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(c, *xs)
        out = xs[0] * c[:, 0].view(-1, *([1] * (xs[0].dim() - 1)))
        for j in range(1, len(xs)):
            out.addcmul_(xs[j], c[:, j].view(-1, *([1] * (xs[j].dim() - 1))))
        return out

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        c, *xs = ctx.saved_tensors
        P = g.shape[0]
        flat = g.reshape(P, -1)
        gc = torch.stack([torch.linalg.vecdot(flat, x.reshape(P, -1)) for x in xs], dim=1) if ctx.needs_input_grad[0] else None
        gxs = [g * c[:, j].view(-1, *([1] * (g.dim() - 1))) if ctx.needs_input_grad[j + 1] else None for j in range(len(xs))]
        return (gc, *gxs)


def combine(c: torch.Tensor, xs: Sequence[torch.Tensor]) -> torch.Tensor:
    """``sum_j c[:, j] * xs[j]`` over the leading candidate axis (see :class:`_Combine`)."""
    return _Combine.apply(c, *xs)  # type: ignore[no-any-return]


def wide_mix(c: torch.Tensor, H: torch.Tensor, k: int) -> torch.Tensor:
    """Layer k's LWA pre-mix from the history buffer: ``c`` (P, k-1) on x(1..k-1) = ``H[:, 1:k]``, one batched matmul in
    ``H``'s dtype (no autocast: the mix is a weighted sum, not a matmul of the network's weights). (P, 1, B·n)."""
    with torch.autocast(H.device.type, enabled=False):
        return torch.bmm(c.to(H.dtype).unsqueeze(1), H[:, 1:k])


class _History:
    """x(0..T) of every candidate in one buffer ``H`` (P, T + 1, B·n), x(0) = 0, for the wide LWA pre-mix; ``G`` is its
    gradient, made by the first backward that needs it. Each layer's output is written once (:class:`_Stash`) and
    each pre-mix reads its origins as one strided slice (:class:`_WideMix`)."""

    def __init__(self, P: int, T: int, x: torch.Tensor, dtype: torch.dtype) -> None:
        self.H = x.new_empty(P, T + 1, x[0].numel(), dtype=dtype)  # the dtype the per-origin sum would promote to
        self.H[:, 0].zero_()
        self.G: torch.Tensor | None = None
        self.covered = 0  # G[:, 1..covered] holds this backward pass's gradients
        self.deepest = 0  # the deepest layer whose pre-mix is wide: its backward comes first in every pass


class _Stash(torch.autograd.Function):
    """x(k) into ``H[:, k]``; backward: x(k)'s own gradient plus what the wide pre-mixes of later layers gathered for
    it in ``G[:, k]``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, hist: _History, k: int) -> torch.Tensor:  # type: ignore[override]
        hist.H[:, k].copy_(x.reshape(x.shape[0], -1))
        ctx.hist, ctx.k = hist, k
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        hist, k = ctx.hist, ctx.k
        return (g + hist.G[:, k].view_as(g) if k <= hist.covered else g), None, None


class _WideMix(torch.autograd.Function):
    """``sum_{i=1}^{k-1} c[:, i-1] x(i)`` as one batched matmul over the history buffer: forward ``c (P, 1, k-1) @ H``;
    backward ``H @ g`` for ``c`` and ``c ⊗ g`` added into ``G`` for the origins, one kernel each, where the per-origin
    :class:`_Combine` takes one kernel per origin in each direction. ``xs`` (x(1..k-1)) are inputs only so autograd
    orders each x(i)'s backward after every pre-mix that reads it; their gradients travel through ``G``."""

    @staticmethod
    def forward(ctx, c: torch.Tensor, hist: _History, k: int, *xs: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(c)
        ctx.hist, ctx.k = hist, k
        hist.deepest = max(hist.deepest, k)
        return wide_mix(c, hist.H, k).view_as(xs[0])

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        (c,) = ctx.saved_tensors
        hist, k = ctx.hist, ctx.k
        H = hist.H[:, 1:k]
        gf = g.reshape(g.shape[0], 1, -1).to(H.dtype)  # (P, 1, B·n)
        with torch.autocast(H.device.type, enabled=False):
            gc = torch.bmm(H, gf.transpose(1, 2)).squeeze(-1).to(c.dtype) if ctx.needs_input_grad[0] else None
            if any(ctx.needs_input_grad[3:]):
                if k == hist.deepest:  # a pass begins (a second one too, with retain_graph): write, do not add
                    hist.covered = 0
                if hist.G is None:
                    hist.G = torch.empty_like(hist.H)
                hist.G[:, 1:k].baddbmm_(c.to(H.dtype).unsqueeze(2), gf, beta=1 if hist.covered else 0)
                hist.covered = max(hist.covered, k - 1)
        return (gc, None, None, *([None] * (k - 1)))


class _Tied:
    """The uses of one tied weight (the same matrix in every layer: W_x, a shared W) in a forward pass, gathered by
    :class:`_TiedUse` so that :class:`_TiedGather` makes the weight's gradient one matmul over the layers' uses."""

    def __init__(self) -> None:
        self.uses: list[tuple[torch.Tensor, torch.Tensor]] = []  # (input, output gradient) of each use, in backward order


class _TiedGather(torch.autograd.Function):
    """The tied weight ``WT`` itself; backward: ``sum_k a_k^T g_k`` over its uses as one batched matmul of the
    concatenated inputs and gradients (autograd: one matmul per use and a sum). Autograd runs this node after every use
    (each takes its output as an input), so every use has been gathered when it runs."""

    @staticmethod
    def forward(ctx, WT: torch.Tensor, tied: _Tied) -> torch.Tensor:  # type: ignore[override]
        ctx.set_materialize_grads(False)  # the uses hand back no gradient: no zero-filled one is made for it
        ctx.tied = tied
        return WT.view_as(WT)

    @staticmethod
    def backward(ctx, g: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        uses, ctx.tied.uses = ctx.tied.uses, []  # a second backward (retain_graph) gathers afresh
        if uses:
            a = torch.cat([u for u, _ in uses], dim=1)  # (P, sum of batches, rows)
            gu = torch.cat([v for _, v in uses], dim=1)
            gw = torch.bmm(a.transpose(1, 2), gu)
            g = gw if g is None else g + gw
        return g, None


class _TiedUse(torch.autograd.Function):
    """``add + a @ WT`` (``add`` None: ``a @ WT``) for a gathered tied weight ``WT`` (the output of :class:`_TiedGather`):
    the gradients of ``add`` and ``a`` as autograd makes them; ``WT``'s is left to the gather, which gets (a, g)."""

    @staticmethod
    def forward(ctx, add: torch.Tensor | None, a: torch.Tensor, WT: torch.Tensor, tied: _Tied) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(a, WT)
        ctx.tied = tied
        return torch.bmm(a, WT) if add is None else torch.baddbmm(add, a, WT)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        a, WT = ctx.saved_tensors
        if ctx.needs_input_grad[2]:
            ctx.tied.uses.append((a, g))
        ga = torch.bmm(g, WT.transpose(1, 2)) if ctx.needs_input_grad[1] else None
        return (g if ctx.needs_input_grad[0] else None), ga, None, None


def tied_matmul(add: torch.Tensor | None, a: torch.Tensor, WT: torch.Tensor, tied: _Tied | None) -> torch.Tensor:
    """``add + a @ WT`` (batched; ``add`` None: no addend), through the gather ``tied`` where there is one."""
    if tied is None:
        return torch.matmul(a, WT) if add is None else torch.baddbmm(add, a, WT)
    return _TiedUse.apply(add, a, WT, tied)  # type: ignore[no-any-return]


class UnrolledLISTA(nn.Module):
    """P unrolled networks in stacked tensors; see the module docstring for the update rule."""

    gate: torch.Tensor
    inv_count: torch.Tensor
    lag: torch.Tensor
    has_lag: torch.Tensor
    onehot: torch.Tensor
    neuron_kind: torch.Tensor
    neuron_perm: torch.Tensor
    neuron_inv: torch.Tensor
    D: torch.Tensor
    Wbar: torch.Tensor
    gained: torch.Tensor
    uses_step: torch.Tensor
    is_analytic: torch.Tensor
    kind_perm: torch.Tensor
    untied: torch.Tensor
    kind_inv: torch.Tensor

    wide_mix = False  # the LWA pre-mixes through a history buffer, one batched matmul each (False: one kernel per origin)
    tied_grads = False  # the tied weights' gradients (W_x, a shared W) as one matmul over the layers (False: one per layer, summed)

    def __init__(self, genotypes: Sequence[Genotype], D: torch.Tensor, lam: float = 0.4, coef_init: str = "ones", compile: bool = False) -> None:
        super().__init__()
        K, J = common_size(genotypes, "the cohort")
        if coef_init not in COEF_INITS:
            raise NasdunError(f"unknown coef_init {coef_init!r}; expected one of {', '.join(COEF_INITS)}")
        P, (m, n) = len(genotypes), D.shape
        # Built on the CPU from a CPU copy of D, then moved to D's device (the last line): the masks,
        # the Lipschitz constant and the ISTA initialisation are then the same bits on every device.
        device, D = D.device, D.detach().cpu()
        self.genotypes = list(genotypes)
        self.K, self.J, self.P = K, J, P
        self.neuron_names = sorted({name for g in genotypes for name in g.neurons})

        dtype = D.dtype
        gate = torch.zeros(P, K, K, dtype=dtype)  # gate[p, k-1, i-1]: layer k reads x(i), i >= 1
        lag = torch.zeros(P, K, max(J, 1), dtype=dtype)  # lag[p, k-1, j-1]
        onehot = torch.zeros(P, K, len(self.neuron_names), dtype=dtype)
        for p, g in enumerate(genotypes):
            for k in range(2, K + 1):
                gate[p, k - 1, [i - 1 for i in g.inputs[k - 1]]] = 1.0
            for k in range(1, K + 1):
                lag[p, k - 1, [j - 1 for j in g.lags[k - 1]]] = 1.0
                onehot[p, k - 1, self.neuron_names.index(g.neurons[k - 1])] = 1.0
        count = gate.sum(-1).clamp(min=1.0)  # |P(k)|; layer 1 reads x(0) alone
        self.register_buffer("gate", gate)
        self.register_buffer("inv_count", 1.0 / count)
        self.register_buffer("lag", lag)
        self.register_buffer("has_lag", lag.sum(-1) > 0)
        self.register_buffer("onehot", onehot)
        flagged = any(uses_support(name) or uses_gain(name) for name in self.neuron_names)
        compile = compile and not flagged  # support selection and gain gates need the layer: those cohorts run the eager path
        if compile:  # the fused kernel's neuron per candidate and layer: (symmetric, slope) in the family, else the one-hot
            in_family = all(name in PIECEWISE for name in self.neuron_names)
            table = torch.tensor([PIECEWISE[name] for name in self.neuron_names], dtype=dtype) if in_family else None
            self.register_buffer("neuron_kind", onehot if table is None else torch.einsum("pkt,tc->pkc", onehot, table))

        L = lipschitz(D)
        Dd = D.double()
        eye = torch.eye(n, dtype=torch.float64)
        self.Wb = nn.Parameter((Dd.T / L).to(dtype).expand(P, n, m).clone())
        self.Wx = nn.Parameter((eye - Dd.T @ Dd / L).to(dtype).expand(P, n, n).clone())
        self.theta = nn.Parameter(torch.full((P, K), lam / L, dtype=dtype))
        coef = torch.ones(P, K, K, dtype=dtype)
        if coef_init == "identity":  # every genotype starts as ISTA: xt(k-1) = x(k-1)
            coef = torch.zeros(P, K, K, dtype=dtype)
            idx = torch.arange(1, K)
            coef[:, idx, idx - 1] = count[:, 1:].to(dtype)
        self.coef = nn.Parameter(coef)
        self.h = nn.Parameter(torch.ones(P, K, dtype=dtype))
        self.beta = nn.Parameter(torch.full((P, K, max(J, 1)), -0.5, dtype=dtype))
        self._init_weight_kinds(genotypes, Dd, L, dtype)
        self._init_neuron_flags(genotypes, dtype)
        # Per layer, the neuron types and lags some candidate uses (no work for what nobody uses).
        # Mixed layers: candidates grouped by neuron type (stable order), so each type's function
        # runs on its own candidates only; neuron_inv puts the groups back in candidate order.
        types = onehot.argmax(-1)  # (P, K)
        perm = torch.stack([torch.sort(types[:, k], stable=True).indices for k in range(K)])  # (K, P)
        self.register_buffer("neuron_perm", perm)
        self.register_buffer("neuron_inv", torch.argsort(perm, dim=1))
        counts = [torch.bincount(types[:, k], minlength=len(self.neuron_names)).tolist() for k in range(K)]
        self._neuron_groups = [[(t, c) for t, c in enumerate(counts[k]) if c] for k in range(K)]
        # Per layer, the origins some candidate's gate opens (layer 1 reads x(0) = 0 and has none).
        self._layer_inputs = [[i for i in range(1, k) if gate[:, k - 1, i - 1].any()] for k in range(1, K + 1)]
        self._layer_lags = [[j for j in range(1, J + 1) if lag[:, k - 1, j - 1].any()] for k in range(1, K + 1)]  # validated: j <= k-1
        # Optional: neuron + LM mix of a layer as one torch.compile'd pointwise kernel (same maths).
        self._fused = torch.compile(fused_layer(tuple(self.neuron_names)), dynamic=None) if compile else None
        self.to(device)

    def _init_weight_kinds(self, genotypes: Sequence[Genotype], Dd: torch.Tensor, L: float, dtype: torch.dtype) -> None:
        """The residual kinds' parameters (W, gamma) and masks, where some candidate of the cohort uses them."""
        from trainers.analytic import analytic_weight

        kinds = [WEIGHTS.get(g.weights) for g in genotypes]
        P, K, (m, n) = self.P, self.K, Dd.shape
        residual = torch.tensor([k.residual for k in kinds])
        self._untied = [k.untied for k in kinds]
        self._residual = [k.residual for k in kinds]
        # the residual candidates' mix as plain bools (read while tracing, where the buffers are symbolic)
        res = [k for k in kinds if k.residual]
        self._mix = {flag: (all(getattr(k, flag) for k in res), any(getattr(k, flag) for k in res)) for flag in ("untied", "analytic", "step")}
        self.register_buffer("untied", torch.tensor(self._untied))
        # Candidates grouped by family (free first, stable order), as the neurons are: each family's step runs on its own.
        perm = torch.sort(residual.long(), stable=True).indices
        self.register_buffer("kind_perm", perm)
        self.register_buffer("kind_inv", torch.argsort(perm))
        self._n_free = int((~residual).sum())
        self.register_buffer("uses_step", torch.tensor([k.step for k in kinds]))
        self.register_buffer("is_analytic", torch.tensor([k.analytic for k in kinds]))
        if not bool(residual.any()):
            return
        self.register_buffer("D", Dd.to(dtype))
        slots = K if any(self._untied) else 1  # a W per layer where some candidate is untied; else one
        self.W = nn.Parameter((Dd.T / L).to(dtype).expand(P, slots, n, m).clone())  # W_k (n, m), the reference code's D^T / L
        self.gamma = nn.Parameter(torch.ones(P, K, dtype=dtype))
        self.register_buffer("Wbar", analytic_weight(Dd).T.to(dtype) if bool(self.is_analytic.any()) else torch.zeros(0, dtype=dtype))

    def _init_neuron_flags(self, genotypes: Sequence[Genotype], dtype: torch.dtype) -> None:
        """Gain gates' parameters (kappa, nu per layer) where some candidate has a gain-gated layer."""
        gained = torch.tensor([[uses_gain(name) for name in g.neurons] for g in genotypes])  # (P, K)
        self.register_buffer("gained", gained)
        self._gain_layers = [bool(gained[:, k].any()) for k in range(self.K)]
        self._support = [uses_support(name) for name in self.neuron_names]  # by neuron type index
        if any(self._gain_layers):
            self.kappa = nn.Parameter(torch.full((self.P, self.K), GAIN_INIT[0], dtype=dtype))
            self.nu = nn.Parameter(torch.full((self.P, self.K), GAIN_INIT[1], dtype=dtype))

    def param_layers(self) -> dict[str, torch.Tensor]:
        """For each parameter, the layer that adds it, broadcastable to the parameter (its leading axis P included).

        Wb and Wx belong to layer 1; theta, the c row, h, beta, gamma, kappa and nu to their own layer; a shared W
        to layer 1, an untied W_k to layer k; an ``analytic`` candidate's W to no layer (K + 1: never trained).
        """
        dev = self.theta.device
        ks = torch.arange(1, self.K + 1, device=dev)[None]  # (1, K)
        one = torch.ones((), dtype=torch.long, device=dev)
        out = {"Wb": one, "Wx": one, "theta": ks, "coef": ks[..., None], "h": ks, "beta": ks[..., None]}
        if hasattr(self, "W"):
            slots = self.W.shape[1]
            layer = torch.where(self.untied[:, None], torch.arange(1, slots + 1, device=dev)[None], 1)  # (P, slots)
            layer = torch.where(self.is_analytic[:, None], self.K + 1, layer)
            out["W"] = layer[..., None, None]
            out["gamma"] = ks
        if hasattr(self, "kappa"):
            out["kappa"], out["nu"] = ks, ks
        return out

    def forward(self, b: torch.Tensor, upto: int | None = None, frozen: int = 0) -> list[torch.Tensor]:
        """Outputs x(1..upto), each (P, B, n), for measurements ``b`` of shape (B, m). ``frozen`` = f > 0: layers 1..f and
        the parameters of layer 1 (W_b, W_x, a shared W) are constants for autograd (a stage 0 of layer f + 1: the same
        values, no graph behind them)."""
        T = self.K if upto is None else int(upto)
        if not 1 <= T <= self.K:
            raise NasdunError(f"upto={T} is outside 1..{self.K}")
        grad = torch.is_grad_enabled()
        frozen = frozen if self._fused is None else 0  # the compiled kernel is kept to its training variants (see below)
        Wb, Wx = (self.Wb.detach(), self.Wx.detach()) if frozen else (self.Wb, self.Wx)
        WbT, WxT = Wb.transpose(1, 2), Wx.transpose(1, 2)
        if 0 < self._n_free < self.P:  # mixed kinds: the free family's weights, selected once per forward
            free = self.kind_perm[: self._n_free]
            WbT, WxT = WbT.index_select(0, free), WxT.index_select(0, free)
        Bb = torch.matmul(b, WbT) if self._n_free else None  # (P_free, B, n), the free kind's W_b b
        # tied_grads: a tied weight's gradient as one matmul over its uses (_TiedGather), fp32/fp64 training only (under
        # autocast each layer's matmul runs in its own precision, which the gathered product would not reproduce)
        gather = self.tied_grads and grad and not torch.is_autocast_enabled(b.device.type)
        wx_tied = _Tied() if gather and not frozen and self._n_free else None
        if wx_tied is not None:
            WxT = _TiedGather.apply(WxT, wx_tied)
        zero = b.new_zeros(()).expand(self.P, b.shape[0], self.Wx.shape[-1])  # x(0) = 0 as a broadcast view: no memory, no fill
        xs = [zero]  # xs[i] = x(i)
        w = self.coef * self.gate * self.inv_count[..., None]  # (P, K, K) LWA weights
        hk = torch.where(self.has_lag, self.h, torch.ones_like(self.h))
        qb = self.lag * self.beta  # (P, K, J)
        # Each layer's row of the per-layer parameters, taken once per forward (``unbind``): their gradients are one stack
        # of the rows, where a row selected in every layer has a zero-filled full-size gradient per layer and their sum
        # (the same values: each element of a row's gradient comes from one layer).
        rows = w.unbind(1)  # (P, K) per layer
        # (P, 2 + J) per layer, where some layer mixes its history (the compiled kernel always reads them)
        lm = lm_coefficients(hk, qb).unbind(1) if self._fused is not None or any(self._layer_lags[:T]) else ()
        thetas: Sequence[torch.Tensor] = self.theta[:, :, None, None].unbind(1)  # (P, 1, 1) per layer
        gains = (self.kappa[:, :, None, None].unbind(1), self.nu[:, :, None, None].unbind(1)) if any(self._gain_layers[:T]) else None
        residual = self._residual_weights(frozen, gather)
        # The compiled kernel serves training only: evaluation (no grad) is a second set of
        # compiled variants, and with the shapes and requires-grad patterns of a protocol they
        # exceed torch.compile's recompile limit, past which it runs the kernel's Python
        # unfused - slower than the eager path (NOTES row 13).
        fused = self._fused if torch.is_grad_enabled() else None
        if fused is None and any(len(g) > 1 for g in self._neuron_groups[:T]):  # a layer's neuron groups read its thresholds
            grouped = self.theta.gather(0, self.neuron_perm.T)[:, :, None, None].unbind(1)  # in their order: one gather
            thetas = [grouped[k] if len(g) > 1 else thetas[k] for k, g in enumerate(self._neuron_groups)]
        # The wide pre-mix (:class:`_WideMix`) where some layer reads two or more earlier outputs.
        wide = self.wide_mix and any(len(o) > 1 for o in self._layer_inputs[:T])
        hist: _History | None = None
        try:
            for k in range(1, T + 1):
                if frozen:  # (no grad-mode call otherwise: the export traces this code)
                    torch.set_grad_enabled(grad and k > frozen)
                if k == 1:
                    xt = None  # x(0) = 0: no mix, no gain
                else:
                    origins = self._layer_inputs[k - 1]  # closed for every candidate: no work
                    if hist is not None and len(origins) > 1:  # every x(i), i < k, in one pass (a closed one's weight is 0)
                        c = rows[k - 1][:, : k - 1]
                        xt = _WideMix.apply(c, hist, k, *xs[1:k]) if torch.is_grad_enabled() else wide_mix(c, hist.H, k).view_as(xs[1])
                    else:
                        cols = slice(0, k - 1) if len(origins) == k - 1 else [i - 1 for i in origins]  # a view when all are open
                        xt = combine(rows[k - 1][:, cols], [xs[i] for i in origins])  # (P, B, n)
                    if gains is not None and self._gain_layers[k - 1]:
                        gated = gain_gate(xt, gains[0][k - 1], gains[1][k - 1])
                        xt = torch.where(self.gained[:, k - 1, None, None], gated, xt)
                z = self.linear_step(k, xt, b, Bb, WxT, residual, wx_tied)
                if fused is not None:
                    lags = [xs[k - 1 - j] if k - 1 - j > 0 else zero for j in range(1, self.J + 1)]
                    xs.append(fused(z, thetas[k - 1], self.neuron_kind[:, k - 1], lm[k - 1], xs[k - 1], *lags))
                else:
                    xs.append(self._lm_mix(k, self._neuron(k, z, thetas[k - 1]), xs, lm[k - 1] if lm else None))
                if wide and k < T:  # the history buffer holds every output a later pre-mix reads
                    hist = hist or _History(self.P, T, xs[k], torch.promote_types(xs[k].dtype, w.dtype))
                    if torch.is_grad_enabled():
                        xs[k] = _Stash.apply(xs[k], hist, k)
                    else:
                        hist.H[:, k].copy_(xs[k].reshape(self.P, -1))
        finally:
            if frozen:
                torch.set_grad_enabled(grad)
        return xs[1:]

    def linear_step(
        self,
        k: int,
        xt: torch.Tensor | None,
        b: torch.Tensor,
        Bb: torch.Tensor | None,
        WxT: torch.Tensor,
        residual: tuple[list[torch.Tensor], list[torch.Tensor | None], _Tied | None],
        wx_tied: _Tied | None = None,
    ) -> torch.Tensor:
        """z(k) of every candidate from its layer input ``xt`` (None: x(0) = 0) and ``b`` (B, m), by its weight kind:
        ``free``: W_b b + W_x xt (``Bb`` = W_b b, ``WxT``: the free candidates' only, when kinds are mixed); the residual
        kinds: xt + gamma_k W_k (b - D xt) (``residual``: their effective W_k^T and gamma_k per layer,
        :meth:`_residual_weights`). Mixed kinds: each family computed on its own candidates, then put back in order.
        ``wx_tied``, ``residual[2]``: the gathers of W_x's and a shared W's gradients (``tied_grads``; None: autograd's)."""
        n_free = self._n_free
        Ws, steps, w_tied = residual
        if n_free == self.P:
            assert Bb is not None
            return Bb if xt is None else tied_matmul(Bb, xt, WxT, wx_tied)
        if n_free == 0:
            return self._residual_step(xt, b, Ws[k - 1], steps[k - 1], w_tied)
        assert Bb is not None
        free, rest = self.kind_perm[:n_free], self.kind_perm[n_free:]
        zf = Bb if xt is None else tied_matmul(Bb, xt.index_select(0, free), WxT, wx_tied)
        zr = self._residual_step(None if xt is None else xt.index_select(0, rest), b, Ws[k - 1], steps[k - 1], w_tied)
        return torch.cat([zf, zr]).index_select(0, self.kind_inv)

    def _residual_weights(self, frozen: int = 0, gather: bool = False) -> tuple[list[torch.Tensor], list[torch.Tensor | None], _Tied | None]:
        """Per layer, the residual candidates' W_k^T (R, m, n) and step gamma_k (R, 1, 1) (None: 1 for every one): the
        effective weights of the residual kinds, built once per forward (``unbind``: no per-layer zero-filled gradient).
        R is every candidate, or where kinds are mixed the residual ones (``kind_perm``'s tail), in that order.
        ``frozen`` = f: the slots of layers 1..f (slot 0 is layer 1's, shared or untied) as constants for autograd.
        ``gather``: where every residual candidate reads one trainable W (no untied or analytic one), its gradient is
        gathered into one matmul (the third value, :class:`_Tied`; else None)."""
        if self._n_free == self.P:
            return [], [], None
        K = self.K
        W: torch.Tensor = self.W
        gamma: torch.Tensor = self.gamma
        untied, analytic, step = self.untied, self.is_analytic, self.uses_step
        if self._n_free:
            rest = self.kind_perm[self._n_free :]
            W, gamma, untied, analytic, step = (t.index_select(0, rest) for t in (W, gamma, untied, analytic, step))
        P = W.shape[0]
        slots = [w.detach() if i < frozen else w for i, w in enumerate(W.unbind(1))]  # (R, n, m) each
        (all_untied, any_untied), (all_analytic, any_analytic), (all_step, any_step) = (self._mix[f] for f in ("untied", "analytic", "step"))
        tied = _Tied() if gather and not frozen and len(slots) == 1 and not any_untied and not any_analytic else None
        Ws: list[torch.Tensor] = []
        if tied is not None:  # one trainable W for every residual candidate: each layer reads it through the gather
            Ws = [_TiedGather.apply(slots[0].transpose(1, 2), tied)] * K
        else:
            for k in range(K):
                Wk = slots[k] if len(slots) > 1 else slots[0]
                if len(slots) > 1 and not all_untied:  # a one-W candidate in a cohort with untied ones reads slot 0
                    Wk = torch.where(untied[:, None, None], Wk, slots[0])
                if all_analytic:
                    Wk = self.Wbar.expand(P, *self.Wbar.shape)
                elif any_analytic:
                    Wk = torch.where(analytic[:, None, None], self.Wbar, Wk)
                Ws.append(Wk.transpose(1, 2))
        if not any_step:
            return Ws, [None] * K, tied
        gammas = gamma.unbind(1)
        steps: list[torch.Tensor | None] = [(g if all_step else torch.where(step, g, torch.ones_like(g)))[:, None, None] for g in gammas]
        return Ws, steps, tied

    def _residual_step(
        self, xt: torch.Tensor | None, b: torch.Tensor, WkT: torch.Tensor, step: torch.Tensor | None, tied: _Tied | None = None
    ) -> torch.Tensor:
        """xt + gamma_k W_k (b - D xt) for the residual candidates (``WkT`` (R, m, n), ``xt`` (R, B, n) or None: x(0) = 0;
        ``tied``: W's gradient gathered, :class:`_Tied`)."""
        r = b.expand(WkT.shape[0], *b.shape) if xt is None else b - torch.matmul(xt, self.D.T)  # (R, B, m)
        z = tied_matmul(None, r if step is None else r * step, WkT, tied)  # (P, B, n)
        return z if xt is None else z + xt

    def _neuron(self, k: int, z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Layer k's neurons on z, each candidate its own type; ``theta`` (P, 1, 1): the layer's thresholds, in the order
        of its neuron groups (``neuron_perm[k - 1]``) where it has several."""
        groups = self._neuron_groups[k - 1]
        if len(groups) == 1:
            return self._threshold(groups[0][0], k, z, theta)
        perm = self.neuron_perm[k - 1]
        zs, ths = z.index_select(0, perm).split([n for _, n in groups]), theta.split([n for _, n in groups])
        parts = [self._threshold(t, k, zg, tg) for (t, _), zg, tg in zip(groups, zs, ths, strict=True)]
        return torch.cat(parts).index_select(0, self.neuron_inv[k - 1])

    def _threshold(self, t: int, k: int, z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Neuron type ``t`` of layer k, with its support selection where the type has one."""
        fn = NEURONS.get(self.neuron_names[t])
        if self._support[t]:
            return support_select(z, theta, support_count(k, z.shape[-1]), fn)
        return fn(z, theta)

    def _lm_mix(self, k: int, u: torch.Tensor, xs: list[torch.Tensor], coefs: torch.Tensor | None) -> torch.Tensor:
        """Layer k's LM post-mix of u(k) with the earlier outputs; ``coefs`` (P, 2 + J): the layer's :func:`lm_coefficients`
        (None where no layer of the cohort has a lag)."""
        lags = self._layer_lags[k - 1]
        if not lags or coefs is None:
            return u  # order 1 for every candidate: the forward-Euler step x(k) = u(k)
        used = [j for j in lags if k - 1 - j > 0]  # x(0) = 0 adds nothing (its beta still enters x(k-1)'s coefficient)
        cols = slice(0, 2 + len(used)) if used == list(range(1, len(used) + 1)) else [0, 1, *(1 + j for j in used)]  # a view where it can be
        return combine(coefs[:, cols], [u, xs[k - 1], *(xs[k - 1 - j] for j in used)])

    def candidate_state(self, p: int) -> dict[str, torch.Tensor]:
        """Parameters of candidate p (no P axis), on the CPU: W as the candidate uses it (one slot unless untied), so a
        candidate's state does not depend on the cohort it was trained in."""
        unused = self._unused(p)
        out = {name: t[p].detach().cpu().clone() for name, t in self.named_parameters() if name not in unused}
        if "W" in out and not self._untied[p]:
            out["W"] = out["W"][:1]
        return out

    def _unused(self, p: int) -> set[str]:
        """Parameters candidate p's own network does not have (it shares a cohort with networks that do)."""
        out = set()
        if not self._residual[p]:  # a free candidate: no W, no gamma
            out |= {"W", "gamma"}
        if not bool(self.gained[p].any()):
            out |= {"kappa", "nu"}
        return out

    def load_candidate_state(self, p: int, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            unused = self._unused(p)
            for name, t in self.named_parameters():
                if name not in state and name in unused:
                    continue  # a parameter of another member of this cohort: it keeps its initial value
                if name not in state:
                    raise NasdunError(f"saved parameters lack {name!r}")
                src = state[name]
                if name == "W" and src.shape[0] != t.shape[1]:  # one W, into a cohort with per-layer slots: slot 0 (and the rest alike)
                    t[p].copy_(src[:1].expand_as(t[p]))
                    continue
                t[p].copy_(src)
