"""Seeds derived from integers: every random draw of nasdun is seeded by one of these (no torch: settings use it)."""

from __future__ import annotations


def derive(*parts: int) -> int:
    """A 63-bit seed from integers, stable across runs and platforms."""
    h = 1469598103934665603
    for part in parts:
        h = ((h ^ (part & 0xFFFFFFFFFFFF)) * 1099511628211) % (1 << 63)
    return h
