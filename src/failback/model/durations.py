"""Durations (``30s``, ``5m``) and sizes (``16MB``) as people write them in YAML.

Timeouts and windows are written in the unit that reads naturally; everything inside
failback works in float seconds and int bytes, so the conversion happens once, here.
Sizes follow PostgreSQL's convention: ``kB``/``MB``/``GB``/``TB`` are powers of 1024.

Every value is also bounded from above, here and nowhere else. The engine hands
durations to ``subprocess`` (whose wait is a C ``int`` of milliseconds: 24.8 days),
lock and socket waits (``time_t``), libpq (an ``int`` of seconds), and stores sizes
in SQLite (signed 64-bit) and JSON (exact up to 2**53). A limit checked at parsing
time turns ``timeout: 30d`` into ``FILE:LINE: key: message`` instead of an
``OverflowError`` in the middle of a run:

* ``MAX_TIMEOUT`` (7 days): timeouts and intervals (``PositiveDuration``), one
  operation or one wait;
* ``MAX_WINDOW`` (30 days): windows and hold-downs (``Duration``), which are measured
  against the clock, never handed to a system call as one wait;
* ``MAX_SIZE`` (1024TB = 2**50 bytes): sizes.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

__all__ = [
    "MAX_SIZE",
    "MAX_TIMEOUT",
    "MAX_WINDOW",
    "Duration",
    "PositiveDuration",
    "Size",
    "format_duration",
    "format_size",
    "parse_duration",
    "parse_size",
]

MAX_TIMEOUT = 7 * 86400.0
"""Longest timeout or interval, in seconds (7 days): well under subprocess's 24.8 days."""

MAX_WINDOW = 30 * 86400.0
"""Longest window or hold-down (stability_window, bake_time, observation_window,
hold_down), in seconds (30 days)."""

MAX_SIZE = 1024**5
"""Largest size, in bytes (1024TB = 2**50): fits SQLite's and JSON's integers exactly."""

_LIMITS = "see docs/topology.md#limits"
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)", re.IGNORECASE)
_DURATION_PATTERN = r"^\s*((\d+(\.\d+)?|\.\d+)\s*(ms|s|m|h|d)\s*)+$|^\s*\d+(\.\d+)?\s*$"
_DURATION_EXAMPLE = "write e.g. 500ms, 30s, 5m, 1h30m, 1d or a number of seconds"

_SIZE_UNITS = {
    "b": 1,
    "kb": 1024,
    "kib": 1024,
    "mb": 1024**2,
    "mib": 1024**2,
    "gb": 1024**3,
    "gib": 1024**3,
    "tb": 1024**4,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)\s*$", re.IGNORECASE)
_SIZE_PATTERN = r"^\s*(\d+(\.\d+)?|\.\d+)\s*([kKmMgGtT]i?)?[bB]?\s*$"
_SIZE_EXAMPLE = "write e.g. 512kB, 16MB, 1GB or a number of bytes"


def _number(value: Any, what: str, example: str) -> int | float | None:
    """The value as a finite non-negative number, ``None`` if it is text to parse.

    A whole number stays an ``int`` of any size (YAML reads ``10**400`` exactly):
    converting it to float before the upper bound is checked would overflow.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a {what}, got {value!r}; {example}")
    if isinstance(value, int | float):
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            raise ValueError(f"{value!r} is not a {what}; {example}")
        if value < 0:
            raise ValueError(f"a {what} cannot be negative (got {value!r}); {example}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a {what}, got {_kind(value)}; {example}")
    return None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _too_long(value: Any, maximum: float) -> ValueError:
    message = f"must be at most {format_duration(maximum)} (got {_shown(value)})"
    if maximum == MAX_TIMEOUT:
        message += f"; timeouts and intervals are at most {format_duration(maximum)}, {_LIMITS}"
    elif maximum == MAX_WINDOW:
        message += f"; windows and hold-downs are at most {format_duration(maximum)}, {_LIMITS}"
    return ValueError(message)


def parse_duration(value: str | int | float, *, maximum: float = MAX_WINDOW) -> float:
    """``"500ms"``, ``"30s"``, ``"5m"``, ``"1h30m"``, ``"1d"`` or a number -> float seconds.

    Raises ``ValueError`` (with an example of a valid value) for anything else,
    including negative numbers and durations longer than ``maximum`` seconds.
    """
    number = _number(value, "duration", _DURATION_EXAMPLE)
    if number is not None:
        if number > maximum:
            raise _too_long(value, maximum)
        return float(number)
    text = str(value).strip()
    if not text:
        raise ValueError(f"a duration cannot be empty; {_DURATION_EXAMPLE}")
    if text.startswith("-"):
        raise ValueError(f"a duration cannot be negative (got {text!r}); {_DURATION_EXAMPLE}")
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise ValueError(f"{_shown(text)} is not a duration; {_DURATION_EXAMPLE}")
        if seconds > maximum:
            raise _too_long(text, maximum)
        return seconds
    total = 0.0
    pos = 0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            raise ValueError(f"{_shown(text)} is not a duration; {_DURATION_EXAMPLE}")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]
        if not total <= maximum:  # also catches inf from a very long number
            raise _too_long(text, maximum)
        pos = match.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return total


def parse_size(value: str | int | float, *, maximum: int = MAX_SIZE) -> int:
    """``"512kB"``, ``"16MB"``, ``"1GB"`` or a number of bytes -> int bytes (1kB = 1024 B).

    Raises ``ValueError`` (with an example of a valid value) for anything else,
    including negative numbers and sizes larger than ``maximum`` bytes. Computed
    exactly (``1.5GB`` is 1610612736), rounded to a whole byte.
    """
    number = _number(value, "size", _SIZE_EXAMPLE)
    if number is not None:
        if number > maximum:
            raise _too_large(value, maximum)
        if number != int(number):
            raise ValueError(f"a size in bytes must be a whole number (got {value!r})")
        return int(number)
    text = str(value).strip()
    if text.startswith("-"):
        raise ValueError(f"a size cannot be negative (got {_shown(text)}); {_SIZE_EXAMPLE}")
    match = _SIZE_RE.match(text)
    unit = match.group(2).lower() if match else ""
    if match is None or (unit and unit not in _SIZE_UNITS):
        raise ValueError(f"{_shown(text)} is not a size; {_SIZE_EXAMPLE}")
    try:
        exact = Decimal(match.group(1)) * _SIZE_UNITS.get(unit, 1)
    except InvalidOperation:  # pragma: no cover - the pattern admits only plain decimals
        raise ValueError(f"{_shown(text)} is not a size; {_SIZE_EXAMPLE}") from None
    if exact > maximum:
        raise _too_large(text, maximum)
    return int(exact.to_integral_value(rounding=ROUND_HALF_EVEN))


def _too_large(value: Any, maximum: int) -> ValueError:
    return ValueError(
        f"must be at most {format_size(maximum)} (got {_shown(value)}); "
        f"sizes are at most {format_size(MAX_SIZE)}, {_LIMITS}"
    )


def format_size(size: int) -> str:
    """The shortest exact form of a size (``16777216`` -> ``16MB``), for messages."""
    for unit, factor in (("TB", 1024**4), ("GB", 1024**3), ("MB", 1024**2), ("kB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


def format_duration(seconds: float) -> str:
    """The shortest readable form of a duration (``300.0`` -> ``5m``), for messages."""
    if seconds < 1 and seconds != 0:
        return f"{seconds * 1000:g}ms"
    for unit, factor in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= factor and seconds % factor == 0:
            return f"{seconds / factor:g}{unit}"
    return f"{seconds:g}s"


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _positive(value: Any) -> float:
    seconds = parse_duration(value, maximum=MAX_TIMEOUT)
    if seconds <= 0:
        raise ValueError(f"must be longer than zero (got {value!r}); {_DURATION_EXAMPLE}")
    return seconds


def _window(value: Any) -> float:
    return parse_duration(value, maximum=MAX_WINDOW)


def _duration_schema(maximum: float, description: str) -> dict[str, Any]:
    return {
        "anyOf": [
            {"type": "string", "pattern": _DURATION_PATTERN},
            {"type": "number", "minimum": 0, "maximum": maximum},
        ],
        "description": f"{description} At most {format_duration(maximum)}.",
    }


Duration = Annotated[
    float,
    BeforeValidator(_window),
    WithJsonSchema(
        _duration_schema(
            MAX_WINDOW, "A duration: 500ms, 30s, 5m, 1h, 1d (combinable: 1h30m) or seconds."
        ),
        mode="validation",
    ),
]
"""A non-negative duration in seconds, written ``30s``, ``5m``... in the file (windows,
hold-downs: at most ``MAX_WINDOW``)."""

PositiveDuration = Annotated[
    float,
    BeforeValidator(_positive),
    WithJsonSchema(
        _duration_schema(MAX_TIMEOUT, "A duration longer than zero: 500ms, 30s, 5m..."),
        mode="validation",
    ),
]
"""A duration that must be longer than zero (timeouts, intervals: at most ``MAX_TIMEOUT``)."""

Size = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": _SIZE_PATTERN},
                {"type": "integer", "minimum": 0, "maximum": MAX_SIZE},
            ],
            "description": "A size: 512kB, 16MB, 1GB (powers of 1024) or bytes. At most 1024TB.",
        },
        mode="validation",
    ),
]
"""A non-negative size in bytes, written ``16MB`` in the file (at most ``MAX_SIZE``)."""
