"""The netns lab's plan on paper: names fit Linux, labs do not collide, subnets are free."""

from __future__ import annotations

import ipaddress
import json

import pytest

from failback.lab.errors import LabError
from failback.lab.netns_plan import (
    IFNAME_MAX,
    SUPERNET,
    NetPlan,
    bridge_end_mac,
    choose_subnet,
    lab_id,
    make_plan,
)

SUBNET = ipaddress.IPv4Network("10.211.7.0/24")


def test_names_fit_linux_and_addresses_follow_the_subnet() -> None:
    plan = make_plan("/tmp/some/rather/long/lab/directory/name", SUBNET)
    assert plan.bridge == f"fb{plan.id}" and len(plan.id) == 8
    assert all(len(n) <= IFNAME_MAX for n in (plan.bridge, *(h.veth for h in plan.hosts.values())))
    assert plan.root_address == "10.211.7.1"
    assert [h.address for h in plan.hosts.values()] == ["10.211.7.10", "10.211.7.20", "10.211.7.30"]
    assert plan.hosts["edge"].netns == f"fb{plan.id}-edge"
    macs = [plan.bridge_mac, *(h.mac for h in plan.hosts.values())]
    macs += [bridge_end_mac(h.mac) for h in plan.hosts.values()]
    assert len(set(macs)) == len(macs)
    assert all(int(m.split(":")[0], 16) & 0b11 == 0b10 for m in macs)  # local, unicast


def test_the_same_directory_gives_the_same_plan_and_another_one_different_names() -> None:
    a = make_plan("/tmp/lab-a", SUBNET)
    assert make_plan("/tmp/lab-a/", SUBNET) == a
    b = make_plan("/tmp/lab-b", SUBNET)
    assert a.id != b.id and a.bridge != b.bridge
    assert not {h.netns for h in a.hosts.values()} & {h.netns for h in b.hosts.values()}


def test_the_plan_survives_json() -> None:
    plan = make_plan("/tmp/lab-a", SUBNET)
    assert NetPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


def test_choose_subnet_starts_at_the_ids_slot_and_skips_what_is_used() -> None:
    lab = lab_id("/tmp/lab-a")
    first = choose_subnet(lab, [])
    assert first.subnet_of(SUPERNET) and first.prefixlen == 24
    assert choose_subnet(lab, [ipaddress.ip_network("192.0.2.0/24")]) == first
    second = choose_subnet(lab, [first])
    assert second != first
    assert choose_subnet(lab, [ipaddress.ip_network(f"{first.network_address + 5}/32")]) == second
    with pytest.raises(LabError, match="no free"):
        choose_subnet(lab, [SUPERNET])


def test_bad_machine_names_and_unknown_machines_are_lab_errors() -> None:
    with pytest.raises(LabError, match="cannot name"):
        make_plan("/tmp/lab-a", SUBNET, hosts=("dc1", "DC/2"))
    with pytest.raises(LabError):
        make_plan("/tmp/lab-a", SUBNET, hosts=("dc1", "dc1"))
    with pytest.raises(LabError) as err:
        make_plan("/tmp/lab-a", SUBNET).host("dc3")
    assert err.value.hint == "use one of: dc1, dc2, edge"
