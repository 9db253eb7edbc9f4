"""A monitor's seat in the control plane: member, candidate, and (maybe) the one leader.

With a ``control_plane:`` section, every ``failback monitor --node NAME`` keeps its member
key alive and campaigns for ``<prefix>/leader`` on one clock (``tick``, every third of
the lease TTL). Only the leader reconciles (observes-to-act, starts and continues
runs); the others keep probing so that a new leader acts on fresh health at once.

Two guards stop a leader that lost its lease, because it may not know it yet:

- ``may_act()`` — by this node's own clock, the lease cannot have ended (minus a safety
  margin). No I/O: the reconcile loop asks it before every pass, and it turns false
  on time even when etcd cannot be reached at all (partition, pause).
- ``prove(what)`` — the fencing check before every mutating step (the executor's
  ``guard``): one etcd transaction proving the leader key still carries this node's
  name and lease. A deposed leader's step raises ``LeadershipLost`` and is never
  applied; the run is left for the new leader to continue.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from failback.config.control_plane import ControlPlane
from failback.coord import EtcdClient, EtcdError, LeaderElection
from failback.coord.membership import Membership
from failback.errors import LeadershipLost


class Leadership:
    """One node's membership and campaign; thread-safe for ``may_act``/``prove``/``status``."""

    def __init__(
        self,
        control_plane: ControlPlane,
        node: str,
        client: EtcdClient,
        *,
        api: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        spec = control_plane.node(node)
        self.node = node
        self.site = spec.site
        self.client = client
        self.ttl = control_plane.lease_ttl
        self.period = max(self.ttl / 3.0, 0.2)
        """Seconds between ticks: two renewals may fail before the lease is at risk."""
        self.election = LeaderElection(
            client,
            control_plane.prefix,
            node,
            control_plane.lease_ttl,
            safety_margin=control_plane.safety_margin,
            clock=clock,
        )
        self.membership = Membership(
            client,
            control_plane.prefix,
            node,
            control_plane.lease_ttl,
            {
                "site": spec.site,
                "pid": os.getpid(),
                "hostname": socket.gethostname(),
                "started_at": time.time(),
                "api": api,
            },
            clock=clock,
        )
        self._clock = clock
        self._lock = threading.Lock()
        self.last_error: str | None = None
        """Why the last tick could not talk to etcd (None: it could)."""
        self.leader_seen: str | None = None
        """The leader etcd named at the last tick (None: nobody, or unknown)."""
        self.changes: list[tuple[str, str]] = []
        """(kind, message) of leadership changes since the caller last took them."""
        self._was_leader = False
        self._followed: str | None = None

    # -- the clock ------------------------------------------------------------------

    def tick(self) -> None:
        """Renew membership; keep or seek leadership. Never raises for etcd's sake."""
        with self._lock:
            errors: list[str] = []
            try:
                self.membership.renew()
            except EtcdError as exc:
                errors.append(exc.message)
            try:
                self._campaign_or_renew()
            except EtcdError as exc:
                errors.append(exc.message)
                self.leader_seen = None
            self.last_error = "; ".join(dict.fromkeys(errors)) or None
            self._note_change()

    def _campaign_or_renew(self) -> None:
        """A leader renews; a follower campaigns only when nobody holds the key (a
        campaign costs a lease grant, so followers do not make one every tick)."""
        if self.election.may_act() and self.election.keep_alive():
            self.leader_seen = self.node
            return
        self.leader_seen = self.election.leader()
        if self.leader_seen is None or self.leader_seen == self.node:
            if self.election.campaign():
                self.leader_seen = self.node
            else:
                self.leader_seen = self.election.leader()

    def _note_change(self) -> None:
        leading = self.election.may_act()
        if leading and not self._was_leader:
            self.changes.append(("leader.elected", f"{self.node} is the leader"))
        elif self._was_leader and not leading:
            why = self.last_error or f"leader is now {self.leader_seen or 'nobody'}"
            self.changes.append(("leader.lost", f"{self.node} stopped leading: {why}"))
        elif not leading and self.leader_seen != self._followed:
            if self.leader_seen is not None:
                self.changes.append(("leader.following", f"{self.node} follows {self.leader_seen}"))
            elif self.last_error is None:
                self.changes.append(("leader.none", "nobody leads: no monitor acts"))
        self._was_leader = leading
        self._followed = None if leading else self.leader_seen

    def take_changes(self) -> list[tuple[str, str]]:
        """Leadership changes noticed since the last call (for the event log)."""
        with self._lock:
            self._note_change()
            changes, self.changes = self.changes, []
        return changes

    # -- the guards -----------------------------------------------------------------

    def may_act(self) -> bool:
        """This node leads, and by its own clock its lease cannot have ended (no I/O)."""
        return self.election.may_act()

    def prove(self, what: str) -> None:
        """The fencing check: raise ``LeadershipLost`` unless etcd confirms this node leads."""
        try:
            proven = self.election.still_leader()
        except EtcdError as exc:
            raise LeadershipLost(
                f"{what} not applied: node {self.node} could not prove it is still the "
                f"leader ({exc.message})",
                hint="the leader elected next continues the run",
            ) from None
        if not proven:
            raise LeadershipLost(
                f"{what} not applied: node {self.node} is no longer the leader",
                hint="the leader elected next continues the run",
            )

    def write_fence(self) -> tuple[Any, ...] | None:
        """What a run's journal writes must also prove (``Store.fence_writes``): this
        node's leader key and lease; None when it does not lead."""
        return self.election.fence() if self.may_act() else None

    # -- reporting and stopping -------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """This node's own view, without asking etcd (for status documents and logs)."""
        deadline = self.election.acting_deadline()
        member_deadline = self.membership.lease_deadline()
        now = self._clock()
        return {
            "node": self.node,
            "site": self.site,
            "leader": self.may_act(),
            "leader_seen": self.leader_seen,
            "acting_time_left": None if deadline is None else round(max(deadline - now, 0), 3),
            "member_time_left": None
            if member_deadline is None
            else round(max(member_deadline - now, 0), 3),
            "etcd_error": self.last_error,
        }

    def close(self) -> None:
        """Give leadership and membership up at once (best effort: the leases expire anyway)."""
        with self._lock:
            for give_up in (self.election.resign, self.membership.leave):
                with contextlib.suppress(EtcdError):
                    give_up()
