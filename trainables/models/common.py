"""Helpers shared by every model builder in the zoo."""

from __future__ import annotations


def scaled(c: int, width: float) -> int:
    """Channel (or unit) count `c` scaled by the width multiplier, rounded, at least 1."""
    return max(1, int(round(c * width)))
