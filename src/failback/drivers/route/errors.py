"""The one error the route driver's lower layers raise: a cause and a hint."""

from __future__ import annotations

from failback.errors import FailbackError


class RouteError(FailbackError):
    """Netlink refused, a namespace or interface is missing, or the host is remote."""
