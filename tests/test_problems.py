import numpy as np
import pytest
import torch

from nasdun.core.errors import NasdunError
from trainers.problems.make import SETTINGS, Setting, get_setting, make_problem


def tiny(name: str, **kw) -> Setting:
    from dataclasses import replace

    return replace(SETTINGS.get(name), m=20, n=40, n_train=512, n_val=256, n_test=256, **kw)


def test_same_seed_same_data_and_seeds_change_only_training(small_problem):
    again = make_problem("small", seed=0, batch_size=64)
    other = make_problem("small", seed=1, batch_size=64)
    assert torch.equal(again.train.x, small_problem.train.x) and torch.equal(again.D, small_problem.D)
    assert torch.equal(other.val.b, small_problem.val.b) and torch.equal(other.test.x, small_problem.test.x)
    assert torch.equal(other.D, small_problem.D)
    assert not torch.equal(other.train.x, small_problem.train.x)
    b0, _ = small_problem.train_batch(5)
    b1, _ = again.train_batch(5)
    assert torch.equal(b0, b1)


def test_sets_are_disjoint_and_consistent(small_problem):
    pr = small_problem
    tr, va, te = (set(map(tuple, s.x.numpy().round(6))) for s in (pr.train, pr.val, pr.test))
    assert not (tr & va) and not (tr & te) and not (va & te)
    torch.testing.assert_close(pr.test.b, pr.test.x @ pr.D.T, rtol=1e-4, atol=1e-5)  # noiseless
    torch.testing.assert_close(pr.D.norm(dim=0), torch.ones(pr.D.shape[1]), rtol=0, atol=1e-6)
    density = (pr.train.x != 0).double().mean().item()
    assert abs(density - 0.1) < 0.01


def test_batches_cover_an_epoch_without_repeats(small_problem):
    pr = small_problem
    seen = torch.cat([pr.train_batch(i)[1] for i in range(pr.batches_per_epoch)])
    assert len({tuple(r) for r in seen.numpy().round(6)}) == pr.batches_per_epoch * pr.batch_size


def test_noise_level_matches_snr():
    pr = make_problem(tiny("snr20"), seed=0, batch_size=32, dtype=torch.float64)
    clean = pr.test.x @ pr.D.T
    ratio = clean.var(dim=1).sum().item() / (pr.test.b - clean).var(dim=1).sum().item()
    assert 10 * np.log10(ratio) == pytest.approx(20, abs=0.3)


@pytest.mark.parametrize("name", ["transfer_snr40", "transfer_saltpepper", "perturbed_dict"])
def test_transfer_settings_change_only_the_test_data(name):
    base = make_problem(tiny("noiseless"), seed=0, batch_size=32)
    moved = make_problem(tiny(name), seed=0, batch_size=32)
    assert torch.equal(base.train.b, moved.train.b) and torch.equal(base.val.b, moved.val.b)
    assert torch.equal(base.test.x, moved.test.x)
    assert not torch.equal(base.test.b, moved.test.b)


def test_kappa_and_lowrank_dictionaries():
    pr = make_problem(tiny("kappa30"), seed=0, batch_size=32, dtype=torch.float64)
    sv = torch.linalg.svdvals(pr.D)
    assert 15 < (sv[0] / sv[-1]).item() < 60  # column normalisation moves it off exactly 30
    low = make_problem(replace_rank(tiny("illcond")), seed=0, batch_size=32, dtype=torch.float64)
    assert torch.linalg.matrix_rank(low.D).item() == 10


def replace_rank(s):
    from dataclasses import replace

    return replace(s, rank=10)


def test_gamma_signal_is_dense_positive():
    pr = make_problem(tiny("nonexact"), seed=0, batch_size=32, dtype=torch.float64)
    assert (pr.train.x > 0).all()
    assert pr.train.x.mean().item() == pytest.approx(0.1, rel=0.05)


def test_bad_inputs():
    with pytest.raises(NasdunError, match="unknown setting 'nosuch'"):
        make_problem("nosuch")
    with pytest.raises(NasdunError, match="batch_size 999999 exceeds"):
        make_problem("small", batch_size=999999)
    with pytest.raises(NasdunError, match="seed must be"):
        make_problem("small", seed=-1)


def test_noise_std_divides_by_m_as_the_reference_code():
    """std(D x*) over the m entries with 1/m (numpy's default, the reference code's), not the unbiased 1/(m-1)."""
    from trainers.problems.data import add_noise as _add_noise

    y = torch.randn(5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    noisy = _add_noise(y, 20.0, torch.Generator().manual_seed(2))
    draws = torch.randn(y.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    expected_std = torch.from_numpy(np.std(y.numpy(), axis=1, keepdims=True)) * 10 ** (-20 / 20)
    torch.testing.assert_close((noisy - y) / draws, expected_std.expand_as(y), rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", [n for n, s in SETTINGS.items() if isinstance(s, Setting)])
def test_every_registered_setting_draws_a_valid_problem(name):
    """Each setting at a reduced size: unit-norm dictionary columns, finite data of the right shapes, fixed by its seed."""
    from dataclasses import replace

    s = get_setting(name)
    small = replace(s, m=min(s.m, 30), n=min(s.n, 60), rank=min(s.rank, 20), n_train=256, n_val=64, n_test=64)
    a, b = make_problem(small, seed=0, batch_size=32, dtype=torch.float64), make_problem(small, seed=0, batch_size=32, dtype=torch.float64)
    assert a.D.shape == (small.m, small.n) and torch.allclose(a.D.norm(dim=0), torch.ones(small.n, dtype=torch.float64))
    for split, count in ((a.train, 256), (a.val, 64), (a.test, 64)):
        assert split.b.shape == (count, small.m) and split.x.shape == (count, small.n)
        assert torch.isfinite(split.b).all() and torch.isfinite(split.x).all()
    assert torch.equal(a.test.b, b.test.b) and torch.equal(a.train.x, b.train.x)
    if small.snr_db is None and small.test_snr_db is None and not small.test_saltpepper and not small.test_dict_noise:
        torch.testing.assert_close(a.test.b, a.test.x @ a.D.T)  # noiseless: b = D x* exactly
