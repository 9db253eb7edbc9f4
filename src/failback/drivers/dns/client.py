"""Speaking DNS to the authoritative server and to a resolver (dnspython).

Queries to the authoritative server are signed with the component's TSIG key as well:
the server then checks the key on every observation, so a wrong key shows in
``failback status`` and refuses a plan *before* a run would fail at its update. A
resolver is asked unsigned, as a client would ask it.

Every failure becomes a ``DnsError`` with one line and a hint; dnspython's exceptions
never reach a person, and the secret never appears in a message.
"""

from __future__ import annotations

from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.update

from failback.drivers.dns.errors import (
    DnsError,
    DnsUnreachable,
    KeyRefused,
    UpdateRefused,
)
from failback.drivers.dns.zone import Answer, Zone


def ask_authoritative(zone: Zone) -> Answer:
    """The name's records as the authoritative server answers them, in a signed query."""
    query = dns.message.make_query(zone.name, zone.rdtype)
    query.flags &= ~dns.flags.RD
    query.use_tsig(zone.keyring(), algorithm=zone.algorithm)
    response = _exchange(zone, query, f"asking {zone.where} for {zone.name} {zone.rdtype}")
    return _answer(zone.name, zone.rdtype, response, zone.where)


def ask_resolver(address: str, port: int, name: str, rdtype: str, timeout: float) -> Answer:
    """The name's records as a resolver answers them (its cache, its TTL countdown)."""
    query = dns.message.make_query(name, rdtype)
    try:
        response, _tcp = dns.query.udp_with_fallback(query, address, timeout=timeout, port=port)
    except dns.exception.Timeout:
        raise DnsUnreachable(
            f"no answer from resolver {address}:{port} within {timeout:g}s",
            "is the resolver running? check options.resolver",
        ) from None
    except OSError as exc:
        raise DnsUnreachable(
            f"resolver {address}:{port}: {exc.strerror or exc}", "check options.resolver"
        ) from None
    except dns.exception.DNSException as exc:
        raise DnsError(f"resolver {address}:{port}: {exc}", "check options.resolver") from None
    return _answer(name, rdtype, response, f"resolver {address}:{port}")


def replace_records(zone: Zone, records: set[str], ttl: int) -> None:
    """Make the name hold exactly ``records`` with ``ttl``: one update message (RFC 2136),
    so the server applies all of it or none; resolvers never see an empty name."""
    if not records:
        raise DnsError(f"refusing to leave {zone.name} without records", "this is a bug")
    update = dns.update.UpdateMessage(
        zone.zone, keyring=zone.keyring(), keyalgorithm=zone.algorithm
    )
    update.replace(zone.name, ttl, zone.rdtype, *sorted(records))
    response = _exchange(zone, update, f"updating {zone.name} at {zone.where}", tcp=True)
    rcode = response.rcode()
    if rcode != dns.rcode.NOERROR:
        raise UpdateRefused(
            f"{zone.where} refused the update of {zone.name} {zone.rdtype}: "
            f"{dns.rcode.to_text(rcode)}",
            _UPDATE_HINTS.get(rcode, "see the server's log"),
        )


_UPDATE_HINTS = {
    dns.rcode.REFUSED: "the server's update-policy (or allow-update) must grant the key "
    "this name and type",
    dns.rcode.NOTAUTH: "the server is not authoritative for the zone: check options.server "
    "and options.zone",
    dns.rcode.NOTZONE: "the name is not inside the zone: check options.name and options.zone",
    dns.rcode.SERVFAIL: "the server could not apply it (its journal or zone file?): see its log",
}


def _exchange(zone: Zone, message: Any, doing: str, *, tcp: bool = False) -> Any:
    """Send, and turn every way it can fail into a one-line ``DnsError``."""
    try:
        if tcp:
            return dns.query.tcp(message, zone.server, timeout=zone.timeout, port=zone.port)
        response, _tcp = dns.query.udp_with_fallback(
            message, zone.server, timeout=zone.timeout, port=zone.port
        )
        return response
    except dns.tsig.PeerBadKey:
        raise KeyRefused(
            f"{zone.where} does not know TSIG key {zone.key_name} (BADKEY) while {doing}",
            "options.key.name must name a key of the server's configuration",
        ) from None
    except dns.tsig.PeerBadSignature:
        raise KeyRefused(
            f"{zone.where} rejected the signature of TSIG key {zone.key_name} (BADSIG) while "
            f"{doing}",
            f"the secret in {zone.secret.describe()} is not the server's secret for "
            f"{zone.key_name}, or options.key.algorithm is not the key's",
        ) from None
    except dns.tsig.PeerBadTime:
        raise KeyRefused(
            f"{zone.where} rejected TSIG key {zone.key_name}: the clocks differ (BADTIME)",
            "TSIG allows 5 minutes of skew: synchronise this machine's clock with the server's",
        ) from None
    except dns.tsig.PeerError as exc:
        raise KeyRefused(
            f"{zone.where} rejected TSIG key {zone.key_name} ({type(exc).__name__})",
            "check options.key against the server's key statement",
        ) from None
    except dns.exception.Timeout:
        raise DnsUnreachable(
            f"no answer from DNS server {zone.where} within {zone.timeout:g}s while {doing}",
            "is the server running and reachable? check options.server and options.port",
        ) from None
    except OSError as exc:
        raise DnsUnreachable(
            f"DNS server {zone.where}: {exc.strerror or exc} while {doing}",
            "is the server running and reachable? check options.server and options.port",
        ) from None
    except dns.exception.DNSException as exc:
        raise DnsError(
            f"DNS server {zone.where}: {exc} while {doing}", "see the server's log"
        ) from None


def _answer(name: str, rdtype: str, response: Any, where: str) -> Answer:
    aa = bool(response.flags & dns.flags.AA)
    rcode = response.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return Answer(records=frozenset(), ttl=None, authoritative=aa)
    if rcode != dns.rcode.NOERROR:
        raise DnsError(
            f"{where} answered {dns.rcode.to_text(rcode)} for {name} {rdtype}",
            "check that the server serves the zone (options.zone)",
        )
    try:
        rrset = response.find_rrset(
            response.answer, dns.name.from_text(name), dns.rdataclass.IN,
            dns.rdatatype.from_text(rdtype),
        )  # fmt: skip
    except KeyError:
        return Answer(records=frozenset(), ttl=None, authoritative=aa)
    return Answer(
        records=frozenset(r.to_text().lower() for r in rrset), ttl=int(rrset.ttl), authoritative=aa
    )
