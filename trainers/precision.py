"""Arithmetic precision of training and scoring: ``fp32`` (default), ``tf32`` or ``bf16``.

* ``fp32``: every matmul in full float32 (``torch.set_float32_matmul_precision("highest")``;
  on a GPU this turns TF32 off, which PyTorch's default leaves off for matmuls but on for cuDNN).
* ``tf32``: float32 tensors, matmuls allowed to use TensorFloat-32 (10-bit mantissa inputs,
  float32 accumulation) on Ampere and later GPUs; on a CPU PyTorch may use its own reduced
  precision kernels or none, so the numbers can equal ``fp32`` there.
* ``bf16``: forward passes under ``torch.autocast(dtype=bfloat16)`` (matmuls in bfloat16);
  parameters, gradients, Adam moments and the NMSE sums stay float32/float64.

torch is imported inside the functions, so the CLI and the config read :data:`PRECISIONS` without it.
Parameters and data are float32 in every mode, so a network trained in one mode is scored in
another by the same code. The global matmul setting is changed only inside :func:`precision_scope`
and restored on exit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from nasdun.core.errors import NasdunError

PRECISIONS = ("fp32", "tf32", "bf16")


def check_precision(name: str) -> str:
    if name not in PRECISIONS:
        raise NasdunError(f"precision {name!r}; expected one of {', '.join(PRECISIONS)}")
    return name


@contextlib.contextmanager
def precision_scope(name: str) -> Iterator[None]:
    """Set the float32 matmul precision for ``name`` (tf32: "high", else "highest"); restore it after."""
    import torch

    check_precision(name)
    old_matmul = torch.get_float32_matmul_precision()
    old_cudnn = torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("high" if name == "tf32" else "highest")
    torch.backends.cudnn.allow_tf32 = name == "tf32"
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old_matmul)
        torch.backends.cudnn.allow_tf32 = old_cudnn


def autocast(name: str, device: Any) -> contextlib.AbstractContextManager[object]:
    """The forward-pass context of ``name``: bfloat16 autocast for ``bf16``, nothing otherwise."""
    if check_precision(name) != "bf16":
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
