"""A monitor's presence in the control plane: ``<prefix>/members/<node>`` on its own lease.

Why a lease of its own, apart from the leader's: every node is a member, only one is
leader; a follower must show up in ``failback cluster status`` too, and a node that can
no longer renew its *member* lease knows it is cut off from etcd whether it leads or
not (what a site's node needs to decide to fence its own primary). The key vanishes
by itself when the process dies or is cut off for longer than the TTL, so the list of
members is the list of nodes etcd has heard from recently, never a stale registry.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from failback.coord.election import renew_lease
from failback.coord.etcd import EtcdClient

MEMBERS = "/members/"


def members_prefix(prefix: str) -> str:
    """Where every node's member key lives."""
    return prefix.rstrip("/") + MEMBERS


class Membership:
    """Keeps ``<prefix>/members/<node>`` alive with a lease, and says when it last could.

    ``renew()`` is called on the monitor's leadership clock: it grants a lease and writes
    the key the first time (and after the lease was lost), then renews. ``renewed_at``
    is the clock reading taken before sending the last renewal that succeeded: etcd
    cannot have let the lease end before ``renewed_at + ttl`` (the same reasoning as the
    election's deadline).
    """

    def __init__(
        self,
        client: EtcdClient,
        prefix: str,
        node: str,
        ttl: int,
        info: dict[str, Any],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.key = members_prefix(prefix) + node
        self.ttl = ttl
        self.info = dict(info, node=node)
        self._clock = clock
        self._lease_id: int | None = None
        self._granted_ttl = ttl
        self.renewed_at: float | None = None
        self._dirty = False
        self.renew_timeout: float | None = None
        """Wait at most this long for each member's answer to a renewal (None: the
        client's request timeout)."""

    def renew(self) -> None:
        """Renew (or create) the member key; an ``EtcdError`` leaves ``renewed_at`` as it was."""
        sent_at = self._clock()
        if self._lease_id is not None:
            ttl = renew_lease(self.client, self._lease_id, self.key, self.renew_timeout)
            if ttl > 0:
                self._granted_ttl = ttl
                self.renewed_at = sent_at
                if self._dirty:
                    text = json.dumps(self.info, sort_keys=True)
                    self.client.put(self.key, text, lease=self._lease_id)
                    self._dirty = False
                return
            self._lease_id = None  # expired behind our back: start afresh
        lease = self.client.lease_grant(self.ttl)
        self._lease_id = lease.id
        self._granted_ttl = lease.ttl or self.ttl
        self.client.put(self.key, json.dumps(self.info, sort_keys=True), lease=lease.id)
        self._dirty = False
        self.renewed_at = sent_at

    def refresh(self) -> bool:
        """Renew the current lease only (never a new one): True when etcd still held it.

        What a site's node tries once more before fencing its primary: success proves
        that its member key never left etcd, so the leader cannot have failed over from
        its site meanwhile. A lease that ended is not replaced here (``renew`` does
        that): the key was gone, and the site may have been failed over from.
        Errors are the caller's."""
        lease_id = self._lease_id
        if lease_id is None:
            return False
        sent_at = self._clock()
        ttl = renew_lease(self.client, lease_id, self.key, self.renew_timeout)
        if ttl <= 0 or lease_id != self._lease_id:
            return False
        self._granted_ttl = ttl
        self.renewed_at = max(self.renewed_at or sent_at, sent_at)
        return True

    def update(self, **info: Any) -> None:
        """Change what the member key says (written at the next renewal; etcd errors are
        the caller's, as for ``renew``)."""
        merged = dict(self.info, **info)
        if merged != self.info:
            self.info = merged
            self._dirty = True

    def lease_deadline(self) -> float | None:
        """The clock reading from which etcd may have dropped this node's member key."""
        if self.renewed_at is None:
            return None
        return self.renewed_at + self._granted_ttl

    def leave(self) -> None:
        """Remove the member key now (a clean stop); errors are the caller's to ignore."""
        lease_id, self._lease_id = self._lease_id, None
        self.renewed_at = None
        if lease_id is not None:
            self.client.lease_revoke(lease_id)
