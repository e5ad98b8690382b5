"""The batched model against independent float64 numpy references."""

import numpy as np
import pytest
import torch

from search_spaces import NEURONS, Genotype, SearchSpace, preset
from search_spaces.genotype import classic_space
from trainers.model import UnrolledLISTA, lipschitz

NP_NEURONS = {
    "soft": lambda z, th: np.sign(z) * np.maximum(np.abs(z) - th, 0),
    "relu": lambda z, th: np.maximum(z - th, 0),
    "lrelu": lambda z, th: np.where(z - th > 0, z - th, 0.1 * (z - th)),
}
NP_NEURONS.update({name: NP_NEURONS["soft"] for name in ("ss", "gain", "gain_ss")})  # their threshold; the flags below
SUPPORT, GAIN = {"ss", "gain_ss"}, {"gain", "gain_ss"}


def np_support(z, th, k):
    """Support selection as the reference TF code computes it: the (100 - p)-th percentile of |z| per sample with
    nearest rank (numpy's 'nearest' on the ascending sort), entries strictly above it and above theta pass."""
    p = min(1.2 * k, 13.0)
    a = np.abs(z)
    thres = np.percentile(a, 100.0 - p, axis=-1, method="nearest", keepdims=True)
    keep = (a > thres) & (a > th)
    return np.where(keep, z, NP_NEURONS["soft"](z, th))


def np_analytic(D):
    """ALISTA's W (m, n) column by column: solve (D D^T) v = d_i, then scale so that d_i^T w_i = 1."""
    G = D @ D.T
    V = np.linalg.solve(G, D)
    return V / np.sum(D * V, axis=0)


def ista(D, b, L, lam, K):
    x = np.zeros((b.shape[0], D.shape[1]))
    for _ in range(K):
        v = x + (b - x @ D.T) @ D / L
        x = np.sign(v) * np.maximum(np.abs(v) - lam / L, 0)
    return x


def reference_forward(g: Genotype, params: dict, b: np.ndarray, D: np.ndarray | None = None) -> list:
    """docs/design.md §2 written out literally, one sample batch, float64 (``D`` for the residual weight kinds)."""
    Wb, Wx, theta, c, h, beta = (params[k] for k in ("Wb", "Wx", "theta", "coef", "h", "beta"))
    xs = [np.zeros((b.shape[0], Wb.shape[0]))]
    for k in range(1, g.layers + 1):
        origins = [i for i in g.inputs[k - 1] if i >= 1]
        xt = sum(c[k - 1, i - 1] * xs[i] for i in origins) / len(g.inputs[k - 1]) if origins else 0 * xs[0]
        name = g.neurons[k - 1]
        if name in GAIN:
            xt = xt * (1 + params["kappa"][k - 1] * np.maximum(1 - np.maximum(params["nu"][k - 1] * np.abs(xt), 0), 0))
        if g.weights == "free":
            z = b @ Wb.T + xt @ Wx.T
        else:
            W = np_analytic(D).T if g.weights == "analytic" else params["W"][k - 1 if g.weights == "coupled_untied" else 0]
            step = params["gamma"][k - 1] if g.weights in ("tied_step", "analytic") else 1.0
            z = xt + step * (b - xt @ D.T) @ W.T
        u = np_support(z, theta[k - 1], k) if name in SUPPORT else NP_NEURONS[name](z, theta[k - 1])
        lags = g.lags[k - 1]
        if not lags:
            xs.append(u)
            continue
        hk = h[k - 1]
        first = 1 - hk - sum(beta[k - 1, j - 1] for j in lags)
        xs.append(first * xs[k - 1] + sum(beta[k - 1, j - 1] * xs[k - 1 - j] for j in lags) + hk * u)
    return xs[1:]


def test_neuron_registry_matches_numpy_definitions():
    z = torch.linspace(-2, 2, 41, dtype=torch.float64)
    for name in NEURONS.names():
        for th in (0.3, -0.2):
            got = NEURONS.get(name)(z, torch.tensor(th, dtype=torch.float64)).numpy()
            np.testing.assert_allclose(got, NP_NEURONS[name](z.numpy(), th), atol=1e-15, err_msg=name)


def test_piecewise_family_equals_each_neuron_it_names():
    """The fused kernel's one formula, at each type's (symmetric, slope), is that type (both signs of theta)."""
    from search_spaces.neurons import PIECEWISE, piecewise, uses_gain, uses_support

    z = torch.linspace(-2, 2, 41, dtype=torch.float64)
    plain = {n for n in NEURONS.names() if not (uses_support(n) or uses_gain(n))}
    assert set(PIECEWISE) == plain and plain >= {"soft", "relu", "lrelu"}  # a new type that fits the family should join it
    for name, (sym, slope) in PIECEWISE.items():
        for th in (0.3, -0.2):
            got = piecewise(z, torch.tensor(th, dtype=torch.float64), sym, slope).numpy()
            np.testing.assert_allclose(got, NP_NEURONS[name](z.numpy(), th), atol=1e-15, err_msg=name)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_untrained_lista_is_k_ista_iterations(small_problem, dtype, tol):
    D = small_problem.D.to(dtype)
    b = small_problem.val.b[:256].to(dtype)
    K = 8
    with torch.no_grad():
        out = UnrolledLISTA([preset("lista", K)], D)(b)[-1][0].double().numpy()
    ref = ista(D.double().numpy(), b.double().numpy(), lipschitz(D), 0.4, K)
    assert np.linalg.norm(out - ref) / np.linalg.norm(ref) < tol


def test_untrained_2no_with_unit_h_zero_beta_equals_lista(small_problem):
    D, b = small_problem.D.double(), small_problem.val.b[:128].double()
    model = UnrolledLISTA([preset("2no", 6), preset("3no", 6), preset("lista", 6)], D)
    with torch.no_grad():
        model.beta.zero_()
        out = model(b)[-1]
    torch.testing.assert_close(out[0], out[2], rtol=0, atol=1e-14)
    torch.testing.assert_close(out[1], out[2], rtol=0, atol=1e-14)
    with torch.no_grad():  # with the HNO init beta = -0.5 they are different networks
        model.beta.fill_(-0.5)
        assert (model(b)[-1][0] - out[2]).abs().max() > 1e-3


def test_identity_init_makes_every_genotype_start_as_ista(small_problem):
    D, b = small_problem.D.double(), small_problem.val.b[:64].double()
    with torch.no_grad():
        out = UnrolledLISTA([preset("dense", 6), preset("meng2021", 6)], D, coef_init="identity")(b)[-1]
    ref = ista(D.numpy(), b.numpy(), lipschitz(D), 0.4, 6)
    np.testing.assert_allclose(out[0].numpy(), ref, atol=1e-12)
    np.testing.assert_allclose(out[1].numpy(), ref, atol=1e-12)


def test_closed_gate_coefficient_has_no_effect(small_problem):
    D, b = small_problem.D.double(), small_problem.val.b[:64].double()
    model = UnrolledLISTA([preset("lfista", 6)], D)
    with torch.no_grad():
        before = model(b)[-1].clone()
        model.coef[0, 5, 0] = 123.0  # layer 6 <- layer 1: closed in LFISTA
        model.coef[0, 4, 2] = -7.0  # layer 5 <- layer 3: open in LFISTA
        after = model(b)[-1]
        model.coef[0, 4, 2] = 1.0
        back = model(b)[-1]
    assert (after - before).abs().max() > 1e-3
    torch.testing.assert_close(back, before, rtol=0, atol=0)


@pytest.mark.parametrize("wide", [False, True], ids=["per-origin", "wide"])
@pytest.mark.parametrize("seed, count", [(3, 5), (11, 12)])
def test_batched_random_genotypes_match_literal_reference(small_problem, seed, count, wide):
    """Random genotypes of the whole space (every weight kind and neuron, mixed in one cohort) with random
    parameters: every candidate equals the literal formula, with either form of the LWA pre-mix."""
    space = SearchSpace(layers=6, max_lag=2)
    rng = np.random.default_rng(seed)
    gs = [space.decode({d.name: d.choices[rng.integers(len(d.choices))] for d in space.decisions()}) for _ in range(count)]
    if count > 5:
        assert {g.weights for g in gs} == set(space.weights) and {n for g in gs for n in g.neurons} == set(space.neurons)
    D, b = small_problem.D.double(), small_problem.val.b[:32].double()
    model = UnrolledLISTA(gs, D)
    model.wide_mix = wide
    assert any(len(o) > 1 for o in model._layer_inputs)  # some layer reads several earlier outputs: the wide form is used
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
        out = model(b)
    for p, g in enumerate(gs):
        params = {k: v.numpy() for k, v in model.candidate_state(p).items()}
        ref = reference_forward(g, params, b.numpy(), D.numpy())
        for k in range(6):
            np.testing.assert_allclose(out[k][p].numpy(), ref[k], rtol=1e-10, atol=1e-12, err_msg=f"cand {p} layer {k + 1}")


def test_combine_and_whole_model_gradients_pass_gradcheck():
    """The hand-written backward of the weighted sums, and the model's gradients as a whole,
    against finite differences in float64 (random genotypes, every neuron type and lag)."""
    from torch.func import functional_call

    from trainers.model import combine

    gen = torch.Generator().manual_seed(1)
    xs = [torch.randn(3, 4, 5, dtype=torch.float64, generator=gen, requires_grad=True) for _ in range(3)]
    c = torch.randn(3, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c, *xs: combine(c, xs), (c, *xs))

    space = classic_space(4, 2)
    rng = np.random.default_rng(5)
    gs = [space.decode({d.name: d.choices[rng.integers(len(d.choices))] for d in space.decisions()}) for _ in range(4)]
    assert {n for g in gs for n in g.neurons} == {"soft", "relu", "lrelu"} and any(any(g.lags) for g in gs)
    # and one network of each other weight kind, gain-gated and support-selecting (a cohort of every family)
    gs += [Genotype.build(4, neurons=neurons, lags={3: [1]}, weights=w) for w, neurons in
           (("coupled", "gain"), ("coupled_untied", ["gain", "soft", "gain", "relu"]), ("tied_step", "gain_ss"), ("analytic", "ss"))]  # fmt: skip
    D = torch.randn(5, 8, dtype=torch.float64, generator=gen)
    b = torch.randn(6, 5, dtype=torch.float64, generator=gen)
    model = UnrolledLISTA(gs, D)
    names = [n for n, _ in model.named_parameters()]
    start = tuple((p.detach() + 0.1 * torch.randn(p.shape, dtype=p.dtype, generator=gen)).requires_grad_() for p in model.parameters())

    def loss(*params):
        outs = functional_call(model, dict(zip(names, params, strict=True)), (b,))
        return sum((o * o).sum() * (k + 1) for k, o in enumerate(outs))

    assert torch.autograd.gradcheck(loss, start, atol=1e-6, rtol=1e-5)
    # each layer's row of a per-layer parameter is taken once per forward (unbind, or one gather for the neuron groups'
    # order): its gradient is one stack of the rows, not a zero-filled full-size tensor per layer and their sum
    seen, todo = set(), [loss(*start).grad_fn]
    while todo:
        fn = todo.pop()
        if fn is not None and fn not in seen:
            seen.add(fn)
            todo += [nxt for nxt, _ in fn.next_functions]
    kinds = {type(f).__name__ for f in seen}
    assert "SelectBackward0" not in kinds and {"UnbindBackward0", "GatherBackward0"} <= kinds, sorted(kinds)


def test_the_wide_pre_mix_backward_passes_gradcheck():
    """The wide LWA pre-mix's hand-written backward (origins' gradients gathered in the history's gradient buffer and
    handed back by each output's stash) against finite differences in float64, run twice on one graph (reentrant);
    with frozen layers (their outputs and layer 1's weights constants by design, so no finite differences) equal to
    the per-origin pre-mix's gradients."""
    from torch.func import functional_call

    gen = torch.Generator().manual_seed(2)
    dense = {k: list(range(1, k - 1)) for k in range(3, 6)}  # layer k reads x(1..k-1)
    gs = [Genotype.build(5, dense, lags={4: [1]}), Genotype.build(5, {3: [1], 5: [2]}, neurons="relu"),
          Genotype.build(5, weights="coupled"), Genotype.build(5, dense, neurons="gain", weights="tied_step")]  # fmt: skip
    D = torch.randn(4, 6, dtype=torch.float64, generator=gen)
    b = torch.randn(3, 4, dtype=torch.float64, generator=gen)
    model = UnrolledLISTA(gs, D)
    model.wide_mix = True
    names = [n for n, _ in model.named_parameters()]
    start = tuple((p.detach() + 0.1 * torch.randn(p.shape, dtype=p.dtype, generator=gen)).requires_grad_() for p in model.parameters())

    def loss(*params, frozen=0):
        outs = functional_call(model, dict(zip(names, params, strict=True)), (b,), {"frozen": frozen})
        return sum((o * o).sum() * (k + 1) for k, o in enumerate(outs))

    assert torch.autograd.gradcheck(loss, start, atol=1e-6, rtol=1e-5)
    grads = {}
    for wide in (False, True):
        model.wide_mix = wide
        grads[wide] = torch.autograd.grad(loss(*start, frozen=2), start, allow_unused=True)
    for n, g0, g1 in zip(names, grads[False], grads[True], strict=True):
        assert (g0 is None) == (g1 is None), n
        if g0 is not None:
            torch.testing.assert_close(g1, g0, rtol=1e-10, atol=1e-12, msg=n)


@pytest.mark.parametrize(
    "kinds",
    [("free", "free"), ("coupled", "tied_step"), ("free", "coupled", "tied_step"), ("free", "coupled_untied", "tied_step", "analytic")],
    ids=["free", "residual-tied", "mixed", "with-untied-and-analytic"],
)
def test_the_tied_weights_gradient_as_one_matmul(kinds):
    """``tied_grads``: W_x's and a shared W's gradients as one matmul over the layers' uses (``_TiedGather``),
    float64: against finite differences (gradcheck, which also runs the backward twice on one graph), equal to
    autograd's per-layer sum with and without frozen layers, and gathered only where the weight is one trainable
    matrix (a cohort with an untied or analytic W keeps autograd's sum for W, and gathers W_x)."""
    from torch.func import functional_call

    gen = torch.Generator().manual_seed(4)
    dense = {k: list(range(1, k - 1)) for k in range(3, 6)}
    gs = [Genotype.build(5, dense if i % 2 else None, neurons=("gain_ss" if i == 2 else "soft"), lags={4: [1]} if i else None, weights=w)
          for i, w in enumerate(kinds)]  # fmt: skip
    D = torch.randn(4, 6, dtype=torch.float64, generator=gen)
    b = torch.randn(3, 4, dtype=torch.float64, generator=gen)
    model = UnrolledLISTA(gs, D)
    names = [n for n, _ in model.named_parameters()]
    start = tuple((p.detach() + 0.1 * torch.randn(p.shape, dtype=p.dtype, generator=gen)).requires_grad_() for p in model.parameters())

    def loss(*params, frozen=0):
        outs = functional_call(model, dict(zip(names, params, strict=True)), (b,), {"frozen": frozen})
        return sum((o * o).sum() * (k + 1) for k, o in enumerate(outs))

    def nodes(fn, seen):  # the backward graph's nodes
        if fn is not None and fn not in seen:
            seen.add(fn)
            for nxt, _ in fn.next_functions:
                nodes(nxt, seen)
        return seen

    model.tied_grads = True
    if len(kinds) == 3:  # (the costly check once, on a cohort that gathers both weights)
        assert torch.autograd.gradcheck(loss, start, atol=1e-6, rtol=1e-5)
    gathers = [f for f in nodes(loss(*start).grad_fn, set()) if type(f).__name__ == "_TiedGatherBackward"]
    shared_w = any(k in ("coupled", "tied_step") for k in kinds) and not any(k in ("coupled_untied", "analytic") for k in kinds)
    assert len(gathers) == ("free" in kinds) + shared_w
    for frozen in (0, 2):
        grads = {}
        for on in (False, True):
            model.tied_grads = on
            grads[on] = torch.autograd.grad(loss(*start, frozen=frozen), start, allow_unused=True)
        for n, g0, g1 in zip(names, grads[False], grads[True], strict=True):
            assert (g0 is None) == (g1 is None), n
            if g0 is not None:
                torch.testing.assert_close(g1, g0, rtol=1e-10, atol=1e-12, msg=f"{n}, frozen {frozen}")
    model.tied_grads = False


def test_the_wide_pre_mix_changes_only_the_order_of_sums(small_problem):
    """float32, the hand designs at K = 8 (Dense-LISTA opens every origin, so every layer goes wide): the outputs of the
    networks that read one earlier output per layer are bit-equal (their other weights are exact zeros); the rest, and
    every gradient, agree to float32 rounding. Without gradients (validation) the same values as with them."""
    from nasdun.runs.verdict import hand_designs

    designs = hand_designs(8, 2)
    D, b = small_problem.D, small_problem.val.b[:64]
    model = UnrolledLISTA(list(designs.values()), D)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in (model.coef, model.h, model.beta, model.theta):
            p.mul_(1 + 0.1 * torch.randn(p.shape, generator=gen))
    runs = {}
    for wide in (False, True):
        model.wide_mix = wide
        model.zero_grad(set_to_none=True)
        outs = model(b)
        sum((o * o).sum() * (k + 1) for k, o in enumerate(outs)).backward()
        with torch.no_grad():
            evaluated = model(b)
        runs[wide] = ([o.detach() for o in outs], {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, evaluated)
    (o0, g0, _), (o1, g1, e1) = runs[False], runs[True]
    single = [p for p, g in enumerate(designs.values()) if all(len(i) <= 1 for i in g.inputs)]
    assert 0 < len(single) < len(designs)
    for k in range(8):
        assert torch.equal(o0[k][single], o1[k][single])
        torch.testing.assert_close(o1[k], o0[k], rtol=1e-5, atol=1e-6)
        assert torch.equal(e1[k], o1[k])
    assert g0.keys() == g1.keys()
    for n in g0:
        torch.testing.assert_close(g1[n], g0[n], rtol=1e-4, atol=1e-4 * float(g0[n].abs().max()), msg=n)


def test_chunked_evaluation_equals_one_shot(small_problem, monkeypatch):
    """Evaluation splits samples into chunks sized per device; the sums do not depend on the split
    (float64, so that BLAS blocking for another row count cannot differ in the last bits)."""
    import trainers.scoring as scoring
    from trainers.problems.make import Split

    space = SearchSpace(layers=4)
    rng = np.random.default_rng(2)
    model = UnrolledLISTA(
        [space.decode({d.name: d.choices[rng.integers(len(d.choices))] for d in space.decisions()}) for _ in range(3)], small_problem.D.double()
    )
    split = Split(small_problem.val.b[:50].double(), small_problem.val.x[:50].double())
    one_shot = scoring.evaluate(model, split)
    monkeypatch.setitem(scoring.EVAL_FLOATS, "cpu", 3 * 100 * 4 * 7)  # 7 samples per chunk: 8 uneven chunks
    chunked = scoring.evaluate(model, split)
    torch.testing.assert_close(chunked.nmse_db(), one_shot.nmse_db(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(chunked.nmse_db_mean(), one_shot.nmse_db_mean(), rtol=1e-12, atol=1e-12)
    layer = torch.tensor([2, 4, 3])
    torch.testing.assert_close(scoring.evaluate(model, split, layer=layer).nmse_db(), one_shot.nmse_db()[layer - 1, torch.arange(3)])


def test_gpu_evaluation_chunks_grow_with_the_card_and_stay_bounded():
    """The CUDA chunk budget (measured on an H200: 2^26 -> 2^30 floats, 453 -> 1,056 candidate-steps/s at P = 256)."""
    from trainers.scoring import EVAL_FLOATS, eval_floats, gpu_eval_floats

    gib = 1 << 30
    assert gpu_eval_floats(2 * gib) == 1 << 26  # a small card: never below the old fixed budget
    assert gpu_eval_floats(16 * gib) == 1 << 28  # 1 GiB of fp32 outputs on a 16 GiB card
    assert gpu_eval_floats(141 * gib) == gpu_eval_floats(80 * gib) == 1 << 30  # H100 / H200: the measured best, a cap
    assert eval_floats(torch.device("cpu")) == EVAL_FLOATS["cpu"] == 1 << 21
