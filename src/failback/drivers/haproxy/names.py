"""The rule for HAProxy backend and server names: one definition, checked twice.

The topology loader checks it (``failback validate`` reports a bad name at its line)
and the runtime client checks it again before a name reaches the admin socket (a
run's saved topology, or a caller that is not the loader). This module imports
nothing from failback, so that the config package may use it without importing the
driver.

HAProxy itself accepts in proxy and server names only letters, digits, ``-``,
``_``, ``.`` and ``:`` (``invalid_char()`` in its configuration parser). Holding
names to that also keeps a name from smuggling a second command into the runtime
API, which splits commands on ``;`` and on new lines.
"""

from __future__ import annotations

import re

__all__ = ["NAME_RULE", "name_problem"]

NAME_RULE = "HAProxy names may only hold letters, digits, '-', '_', '.' and ':'"

_NAME = re.compile(r"[A-Za-z0-9_.:-]+")


def name_problem(kind: str, name: str) -> str | None:
    """Why ``name`` cannot be an HAProxy ``kind`` (backend, server) name; None if it can."""
    if _NAME.fullmatch(name):
        return None
    return f"invalid HAProxy {kind} name {name!r}"
