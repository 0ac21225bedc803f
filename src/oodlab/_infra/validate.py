"""Config value checks: each returns the value converted, or raises ConfigError naming the key.

One implementation serves the loss heads, the score hyperparameters and the backbones, so a
bad value gets the same message wherever it is set. Numbers must be finite reals; ``True``
and ``False`` are refused even though Python treats them as 1 and 0, because a boolean where
a number belongs is a mistake in the config. Numeric strings ("3") are accepted as their
number.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from oodlab.errors import ConfigError

Closed = Literal["both", "left", "right", "neither"]


def number(key: str, value: Any, allowed: str, finite: bool = True) -> float:
    """``value`` as a float (a finite one unless ``finite`` is false); ``allowed`` is the range
    the error message states."""
    if isinstance(value, bool):
        raise ConfigError(key, value, allowed)
    try:
        converted = float(value)
    except (TypeError, ValueError):
        raise ConfigError(key, value, allowed) from None
    if math.isnan(converted) or (finite and math.isinf(converted)):
        raise ConfigError(key, value, allowed)
    return converted


def in_range(
    key: str,
    value: Any,
    low: float,
    high: float,
    *,
    closed: Closed = "both",
    what: str = "a number",
) -> float:
    """A finite number in the interval from ``low`` to ``high``; ``closed`` says which ends
    belong to it (pandas' convention). The message reads e.g. "a number in [0, 1)"."""
    low_closed = closed in ("both", "left")
    high_closed = closed in ("both", "right")
    allowed = (
        f"{what} in {'[' if low_closed else '('}{low:g}, {high:g}{']' if high_closed else ')'}"
    )
    converted = number(key, value, allowed)
    above_low = converted >= low if low_closed else converted > low
    below_high = converted <= high if high_closed else converted < high
    if not (above_low and below_high):
        raise ConfigError(key, value, allowed)
    return converted


def positive(key: str, value: Any) -> float:
    converted = number(key, value, "a number > 0")
    if converted <= 0:
        raise ConfigError(key, value, "a number > 0")
    return converted


def non_negative(key: str, value: Any) -> float:
    converted = number(key, value, "a number >= 0")
    if converted < 0:
        raise ConfigError(key, value, "a number >= 0")
    return converted


def percentile(key: str, value: Any) -> float:
    return in_range(key, value, 0, 100, closed="right", what="a percentile")


def positive_int(key: str, value: Any) -> int:
    """An integer >= 1; a float with an integral value (2.0) is accepted as that integer."""
    integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not integral or value < 1:
        raise ConfigError(key, value, "an integer >= 1")
    return int(value)


def boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, value, "true or false")
    return value
