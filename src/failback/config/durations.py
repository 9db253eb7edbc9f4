"""Durations (``30s``, ``5m``) and sizes (``16MB``) as people write them in YAML.

Timeouts and windows are written in the unit that reads naturally; everything inside
failback works in float seconds and int bytes, so the conversion happens once, here.
Sizes follow PostgreSQL's convention: ``kB``/``MB``/``GB``/``TB`` are powers of 1024.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

__all__ = [
    "Duration",
    "PositiveDuration",
    "Size",
    "format_duration",
    "parse_duration",
    "parse_size",
]

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


def _number(value: Any, what: str, example: str) -> float | None:
    """The value as a finite non-negative number, ``None`` if it is text to parse."""
    if isinstance(value, bool):
        raise ValueError(f"expected a {what}, got {value!r}; {example}")
    if isinstance(value, int | float):
        number = float(value)
        if math.isnan(number) or math.isinf(number):
            raise ValueError(f"{value!r} is not a {what}; {example}")
        if number < 0:
            raise ValueError(f"a {what} cannot be negative (got {value!r}); {example}")
        return number
    if not isinstance(value, str):
        raise ValueError(f"expected a {what}, got {_kind(value)}; {example}")
    return None


def parse_duration(value: str | int | float) -> float:
    """``"500ms"``, ``"30s"``, ``"5m"``, ``"1h30m"``, ``"1d"`` or a number -> float seconds.

    Raises ``ValueError`` (with an example of a valid value) for anything else,
    including negative numbers.
    """
    number = _number(value, "duration", _DURATION_EXAMPLE)
    if number is not None:
        return number
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
        if math.isfinite(seconds):
            return seconds
        raise ValueError(f"{text!r} is not a duration; {_DURATION_EXAMPLE}")
    total = 0.0
    pos = 0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            raise ValueError(f"{text!r} is not a duration; {_DURATION_EXAMPLE}")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]
        pos = match.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return total


def parse_size(value: str | int | float) -> int:
    """``"512kB"``, ``"16MB"``, ``"1GB"`` or a number of bytes -> int bytes (1kB = 1024 B).

    Raises ``ValueError`` (with an example of a valid value) for anything else,
    including negative numbers.
    """
    number = _number(value, "size", _SIZE_EXAMPLE)
    if number is not None:
        if number != int(number):
            raise ValueError(f"a size in bytes must be a whole number (got {value!r})")
        return int(number)
    text = str(value).strip()
    if text.startswith("-"):
        raise ValueError(f"a size cannot be negative (got {text!r}); {_SIZE_EXAMPLE}")
    match = _SIZE_RE.match(text)
    unit = match.group(2).lower() if match else ""
    if match is None or (unit and unit not in _SIZE_UNITS):
        raise ValueError(f"{text!r} is not a size; {_SIZE_EXAMPLE}")
    return round(float(match.group(1)) * _SIZE_UNITS.get(unit, 1))


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
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"must be longer than zero (got {value!r}); {_DURATION_EXAMPLE}")
    return seconds


_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": _DURATION_PATTERN},
        {"type": "number", "minimum": 0},
    ],
    "description": "A duration: 500ms, 30s, 5m, 1h, 1d (combinable: 1h30m) or seconds.",
}

Duration = Annotated[
    float, BeforeValidator(parse_duration), WithJsonSchema(_DURATION_SCHEMA, mode="validation")
]
"""A non-negative duration in seconds, written ``30s``, ``5m``... in the file."""

PositiveDuration = Annotated[
    float,
    BeforeValidator(_positive),
    WithJsonSchema(
        {**_DURATION_SCHEMA, "description": "A duration longer than zero: 500ms, 30s, 5m..."},
        mode="validation",
    ),
]
"""A duration that must be longer than zero (timeouts, intervals)."""

Size = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": _SIZE_PATTERN},
                {"type": "integer", "minimum": 0},
            ],
            "description": "A size: 512kB, 16MB, 1GB (powers of 1024) or bytes.",
        },
        mode="validation",
    ),
]
"""A non-negative size in bytes, written ``16MB`` in the file."""
