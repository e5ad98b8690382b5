"""Natural images for compressive sensing: scikit-image's bundled photographs, patches, blocks, PSNR.

Nothing is downloaded: every image named here ships inside the scikit-image wheel. Images are
read as grey levels in [0, 1] (``rgb2gray`` for colour ones). A test image is cut into
non-overlapping ``patch`` x ``patch`` blocks in raster order, cropped at the bottom and right to a
multiple of the block size; training and validation patches are drawn at random positions from
other images, seeded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache

import numpy as np

from nasdun.core.errors import NasdunError

# name -> the skimage.data function (and, for a stereo pair, which view); all bundled in the wheel
BUNDLED = {
    "astronaut": ("astronaut", None), "brick": ("brick", None), "camera": ("camera", None),
    "chelsea": ("chelsea", None), "coffee": ("coffee", None), "coins": ("coins", None),
    "grass": ("grass", None), "gravel": ("gravel", None), "hubble_deep_field": ("hubble_deep_field", None),
    "moon": ("moon", None), "motorcycle": ("stereo_motorcycle", 0), "rocket": ("rocket", None),
}  # fmt: skip


@cache
def image(name: str) -> np.ndarray:
    """A bundled image as float64 grey levels in [0, 1] (read-only)."""
    if name not in BUNDLED:
        raise NasdunError(f"unknown image {name!r}; expected one of scikit-image's bundled photographs: {', '.join(BUNDLED)}")
    try:
        from skimage import color, data, util
    except ImportError:
        raise NasdunError("natural-image settings need scikit-image (pip install scikit-image)") from None
    func, view = BUNDLED[name]
    img = getattr(data, func)()
    img = img[view] if view is not None else img
    if img.ndim == 3:
        img = color.rgb2gray(img[..., :3])
    out = util.img_as_float64(img)
    out.setflags(write=False)
    return out


def cropped(name: str, patch: int) -> np.ndarray:
    """The image cropped (bottom, right) to whole ``patch`` x ``patch`` blocks."""
    img = image(name)
    h, w = (img.shape[0] // patch) * patch, (img.shape[1] // patch) * patch
    return img[:h, :w]


def blocks(name: str, patch: int) -> np.ndarray:
    """Non-overlapping blocks in raster order, each flattened row-major: (blocks, patch * patch)."""
    img = cropped(name, patch)
    h, w = img.shape[0] // patch, img.shape[1] // patch
    return img.reshape(h, patch, w, patch).transpose(0, 2, 1, 3).reshape(h * w, patch * patch)


def assemble(flat: np.ndarray, shape: tuple[int, int], patch: int) -> np.ndarray:
    """The inverse of :func:`blocks`: (blocks, patch * patch) back to an image of ``shape``."""
    h, w = shape[0] // patch, shape[1] // patch
    return flat.reshape(h, w, patch, patch).transpose(0, 2, 1, 3).reshape(shape)


def random_patches(names: Sequence[str], count: int, patch: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` patches at uniform random positions, each image chosen in proportion to its number of positions."""
    from numpy.lib.stride_tricks import sliding_window_view

    views = [sliding_window_view(image(n), (patch, patch)) for n in names]
    sizes = np.array([v.shape[0] * v.shape[1] for v in views], dtype=np.float64)
    which = rng.choice(len(views), size=count, p=sizes / sizes.sum())
    out = np.empty((count, patch * patch))
    for i, v in enumerate(views):
        sel = np.flatnonzero(which == i)
        rows, cols = rng.integers(0, v.shape[0], sel.size), rng.integers(0, v.shape[1], sel.size)
        out[sel] = v[rows, cols].reshape(sel.size, patch * patch)
    return out


def psnr(estimate: np.ndarray, truth: np.ndarray, peak: float = 1.0) -> float:
    """PSNR in dB of an image estimate clipped to [0, peak]."""
    mse = float(np.mean((np.clip(estimate, 0.0, peak) - truth) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def dct_basis(patch: int) -> np.ndarray:
    """The orthonormal 2-D DCT-II synthesis basis Psi (patch^2 x patch^2): a row-major flattened patch f = Psi x,
    x its 2-D DCT coefficients (``scipy.fft.dctn(F, norm="ortho")`` flattened row-major)."""
    from scipy.fft import dct

    C = dct(np.eye(patch), norm="ortho", axis=0)  # C @ v: the 1-D DCT of v
    return np.kron(C.T, C.T)
