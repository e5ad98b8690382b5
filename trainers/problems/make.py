"""Synthetic sparse-recovery problem settings (docs/design.md §3) and their seeded data.

A :class:`Setting` is data; :func:`make_problem` draws its dictionary and sample sets. What
is fixed by what:

* the dictionary D, the validation and the test sets come from ``setting.seed`` alone, so
  every run of a setting is scored on the same data;
* the training set and its batch order come from ``(setting.seed, run seed)``, so seeds of
  a retraining differ only in the training stream;
* all candidates of one run see the same batches (``Problem.train_batch(i)`` depends only
  on the global iteration ``i``).

Sets are drawn independently from continuous distributions with separate generators, so
they are disjoint with probability one. Everything is drawn on the CPU in float64 and then
cast, so a CPU and a GPU run see identical data.
"""

from __future__ import annotations

import math

import torch

from nasdun.core.errors import NasdunError
from trainers.problems.data import Problem, Split, add_noise, derive, synthesize
from trainers.problems.operators import OperatorSetting
from trainers.problems.settings import SETTINGS, Setting, get_setting, register

__all__ = ["SETTINGS", "OperatorSetting", "Problem", "Setting", "Split", "dictionary", "get_setting", "make_problem", "register", "synthesize"]


def draw_dictionary(s: Setting, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A synthetic setting's D, drawn from its seed alone."""
    return _dictionary(s, torch.Generator().manual_seed(derive(s.seed, 1))).to(dtype or torch.float32)


def build_synthetic(s: Setting, seed: int, batch_size: int, device: str | torch.device, dtype: torch.dtype) -> Problem:
    """Draw a synthetic setting's dictionary and sets (see the module docstring for what is seeded by what)."""

    def gen(*tag: int) -> torch.Generator:
        return torch.Generator().manual_seed(derive(s.seed, *tag))

    D = _dictionary(s, gen(1))
    val = _split(s, D, s.n_val, gen(2), test=False)
    test = _split(s, D, s.n_test, gen(3), test=True)
    train = _split(s, D, s.n_train, gen(4, seed), test=False)

    def cast(t: torch.Tensor) -> torch.Tensor:
        return t.to(device=device, dtype=dtype)

    return Problem(
        setting=s,
        seed=seed,
        D=cast(D),
        train=Split(cast(train.b), cast(train.x)),
        val=Split(cast(val.b), cast(val.x)),
        test=Split(cast(test.b), cast(test.x)),
        batch_size=batch_size,
    )


def _dictionary(s: Setting, g: torch.Generator) -> torch.Tensor:
    if s.dictionary == "gaussian":
        D = torch.randn(s.m, s.n, generator=g, dtype=torch.float64) / math.sqrt(s.m)
    elif s.dictionary == "lowrank":
        D = torch.randn(s.m, s.rank, generator=g, dtype=torch.float64) @ torch.randn(s.rank, s.n, generator=g, dtype=torch.float64)
    elif s.dictionary == "kappa":
        G = torch.randn(s.m, s.n, generator=g, dtype=torch.float64)
        U, _, Vh = torch.linalg.svd(G, full_matrices=False)
        sv = torch.logspace(0, math.log10(1.0 / s.kappa), s.m, dtype=torch.float64)
        D = U @ torch.diag(sv) @ Vh
        D = D * math.sqrt(s.n) / torch.linalg.norm(D)
    else:
        raise NasdunError(f"setting {s.name}: unknown dictionary kind {s.dictionary!r}; expected gaussian, lowrank or kappa")
    return D / torch.linalg.norm(D, dim=0, keepdim=True)


def _signals(s: Setting, count: int, g: torch.Generator) -> torch.Tensor:
    if s.signal == "bernoulli_gaussian":
        support = torch.rand(count, s.n, generator=g, dtype=torch.float64) < s.p
        return support * torch.randn(count, s.n, generator=g, dtype=torch.float64)
    if s.signal == "gamma":
        # torch's Gamma sampler takes no generator; shape 1.0 is the exponential distribution,
        # so Gamma(1, scale 0.1) = 0.1 * Exp(1), drawn by inverse CDF from the seeded generator.
        u = torch.rand(count, s.n, generator=g, dtype=torch.float64).clamp_min(1e-300)
        return -0.1 * torch.log(u)
    raise NasdunError(f"setting {s.name}: unknown signal kind {s.signal!r}; expected bernoulli_gaussian or gamma")


def _split(s: Setting, D: torch.Tensor, count: int, g: torch.Generator, test: bool) -> Split:
    x = _signals(s, count, g)
    Dm = D
    if test and s.test_dict_noise > 0:
        u = torch.rand(D.shape, generator=g, dtype=torch.float64) - 0.5
        Dm = D - s.test_dict_noise * torch.sign(u) * torch.log1p(-2 * u.abs())  # Laplace(0, scale), inverse CDF
        Dm = Dm / torch.linalg.norm(Dm, dim=0, keepdim=True)
    b = x @ Dm.T
    if s.snr_db is not None:
        b = add_noise(b, s.snr_db, g)
    if test and s.test_snr_db is not None:
        b = add_noise(b, s.test_snr_db, g)
    if test and s.test_saltpepper > 0:
        hit = torch.rand(b.shape, generator=g, dtype=torch.float64) < s.test_saltpepper
        salt = torch.rand(b.shape, generator=g, dtype=torch.float64) < 0.5
        hi = b.max(dim=1, keepdim=True).values.expand_as(b)
        lo = b.min(dim=1, keepdim=True).values.expand_as(b)
        b = torch.where(hit, torch.where(salt, hi, lo), b)
    return Split(b=b, x=x)


def dictionary(setting: str | Setting | OperatorSetting, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The setting's dictionary alone (the one :func:`make_problem` draws; an operator setting's A = Phi Psi), on the CPU."""
    s = get_setting(setting)
    return draw_dictionary(s, dtype) if isinstance(s, Setting) else s.draw_dictionary(dtype)


def make_problem(
    setting: str | Setting | OperatorSetting,
    seed: int = 0,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Problem:
    """Draw the setting's dictionary and sets (see the module docstring for what is seeded by what)."""
    s = get_setting(setting)
    if not isinstance(seed, int) or seed < 0:
        raise NasdunError(f"seed must be an integer >= 0; got {seed!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise NasdunError(f"batch_size must be an integer >= 1; got {batch_size!r}")
    if batch_size > s.n_train:
        raise NasdunError(f"batch_size {batch_size} exceeds the {s.n_train} training samples of setting {s.name}")
    return build_synthetic(s, seed, batch_size, device, dtype) if isinstance(s, Setting) else s.build(seed, batch_size, device, dtype)
