"""The problem settings by name (docs/design.md §3): data only, no torch, so a command checks a setting's name before
anything heavy is imported. Drawing a setting's data is :mod:`trainers.problems.make`' work (synthetic settings) and
:mod:`trainers.problems.operators`' (an operator and data: problem files, the natural-image settings)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from nasdun.core.registry import Registry
from trainers.problems.operators import IMAGE_SETTINGS, OperatorSetting, is_problem_file, load_problem_file

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

    def synthesis_basis(self) -> np.ndarray | None:
        """The synthesis basis Psi of the scored signal: none, the code is scored itself."""
        return None

    @property
    def images(self) -> bool:
        """Whether the test set is whole images (scored by PSNR too): never for a synthetic setting."""
        return False


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
    """A registered setting by name, or a problem file (``*.yaml``: :func:`trainers.problems.operators.load_problem_file`)."""
    if isinstance(name, Setting | OperatorSetting):
        return name
    if isinstance(name, str) and is_problem_file(name):
        return load_problem_file(name)
    return SETTINGS.get(name)
