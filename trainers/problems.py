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
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from nasdun.errors import NasdunError
from nasdun.registry import Registry
from trainers.data import Problem, Split, add_noise, derive, synthesize
from trainers.operators import IMAGE_SETTINGS, OperatorSetting, is_problem_file, load_problem_file

__all__ = ["SETTINGS", "OperatorSetting", "Problem", "Setting", "Split", "dictionary", "get_setting", "make_problem", "register", "synthesize"]

SETTINGS: Registry[Setting | OperatorSetting] = Registry("setting")


@dataclass(frozen=True)
class Setting:
    """A problem setting. ``test_*`` fields change only the test data (transfer settings)."""

    name: str
    description: str
    m: int = 250
    n: int = 500
    p: float = 0.1
    n_train: int = 102_400
    n_val: int = 10_240
    n_test: int = 10_240
    signal: str = "bernoulli_gaussian"  # or "gamma": every entry ~ Gamma(1.0, scale 0.1)
    dictionary: str = "gaussian"  # or "lowrank" (D = U V) or "kappa" (prescribed condition number)
    rank: int = 0
    kappa: float = 0.0
    snr_db: float | None = None  # noise on train, validation and test
    test_snr_db: float | None = None  # noise on test only (transfer)
    test_saltpepper: float = 0.0  # fraction of entries of b replaced by its max/min (test only)
    test_dict_noise: float = 0.0  # Laplace scale added to D for the test set (test only)
    seed: int = 1234
    tags: tuple[str, ...] = field(default=())

    def draw_dictionary(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """D, drawn from the setting's seed alone."""
        return _dictionary(self, torch.Generator().manual_seed(derive(self.seed, 1))).to(dtype)

    def synthesis_basis(self) -> np.ndarray | None:
        """The synthesis basis Psi of the scored signal: none, the code is scored itself."""
        return None

    @property
    def images(self) -> bool:
        """Whether the test set is whole images (scored by PSNR too): never for a synthetic setting."""
        return False

    def build(self, seed: int, batch_size: int, device: str | torch.device, dtype: torch.dtype) -> Problem:
        """Draw the dictionary and the sets (see the module docstring for what is seeded by what)."""
        s = self

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


def register(setting: Setting | OperatorSetting) -> Setting:
    return SETTINGS.register(setting.name, setting)  # type: ignore[return-value]


_DEFAULT = Setting("noiseless", "design-space paper search setting: m=250, n=500, p=0.1, noiseless")
for _s in (
    _DEFAULT,
    replace(_DEFAULT, name="snr40", description="noisy measurements, SNR 40 dB", snr_db=40.0),
    replace(_DEFAULT, name="snr20", description="noisy measurements, SNR 20 dB", snr_db=20.0),
    replace(_DEFAULT, name="nonexact", description="every entry of x* ~ Gamma(shape 1.0, scale 0.1)", signal="gamma"),
    replace(_DEFAULT, name="transfer_snr40", description="trained noiseless, tested at SNR 40 dB", test_snr_db=40.0),
    replace(_DEFAULT, name="transfer_snr20", description="trained noiseless, tested at SNR 20 dB", test_snr_db=20.0),
    replace(
        _DEFAULT,
        name="transfer_saltpepper",
        description="trained noiseless, tested with 1% salt-and-pepper entries of b",
        test_saltpepper=0.01,
    ),
    replace(
        _DEFAULT,
        name="perturbed_dict",
        description="tested on D + Laplace(0, 1e-3), columns renormalised",
        test_dict_noise=1e-3,
    ),
    replace(_DEFAULT, name="limited_10240", description="10,240 training samples", n_train=10_240, n_val=1_024),
    replace(_DEFAULT, name="limited_5120", description="5,120 training samples", n_train=5_120, n_val=1_024),
    replace(_DEFAULT, name="m512n1024", description="D in R^{512 x 1024}", m=512, n=1024),
    replace(_DEFAULT, name="illcond", description="low-rank D = U V, U 250x200, V 200x500", dictionary="lowrank", rank=200),
    *(replace(_DEFAULT, name=f"kappa{k}", description=f"D with condition number {k}", dictionary="kappa", kappa=float(k)) for k in (5, 30, 50)),
):
    register(_s)

_SMALL = register(Setting("small", "CPU-sized demo and test setting: m=50, n=100, p=0.1", m=50, n=100, n_train=8_192, n_val=1_024, n_test=2_048))
register(replace(_SMALL, name="small_snr20", description="small, noisy measurements at SNR 20 dB", snr_db=20.0))
register(replace(_SMALL, name="small_transfer_snr20", description="small, trained noiseless, tested at SNR 20 dB", test_snr_db=20.0))


for _image in IMAGE_SETTINGS:
    register(_image)


def get_setting(name: str | Setting | OperatorSetting) -> Setting | OperatorSetting:
    """A registered setting by name, or a problem file (``*.yaml``: :func:`trainers.operators.load_problem_file`)."""
    if isinstance(name, Setting | OperatorSetting):
        return name
    if isinstance(name, str) and is_problem_file(name):
        return load_problem_file(name)
    return SETTINGS.get(name)


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
    return get_setting(setting).draw_dictionary(dtype)


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
    return s.build(seed, batch_size, device, dtype)
