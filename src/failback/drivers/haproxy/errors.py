"""Errors of the HAProxy driver, each a one-line cause with a hint.

They subclass ``FailbackError`` so the CLI prints them without a traceback; the
engine can catch ``HaproxyError`` to treat every router problem alike.
"""

from __future__ import annotations

from failback.errors import FailbackError, SafetyRefusal


class HaproxyError(FailbackError):
    """HAProxy answered, but refused or could not do what was asked."""


class HaproxyUnreachable(HaproxyError):
    """The runtime API socket could not be reached (missing, refused, no permission, timeout)."""


class UnknownBackend(HaproxyError):
    """The backend named in the topology does not exist in the running HAProxy."""


class UnknownServer(HaproxyError):
    """The server named in the topology does not exist in its backend."""


class MultipleWriteTargets(HaproxyError, SafetyRefusal):
    """More than one server of a write backend takes traffic: a two-primary risk."""
