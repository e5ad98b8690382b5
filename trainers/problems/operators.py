"""Problems given by an operator and data: a user's own sensing matrix, basis and signals; natural-image CS.

An :class:`OperatorSetting` is a sensing matrix Phi (m x n_f), an optional synthesis basis Psi
(n_f x n), a signal source for train / validation / test and noise. The network estimates a code
x in R^n; what is scored (loss, ``nmse_db``, PSNR) is the signal f = Psi x against the true signal.
The effective dictionary A = Phi Psi takes D's place everywhere D is used (the initialisation
Wb = A^T / L, Wx = I - A^T A / L, L = 1.001 ||A||^2). Without a basis, f = x and the maths is the
synthetic settings' exactly.

What is seeded by what follows :mod:`trainers.problems.make`: Phi, a learned basis, validation and
test data from the setting's seed; the training set (drawn patches, or drawn codes) and its batch
order from (setting seed, run seed). Signals read from files are the same for every seed; only
their batch order and noise change.

A problem file (``--setting my_problem.yaml``) is read by :func:`load_problem_file`; its data
files' SHA-256 make up :attr:`OperatorSetting.digest`, which a run directory records so that a
resumed run refuses changed data (:func:`problem_record`, :func:`check_problem_record`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nasdun.core.errors import NasdunError
from trainers.problems.seeds import derive

if TYPE_CHECKING:
    import torch

    from trainers.problems.data import Problem

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class OperatorSetting:
    """A problem given by an operator and data (see the module's text)."""

    name: str
    description: str
    m: int  # measurements (rows of Phi)
    n: int  # code length (columns of A = Phi Psi)
    n_signal: int  # length of the scored signal f (columns of Phi)
    phi: str = "gaussian"  # "gaussian" (N(0, 1/m) entries, from the setting's seed) or an .npy / .npz file
    basis: str = ""  # "" (none: f = x), "dct" (orthonormal 2-D DCT of square patches), "learned", or a file
    source: str = "synthetic"  # "synthetic" (Bernoulli(p)-Gaussian codes), "files", or "images"
    files: tuple[tuple[str, str], ...] = ()  # (split, path) of signal files, for source "files"
    p: float = 0.1
    n_train: int = 8_192
    n_val: int = 1_024
    n_test: int = 2_048
    snr_db: float | None = None
    seed: int = 1234
    patch: int = 16  # images: block side
    train_images: tuple[str, ...] = ()
    val_images: tuple[str, ...] = ()
    test_images: tuple[str, ...] = ()
    learn_patches: int = 10_000  # learned basis: the training patches it is learned on
    learn_epochs: int = 3
    digest: str = ""  # SHA-256 over the data files' contents (problem files)
    tags: tuple[str, ...] = field(default=())

    @property
    def images(self) -> bool:
        """Whether the test set is whole images (scored by PSNR too)."""
        return self.source == "images"

    def draw_dictionary(self, dtype: Any = None) -> Any:
        """The effective dictionary A = Phi Psi, as a CPU tensor."""
        import torch

        return torch.tensor(effective_dictionary(self)).to(dtype or torch.float32)

    def synthesis_basis(self) -> np.ndarray | None:
        """The synthesis basis Psi the signal is scored in (None: f = x)."""
        return operator(self)[1]

    def build(self, seed: int, batch_size: int, device: Any, dtype: Any) -> Problem:
        """Draw or read the setting's data (:func:`build`)."""
        return build(self, seed, batch_size, device, dtype)


@cache
def operator(s: OperatorSetting) -> tuple[np.ndarray, np.ndarray | None]:
    """(Phi, Psi or None) in float64, read-only (cached); Psi is n_f x n."""
    phi, psi = _operator(s)
    for a in (phi, psi):
        if a is not None:
            a.setflags(write=False)
    return phi, psi


def _operator(s: OperatorSetting) -> tuple[np.ndarray, np.ndarray | None]:
    if s.phi == "gaussian":
        g = np.random.default_rng(derive(s.seed, 1))
        phi = g.standard_normal((s.m, s.n_signal)) / math.sqrt(s.m)
    else:
        phi = _array(s.phi, "phi")
    if s.basis == "":
        return phi, None
    if s.basis == "dct":
        from trainers.problems.images import dct_basis

        return phi, dct_basis(round(math.sqrt(s.n_signal)))
    if s.basis == "learned":
        return phi, learned_basis(s)
    return phi, _array(s.basis, "basis")


def effective_dictionary(s: OperatorSetting) -> np.ndarray:
    phi, psi = operator(s)
    return phi if psi is None else phi @ psi


def learned_basis(s: OperatorSetting) -> np.ndarray:
    """A dictionary of ``n`` atoms learned on ``learn_patches`` training patches with scikit-learn's
    MiniBatchDictionaryLearning (seeded), cached on disk per setting (``$NASDUN_CACHE``, default ~/.cache/nasdun)."""
    import os

    key = hashlib.sha256(repr((s.n, s.patch, s.train_images, s.learn_patches, s.learn_epochs, s.seed, "v1")).encode()).hexdigest()[:16]
    cache_dir = Path(os.environ.get("NASDUN_CACHE") or Path.home() / ".cache" / "nasdun")
    path = cache_dir / f"learned-{key}.npy"
    if path.is_file():
        return np.load(path)
    try:
        from sklearn.decomposition import MiniBatchDictionaryLearning
    except ImportError:
        raise NasdunError("a learned basis needs scikit-learn (pip install scikit-learn)") from None
    from trainers.problems.images import random_patches

    print(f"nasdun: learning a {s.n_signal} x {s.n} dictionary on {s.learn_patches:,} patches (once per setting; cached in {cache_dir})", flush=True)
    patches = random_patches(s.train_images, s.learn_patches, s.patch, np.random.default_rng(derive(s.seed, 5)))
    learner = MiniBatchDictionaryLearning(n_components=s.n, alpha=0.1, batch_size=256, max_iter=s.learn_epochs, random_state=s.seed % 2**32)
    psi = learner.fit(patches).components_.T.copy()  # atoms (unit norm) as columns
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npy")
    np.save(tmp, psi)
    os.replace(tmp, path)
    return psi


def build(s: OperatorSetting, seed: int, batch_size: int, device: Any, dtype: torch.dtype) -> Problem:
    """Draw or read the setting's data (what is seeded by what: the module's text)."""
    import torch

    from trainers.problems.data import Problem, Split, add_noise

    phi, psi = operator(s)
    A = phi if psi is None else phi @ psi
    sets = {split: _signals(s, split, seed) for split in SPLITS}
    layout: tuple[tuple[str, int, int], ...] = ()
    if s.images:
        from trainers.problems.images import cropped

        layout = tuple((name, *cropped(name, s.patch).shape) for name in s.test_images)  # type: ignore[misc]

    def split(name: str, tag: tuple[int, ...]) -> Split:
        f = torch.tensor(sets[name])  # a copy: file arrays are cached read-only
        b = f @ torch.tensor(phi).T
        if s.snr_db is not None:
            b = add_noise(b, s.snr_db, torch.Generator().manual_seed(derive(s.seed, *tag)))
        return Split(b=b.to(device=device, dtype=dtype), x=f.to(device=device, dtype=dtype))

    return Problem(
        setting=s,  # type: ignore[arg-type]
        seed=seed,
        D=torch.tensor(A).to(device=device, dtype=dtype),
        train=split("train", (14, seed)),
        val=split("val", (12,)),
        test=split("test", (13,)),
        batch_size=batch_size,
        psi=None if psi is None else torch.tensor(psi).to(device=device, dtype=dtype),
        layout=layout,
    )


def _signals(s: OperatorSetting, split: str, seed: int) -> np.ndarray:
    """The true signals f of one split, (N, n_f) float64."""
    if s.source == "files":
        return _array(dict(s.files)[split], f"signals.{split}")
    if s.source == "images":
        from trainers.problems.images import blocks, random_patches

        if split == "test":
            test = np.concatenate([blocks(name, s.patch) for name in s.test_images])
            if test.shape[0] != s.n_test:
                raise NasdunError(f"setting {s.name}: its test images give {test.shape[0]} blocks; n_test says {s.n_test}")
            return test
        names, count, tag = (s.train_images, s.n_train, (4, seed)) if split == "train" else (s.val_images, s.n_val, (2, 0))
        return random_patches(names, count, s.patch, np.random.default_rng(derive(s.seed, *tag)))
    count, tag = {"train": (s.n_train, (4, seed)), "val": (s.n_val, (2, 0)), "test": (s.n_test, (3, 0))}[split]
    g = np.random.default_rng(derive(s.seed, *tag))
    x = (g.random((count, s.n)) < s.p) * g.standard_normal((count, s.n))
    _, psi = operator(s)
    return x if psi is None else x @ psi.T


# -- problem files ---------------------------------------------------------------------------------
KEYS = {"name", "description", "phi", "basis", "signals", "synthetic", "snr_db", "seed"}


def is_problem_file(name: str) -> bool:
    return name.endswith((".yaml", ".yml"))


def setting_label(name: str) -> str:
    """A setting's short name for file names and titles: a problem file's stem, else the name."""
    return Path(name).stem if is_problem_file(name) else name


def load_problem_file(path: str | Path) -> OperatorSetting:
    """A problem file: every error is one line naming the file and what is wrong (see docs/problems.md)."""
    from nasdun.core.config import load_yaml

    file = Path(path).resolve()
    if not file.is_file():
        raise NasdunError(f"problem file {str(path)!r} does not exist; expected a YAML file naming phi and the signals (docs/problems.md)")
    data = load_yaml(file, "problem")
    where = f"problem file {str(path)!r}"
    unknown = sorted(set(data) - KEYS)
    if unknown:
        raise NasdunError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(KEYS)}")
    if "phi" not in data:
        raise NasdunError(f"{where}: no phi; expected phi: a .npy/.npz file holding the m x n_f sensing matrix")

    def local(value: Any, what: str) -> str:
        if not isinstance(value, str) or not value:
            raise NasdunError(f"{where}: {what}={value!r}; expected the path of a .npy or .npz file")
        p = Path(value) if Path(value).is_absolute() else file.parent / value
        return str(p)

    hashes: list[str] = []
    phi_path = local(data["phi"], "phi")
    phi = _array(phi_path, "phi", where)
    hashes.append(_sha(phi_path))
    m, n_f = phi.shape
    basis = data.get("basis", "")
    if basis in ("", None):
        basis, n = "", n_f
    elif basis == "dct":
        side = int(round(math.sqrt(n_f)))
        if side * side != n_f:
            raise NasdunError(f"{where}: basis: dct needs square patches, n_f a square number; phi has {n_f} columns")
        n = n_f
    else:
        basis = local(basis, "basis")
        psi = _array(basis, "basis", where)
        if psi.shape[0] != n_f:
            raise NasdunError(f"{where}: basis {basis!r} has {psi.shape[0]} rows; expected n_f = {n_f} (the columns of phi)")
        hashes.append(_sha(basis))
        n = psi.shape[1]
    signals, synthetic = data.get("signals"), data.get("synthetic")
    if (signals is None) == (synthetic is None):
        raise NasdunError(f"{where}: expected exactly one of signals: (files for train, val, test) or synthetic: (a code model)")
    extra: dict[str, Any] = {}
    if signals is not None:
        if not isinstance(signals, dict) or sorted(signals) != sorted(SPLITS):
            got = sorted(signals) if isinstance(signals, dict) else signals
            raise NasdunError(f"{where}: signals={got!r}; expected files for each of train, val, test")
        files = []
        for split in SPLITS:
            p = local(signals[split], f"signals.{split}")
            arr = _array(p, f"signals.{split}", where)
            if arr.shape[1] != n_f:
                raise NasdunError(f"{where}: signals.{split} {p!r} holds signals of length {arr.shape[1]}; expected n_f = {n_f} (phi's columns)")
            files.append((split, p))
            extra[f"n_{split}"] = arr.shape[0]
            hashes.append(_sha(p))
        extra.update(source="files", files=tuple(files))
    else:
        if not isinstance(synthetic, dict) or set(synthetic) - {"p", "n_train", "n_val", "n_test"}:
            raise NasdunError(f"{where}: synthetic={synthetic!r}; expected a mapping of p, n_train, n_val, n_test")
        for key, value in synthetic.items():
            ok = isinstance(value, float | int) and not isinstance(value, bool)
            if key == "p" and not (ok and 0 < value <= 1):
                raise NasdunError(f"{where}: synthetic.p={value!r}; expected a probability in (0, 1]")
            if key != "p" and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise NasdunError(f"{where}: synthetic.{key}={value!r}; expected an integer >= 1")
            extra[key] = value
        extra["source"] = "synthetic"
    snr = data.get("snr_db")
    if snr is not None and (isinstance(snr, bool) or not isinstance(snr, int | float) or not math.isfinite(snr)):
        raise NasdunError(f"{where}: snr_db={snr!r}; expected a number of dB (or leave it out: noiseless)")
    seed = data.get("seed", 1234)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise NasdunError(f"{where}: seed={seed!r}; expected an integer >= 0")
    digest = hashlib.sha256("".join(hashes).encode()).hexdigest()
    return OperatorSetting(
        name=str(file), description=str(data.get("description") or data.get("name") or file.stem), m=m, n=n, n_signal=n_f,
        phi=phi_path, basis=basis, snr_db=None if snr is None else float(snr), seed=seed, digest=digest, **extra,
    )  # fmt: skip


def _sha(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


MAX_ENTRIES = 200_000_000  # 1.6 GB as float64: larger arrays are refused from their header, before anything is allocated
REAL = "fiu"  # numpy dtype kinds accepted: floating point and integers (booleans, complex, text, records refused)


def _header(fh: Any) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype an .npy stream declares, read from its header only."""
    from numpy.lib import format as npy

    version = npy.read_magic(fh)
    shape, _, dtype = npy.read_array_header_1_0(fh) if version == (1, 0) else npy.read_array_header_2_0(fh)
    return tuple(shape), dtype


def _check_header(shape: tuple[int, ...], dtype: np.dtype, payload: int | None) -> None:
    """Refuse, from the header alone, what cannot be a real 2-D operator of sane size (ValueError: the caller names the file)."""
    if dtype.fields is not None or dtype.kind not in REAL:
        kind = (
            "a structured record"
            if dtype.fields is not None
            else {"c": "complex", "b": "boolean", "U": "text", "S": "bytes", "O": "object"}.get(dtype.kind, dtype.kind)
        )
        raise ValueError(f"its dtype is {dtype} ({kind}); expected real numbers (float or integer)")
    entries = math.prod(shape)
    if entries > MAX_ENTRIES:
        raise ValueError(f"its header declares shape {shape} ({entries:,} entries); expected at most {MAX_ENTRIES:,}")
    if payload is not None and entries * dtype.itemsize > payload:
        raise ValueError(f"its header declares shape {shape} of {dtype} ({entries * dtype.itemsize:,} bytes) but the file holds {payload:,}")


@cache
def _cached_array(path: str, mtime_ns: int, size: int) -> np.ndarray:
    if path.endswith(".npz"):
        import zipfile

        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith(".npy")]
            if len(names) != 1:
                raise ValueError(f"it holds {len(names)} arrays ({', '.join(n.removesuffix('.npy') for n in names)}); expected exactly one")
            with zf.open(names[0]) as fh:
                shape, dtype = _header(fh)
                header = fh.tell()
            _check_header(shape, dtype, zf.getinfo(names[0]).file_size - header)
        with np.load(path, allow_pickle=False) as z:
            arr = z[z.files[0]]
    else:
        with open(path, "rb") as fh:
            shape, dtype = _header(fh)
            _check_header(shape, dtype, size - fh.tell())
        arr = np.load(path, allow_pickle=False)
    out = np.asarray(arr, dtype=np.float64)
    out.setflags(write=False)
    return out


def _array(path: str, what: str, where: str = "") -> np.ndarray:
    """A 2-D finite real array, not all zero, from an .npy or .npz file; one-line errors name the file."""
    at = f"{where}: " if where else ""
    p = Path(path)
    if not p.is_file():
        raise NasdunError(f"{at}{what} file {path!r} does not exist")
    if p.suffix not in (".npy", ".npz"):
        raise NasdunError(f"{at}{what} file {path!r} is not .npy or .npz; expected a numpy array file")
    try:
        stat = p.stat()
        arr = _cached_array(str(p), stat.st_mtime_ns, stat.st_size)
    except (ValueError, OSError, EOFError) as err:
        raise NasdunError(f"{at}{what} file {path!r} cannot be read as a numpy array: {str(err).splitlines()[0][:160]}") from None
    except Exception as err:  # zipfile.BadZipFile and other readers' own errors: a file that is not what its suffix says
        raise NasdunError(f"{at}{what} file {path!r} cannot be read as a numpy array ({type(err).__name__}: {str(err)[:120]})") from None
    if arr.ndim != 2 or 0 in arr.shape:
        raise NasdunError(f"{at}{what} file {path!r} holds an array of shape {arr.shape}; expected 2-D (rows x columns), neither empty")
    bad = int((~np.isfinite(arr)).sum())
    if bad:
        raise NasdunError(f"{at}{what} file {path!r} holds {bad} NaN or infinite entries; expected finite numbers")
    if not arr.any():
        raise NasdunError(f"{at}{what} file {path!r} is all zeros; expected nonzero entries")
    return arr


# -- what a run directory records ------------------------------------------------------------------
def problem_record(setting: Any) -> dict[str, Any]:
    """What a run directory records of its problem: for a problem file, its path and the data's digest."""
    if getattr(setting, "digest", ""):  # only a problem file has one
        return {"problem_file": setting.name, "digest": setting.digest}
    return {}


def check_problem_record(saved: dict[str, Any], setting: Any, run_dir: Path) -> None:
    """Refuse to continue a run whose problem file's data changed since it was written."""
    now = problem_record(setting)
    if saved and saved.get("digest") != now.get("digest"):
        raise NasdunError(
            f"{run_dir} was written with the data of {saved.get('problem_file')!r} (SHA-256 {str(saved.get('digest'))[:12]}...);"
            f" its files now hash to {str(now.get('digest'))[:12]}...: the data changed; restore the files or start a new run"
        )


# -- built-in natural-image settings ---------------------------------------------------------------
TEST_IMAGES = ("camera", "astronaut", "coins", "coffee")
VAL_IMAGES = ("chelsea", "rocket")
TRAIN_IMAGES = ("brick", "grass", "gravel", "hubble_deep_field", "moon", "motorcycle")

IMAGE_CS50 = OperatorSetting(
    name="image_cs50",
    description="natural-image CS: 16x16 blocks, Gaussian Phi 128x256 (50%), Psi the 2-D DCT; PSNR on 4 held-out images",
    m=128, n=256, n_signal=256, basis="dct", source="images", n_train=40_960, n_val=2_048, n_test=3_405,  # 1024 + 1024 + 432 + 925 blocks
    train_images=TRAIN_IMAGES, val_images=VAL_IMAGES, test_images=TEST_IMAGES, tags=("images",),
)  # fmt: skip
IMAGE_SETTINGS = (
    IMAGE_CS50,
    replace(IMAGE_CS50, name="image_cs50_learned", n=512, basis="learned",
            description="natural-image CS: 16x16 blocks, Gaussian Phi 128x256 (50%), Psi a 256x512 dictionary learned on the training patches"),
    replace(IMAGE_CS50, name="image_cs25", m=64, description="natural-image CS at 25%: Gaussian Phi 64x256, Psi the 2-D DCT"),
    replace(IMAGE_CS50, name="image_cs10", m=26, description="natural-image CS at 10%: Gaussian Phi 26x256, Psi the 2-D DCT"),
)  # fmt: skip
