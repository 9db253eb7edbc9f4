"""The code behind a ``route`` component's steps: switch the prefix's next hop, verify.

``route.switch`` moves the prefix onto the step's site's path with one atomic replace,
after proving that path answers (a route is never moved onto a dead path) and after
keeping the route it found, so that its undo (which may run in another process, after a
crash) puts exactly that back. ``route.verify`` proves packets take the path: the
kernel's lookup for the target names the path's next hop, and echo requests to the
target leave and come back through the path's interface (its counters grow by at least
as many packets as were sent and answered).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from failback.drivers.base import Action
from failback.drivers.route import table
from failback.drivers.route.echo import echo
from failback.drivers.route.errors import RouteError
from failback.drivers.route.facts import probe_path, same_hop
from failback.drivers.route.namespace import open_icmp, open_netlink, require_local
from failback.drivers.route.settings import RouteComponent, RouteSite
from failback.errors import StepFailed


class _RouteAction(Action):
    """What both steps need: the component's settings, its path at the step's site."""

    @property
    def settings(self) -> RouteComponent:
        component: RouteComponent = self.ctx.service.components[self.spec.component]
        return component

    @property
    def site(self) -> str:
        assert self.spec.site is not None
        return self.spec.site

    @property
    def path(self) -> RouteSite:
        return self.settings.sites[self.site]

    def _netlink(self) -> Any:
        try:
            require_local(self.host(), self.spec.component or "?", self.site)
            return open_netlink(self.settings.options.netns)
        except RouteError as exc:
            raise StepFailed(exc.message, exc.hint) from None

    def _hops(self, ipr: Any) -> list[table.NextHop]:
        options = self.settings.options
        try:
            return table.prefix_routes(ipr, options.prefix, options.table)
        except RouteError as exc:
            raise StepFailed(exc.message, exc.hint) from None

    def _in_place(self) -> bool:
        with contextlib.closing(self._netlink()) as ipr:
            hops = self._hops(ipr)
        return len(hops) == 1 and same_hop(hops[0], self.path)


class RouteSwitch(_RouteAction):
    """Point the prefix at the step's site's next hop (``ip route replace``, atomic)."""

    name = "route.switch"
    has_undo = True

    @property
    def _key(self) -> str:
        return f"route.before.{self.spec.id}"

    def check(self) -> bool:
        return self._in_place()

    def apply(self) -> dict[str, Any] | None:
        options = self.settings.options
        path = self.path
        with contextlib.closing(self._netlink()) as ipr:
            before = self._hops(ipr)
            if self._key not in self.ctx.values:  # a re-apply after a crash keeps the first
                self.ctx.remember(self._key, [{"gateway": h.gateway, "dev": h.dev} for h in before])
            try:
                with contextlib.closing(open_icmp(options.netns)) as icmp:
                    healthy, probe = probe_path(
                        ipr, icmp, path, self.site, float(options.probe_timeout)
                    )
            except RouteError as exc:
                raise StepFailed(exc.message, exc.hint) from None
            if not healthy:
                raise StepFailed(
                    f"{self.site}'s path via {path.gateway} does not answer ({probe}): "
                    f"{options.prefix} is not moved onto it",
                    hint=f"repair {self.site}'s path first; `failback status` shows each "
                    "path's probe",
                )
            started = time.monotonic()
            try:
                table.replace(ipr, options.prefix, options.table, path.gateway, path.dev)
            except RouteError as exc:
                raise StepFailed(exc.message, exc.hint) from None
            took = time.monotonic() - started
        self.ctx.measure("route.replace_s", took, "s", note=f"{options.prefix} -> {path.gateway}")
        self.ctx.log(
            f"{options.prefix} now goes via {path.gateway} ({self.site}); "
            f"it went {', '.join(h.describe() for h in before) or 'nowhere'}"
        )
        return {
            "prefix": options.prefix,
            "from": [h.describe() for h in before],
            "to": table.NextHop(path.gateway, path.dev).describe(),
            "probe": probe,
        }

    def verify(self) -> None:
        options = self.settings.options
        with contextlib.closing(self._netlink()) as ipr:
            try:
                hop = table.lookup(ipr, options.target)
            except RouteError as exc:
                raise StepFailed(exc.message, exc.hint) from None
        if not same_hop(hop, self.path):
            raise StepFailed(
                f"{options.target} is routed {hop.describe()}, not via {self.path.gateway} "
                f"({self.site}), after the replace",
                hint="another route (a more specific prefix, a policy rule) wins: see "
                f"`ip route get {options.target}` in the routing namespace",
            )

    def _before(self) -> list[dict[str, Any]]:
        return list(self.ctx.values.get(self._key) or [])

    def undo(self) -> dict[str, Any] | None:
        """Put back the route found before this step (its first next hop); a prefix that
        had no route gets none again."""
        options = self.settings.options
        before = self._before()
        with contextlib.closing(self._netlink()) as ipr:
            try:
                if before and before[0].get("gateway"):
                    gateway, dev = before[0]["gateway"], before[0].get("dev")
                    table.replace(ipr, options.prefix, options.table, gateway, dev)
                    return {"restored": table.NextHop(gateway, dev).describe()}
                for hop in self._hops(ipr):
                    if same_hop(hop, self.path):
                        ipr.route("del", dst=options.prefix, table=options.table)
                return {"restored": "no route"}
            except RouteError as exc:
                raise StepFailed(exc.message, exc.hint) from None

    def undone(self) -> bool | None:
        before = self._before()
        if not before or not before[0].get("gateway"):
            return None
        with contextlib.closing(self._netlink()) as ipr:
            hops = self._hops(ipr)
        first = before[0]
        return len(hops) == 1 and hops[0].gateway == first["gateway"]


class RouteVerify(_RouteAction):
    """Packets to the target really take the site's path: lookup, echoes, counters."""

    name = "route.verify"

    def apply(self) -> dict[str, Any] | None:
        options = self.settings.options
        path = self.path
        count = int(options.verify_probes)
        with contextlib.closing(self._netlink()) as ipr:
            try:
                hop = table.lookup(ipr, options.target)
                if not same_hop(hop, path):
                    raise StepFailed(
                        f"{options.target} is routed {hop.describe()}, not via {path.gateway}"
                        f" ({self.site})",
                        hint=f"see `ip route get {options.target}` in the routing namespace",
                    )
                dev = path.dev or hop.dev
                if dev is None:
                    raise StepFailed(
                        f"the kernel names no interface for {options.target}",
                        hint="set the path's dev:",
                    )
                before = table.counters(ipr, dev)
                with contextlib.closing(open_icmp(options.netns)) as icmp:
                    result = echo(
                        icmp, options.target, count=count,
                        timeout=float(options.probe_timeout), spacing=0.01,
                    )  # fmt: skip
                after = table.counters(ipr, dev)
            except RouteError as exc:
                raise StepFailed(exc.message, exc.hint) from None
        sent = after.tx_packets - before.tx_packets
        received = after.rx_packets - before.rx_packets
        self.ctx.measure("route.verify_replies", float(result.replies), note=f"of {count}")
        if not result.ok:
            raise StepFailed(
                f"{result.describe(options.target)} through {self.site}'s path via {path.gateway}",
                hint=f"the route points at {self.site} but the target does not answer "
                "through it: check the path beyond the next hop",
            )
        if sent < result.sent or received < result.replies:
            raise StepFailed(
                f"{dev} sent {sent} and received {received} packets while {result.sent} "
                f"echoes went to {options.target} and {result.replies} came back: they "
                f"did not all take {self.site}'s path",
                hint="another interface carries the traffic: see `ip -s link` and "
                "`ip rule` in the routing namespace",
            )
        return {
            "target": options.target,
            "via": hop.describe(),
            "echoes": f"{result.replies}/{result.sent}",
            "dev": dev,
            "dev_tx_packets": sent,
            "dev_rx_packets": received,
        }


ROUTE_ACTIONS: tuple[type[Action], ...] = (RouteSwitch, RouteVerify)
