"""Observation of a ``dns`` component at one site: the name as the authoritative server
and (when configured) a resolver answer it, and this site's share of it.

A site's role is ``active`` while the authoritative answer sends it traffic (its
addresses, or a weighted SRV record), ``standby`` otherwise. Healthy means the
authoritative server answered a query signed with the key: a wrong key or an
unreachable server is unhealthy, with the reason; what the resolver says is shown,
but a resolver lagging one TTL behind is normal and no failure.
"""

from __future__ import annotations

import time
from typing import Any

from failback.drivers.dns.errors import DnsError, DnsUnreachable, KeyRefused, KeyUnusable
from failback.drivers.dns.records import share_of
from failback.drivers.dns.zone import Answer, Zone, dns_client
from failback.model.observed import ComponentObservation

PROBLEM_KEY = "problem"
"""``data[PROBLEM_KEY]``: why the authoritative server could not be asked, as a word the
driver's ``check_plan`` reads: ``key-refused``, ``key-unusable``, ``unreachable``, ``error``."""


def problem_word(exc: DnsError) -> str:
    if isinstance(exc, KeyRefused):
        return "key-refused"
    if isinstance(exc, KeyUnusable):
        return "key-unusable"
    if isinstance(exc, DnsUnreachable):
        return "unreachable"
    return "error"


def resolver_address(settings: Any) -> tuple[str, int] | None:
    """``options.resolver`` as (host, port), or None."""
    if not settings.options.resolver:
        return None
    host, _sep, port = str(settings.options.resolver).rpartition(":")
    return host.strip("[]"), int(port)


def resolver_view(settings: Any) -> dict[str, Any] | None:
    """What the resolver answers now (or why it does not), None without a resolver."""
    where = resolver_address(settings)
    if where is None:
        return None
    opts = settings.options
    try:
        answer = dns_client().ask_resolver(
            where[0], where[1], opts.fqdn, opts.type, float(opts.timeout)
        )
    except DnsError as exc:
        return {"server": f"{where[0]}:{where[1]}", "error": exc.message}
    return {"server": f"{where[0]}:{where[1]}", **answer.to_dict()}


def observe_dns(name: str, settings: Any, site: str) -> ComponentObservation:
    """The name at ``site``; never raises for a server that is down or refuses the key."""
    zone = Zone.of(settings)
    data: dict[str, Any] = {
        "server": zone.where, "name": zone.name, "type": zone.rdtype, "key": zone.key_name,
    }  # fmt: skip
    try:
        answer = dns_client().ask_authoritative(zone)
    except DnsError as exc:
        data[PROBLEM_KEY] = problem_word(exc)
        data["hint"] = exc.hint
        return ComponentObservation(
            component=name, site=site, driver="dns", healthy=False, role="down",
            detail=exc.message, data=data, observed_at=time.time(),
        )  # fmt: skip
    data["authoritative"] = answer.to_dict()
    resolver = resolver_view(settings)
    if resolver is not None:
        data["resolver"] = resolver
    share = share_of(settings, site, set(answer.records))
    data["traffic_percent"] = share
    data["weight"] = share
    data["takes_new_sessions"] = share > 0
    return ComponentObservation(
        component=name, site=site, driver="dns", healthy=True,
        role="active" if share > 0 else "standby",
        detail=_detail(zone, answer, share, resolver), data=data, observed_at=time.time(),
    )  # fmt: skip


def _detail(zone: Zone, answer: Answer, share: float, resolver: dict[str, Any] | None) -> str:
    shown = ", ".join(sorted(answer.records)) or "no records"
    ttl = f" (ttl {answer.ttl}s)" if answer.ttl is not None else ""
    line = f"{zone.name} {zone.rdtype} {shown}{ttl}: {share:g}% here"
    if resolver is None:
        return line
    if "error" in resolver:
        return f"{line}; resolver: {resolver['error']}"
    if set(resolver["records"]) == set(answer.records):
        return f"{line}; resolver agrees"
    return f"{line}; resolver still answers {', '.join(resolver['records']) or 'nothing'}"
