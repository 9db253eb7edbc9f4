"""A monitor's seat in the control plane: member, candidate, and (maybe) the one leader.

With a ``control_plane:`` section, every ``failback monitor --node NAME`` keeps its member
key alive and campaigns for ``<prefix>/leader`` on one clock (``tick``, every fifth of
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
import json
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
from failback.monitor.failsafe import Answer


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
        self.period = max(self.ttl / 5.0, 0.2)
        """Seconds between ticks: several renewals may fail before this node must stop
        acting. etcd electing a new raft leader (a member died) answers no renewal for one
        to two seconds: the last one that succeeded must not be a whole period older."""
        self.renew_timeout = max(min(self.period, control_plane.etcd.request_timeout), 0.2)
        """How long one renewal waits for a member (then the next member, then a retry
        after ``RETRY_S``): never a tick stuck for the whole acting window."""
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
        self.election.renew_timeout = self.renew_timeout
        self.membership.renew_timeout = self.renew_timeout
        self._clock = clock
        self.control_plane = control_plane
        self.started_at: float | None = None
        """When this node's clock began (``begin``): before, it is not cut off."""
        self.hold_until = 0.0
        self.hold_since = 0.0
        """When the last such promise was given: a renewal sent after it ends the hold."""
        """Until then this node neither campaigns nor acts: it told a cut-off site's node
        that it cannot reach etcd either (failsafe.py), and that answer is a promise."""
        self._lock = threading.Lock()
        self._changes_lock = threading.Lock()
        """Guards ``changes`` alone: a run thread reports without waiting for a tick's I/O."""
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
        if self.holding():
            return  # it promised a cut-off site not to act (failsafe)
        if self.leader_seen is None or self.leader_seen == self.node:
            if self.election.campaign():
                self.leader_seen = self.node
            else:
                self.leader_seen = self.election.leader()

    def _note_change(self) -> None:
        leading = self.may_act()
        noted: list[tuple[str, str]] = []
        if leading and not self._was_leader:
            noted.append(("leader.elected", f"{self.node} is the leader"))
        elif self._was_leader and not leading:
            why = self.last_error or (
                f"leader is now {self.leader_seen}"
                if self.leader_seen not in (None, self.node)
                else "no renewal within its lease (minus the safety margin)"
            )
            noted.append(("leader.lost", f"{self.node} stopped leading: {why}"))
        elif not leading and self.leader_seen != self._followed:
            if self.leader_seen is not None:
                noted.append(("leader.following", f"{self.node} follows {self.leader_seen}"))
            elif self.last_error is None:
                noted.append(("leader.none", "nobody leads: no monitor acts"))
        with self._changes_lock:
            self.changes.extend(noted)
        self._was_leader = leading
        self._followed = None if leading else self.leader_seen

    def report(self, kind: str, message: str) -> None:
        """Something this node's log must say although the journal may refuse it (a run
        refused for lost leadership): written with the leadership changes."""
        with self._changes_lock:
            self.changes.append((kind, message))

    def take_changes(self) -> list[tuple[str, str]]:
        """Leadership changes noticed since the last call (for the event log)."""
        with self._lock:
            self._note_change()
            with self._changes_lock:
                changes, self.changes = self.changes, []
        return changes

    # -- the guards -----------------------------------------------------------------

    def may_act(self) -> bool:
        """This node leads, by its own clock its lease cannot have ended, and it has not
        promised a cut-off site to stand still (no I/O)."""
        return self.election.may_act() and not self.holding()

    def prove(self, what: str) -> None:
        """The fencing check: raise ``LeadershipLost`` unless etcd confirms this node leads."""
        if self.holding():
            raise LeadershipLost(
                f"{what} not applied: node {self.node} promised a cut-off site's node to "
                "stand still while etcd does not answer (failsafe)",
                hint="the leader elected once etcd answers continues the run",
            )
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

    # -- cut off, failsafe, and sites ---------------------------------------------------

    def begin(self) -> None:
        """The monitor runs: from now on, a node that never reached etcd counts as cut off
        once a lease TTL (minus the margin) has passed without its first renewal."""
        if self.started_at is None:
            self.started_at = self._clock()

    def cut_off(self) -> bool:
        """By this node's own clock, etcd may be about to drop its member key: no renewal
        for the lease TTL minus the safety margin (from ``begin``, before the first one).
        What a site's node fences its primary on (unless the failsafe says otherwise)."""
        deadline = self.membership.lease_deadline()
        if deadline is None:
            if self.started_at is None:
                return False
            deadline = self.started_at + self.ttl
        return self._clock() >= deadline - self.election.safety_margin

    def renew_membership_now(self) -> bool:
        """One more renewal of this node's member lease, outside the tick (no lock: the
        tick may be stuck in I/O). True when etcd still held the lease: the node was never
        gone from etcd, so it is not cut off (what a site's node checks before fencing:
        after a pause, or when etcd's quorum returns, its clock says cut off until the
        next tick although etcd answers again)."""
        try:
            return self.membership.refresh()
        except EtcdError:
            return False

    def renewal_missed(self) -> bool:
        """The last renewal that should have happened did not succeed (with a fifth of a
        period of slack): etcd does not answer this node now. Nodes lose etcd together
        when its quorum goes, but reach ``cut_off`` up to a period apart: this is what
        lets the first one's question find the others already without etcd."""
        renewed = self.membership.renewed_at
        since = renewed if renewed is not None else self.started_at
        return since is not None and self._clock() - since > self.period * 1.2

    def holding(self) -> bool:
        """This node promised a cut-off node to stand still (``confirm_failsafe``), and
        the promise still binds: less than a TTL ago, and etcd has not answered a renewal
        since. Once etcd answers this node again, the asker's own member key protects it:
        its lease lives at least a TTL after etcd's quorum is back (etcd's new raft
        leader extends every lease), the leader fails over from a site only once its
        nodes are gone from etcd, and the asker, asking again every ``CHECK_S``, now
        hears "reaches etcd" and fences long before its key can expire."""
        if self._clock() >= self.hold_until:
            return False
        renewed = self.membership.renewed_at
        return renewed is None or renewed <= self.hold_since

    def confirm_failsafe(self, asker: str) -> Answer:
        """Another node, cut off from etcd, asks whether this one can reach it. Confirm
        only when this node cannot either (its renewal failed, or it is cut off itself);
        then hold back from campaigning and acting for one TTL, leader or not (the asker
        keeps its primary serving on this answer)."""
        if not (self.cut_off() or self.renewal_missed()):
            return Answer(self.node, False, f"{self.node} reaches etcd", reaches_etcd=True)
        # etcd does not answer this node either: a leader stops acting now (its lease is
        # lost anyway), and none of them acts for one TTL from this answer
        now = self._clock()
        self.hold_until = max(self.hold_until, now + self.ttl)
        self.hold_since = now
        return Answer(
            self.node,
            True,
            f"{self.node} cannot reach etcd either; it will not act for {self.ttl} s",
        )

    def site_down(self, probe_keys: list[str]) -> None:
        """What this node's probes see failed at its own site (its member key says it: the
        leader weighs it before failing over from this site)."""
        self.membership.update(site_down=sorted(probe_keys))

    def site_released(self, site: str, failed: list[str]) -> tuple[bool, str]:
        """Whether the leader may fail over from ``site`` now, as far as that site's own
        nodes are concerned: each is gone from etcd (cut off: it has fenced its site by its
        own clock, or it died), or it sees the same failures from inside the site. A node
        of the site that still reaches etcd and sees them serving means a partition
        between sites, not a failure of ``site``: clients inside it may still write there.
        """
        at_site = self._other_nodes_at(site)
        if not at_site:
            return True, f"no control-plane node lives at {site}"
        try:
            members = self._member_keys()
        except EtcdError as exc:
            return False, f"cannot read {site}'s nodes from etcd: {exc.message}"
        for name in at_site:
            text = members.get(name)
            if text is None:
                continue  # gone: cut off (and fenced by its own clock) or dead
            try:
                seen_down = set(json.loads(text).get("site_down") or ())
            except (ValueError, AttributeError):
                seen_down = set()
            missing = sorted(set(failed) - seen_down)
            if missing:
                return False, (
                    f"node {name} at {site} still reaches etcd and sees {', '.join(missing)} "
                    "serving: waiting (a partition between sites is not a failure of "
                    f"{site}; its node fences it if it is cut off)"
                )
        return True, f"{site}'s nodes are gone from etcd or see the failure too"

    def site_nodes_present(self, site: str) -> tuple[bool, str]:
        """Every node of ``site`` (this one aside) holds its member key: the site reaches
        etcd again (its nodes are no longer fencing it)."""
        at_site = self._other_nodes_at(site)
        if self.site == site and self.cut_off():
            return False, f"{self.node} itself is cut off"
        try:
            present = set(self._member_keys())
        except EtcdError as exc:
            return False, f"cannot read {site}'s nodes from etcd: {exc.message}"
        missing = [name for name in at_site if name not in present]
        if missing:
            return False, f"{', '.join(missing)} at {site} not back in etcd yet"
        return True, f"{site}'s nodes reach etcd again"

    def _other_nodes_at(self, site: str) -> list[str]:
        return [
            name
            for name, spec in self.control_plane.nodes.items()
            if spec.site == site and name != self.node
        ]

    def _member_keys(self) -> dict[str, str]:
        """Every node holding its member key now: node name -> what the key says."""
        prefix = self.membership.key.rsplit("/", 1)[0] + "/"
        return {kv.key.rsplit("/", 1)[-1]: kv.text for kv in self.client.get_prefix(prefix)}

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
