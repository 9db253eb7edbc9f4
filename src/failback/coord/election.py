"""One leader among failback's monitors, elected through an etcd lease.

The leader is whoever holds ``<prefix>/leader``: a key created only if it does
not exist (create_revision 0) and attached to its holder's lease, so it vanishes
when the holder stops renewing. Nothing here is home-made consensus: etcd
decides, this module asks it the right questions.

Two guards keep a deposed leader from acting, because holding leadership is a
belief that can go stale at any moment (a partition, a pause, a slow disk):

- **its own clock.** etcd starts a lease's TTL when it receives the grant or the
  renewal, which is after this node sent it; so the lease cannot end before
  ``send time + TTL`` by this node's monotonic clock (``lease_deadline``), and no
  other node can win before then. A node that cannot renew stops acting at
  ``acting_deadline`` = that minus a safety margin, which covers clock-rate
  differences and the time an action already started still needs to finish.
  This guard works with etcd unreachable: that is its purpose.
- **a fencing check.** Before a step applies, ``still_leader()`` proves in one etcd
  transaction that the leader key still holds this node's name *and* this node's
  lease. A leader whose key was taken over (lease expired or revoked) fails it
  even while its clock still allows it to act.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from failback.coord.etcd import GRPC_NOT_FOUND, EtcdClient, EtcdError, EtcdRequestFailed
from failback.coord.etcd_types import Compare, Delete, Get, Put, TxnResult
from failback.errors import FailbackError

DEFAULT_MARGIN_FRACTION = 1 / 3
"""Without an explicit margin, stop acting when a third of the TTL is still left: a cut-off
site's node uses that time to renew once more, ask the other nodes (half a second at
most, more than a loaded machine needs to answer) and fence its primary."""


def renew_lease(client: EtcdClient, lease_id: int, key: str, timeout: float | None) -> int:
    """Renew ``lease_id`` once: its TTL from now, 0 when etcd no longer holds it. A renewal
    that succeeded is confirmed first (``confirm_renewal``, through ``key``)."""
    try:
        ttl = client.lease_keepalive(lease_id, timeout=timeout)
    except EtcdRequestFailed as exc:
        if exc.grpc_code != GRPC_NOT_FOUND:
            raise
        return 0
    if ttl > 0:
        confirm_renewal(client, key, timeout)
    return ttl


def confirm_renewal(client: EtcdClient, key: str, timeout: float | None) -> None:
    """Count a lease renewal only once a quorum confirms who renewed it.

    etcd's raft leader renews leases by itself, without consensus. A raft leader cut off
    from the other members answers renewals until it notices, about an election timeout
    later; meanwhile the majority may elect a new raft leader, which gives every lease a
    fresh TTL from *its* promotion, earlier than such a renewal. A deadline counted from
    that renewal would outlive the lease the majority sees. A linearizable read after
    the renewal settles it: it succeeds only through a raft leader a quorum still
    follows, so no other one was promoted before the renewal was sent. Raises
    ``EtcdError`` when it cannot (the renewal does not count)."""
    client.get(key, timeout=timeout)


class LeaderElection:
    """Campaign for, keep, prove and give up ``<prefix>/leader`` for one node."""

    def __init__(
        self,
        client: EtcdClient,
        prefix: str,
        node: str,
        ttl: int,
        *,
        safety_margin: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not node:
            raise FailbackError("a node name is needed to campaign for leadership")
        if not prefix.strip("/"):
            raise FailbackError(
                "the etcd key prefix is empty",
                hint="give the control plane a prefix of its own, e.g. /failback/app",
            )
        if ttl < 1:
            raise FailbackError(f"leader lease TTL {ttl} s: it must be at least 1 s")
        margin = ttl * DEFAULT_MARGIN_FRACTION if safety_margin is None else safety_margin
        if not 0 <= margin < ttl:
            raise FailbackError(
                f"leader safety margin {margin:g} s must be at least 0 and below the TTL ({ttl} s)",
                hint="a margin of about a third of the TTL leaves time to stop in-flight actions",
            )
        self.client = client
        self.node = node
        self.ttl = ttl
        self.safety_margin = margin
        self.key = prefix.rstrip("/") + "/leader"
        self.renew_timeout: float | None = None
        """Wait at most this long for each member's answer to a renewal (None: the
        client's request timeout); the caller retries soon after a failed one."""
        self._clock = clock
        self._lease_id: int | None = None
        self._granted_ttl = ttl
        self._renewed_at: float | None = None
        """Clock reading taken *before* sending the last grant/renewal that succeeded."""
        self._leading = False

    # -- what this node believes ------------------------------------------------

    @property
    def lease_id(self) -> int | None:
        return self._lease_id

    def lease_deadline(self) -> float | None:
        """The clock reading from which this node's lease may have ended (None: no lease)."""
        if self._lease_id is None or self._renewed_at is None:
            return None
        return self._renewed_at + self._granted_ttl

    def acting_deadline(self) -> float | None:
        """The clock reading from which this node must not act as leader (None: not leader).

        Last successful renewal + TTL - safety margin: computed from this node's own
        clock alone, so it holds when etcd cannot be reached.
        """
        deadline = self.lease_deadline()
        if not self._leading or deadline is None:
            return None
        return deadline - self.safety_margin

    def may_act(self) -> bool:
        """This node won, and by its own clock its lease cannot have ended yet (no I/O)."""
        deadline = self.acting_deadline()
        return deadline is not None and self._clock() < deadline

    # -- talking to etcd --------------------------------------------------------

    def campaign(self) -> bool:
        """Try to become leader; True when this node holds the leader key.

        Idempotent: a leader that campaigns again stays leader. When the create
        transaction got no answer, the lease is kept so the next campaign can
        recognise the key it may have created (same name *and* same lease), and a
        lease this node's clock gave up on is renewed rather than replaced; a key
        with this node's name but another lease (left by an earlier process of the
        same node) is not ours, and is waited out like anyone else's.
        """
        if self._lease_id is not None and not self._lease_may_live():
            # By this node's clock the lease may be over, but etcd may still hold it:
            # when etcd lost its quorum, the next raft leader extends every lease. Renew
            # it and the leader key still on it is ours again: nobody else could have
            # taken the key while the lease lived. Revoking it instead would leave
            # nobody leading for a TTL whenever the revocation got no answer.
            self._leading = False  # until the key is read back on this lease
            self.keep_alive()
        if self._lease_id is None:
            self._grant()
        lease_id = self._lease_id
        assert lease_id is not None
        try:
            result = self._create_leader_key(lease_id)
        except EtcdRequestFailed as exc:
            if exc.grpc_code != GRPC_NOT_FOUND:
                raise
            # The lease ended behind our back (revoked, or expired while we were
            # paused): the key would have been attached to nothing. Start afresh once.
            self._forget_lease(revoke=False)
            self._grant()
            lease_id = self._lease_id
            assert lease_id is not None
            result = self._create_leader_key(lease_id)
        holder = (
            result.responses[0].kvs[0] if result.responses and result.responses[0].kvs else None
        )
        won = result.succeeded or (
            holder is not None and holder.text == self.node and holder.lease == lease_id
        )
        if won:
            self._leading = True
            return True
        self._forget_lease(revoke=True)
        return False

    def keep_alive(self) -> bool:
        """Renew the lease; False when it is gone (this node is then no longer leader).

        An ``EtcdError`` leaves the deadlines where the last success put them: the
        caller keeps acting only while ``may_act()`` says so.
        """
        if self._lease_id is None:
            return False
        sent_at = self._clock()
        ttl = renew_lease(self.client, self._lease_id, self.key, self.renew_timeout)
        if ttl <= 0:
            self._forget_lease(revoke=False)
            return False
        self._renewed_at = sent_at
        self._granted_ttl = ttl
        return True

    def leader(self) -> str | None:
        """The current leader's node name, as etcd says now (None: nobody leads)."""
        kv = self.client.get(self.key)
        return kv.text if kv is not None else None

    def still_leader(self) -> bool:
        """The fencing check a step runs before applying: is this node provably leader?

        True only if this node's clock still allows it to act, *and* etcd confirms
        in one transaction that the leader key holds this node's name and lease,
        *and* the clock still allows it once the answer is back. A failed check
        ends this node's leadership. An ``EtcdError`` (no answer) proves nothing:
        the step must not apply.
        """
        if not self.may_act():
            return False
        lease_id = self._lease_id
        assert lease_id is not None
        result = self.client.txn(
            [Compare.value(self.key, self.node), Compare.lease(self.key, lease_id)],
            idempotent=True,
        )
        if not result.succeeded:
            self._leading = False
            return False
        return self.may_act()

    def fence(self) -> tuple[Compare, ...] | None:
        """The comparisons that hold exactly while this node leads on its current lease
        (None: it holds no lease): added to a store's writes, they make every write of a
        deposed leader fail in etcd itself, not only in this node's belief."""
        lease_id = self._lease_id
        if lease_id is None or not self._leading:
            return None
        return (Compare.value(self.key, self.node), Compare.lease(self.key, lease_id))

    def resign(self) -> bool:
        """Give leadership up now: delete the key if still ours, then end the lease.

        This node stops acting before any request is sent; if etcd cannot be
        reached the error is raised and the lease simply runs out. Returns whether
        the leader key was ours and deleted.
        """
        lease_id = self._lease_id
        self._leading = False
        self._lease_id = None
        self._renewed_at = None
        if lease_id is None:
            return False
        result = self.client.txn(
            [Compare.value(self.key, self.node), Compare.lease(self.key, lease_id)],
            [Delete(self.key)],
        )
        self.client.lease_revoke(lease_id)
        return result.succeeded

    # -- lease bookkeeping --------------------------------------------------------

    def _create_leader_key(self, lease_id: int) -> TxnResult:
        """Create the leader key on ``lease_id`` if nobody holds it; else read who does."""
        return self.client.txn(
            [Compare.create_revision(self.key, 0)],
            [Put(self.key, self.node, lease=lease_id)],
            [Get(self.key)],
        )

    def _grant(self) -> None:
        sent_at = self._clock()
        lease = self.client.lease_grant(self.ttl)
        self._lease_id = lease.id
        self._granted_ttl = lease.ttl or self.ttl
        self._renewed_at = sent_at
        self._leading = False

    def _lease_may_live(self) -> bool:
        deadline = self.lease_deadline()
        return deadline is not None and self._clock() < deadline - self.safety_margin

    def _forget_lease(self, *, revoke: bool) -> None:
        """Drop the lease locally; revoking it is a courtesy (it expires anyway)."""
        lease_id = self._lease_id
        self._lease_id = None
        self._renewed_at = None
        self._leading = False
        if revoke and lease_id is not None:
            with contextlib.suppress(EtcdError):
                self.client.lease_revoke(lease_id)
