"""A site's node fences its own primary when it is cut off from etcd (issue 14).

Why here and not in a run: a run needs the journal and the leader, and a node cut off
from etcd has neither. Why from inside the site: clients there may reach the database
without passing the edge, so only something at the site can stop them in time.

The clock (``check`` every ``CHECK_S``): while this node renews its member lease,
nothing happens. Once ``Leadership.cut_off()`` says that, by its own clock, the lease
may end within the safety margin, the node renews once more (etcd may answer again: a
pause ended, quorum came back; a lease etcd still held proves the node never left it)
and meanwhile asks every other node directly (failsafe.py). If all of them confirm that
they cannot reach etcd either, nobody can act anywhere: the primary keeps serving
(failsafe) and the question is asked again at each check. Nodes that answer "I reach
etcd" are asked again at each check for up to ``ASK_AGAIN_S`` (as long as a node that
does not answer at all holds the question up), since nodes lose etcd a renewal or so
apart when its quorum goes. Otherwise the node fences
every component of its site whose driver can fence itself (``Capability.SELF_FENCE``;
PostgreSQL turns read-only and ends its sessions), before etcd could hand its lease, and
with it the right to promote, to another node. It fences again at each check while cut
off (a restarted server, a new session), and says what it did in the monitor's log,
since the journal is out of reach.

When etcd answers again the fence stays: the leader decides (a stale primary is fenced
on sight and failed back to; a site nobody failed over from gets its fence lifted).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from failback.config import Topology
from failback.drivers.base import Capability
from failback.drivers.catalog import driver_of, has_capability
from failback.errors import FailbackError
from failback.hosts import HostSet
from failback.monitor.failsafe import Answer, ask_peers, failsafe_decision
from failback.monitor.leadership import Leadership

RENEW_WAIT_S = 0.1
"""How much longer than the peers' answers (``ask_peers``: 0.5 s at most) a cut-off node
waits for its last-chance renewal before fencing: etcd answers a keepalive in
milliseconds when it answers at all, and the fence must be done within the margin."""

CHECK_S = 0.1
"""How often a node checks whether it is cut off: the fence must start within the
safety margin (a third of the TTL: 1 s by default), asking the other nodes first."""


@dataclass
class SiteGuard:
    """The self-fencing of one node's site; ``check`` is called on its clock."""

    topology: Topology
    leadership: Leadership
    hosts: HostSet
    emit: Callable[[str, str, dict[str, Any]], None]
    """Writes one line to the monitor's log: (kind, message, data)."""
    token: str | None
    fenced: dict[str, dict[str, Any]] = field(default_factory=dict)
    """What was fenced while cut off: "service/component" -> the driver's answer."""
    failsafe: bool = False
    _reported: set[str] = field(default_factory=set)
    """Components whose fence (or why there was nothing to fence) was logged while cut off."""
    _renewer: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="renew")
    )
    _renewal: Future[bool] | None = None
    _denied_since: float | None = None
    """When the other nodes' "I reach etcd" answers began (``failsafe_decision``)."""

    @property
    def site(self) -> str:
        assert self.leadership.site is not None
        return self.leadership.site

    def check(self) -> None:
        if not self.leadership.cut_off():
            self._denied_since = None
            if self.fenced or self.failsafe or self._reported:
                self._rejoined()
            return
        # while the other nodes are asked, try once more to renew: etcd may answer again
        # (a pause ended, quorum came back) before this node's next tick would notice
        renewal = self._renew_now()
        peers = self._peers()
        answers = (
            ask_peers(self.leadership.node, peers, self.token or "")
            if self.token
            else [Answer(name, False, "no peer_token configured") for name in peers]
        )
        if self._renewed(renewal) or not self.leadership.cut_off():
            self._denied_since = None
            return  # the member lease never ended: nobody can have failed over from here
        decision = failsafe_decision(answers, self._denied_for())
        if decision == "ask-again" and not self.fenced:
            return  # asked again at the next check; no later than a silent node allows
        if decision == "hold":
            self._denied_since = None
            if not self.failsafe:
                self.failsafe = True
                self.emit(
                    "failsafe.holding",
                    f"etcd is unreachable from every node ({'; '.join(a.reason for a in answers)}"
                    f"): nobody can act anywhere, so {self.site}'s primary keeps serving",
                    {"answers": [a.__dict__ for a in answers]},
                )
            return
        self.failsafe = False
        self._fence(answers)

    def _denied_for(self) -> float | None:
        """How long the other nodes have answered "I reach etcd" in a row (None: this is
        the first such answer; the clock starts now)."""
        now = time.monotonic()
        if self._denied_since is None:
            self._denied_since = now
            return None
        return now - self._denied_since

    def _renew_now(self) -> Future[bool] | None:
        """Start one renewal in the background, or keep waiting for the previous one while
        etcd has not answered it (never a queue of them behind a hung request)."""
        if self._renewal is not None and not self._renewal.done():
            return self._renewal
        self._renewal = self._renewer.submit(self.leadership.renew_membership_now)
        return self._renewal

    def _renewed(self, renewal: Future[bool] | None) -> bool:
        if renewal is None:
            return False
        try:
            return renewal.result(timeout=RENEW_WAIT_S)
        except FutureTimeout:
            return False

    def _peers(self) -> dict[str, str | None]:
        control_plane = self.topology.control_plane
        assert control_plane is not None
        return {
            name: spec.peer
            for name, spec in control_plane.nodes.items()
            if name != self.leadership.node
        }

    def _fence(self, answers: list[Answer]) -> None:
        why = "; ".join(f"{a.node}: {a.reason}" for a in answers if not a.confirmed)
        for service_name, service in self.topology.services.items():
            for name, settings in service.components.items():
                if self.site not in settings.sites or not has_capability(
                    settings, Capability.SELF_FENCE
                ):
                    continue
                key = f"{service_name}/{name}"
                started = time.monotonic()
                try:
                    host = self.hosts.get(self.topology.host_name(settings, self.site))
                    result = driver_of(settings).self_fence(settings, self.site, host)
                except FailbackError as exc:
                    result = {"fenced": False, "error": exc.message}
                result["seconds"] = round(time.monotonic() - started, 3)
                first = key not in self.fenced and key not in self._reported
                self._reported.add(key)
                if result.get("fenced"):
                    self.fenced[key] = result
                if first or result.get("error"):
                    self.emit(
                        "site.self_fenced" if result.get("fenced") else "site.self_fence",
                        f"{self.leadership.node} is cut off from etcd ({why}): "
                        f"{key} at {self.site}: {_describe(result)}",
                        {"component": key, "site": self.site, **result},
                    )

    def _rejoined(self) -> None:
        if self.fenced:
            self.emit(
                "site.rejoined",
                f"{self.leadership.node} reaches etcd again; what it fenced at {self.site} "
                f"({', '.join(self.fenced)}) stays fenced until the leader decides",
                {"fenced": self.fenced},
            )
        elif self.failsafe:
            self.emit("failsafe.ended", "etcd answers again: the failsafe hold is over", {})
        else:
            self.emit(
                "site.rejoined",
                f"{self.leadership.node} reaches etcd again; nothing at {self.site} needed fencing",
                {},
            )
        self.fenced = {}
        self._reported = set()
        self.failsafe = False


def _describe(result: dict[str, Any]) -> str:
    if result.get("error"):
        return f"could not fence: {result['error']}"
    if not result.get("fenced"):
        return f"nothing to fence ({result.get('why', '?')})"
    how = result.get("how", "fenced")
    ended = result.get("sessions_ended")
    return (
        f"{how}{f', {ended} sessions ended' if ended is not None else ''} in {result['seconds']} s"
    )
