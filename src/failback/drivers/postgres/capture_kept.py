"""The monitor's capture rounds, one per primary however many services name it.

Every service whose database can capture diverged transactions has the monitor keep
its primary's slots every second (``monitor.capture_keeper``). Slots are per database
of the cluster, not per service: services that name the same primary keep the very
same slots, and each round opens fresh connections (one, plus one per database: a
logical slot is moved in its own database) with an authentication each. At 250
services on the lab's pair (``bench/monitor_scale.py``), those rounds were about 40%
of the monitor's Python time and most of the server's (py-spy: ``keep_capture_slots``
and its ``connect``).

Under the monitor's ``keeping`` the round of one primary, towards one standby site, is
shared (``Kept.recent``) with every service that asks within the scope's
``share_within``: the slots were moved at most that long ago, which only means a
capture may decode a little more WAL again (its result is filtered at the fork, so it
is never less exact). A round that raised (the primary did not answer) is never
shared: every service's next round asks again. What the primary answered, a problem
included (``wal_level``, a slot it could not create), is shared: it is that server's
answer, the same for every service that would ask it. Outside ``keeping`` (runs, the
lab) every call is its own round, as before.
"""

from __future__ import annotations

from typing import Any

from failback.drivers.kept import answer_at_hand, kept
from failback.drivers.postgres.capture_slots import keep_capture_slots
from failback.drivers.postgres.facts import NODE_REUSE_S
from failback.drivers.postgres.node import PgNode, node_from_component


def keep_capture(settings: Any, primary_site: str, standby_site: str) -> dict[str, Any]:
    """One round on the primary at ``primary_site`` (``keep_capture_slots``), or the one
    another service's keeper made within ``share_within`` (a copy: each keeper stamps
    its own)."""
    pool = kept()
    primary = _primary(settings, primary_site)
    if pool is None:
        return keep_capture_slots(primary, standby_site).to_dict()
    shared = pool.recent(
        round_key(primary, standby_site),
        lambda: keep_capture_slots(primary, standby_site).to_dict(),
    )
    return dict(shared)


def keep_capture_at_hand(
    settings: Any, primary_site: str, standby_site: str
) -> dict[str, Any] | None:
    """The round another keeper made within ``share_within`` on the same primary, or
    None; never asks, never waits (the monitor's event loop calls it)."""
    pool = kept()
    if pool is None:
        return None
    primary = pool.reused(_node_key(settings, primary_site), NODE_REUSE_S, anchor=settings)
    if not isinstance(primary, PgNode):
        return None
    shared = answer_at_hand(round_key(primary, standby_site))
    return None if shared is None else dict(shared)


def round_key(primary: PgNode, standby_site: str) -> tuple[Any, ...]:
    """What a shared round is a round of: the primary (every field of its node: address,
    user, password...) towards ``standby_site``'s replay position."""
    return ("postgres-capture", primary, standby_site)


def _node_key(settings: Any, site: str) -> tuple[Any, ...]:
    return ("postgres-capture-node", id(settings), site)


def _primary(settings: Any, site: str) -> PgNode:
    """The primary's node (SQL only: no machine is asked), reused for ``NODE_REUSE_S``
    under the monitor's ``keeping``: building it reads both password secrets."""
    pool = kept()
    if pool is None:
        return node_from_component(settings, site)
    node = pool.reuse(
        _node_key(settings, site),
        lambda: node_from_component(settings, site),
        NODE_REUSE_S,
        anchor=settings,
    )
    return node  # type: ignore[no-any-return]
