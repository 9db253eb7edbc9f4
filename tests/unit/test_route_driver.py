"""The route driver's pure parts: settings, steps, the planner's use of it, ICMP packets.

No namespace is needed here; tests/integration/test_route_lab.py moves real routes.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest

from failback.config import ConfigError, load_topology_text
from failback.drivers.catalog import driver_named
from failback.drivers.route import echo
from failback.errors import PlanRefused
from failback.model.observed import ComponentObservation, ServiceState
from failback.plan.planners import plan_failback, plan_failover

TOPOLOGY = """\
sites:
  dc1: {}
  dc2: {}
services:
  net:
    primary_site: dc1
    policy: {approval: none, stability_window: 3s, observation_window: 0s}
    components:
      path:
        driver: route
        options: {netns: client, prefix: 10.9.0.0/24, target: 10.9.0.1}
        sites:
          dc1: {gateway: 10.0.1.1, dev: dc1, probe: 10.1.1.2}
          dc2: {gateway: 10.0.2.1, dev: dc2, probe: 10.1.2.2}
"""


def topology(text: str = TOPOLOGY) -> Any:
    return load_topology_text(text, "/tmp/net.yaml")


def state(active: str, dc1: bool, dc2: bool) -> ServiceState:
    return ServiceState(
        service="net",
        primary_site="dc1",
        active_site=active,
        components=[
            ComponentObservation(
                component="path",
                site=site,
                driver="route",
                healthy=healthy,
                role="active" if site == active else "standby",
                detail="probe 10.1.1.2 answered 0/2 echoes" if not healthy else "ok",
            )
            for site, healthy in (("dc1", dc1), ("dc2", dc2))
        ],
    )


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        topology(text)
    return [f"{p.line}: {p.key}: {p.message}" for p in info.value.problems]


def test_the_lab_topology_loads_and_the_driver_is_registered() -> None:
    service = topology().service("net")
    assert service.components["path"].options.table == 254
    driver = driver_named("route")
    assert driver is not None and driver.role(service.components["path"]).value == "operator"


@pytest.mark.parametrize(
    ("old", "new", "line", "says"),
    [
        ("prefix: 10.9.0.0/24", "prefix: 10.9.0.1/24", 11, "is not an IPv4 prefix"),
        ("target: 10.9.0.1", "target: 10.8.0.1", 11, "not inside prefix"),
        ("gateway: 10.0.2.1", "gateway: 10.0.1.1", 14, "same next hop as dc1"),
        ("probe: 10.1.2.2", "probe: 10.1.1.2", 14, "same address as dc1"),
        ("probe: 10.1.2.2", "probe: 10.9.0.7", 14, "inside the prefix"),
        ("gateway: 10.0.1.1, ", "gateway: nowhere, ", 13, "not an IPv4 address"),
    ],
)
def test_bad_settings_are_reported_at_their_line(old: str, new: str, line: int, says: str) -> None:
    found = problems(TOPOLOGY.replace(old, new, 1))
    assert any(p.startswith(f"{line}:") and says in p for p in found), found


def test_unplanned_failover_switches_the_route_then_verifies_it() -> None:
    service = topology().service("net")
    plan = plan_failover("net", service, state("dc1", dc1=False, dc2=True))
    steps = [(s.id, s.action, s.site) for s in plan.steps]
    assert steps[:2] == [
        ("route-path-dc2", "route.switch", "dc2"),
        ("verify-path-dc2", "route.verify", "dc2"),
    ]
    # rolling back an unplanned failover would route onto the path that failed
    assert plan.steps[0].point_of_no_return


def test_a_healthy_primary_path_is_not_failed_over_unplanned() -> None:
    service = topology().service("net")
    with pytest.raises(PlanRefused, match="healthy at its active site"):
        plan_failover("net", service, state("dc1", dc1=True, dc2=True))
    planned = plan_failover("net", service, state("dc1", dc1=True, dc2=True), planned=True)
    switch = next(s for s in planned.steps if s.action == "route.switch")
    assert switch.site == "dc2" and not switch.point_of_no_return  # undone on a failure


def test_failover_onto_a_dead_backup_path_is_refused_unless_forced() -> None:
    service = topology().service("net")
    with pytest.raises(PlanRefused, match="dc2's path is unhealthy too"):
        plan_failover("net", service, state("dc1", dc1=False, dc2=False))
    forced = plan_failover("net", service, state("dc1", dc1=False, dc2=False), force=True)
    assert any("unhealthy" in note for note in forced.notes)


def test_failback_is_refused_while_the_primary_path_is_unhealthy() -> None:
    service = topology().service("net")
    with pytest.raises(PlanRefused) as info:
        plan_failback("net", service, state("dc2", dc1=False, dc2=True))
    assert "primary path dc1 is unhealthy" in info.value.message
    assert "answered 0/2" in info.value.message
    assert "stability window (3s)" in (info.value.hint or "")


def test_failback_waits_for_the_stability_window_before_the_route_moves() -> None:
    service = topology().service("net")
    plan = plan_failback("net", service, state("dc2", dc1=True, dc2=True))
    order = [s.id for s in plan.steps]
    assert order.index("stability") < order.index("route-path-dc1") < order.index("verify-path-dc1")
    gate = plan.steps[order.index("stability")]
    assert gate.site == "dc1" and gate.params["window_s"] == 3.0
    assert not plan.steps[order.index("route-path-dc1")].point_of_no_return


def test_echo_request_checksum_verifies() -> None:
    packet = echo.request(0x1234, 7)
    assert echo.checksum(packet) == 0  # a correct checksum sums to zero
    kind, code, _sum, ident, seq = struct.unpack("!BBHHH", packet[:8])
    assert (kind, code, ident, seq) == (8, 0, 0x1234, 7)


def _ipv4(source: str, payload: bytes) -> bytes:
    header = bytearray(20)
    header[0] = 0x45
    header[12:16] = bytes(int(part) for part in source.split("."))
    return bytes(header) + payload


def test_replies_and_errors_are_matched_to_their_request() -> None:
    reply = struct.pack("!BBHHH", 0, 0, 0, 0x1234, 3) + b"x"
    assert echo._parse(_ipv4("10.1.1.2", reply)) == ("10.1.1.2", 0, 0, 0x1234, 3)
    quoted = _ipv4("10.0.1.2", echo.request(0x1234, 4))
    unreachable = struct.pack("!BBHI", 3, 0, 0, 0) + quoted
    assert echo._parse(_ipv4("10.0.1.1", unreachable)) == ("10.0.1.1", 3, 0, 0x1234, 4)
    assert echo._parse(b"short") is None
