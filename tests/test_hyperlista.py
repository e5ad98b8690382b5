"""HyperLISTA, the classical baseline of analytic tuning (trainers/hyperlista.py), against an independent float64 numpy
iteration written from the paper's equations, sample by sample."""

import math

import numpy as np
import pytest
import torch

from trainers.analytic import analytic_weight
from trainers.classical import solve as ista
from trainers.hyperlista import Operator, reference, solve, support_threshold, tune
from trainers.problems.make import get_setting, make_problem


def numpy_hyperlista(A, b, K, c):
    """x <- eta(x + W^T (b - A x) + beta (x - x_prev)), per sample, with theta, beta and p from the current iterate."""
    c1, c2, c3 = c
    W = analytic_weight(torch.from_numpy(A)).numpy()
    G = np.abs(W.T @ A)
    np.fill_diagonal(G, 0.0)
    mu = G.max()
    Ap = np.linalg.pinv(A)
    out = []
    for bi in b:
        x, prev = np.zeros(A.shape[1]), np.zeros(A.shape[1])
        l1b = np.abs(Ap @ bi).sum()
        for _ in range(K):
            r = A @ x - bi
            l1r = np.abs(Ap @ r).sum()
            theta, beta = c1 * mu * l1r, c2 * mu * np.count_nonzero(x)
            p = min(1.0, max(0.0, c3 * math.log(l1b / l1r))) if c3 else 0.0
            v = x - W.T @ r + beta * (x - prev)
            new = np.sign(v) * np.maximum(np.abs(v) - theta, 0.0)
            count = int(math.floor(p * len(v)))
            for i in np.argsort(-np.abs(v), kind="stable")[:count]:  # the largest magnitudes above theta pass as they are
                if abs(v[i]) > theta:
                    new[i] = v[i]
            x, prev = new, x
        out.append(x)
    return np.stack(out)


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(3)
    A = rng.standard_normal((20, 40)) / math.sqrt(20)
    x = rng.standard_normal((16, 40)) * (rng.random((16, 40)) < 0.1)
    return A, x @ A.T, x


@pytest.mark.parametrize("c", [(0.15, 0.05, 0.3), (0.5, 0.0, 0.0), (0.07, 0.1, 1.0)])
def test_solve_equals_the_papers_iteration(small, c):
    A, b, _ = small
    got = solve(Operator.of(torch.from_numpy(A)), torch.from_numpy(b), 7, c).numpy()
    np.testing.assert_allclose(got, numpy_hyperlista(A, b, 7, c), rtol=1e-9, atol=1e-12)


def test_operator_constants(small):
    A = small[0]
    op = Operator.of(torch.from_numpy(A))
    W = op.WT.T.numpy()
    np.testing.assert_allclose(np.diag(W.T @ A), 1.0, atol=1e-10)  # ALISTA's constraint: the step is 1
    off = np.abs(W.T @ A) - np.diag(np.diag(np.abs(W.T @ A)))
    assert op.mu == pytest.approx(off.max())
    np.testing.assert_allclose(op.pinv.numpy(), np.linalg.pinv(A), atol=1e-10)


def test_support_threshold_keeps_the_largest_share():
    z = torch.tensor([[5.0, -4.0, 3.0, -2.0, 1.0, 0.5]] * 3, dtype=torch.float64)
    theta = torch.full((3, 1), 1.5, dtype=torch.float64)
    p = torch.tensor([[0.0], [0.34], [1.0]], dtype=torch.float64)  # 0, 2 and 6 of 6 entries
    out = support_threshold(z, theta, p)
    soft = torch.sign(z[0]) * (z[0].abs() - 1.5).clamp(min=0)
    assert torch.equal(out[0], soft)
    assert torch.equal(out[1], torch.cat([z[1, :2], soft[2:]]))
    assert torch.equal(out[2], torch.cat([z[2, :4], soft[4:]]))  # every entry above theta passes, none below


def test_tuned_scalars_are_the_grids_best_and_beat_ista():
    """The chosen point is the grid's best on the training samples (every point scored here independently), and
    HyperLISTA at K iterations is far ahead of K ISTA iterations, as the paper reports."""
    problem = make_problem(get_setting("small"), 0, batch_size=64)
    grid = ((0.05, 0.15, 0.5), (0.0, 0.05), (0.0, 0.3))
    c, db = tune(problem, 6, tune_on=256, grid=grid)
    op = Operator.of(problem.D)
    b, x = problem.train.b[:256].double(), problem.train.x[:256].double()
    scores = {}
    for c1 in grid[0]:
        for c2 in grid[1]:
            for c3 in grid[2]:
                est = solve(op, b, 6, (c1, c2, c3))
                scores[(c1, c2, c3)] = 10 * math.log10(float((est - x).pow(2).sum() / x.pow(2).sum()))
    assert c == min(scores, key=scores.__getitem__)
    assert db == pytest.approx(scores[c])
    lam = 0.4  # the networks' initial threshold constant: 6 ISTA iterations are the untrained 6-layer LISTA
    plain = ista(problem.D.double(), b, lam, 6)
    ista_db = 10 * math.log10(float((plain - x).pow(2).sum() / x.pow(2).sum()))
    assert db < ista_db - 10


def test_reference_scores_val_and_test():
    problem = make_problem(get_setting("small"), 0, batch_size=64)
    r = reference(problem, 4, tune_on=128)
    assert r["method"] == "hyperlista" and r["layers"] == 4 and len(r["c"]) == 3
    est = solve(Operator.of(problem.D), problem.test.b, 4, tuple(r["c"]))
    x = problem.test.x.double()
    assert r["test_nmse_db"] == pytest.approx(10 * math.log10(float((est - x).pow(2).sum() / x.pow(2).sum())))
    assert math.isfinite(r["val_nmse_db"])


def test_classical_command_reports_hyperlista(tmp_path, capsys):
    from nasdun.interfaces.cli import main

    out = tmp_path / "classical.json"
    assert main(["classical", "--setting", "small", "--iterations", "20", "--layers", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    refs = {r["method"]: r for r in __import__("json").loads(out.read_text())["references"]}
    assert set(refs) == {"ista", "fista", "hyperlista"}
    hyper = refs["hyperlista"]
    assert hyper["layers"] == 3 and f"test nmse_db {hyper['test_nmse_db']:.2f}" in printed
    problem = make_problem(get_setting("small"), 0, batch_size=64)
    est = solve(Operator.of(problem.D), problem.test.b, 3, tuple(hyper["c"]))
    x = problem.test.x.double()
    assert hyper["test_nmse_db"] == pytest.approx(10 * math.log10(float((est - x).pow(2).sum() / x.pow(2).sum())))
