"""Which records a name should hold for a traffic split, and what share a site has.

Pure: no I/O, so the planner's notes, the steps' checks and the observation agree on
one reading. Records are compared as their zone-file text (``10.0.0.5``,
``0 50 443 web1.example.com.``): what a person would read in ``dig``.

Address records (A/AAAA) cannot be weighted: a name answers a set of addresses that
resolvers hand out in turn, so a split is all or nothing. SRV records carry a weight
(RFC 2782): each site has one record, weighted by its share; a site at 0% has none
(a weight of 0 is still chosen now and then by some clients).
"""

from __future__ import annotations

from typing import Any


def weighted(settings: Any) -> bool:
    """True when the name's records carry weights (SRV): traffic moves in steps."""
    return bool(settings.options.type == "SRV")


def split(settings: Any, to_site: str, percent: int) -> dict[str, int]:
    """``percent`` of the name's traffic to ``to_site``, the rest to the other site(s)."""
    others = [s for s in settings.sites if s != to_site]
    shares = {to_site: percent}
    rest = 100 - percent
    for index, site in enumerate(others):
        shares[site] = rest // len(others) + (1 if index < rest % len(others) else 0)
    return shares


def site_records(settings: Any, site: str, share: int) -> set[str]:
    """The records ``site`` contributes at ``share`` percent (none at 0)."""
    if share <= 0:
        return set()
    where = settings.sites[site]
    if weighted(settings):
        return {f"{where.priority} {share} {where.port} {where.target}"}
    return set(where.addresses)


def wanted_records(settings: Any, to_site: str, percent: int) -> set[str]:
    """Every record the name holds once ``percent`` of its traffic goes to ``to_site``.

    For address records anything but 100 is refused: they cannot be weighted, and the
    steps never ask for it (``steps.py``)."""
    if not weighted(settings) and percent != 100:
        raise ValueError(f"{settings.options.type} records cannot be weighted ({percent}%)")
    found: set[str] = set()
    for site, share in split(settings, to_site, percent).items():
        found |= site_records(settings, site, share)
    return found


def share_of(settings: Any, site: str, records: set[str]) -> float:
    """The share (percent) of the name's traffic ``records`` send to ``site``.

    Address records: the site's addresses over all answered addresses (resolvers rotate
    them). SRV: the site's record weights over all weights of the lowest priority that
    has any (RFC 2782: clients try the lowest priority first)."""
    if not records:
        return 0.0
    where = settings.sites[site]
    if not weighted(settings):
        mine = len(records & set(where.addresses))
        return round(100.0 * mine / len(records), 1)
    parsed = [_srv(text) for text in records]
    valid = [p for p in parsed if p is not None]
    if not valid:
        return 0.0
    lowest = min(priority for priority, _w, _port, _t in valid)
    first = [p for p in valid if p[0] == lowest]
    total = sum(weight for _p, weight, _port, _t in first)
    mine_w = sum(w for _p, w, port, t in first if t == where.target and port == where.port)
    if total == 0:
        mine_n = sum(1 for _p, _w, port, t in first if t == where.target and port == where.port)
        return round(100.0 * mine_n / len(first), 1)
    return round(100.0 * mine_w / total, 1)


def _srv(text: str) -> tuple[int, int, int, str] | None:
    parts = text.split()
    if len(parts) != 4 or not all(p.isdigit() for p in parts[:3]):
        return None
    return int(parts[0]), int(parts[1]), int(parts[2]), parts[3].lower()
