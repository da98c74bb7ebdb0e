"""Argument checks shared by the whole package: one spelling of each rule, one kind of message.

Every public function validates its arguments before it does any work (and before it enters
C). The messages name the argument, what was given and what is expected, so a learner can fix
the call without reading the source.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

INT64_MAX = 2**63 - 1
"""The largest size C accepts: sizes cross the seam as int64_t."""


def positive_int(name: str, value: Any, *, maximum: int = INT64_MAX) -> int:
    """``value`` as an ``int`` in [1, maximum]; TypeError or ValueError naming ``name`` if not.

    Booleans are refused (``True`` is an int in Python, but never a size someone meant).
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    if value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value}")
    return int(value)


def finite_float(name: str, value: Any, *, low: float = -math.inf, high: float = math.inf,
                 low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite ``float`` within [low, high] (ends open where asked).

    TypeError for what is not a real number (strings, None, booleans), ValueError for NaN,
    infinities and values out of range; the message names ``name`` and the range.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                      np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    number = float(value)
    below = number <= low if low_open else number < low
    above = number >= high if high_open else number > high
    if not math.isfinite(number) or below or above:
        interval = (f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}")
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    return number
