"""How measurement units are written for people (the report, the CLI, the dashboard).

A WAL position (unit ``lsn``) is a 64-bit byte offset, written the way the database
prints it (``0/3000060``); it is a unit of measurement like ``s`` or ``bytes``, so its
formatting lives here, not in the driver that measures it.
"""

from __future__ import annotations


def format_lsn(value: int) -> str:
    """50331744 -> "0/3000060" (the way PostgreSQL prints it)."""
    if value < 0 or value >= 1 << 64:
        raise ValueError(f"LSN out of range: {value}")
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"
