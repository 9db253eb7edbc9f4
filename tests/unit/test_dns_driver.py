"""The ``dns`` driver's pure parts: its settings, the records a split wants, the steps
it gives each phase, and the plans it refuses.

The server side (updates, TSIG, the resolver's cache) is tested against a real BIND in
``tests/integration/test_dns_driver.py`` and through the lab in ``test_lab_dns.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from failback.config import ConfigError, load_topology_text
from failback.drivers.base import Capability, Role
from failback.drivers.catalog import driver_of, role_of
from failback.drivers.dns.records import share_of, wanted_records
from failback.drivers.planning import Phase, PlanCheck, PlanRequest, RunKind
from failback.errors import PlanRefused
from failback.model.observed import ComponentObservation, ServiceState
from failback.plan.planners import plan_failback, plan_failover

ADDRESS = """\
      dns:
        driver: dns
        options:
          server: 127.0.0.1
          port: 5353
          zone: example.com
          name: app
          ttl: 30s
          key: {name: failback, secret: "file:/etc/failback/tsig.secret"}
        sites:
          dc1: {addresses: [192.0.2.1, 192.0.2.2]}
          dc2: {addresses: [198.51.100.1]}
"""
SRV = """\
      dns:
        driver: dns
        options:
          server: 127.0.0.1
          zone: example.com.
          name: _http._tcp.app.example.com.
          type: SRV
          key: {name: failback, secret: "env:TSIG_SECRET"}
        sites:
          dc1: {target: web1.example.com, port: 443}
          dc2: {target: web2.example.com, port: 8443}
"""
POLICY = """\
    policy:
      stability_window: 3s
      traffic_steps: [25, 50, 100]
      bake_time: 2s
      observation_window: 0s
"""


def service(component: str) -> Any:
    text = (
        "sites: {dc1: {}, dc2: {}}\nservices:\n  app:\n    primary_site: dc1\n"
        "    components:\n" + component + POLICY
    )
    return load_topology_text(text, "/tmp/failback.yaml").service("app")


def problems_of(component: str) -> str:
    with pytest.raises(ConfigError) as caught:
        service(component)
    return str(caught.value.message) + " " + " ".join(str(p) for p in caught.value.problems)


def test_settings_load_and_name_is_absolute() -> None:
    svc = service(ADDRESS)
    dns = svc.components["dns"]
    assert dns.options.fqdn == "app.example.com."
    assert dns.options.zone == "example.com."
    assert dns.options.key.name == "failback."
    assert dns.options.key.secret.describe() == "file:/etc/failback/tsig.secret"
    assert role_of(dns) is Role.TIER
    assert Capability.TRAFFIC_HEALTH in driver_of(dns).capabilities


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        ("server: 127.0.0.1", "server: ns1.example.com", "must be an IP address"),
        ("name: app", "name: app.example.org.", "is not inside the zone"),
        ("ttl: 30s", "ttl: 1500ms", "whole seconds"),
        ("[198.51.100.1]", "[192.0.2.1]", "like site 'dc1'"),
        ("[198.51.100.1]", "[2001:db8::1]", "is not an IPv4 address"),
        ("[198.51.100.1]", "[not-an-ip]", "is not an IP address"),
        ("dc2: {addresses: [198.51.100.1]}", "dc2: {target: x.example.com, port: 1}", "target"),
        ('secret: "file:/etc/failback/tsig.secret"', 'secret: "vault:x"', "not supported"),
    ],
)
def test_bad_settings_are_refused_with_the_reason(old: str, new: str, says: str) -> None:
    assert old in ADDRESS
    assert says in problems_of(ADDRESS.replace(old, new))


def test_srv_needs_target_and_port() -> None:
    assert "needs target and port" in problems_of(SRV.replace(", port: 8443", ""))


def test_address_records_move_whole() -> None:
    dns = service(ADDRESS).components["dns"]
    assert wanted_records(dns, "dc2", 100) == {"198.51.100.1"}
    assert wanted_records(dns, "dc1", 100) == {"192.0.2.1", "192.0.2.2"}
    with pytest.raises(ValueError, match="cannot be weighted"):
        wanted_records(dns, "dc1", 50)
    assert share_of(dns, "dc1", {"192.0.2.1", "192.0.2.2"}) == 100.0
    assert share_of(dns, "dc2", {"192.0.2.1", "192.0.2.2"}) == 0.0
    assert share_of(dns, "dc2", {"192.0.2.1", "198.51.100.1"}) == 50.0


def test_srv_weights_follow_the_split() -> None:
    dns = service(SRV).components["dns"]
    assert wanted_records(dns, "dc1", 25) == {
        "0 25 443 web1.example.com.",
        "0 75 8443 web2.example.com.",
    }
    # a site at 0% has no record at all (a weight of 0 is still picked now and then)
    assert wanted_records(dns, "dc1", 100) == {"0 100 443 web1.example.com."}
    records = wanted_records(dns, "dc1", 25)
    assert share_of(dns, "dc1", records) == 25.0
    assert share_of(dns, "dc2", records) == 75.0


def request(svc: Any, percent: int, *, gated: bool) -> PlanRequest:
    return PlanRequest(
        phase=Phase.SHIFT, kind=RunKind.FAILBACK, component="dns",
        settings=svc.components["dns"], from_site="dc2", to_site="dc1", percent=percent,
        bake_s=2.0, gated=gated,
    )  # fmt: skip


def test_address_records_take_part_only_in_the_whole_move() -> None:
    svc = service(ADDRESS)
    driver = driver_of(svc.components["dns"])
    assert driver.steps(request(svc, 50, gated=True)) == []
    steps = driver.steps(request(svc, 100, gated=True))
    assert [(s.action, s.kind) for s in steps] == [("dns.shift", "action"), ("dns.gate", "gate")]
    assert steps[0].params == {"percent": 100, "away": "dc2"}
    assert "TTL (30s)" in steps[1].title
    assert [s.action for s in driver.steps(request(svc, 100, gated=False))] == ["dns.shift"]
    other = PlanRequest(
        phase=Phase.ROUTE, kind=RunKind.FAILBACK, component="dns",
        settings=svc.components["dns"], from_site="dc2", to_site="dc1",
    )  # fmt: skip
    assert driver.steps(other) == []


def observed(svc: Any, active: str, dns: dict[str, Any] | None = None) -> ServiceState:
    comps = [
        ComponentObservation(
            component="dns",
            site=site,
            driver="dns",
            healthy=True,
            role="active" if site == active else "standby",
            data={},
        )
        for site in ("dc1", "dc2")
    ]
    if dns is not None:
        comps = [
            ComponentObservation(component="dns", site=s, driver="dns", **dns)
            for s in ("dc1", "dc2")
        ]
    return ServiceState(service="app", primary_site="dc1", active_site=active, components=comps)


def test_failback_plan_with_srv_shifts_in_every_step() -> None:
    svc = service(SRV)
    plan = plan_failback("app", svc, observed(svc, "dc2"))
    actions = [
        (s.action, s.params.get("percent")) for s in plan.steps if s.action.startswith("dns")
    ]
    assert actions == [
        ("dns.shift", 25), ("dns.gate", 25), ("dns.shift", 50), ("dns.gate", 50),
        ("dns.shift", 100), ("dns.gate", 100),
    ]  # fmt: skip


def test_failback_plan_with_address_records_says_it_moves_at_once() -> None:
    svc = service(ADDRESS)
    plan = plan_failback("app", svc, observed(svc, "dc2"))
    assert [s.id for s in plan.steps if s.action.startswith("dns")] == [
        "dns-dns-dc1-100",
        "gate-dns-dc1-100",
    ]
    assert any("cannot be weighted" in note for note in plan.notes)


KEY_REFUSED = {
    "healthy": False,
    "role": "down",
    "detail": "127.0.0.1:5353 rejected the signature of TSIG key failback. (BADSIG)",
    "data": {"problem": "key-refused", "hint": "the secret in file:/x is not the server's"},
}
UNREACHABLE = {
    "healthy": False,
    "role": "down",
    "detail": "no answer from DNS server 127.0.0.1:5353 within 2s",
    "data": {"problem": "unreachable", "hint": "is the server running?"},
}


def test_a_refused_key_refuses_the_runs_that_can_wait() -> None:
    svc = service(ADDRESS)
    with pytest.raises(PlanRefused, match=r"key is refused.*BADSIG") as caught:
        plan_failback("app", svc, observed(svc, "dc2", KEY_REFUSED))
    assert caught.value.hint == "the secret in file:/x is not the server's; nothing was changed"
    with pytest.raises(PlanRefused, match="BADSIG"):
        plan_failover("app", svc, observed(svc, "dc1", KEY_REFUSED), planned=True)
    # the database must leave a failed site whatever the name does: noted, not refused
    plan = plan_failover("app", svc, observed(svc, "dc1", KEY_REFUSED), force=True)
    assert any("BADSIG" in note and "may fail" in note for note in plan.notes)


def test_an_unreachable_server_refuses_a_failback_not_an_unplanned_failover() -> None:
    svc = service(ADDRESS)
    with pytest.raises(PlanRefused, match="cannot be updated"):
        plan_failback("app", svc, observed(svc, "dc2", UNREACHABLE))
    check = PlanCheck(
        kind=RunKind.FAILOVER, component="dns", settings=svc.components["dns"], service=svc,
        state=observed(svc, "dc1", UNREACHABLE), from_site="dc1", to_site="dc2",
    )  # fmt: skip
    notes = driver_of(svc.components["dns"]).check_plan(check)
    assert notes and "its update may fail" in notes[0]
