r"""One batched unrolled network that evaluates P genotypes (same K, J, m, n) at once.

Layer k of candidate p (docs/design.md §2), from x(0) = 0:

.. math::
    \tilde x(k-1) &= \frac{1}{|P(k)|}\sum_{i \in P(k)} c_{k,i}\, x(i)          && \text{(LWA pre-mix)} \\
    z(k) &= W_b b + W_x \tilde x(k-1)                                            && \text{(tied linear step)} \\
    u(k) &= \mathrm{neuron}_k(z(k); \theta_k) \\
    x(k) &= \Big(1 - h_k - \sum_j q_{k,j}\beta_{k,j}\Big) x(k-1)
            + \sum_j q_{k,j}\beta_{k,j}\, x(k-1-j) + h_k u(k)                    && \text{(LM post-mix)}

with h_k fixed to 1 where layer k has no open lag. Gates, neuron choices and lags are
masks (buffers); parameters are stacked along a leading candidate axis P. P = 1 is the same
code path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from nasdun.errors import NasdunError
from search_spaces.genotype import Genotype, common_size
from search_spaces.neurons import NEURONS, PIECEWISE, piecewise

COEF_INITS = ("ones", "identity")


def lipschitz(D: torch.Tensor) -> float:
    """L = 1.001 ||D||_2^2 (the reference code's step constant)."""
    return 1.001 * float(torch.linalg.matrix_norm(D.double(), ord=2)) ** 2


def fused_layer(names: tuple[str, ...]) -> Callable[..., torch.Tensor]:
    """Neuron choice and LM post-mix of one layer as a single pointwise function (for torch.compile).

    Same maths as the eager path. When every type in ``names`` is in the piecewise-linear family
    (:data:`search_spaces.neurons.PIECEWISE`) each candidate's type is two numbers and one
    formula serves them all; otherwise every type is evaluated and each candidate takes its own.
    With no open lag h = 1 and beta = 0, so x(k) = 0 * x(k-1) + u(k) = u(k).
    """
    fns = [NEURONS.get(name) for name in names]
    family = all(name in PIECEWISE for name in names)

    def layer(z, theta, kind, hk, q, xprev, *xlags):  # type: ignore[no-untyped-def]
        if family:  # kind = (symmetric, slope) per candidate
            u = piecewise(z, theta, kind[:, 0, None, None], kind[:, 1, None, None])
        else:  # kind = one-hot neuron type per candidate
            u = fns[0](z, theta)
            for t in range(1, len(fns)):
                u = torch.where(kind[:, t, None, None] > 0, fns[t](z, theta), u)
        out = (1.0 - hk - q.sum(-1))[:, None, None] * xprev + hk[:, None, None] * u
        for j, xl in enumerate(xlags):
            out = out + q[:, j, None, None] * xl
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

    def param_layers(self) -> dict[str, torch.Tensor]:
        """For each parameter, the layer that adds it, broadcastable to the parameter without P.

        Wb and Wx belong to layer 1; theta, the c row, h and beta to their own layer.
        """
        ks = torch.arange(1, self.K + 1, device=self.theta.device)
        one = torch.ones((), dtype=torch.long, device=self.theta.device)
        return {"Wb": one, "Wx": one, "theta": ks, "coef": ks[:, None], "h": ks, "beta": ks[:, None]}

    def forward(self, b: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        """Outputs x(1..upto), each (P, B, n), for measurements ``b`` of shape (B, m)."""
        T = self.K if upto is None else int(upto)
        if not 1 <= T <= self.K:
            raise NasdunError(f"upto={T} is outside 1..{self.K}")
        Bb = torch.matmul(b, self.Wb.transpose(1, 2))  # (P, B, n)
        zero = Bb.new_zeros(()).expand_as(Bb)  # x(0) = 0 as a broadcast view: no memory, no fill
        xs = [zero]  # xs[i] = x(i)
        w = self.coef * self.gate * self.inv_count[..., None]  # (P, K, K) LWA weights
        hk = torch.where(self.has_lag, self.h, torch.ones_like(self.h))
        qb = self.lag * self.beta  # (P, K, J)
        WxT = self.Wx.transpose(1, 2)
        # The compiled kernel serves training only: evaluation (no grad) is a second set of
        # compiled variants, and with the shapes and requires-grad patterns of a protocol they
        # exceed torch.compile's recompile limit, past which it runs the kernel's Python
        # unfused - slower than the eager path (NOTES row 13).
        fused = self._fused if torch.is_grad_enabled() else None
        for k in range(1, T + 1):
            if k == 1:
                z = Bb
            else:
                origins = self._layer_inputs[k - 1]  # closed for every candidate: no work
                cols = slice(0, k - 1) if len(origins) == k - 1 else [i - 1 for i in origins]  # a view when all are open
                xt = combine(w[:, k - 1, cols], [xs[i] for i in origins])  # (P, B, n)
                z = torch.baddbmm(Bb, xt, WxT)
            if fused is not None:
                lags = [xs[k - 1 - j] if k - 1 - j > 0 else zero for j in range(1, self.J + 1)]
                xs.append(fused(z, self.theta[:, k - 1, None, None], self.neuron_kind[:, k - 1], hk[:, k - 1], qb[:, k - 1], xs[k - 1], *lags))
            else:
                xs.append(self._lm_mix(k, self._neuron(k, z), xs, hk, qb))
        return xs[1:]

    def _neuron(self, k: int, z: torch.Tensor) -> torch.Tensor:
        theta = self.theta[:, k - 1, None, None]
        groups = self._neuron_groups[k - 1]
        if len(groups) == 1:
            return NEURONS.get(self.neuron_names[groups[0][0]])(z, theta)
        perm = self.neuron_perm[k - 1]
        zs, ths = z.index_select(0, perm).split([n for _, n in groups]), theta.index_select(0, perm).split([n for _, n in groups])
        parts = [NEURONS.get(self.neuron_names[t])(zg, tg) for (t, _), zg, tg in zip(groups, zs, ths, strict=True)]
        return torch.cat(parts).index_select(0, self.neuron_inv[k - 1])

    def _lm_mix(self, k: int, u: torch.Tensor, xs: list[torch.Tensor], hk: torch.Tensor, qb: torch.Tensor) -> torch.Tensor:
        lags = self._layer_lags[k - 1]
        if not lags:
            return u  # order 1 for every candidate: the forward-Euler step x(k) = u(k)
        q = qb[:, k - 1]  # (P, J)
        first = 1.0 - hk[:, k - 1] - q.sum(-1)
        used = [j for j in lags if k - 1 - j > 0]  # x(0) = 0 adds nothing (its beta still enters `first`)
        coefs = torch.stack([hk[:, k - 1], first, *(q[:, j - 1] for j in used)], dim=1)
        return combine(coefs, [u, xs[k - 1], *(xs[k - 1 - j] for j in used)])

    def candidate_state(self, p: int) -> dict[str, torch.Tensor]:
        """Parameters of candidate p (no P axis), on the CPU."""
        return {name: t[p].detach().cpu().clone() for name, t in self.named_parameters()}

    def load_candidate_state(self, p: int, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, t in self.named_parameters():
                if name not in state:
                    raise NasdunError(f"saved parameters lack {name!r}")
                t[p].copy_(state[name])
