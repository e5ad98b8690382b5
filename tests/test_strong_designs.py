"""The field's strongest designs as points of the space (docs/design.md §2 item 5): weight kinds, support selection,
gain gates. Each untrained hand design equals its published iteration, written here independently in float64 numpy."""

import numpy as np
import pytest
import torch

from search_spaces import Genotype, SearchSpace, preset
from search_spaces.presets import existing
from trainers.analytic import analytic_weight
from trainers.model import UnrolledLISTA, lipschitz
from trainers.population import PopulationTrainer
from trainers.protocols import get_protocol


def soft(v, th):
    return np.sign(v) * np.maximum(np.abs(v) - th, 0)


def shrink_ss(v, th, percent):
    """The public LISTA-CPSS code's special shrink: the (100 - p)-th percentile of |v| per sample, nearest rank;
    entries above it and above theta pass, the others are soft-thresholded."""
    a = np.abs(v)
    thres = np.percentile(a, 100.0 - percent, axis=-1, method="nearest", keepdims=True)
    keep = (a > thres) & (a > th)
    return np.where(keep, v, soft(v, th))


def published(D, b, K, lam, W=None, step=1.0, ss=False):
    """x <- shrink(x + step * W^T (b - D x)) from x = 0, K times: ISTA (W = D / L), LISTA-CP(SS) and TiLISTA untrained
    (W = D / L, step 1), ALISTA (W the analytic weight, step 1); theta = lam / L, p_k = min(1.2 k, 13) %."""
    L = 1.001 * np.linalg.norm(D, 2) ** 2
    W = D / L if W is None else W
    x = np.zeros((b.shape[0], D.shape[1]))
    for k in range(1, K + 1):
        v = x + step * (b - x @ D.T) @ W
        x = shrink_ss(v, lam / L, min(1.2 * k, 13.0)) if ss else soft(v, lam / L)
    return x


@pytest.fixture(scope="module")
def data():
    from trainers.problems.make import make_problem

    problem = make_problem("small", seed=0, batch_size=64)
    return problem.D.double(), problem.val.b[:200].double()


@pytest.mark.parametrize(
    "name, ss, analytic",
    [("lista_cp", False, False), ("lista_ss", True, False), ("lista_cpss", True, False), ("tilista", True, False),
     ("alista", True, True), ("glista", True, False)],
)  # fmt: skip
def test_each_untrained_design_is_its_published_iteration(data, name, ss, analytic):
    D, b = data
    K = 10  # p_k reaches the 13 % cap at k = 11 - 1: both regimes of the schedule
    with torch.no_grad():
        got = UnrolledLISTA([preset(name, K)], D)(b)[-1][0].numpy()
    Dn = D.numpy()
    W = None
    if analytic:
        G = Dn @ Dn.T
        V = np.linalg.solve(G, Dn)
        W = V / np.sum(Dn * V, axis=0)  # an independent solve of ALISTA's constraint
    ref = published(Dn, b.numpy(), K, 0.4, W=W, ss=ss)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-11)
    assert np.abs(ref).max() > 0.1  # not a trivially zero output


def test_untrained_2no_crossings_equal_their_order_1_designs_when_beta_is_zero(data):
    D, b = data
    model = UnrolledLISTA([preset(n, 6) for n in ("2no_cpss", "lista_cpss", "2no_alista", "alista", "2no_glista", "glista")], D)
    with torch.no_grad():
        model.beta.zero_()
        out = model(b)[-1]
    for i in (0, 2, 4):
        torch.testing.assert_close(out[i], out[i + 1], rtol=0, atol=1e-13)


def test_analytic_weight_meets_its_constraint_and_is_the_qp_minimiser():
    """Against a generic constrained solver (scipy's SLSQP) on a small D, column by column."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(0)
    D = rng.normal(size=(4, 7))
    D /= np.linalg.norm(D, axis=0)
    W = analytic_weight(torch.tensor(D)).numpy()
    np.testing.assert_allclose(np.diag(W.T @ D), 1.0, atol=1e-12)
    for i in range(D.shape[1]):
        res = minimize(
            lambda w: float(np.sum((D.T @ w) ** 2)), np.zeros(4), jac=lambda w: 2 * D @ (D.T @ w),
            constraints=[{"type": "eq", "fun": lambda w, i=i: D[:, i] @ w - 1.0, "jac": lambda w, i=i: D[:, i]}],
            method="SLSQP", options={"ftol": 1e-14, "maxiter": 500},
        )  # fmt: skip
        assert res.success
        assert np.sum((D.T @ W[:, i]) ** 2) <= res.fun + 1e-9  # no feasible point does better
        np.testing.assert_allclose(W[:, i], res.x, atol=1e-6)  # and it is that point (a strictly convex problem)


def test_support_selection_selects_as_many_entries_as_the_reference_code():
    from search_spaces.neurons import support_count

    assert [support_count(k, 500) for k in (1, 2, 10, 11, 16)] == [6, 12, 60, 65, 65]  # round(499 p_k / 100), p capped at 13 %
    assert support_count(1, 100) == 1


def test_stage_ownership_of_the_new_parameters(data):
    """Stage 1 of layer t trains only what layer t adds: an untied W_t, gamma_t, kappa_t, nu_t; the shared W belongs
    to layer 1; ALISTA's analytic W never trains."""
    from trainers.problems.make import make_problem

    problem = make_problem("small", seed=0, batch_size=64)
    gs = [preset("lista_cpss", 4), preset("tilista", 4), preset("alista", 4), preset("glista", 4)]
    tr = PopulationTrainer(gs, problem, get_protocol("smoke"))
    tr.jump_to(3, 0)
    before = {k: v.detach().clone() for k, v in tr.params.items()}
    for _ in range(5):
        tr.train_step()
    moved = {k: (tr.params[k].detach() != before[k]) for k in before}
    W = moved["W"]  # (P, K slots, n, m)
    assert W[0, 2].all() and not W[0, [0, 1, 3]].any()  # LISTA-CPSS: its layer-3 W only
    assert not W[1].any() and not W[2].any()  # TiLISTA's shared W is layer 1's; ALISTA's W is analytic
    assert moved["gamma"][1, 2] and moved["gamma"][2, 2] and not moved["gamma"][:, [0, 1, 3]].any()
    assert moved["kappa"][3, 2] and not moved["kappa"][:3].any()  # only GLISTA has gain gates
    tr.jump_to(3, 1)
    for _ in range(3):
        tr.train_step()
    assert (tr.params["W"].detach()[1, 0] != before["W"][1, 0]).any()  # stage 2 trains layers <= t: TiLISTA's W now
    eff = tr.model.Wbar.numpy()  # and ALISTA's weight is still the analytic one
    np.testing.assert_allclose(eff, analytic_weight(problem.D.double()).T.float().numpy(), atol=1e-6)


def test_genotypes_of_the_classic_space_keep_their_json_and_hash():
    g = preset("lista", 4)
    assert "weights" not in g.to_dict() and g.hash == Genotype.from_dict(g.to_dict()).hash
    a = preset("alista", 4)
    assert a.to_dict()["weights"] == "analytic" and Genotype.from_json(a.to_json()) == a and a.hash != preset("lista_ss", 4).hash
    assert Genotype.from_spec(a.to_spec()) == a and a.to_spec().endswith("|analytic")
    space = SearchSpace(layers=4)
    assert space.decode(space.encode(a)) == a and space.decisions()[-1].name == "weights"


def test_every_hand_design_exists_at_the_demo_and_the_study_depths():
    for K in (6, 8, 16):
        names = [n for n, _ in existing(K)]
        assert {"lista_cp", "lista_ss", "lista_cpss", "tilista", "alista", "glista", "2no_glista", "2no_cpss", "2no_alista"} <= set(names)


def test_the_lipschitz_step_is_the_reference_codes(data):
    D, _ = data
    assert lipschitz(D) == pytest.approx(1.001 * float(np.linalg.norm(D.numpy(), 2)) ** 2, rel=1e-12)


def test_the_averaged_architecture_votes_the_weight_parameterisation():
    from analysis.readers.average import frequencies, threshold_genotype

    gs = [preset("alista", 5), preset("2no_alista", 5), preset("lista_cpss", 5), preset("lista", 5)]
    freq = frequencies(gs)
    assert freq.weights["analytic"] == 0.5 and freq.weights["coupled_untied"] == 0.25 and freq.to_dict()["weights"]["free"] == 0.25
    avg = threshold_genotype(freq)
    assert avg.weights == "analytic" and avg.neurons == ("ss",) * 5  # majorities
    tie = threshold_genotype(frequencies([preset("lista", 5), preset("alista", 5)]))
    assert tie.weights == "free"  # a tie goes to the first registered kind
