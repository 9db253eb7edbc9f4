"""A DNS name's health at one site during the observation window (``TRAFFIC_HEALTH``).

After a failback the name must keep pointing home: a problem is the authoritative
server no longer answering (or rejecting the key), or an answer that no longer sends
the site its whole share (someone or something else changed the records).
"""

from __future__ import annotations

from typing import Any

from failback.drivers.base import TrafficWatch
from failback.drivers.dns.errors import DnsError
from failback.drivers.dns.records import wanted_records
from failback.drivers.dns.zone import Zone, dns_client


def dns_traffic_watch(settings: Any, site: str) -> TrafficWatch:
    zone = Zone.of(settings)
    wanted = wanted_records(settings, site, 100)

    def problems() -> list[str]:
        try:
            answer = dns_client().ask_authoritative(zone)
        except DnsError as exc:
            return [exc.message]
        if set(answer.records) != wanted:
            return [
                f"{zone.name} answers {', '.join(sorted(answer.records)) or 'nothing'}, not "
                f"{', '.join(sorted(wanted))}"
            ]
        return []

    return problems
