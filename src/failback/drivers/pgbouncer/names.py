"""What the pgbouncer driver writes into PgBouncer: one rule per kind of value.

The topology loader checks these rules (``failback validate`` reports a bad value at
its line) and the driver checks them again just before the value is written to the
admin console or to ``databases_file``. This module imports nothing from failback,
so that the config package may use it without importing the driver.

* A **pooled database name** (``databases``) is the key of a ``[databases]`` line and
  the argument of ``PAUSE``/``RESUME`` on the admin console, where it is sent
  double-quoted (PgBouncer reads an unquoted argument as ``[0-9a-z_]+`` only: ``PAUSE
  my-db`` is a syntax error, ``PAUSE "my-db"`` works).
* A **database name on a server** (a site's ``dbname``) is an unquoted ``dbname=``
  value of that line.
* A **host** (a site's ``host``) is an unquoted ``host=`` value of that line: a host
  name, an IPv4 or IPv6 address, or a Unix socket directory.

A space, ``=``, a quote, ``#``/``;`` or a new line in any of them would change the
meaning of the line (another key, a comment, a second database), so none is allowed.
"""

from __future__ import annotations

import re

__all__ = [
    "DATABASE_RULE",
    "HOST_RULE",
    "console_name",
    "database_problem",
    "host_problem",
]

DATABASE_RULE = "letters, digits, '_', '-' and '.', at most 63 characters"
HOST_RULE = (
    "a host name, an IP address or a socket directory: letters, digits, '.', '-', '_', "
    "':' and '/', at most 255 characters"
)

_DATABASE = re.compile(r"[A-Za-z0-9_.-]{1,63}")
_HOST = re.compile(r"[A-Za-z0-9_.:/-]{1,255}")


def database_problem(name: str) -> str | None:
    """Why ``name`` cannot be a pooled database or server database name; None if it can."""
    if _DATABASE.fullmatch(name):
        return None
    return f"invalid PgBouncer database name {name!r}"


def host_problem(host: str) -> str | None:
    """Why ``host`` cannot be written as a ``host=`` value; None if it can."""
    if _HOST.fullmatch(host):
        return None
    return f"invalid PgBouncer host {host!r}"


def console_name(name: str) -> str:
    """``name`` as an admin-console argument (double-quoted); ValueError if it breaks the rule."""
    problem = database_problem(name)
    if problem is not None:
        raise ValueError(f"{problem}: use {DATABASE_RULE}")
    return f'"{name}"'
