"""WAL positions (LSNs): PostgreSQL prints them as "hi/lo" hex, we compute with ints."""

from __future__ import annotations

import re

from failback.model.units import format_lsn as format_lsn  # the unit lives in model/units.py

_LSN_RE = re.compile(r"^\s*([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})\s*$")


def parse_lsn(text: str) -> int:
    """ "0/3000060" -> 50331744. Raises ValueError on anything else."""
    match = _LSN_RE.match(text)
    if match is None:
        raise ValueError(f"not a WAL position (LSN): {text!r}")
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def to_lsn(value: int | str | None) -> int | None:
    """Accept an int, an "X/Y" string or None (psycopg returns pg_lsn as str)."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    return parse_lsn(str(value))


def compare_lsn(a: int | str, b: int | str) -> int:
    """-1, 0 or 1 like the classic cmp(); accepts ints or "X/Y" strings."""
    x, y = to_lsn(a), to_lsn(b)
    assert x is not None and y is not None
    return (x > y) - (x < y)


def lsn_diff(a: int | str, b: int | str) -> int:
    """a - b in bytes (what pg_wal_lsn_diff returns)."""
    x, y = to_lsn(a), to_lsn(b)
    assert x is not None and y is not None
    return x - y
