"""Errors of the dns driver: one line naming the server and the key, with a hint.

None of them ever holds the TSIG secret: they name the key and where its secret is read
from (``file:/path``), which is what a person needs to fix it.
"""

from __future__ import annotations

from failback.errors import FailbackError


class DnsError(FailbackError):
    """The DNS server answered, but not as asked (an error rcode, a wrong zone...)."""


class DnsUnreachable(DnsError):
    """No answer from the server (refused, timed out, no route)."""


class KeyRefused(DnsError):
    """The server rejected the TSIG signature: unknown key, wrong secret, clock skew.

    A configuration mistake, never a transient one: a plan is refused while it lasts."""


class KeyUnusable(DnsError):
    """The secret cannot be read or is not base64: nothing was sent."""


class UpdateRefused(DnsError):
    """The server refused the dynamic update (policy, not authoritative, bad zone)."""
