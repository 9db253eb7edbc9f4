"""Plan steps on a DNS name: move (a share of) it to a site, then wait out its TTL.

``dns.shift`` replaces the name's records in one signed update; its undo sends the whole
name back to the site the run moves away from. ``dns.gate`` waits until no resolver can
still hold the answer the update replaced (the old TTL and the new one, counted from the
update), then until the configured resolver answers the new records, and runs the
site's http checks: only then can the next step assume that clients moved.
"""

from __future__ import annotations

import time
from typing import Any

from failback.drivers.base import Action, StepContext
from failback.drivers.dns.errors import DnsError
from failback.drivers.dns.facts import resolver_address
from failback.drivers.dns.records import wanted_records
from failback.drivers.dns.zone import Zone, dns_client
from failback.errors import FailbackError, StepFailed
from failback.model.plan import StepSpec


def _settings(spec: StepSpec, ctx: StepContext) -> Any:
    if spec.component is None or spec.site is None:
        raise FailbackError(f"step {spec.id}: a dns step needs a component and a site")
    return ctx.service.components[spec.component]


def _failed(exc: DnsError, what: str) -> StepFailed:
    return StepFailed(f"{what}: {exc.message}", hint=exc.hint)


def _moved_key(spec: StepSpec) -> str:
    """Where ``dns.shift`` remembers when it changed the records and the TTL it replaced."""
    return f"dns.{spec.component}.{spec.site}.{spec.params.get('percent')}"


class DnsShift(Action):
    """Make the name send ``params.percent`` of its traffic to ``spec.site``."""

    name = "dns.shift"
    has_undo = True

    def __init__(self, spec: StepSpec, ctx: StepContext) -> None:
        super().__init__(spec, ctx)
        self.settings = _settings(spec, ctx)
        self.zone = Zone.of(self.settings)
        self.percent = int(spec.params["percent"])
        self.ttl = int(self.settings.options.ttl)
        self.wanted = wanted_records(self.settings, spec.site or "", self.percent)

    def _holds(self, records: set[str]) -> tuple[bool, Any]:
        try:
            answer = dns_client().ask_authoritative(self.zone)
        except DnsError as exc:
            raise _failed(exc, f"cannot read {self.zone.name}") from None
        return set(answer.records) == records and answer.ttl == self.ttl, answer

    def check(self) -> bool:
        done, _answer = self._holds(self.wanted)
        return done

    def apply(self) -> dict[str, Any] | None:
        _done, before = self._holds(self.wanted)
        try:
            dns_client().replace_records(self.zone, self.wanted, self.ttl)
        except DnsError as exc:
            raise _failed(exc, f"{self.zone.name} was not moved") from None
        self.ctx.remember(_moved_key(self.spec), {"at": time.time(), "old_ttl": before.ttl})
        self.ctx.measure(f"dns.{self.spec.component}.{self.spec.site}_percent", self.percent, "%")
        return {"before": sorted(before.records), "records": sorted(self.wanted), "ttl": self.ttl}

    def verify(self) -> None:
        done, answer = self._holds(self.wanted)
        if not done:
            raise StepFailed(
                f"{self.zone.where} answers {sorted(answer.records)} (ttl {answer.ttl}) for "
                f"{self.zone.name}, not {sorted(self.wanted)} (ttl {self.ttl})",
                hint="another writer may be changing the name: look at the zone's journal",
            )

    def undo(self) -> dict[str, Any] | None:
        away = str(self.spec.params["away"])
        back = wanted_records(self.settings, away, 100)
        if set(self._holds(back)[1].records) == back:
            # the update never took effect (refused, say): nothing to send back, and no
            # second update that would be refused the same way
            return {"records": sorted(back), "unchanged": True}
        try:
            dns_client().replace_records(self.zone, back, self.ttl)
        except DnsError as exc:
            raise _failed(exc, f"{self.zone.name} was not sent back to {away}") from None
        return {"records": sorted(back)}


class DnsGate(Action):
    """Wait out the TTL of the answer the shift replaced, then judge the new one."""

    name = "dns.gate"

    def __init__(self, spec: StepSpec, ctx: StepContext) -> None:
        super().__init__(spec, ctx)
        self.settings = _settings(spec, ctx)
        self.percent = int(spec.params["percent"])
        self.wanted = wanted_records(self.settings, spec.site or "", self.percent)

    def apply(self) -> dict[str, Any] | None:
        opts = self.settings.options
        moved = self.ctx.values.get(_moved_key(self.spec)) or {}
        # the records were in place before this run (the shift was skipped): a resolver
        # may have cached the old answer up to now, so the whole TTL is waited
        since = float(moved.get("at") or time.time())
        ttl = max(int(opts.ttl), int(moved.get("old_ttl") or 0))
        bake = float(self.spec.params.get("bake_s") or 0.0)
        due = since + ttl + bake
        resolver = resolver_address(self.settings)
        seen: dict[str, Any] = {}

        def settled() -> tuple[bool, str]:
            left = due - time.time()
            if left > 0:
                return False, f"waiting out the TTL of {opts.fqdn} ({ttl}s): {left:.1f}s left"
            if resolver is None:
                return True, f"{ttl}s TTL waited out"
            try:
                answer = dns_client().ask_resolver(
                    resolver[0], resolver[1], opts.fqdn, opts.type, float(opts.timeout)
                )
            except DnsError as exc:
                return False, exc.message
            seen["resolver"] = sorted(answer.records)
            if set(answer.records) == self.wanted:
                return True, f"resolver {resolver[0]}:{resolver[1]} answers the new records"
            return False, f"resolver still answers {sorted(answer.records)}"

        grace = float(opts.resolver_grace) + float(opts.timeout)
        message = self.ctx.wait_until(
            settled, timeout=max(0.0, due - time.time()) + grace, interval=0.2,
            what=f"{opts.fqdn} settled at {self.spec.site}",
        )  # fmt: skip
        self.ctx.measure(f"dns.{self.spec.site}.{self.percent}pct.ttl_wait_s", ttl + bake, "s")
        problems = [
            f"http check {r.name}: {r.detail}"
            for r in self.ctx.run_checks("http", self.spec.site or "")
            if not r.ok
        ]
        if problems:
            raise StepFailed(
                f"traffic gate at {self.percent}% of {opts.fqdn} to {self.spec.site} failed: "
                + "; ".join(problems),
                hint="before the switchover the name goes back to the secondary site at "
                "once; fix the primary site, then run the failback again",
            )
        return {"settled": message, "ttl_s": ttl, "bake_s": bake, **seen}


DNS_ACTIONS: tuple[type[Action], ...] = (DnsShift, DnsGate)
