"""The netns lab's plumbing: real namespaces, a real bridge and veths, a real sshd each.

Nothing is mocked: the test builds a lab's network in a fresh directory under /tmp,
logs in to every machine with the system ssh client (host keys pinned, keys only),
kills machines, cuts their links, and checks with TCP connects, not with state
strings, that what should be reachable is and what should not be is not. It needs
root and ``ip netns`` and skips with the reason when the machine cannot.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from failback.lab import netns, sshd
from failback.lab.detached import alive
from failback.lab.errors import LabError
from failback.lab.netns_plan import NetPlan

AVAILABLE, WHY = netns.netns_available()
pytestmark = [pytest.mark.integration, pytest.mark.skipif(not AVAILABLE, reason=WHY)]

_CONNECT = """\
import socket, sys
try:
    with socket.create_connection((sys.argv[1], 22), timeout=float(sys.argv[2])) as s:
        s.settimeout(float(sys.argv[2]))
        print(s.recv(64).decode(errors="replace").splitlines()[0])
except OSError as exc:
    print("unreachable", type(exc).__name__)
"""


@dataclass
class Lab:
    dir: Path
    plan: NetPlan


def _build(root: Path, name: str) -> Lab:
    directory = root / name
    directory.mkdir()
    plan = netns.plan_for(directory)
    netns.up(plan)
    sshd.prepare(directory, plan)
    sshd.start_all(directory, plan)
    return Lab(directory, plan)


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="fb-netns-", dir="/tmp"))
    os.chmod(base, 0o711)
    plans: list[NetPlan] = []
    try:
        yield base
    finally:
        for child in base.iterdir():
            if child.is_dir():
                plans.append(netns.plan_for(child))
        for plan in plans:
            netns.down(plan)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def lab(root: Path) -> Lab:
    return _build(root, "a")


# --------------------------------------------------------------------------- helpers


def connect_from(where: str | None, address: str, timeout: float = 1.0) -> str:
    """TCP to ``address``:22 from a namespace (None: the root one); the banner, or why not."""
    argv = [sys.executable, "-c", _CONNECT, address, str(timeout)]
    if where is not None:
        argv = ["ip", "netns", "exec", where, *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.strip()


def remote(lab: Lab, machine: str, *command: str) -> str:
    """Run ``command`` on ``machine`` through its sshd with the system ssh client."""
    argv = sshd.ssh_argv(lab.dir, lab.plan.hosts[machine].address, command)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, f"ssh {machine} {command}: {done.stderr}"
    return done.stdout


def start_sleeper(lab: Lab, machine: str) -> int:
    """A process started on ``machine`` over SSH, detached from the session."""
    out = remote(lab, machine, "sh", "-c", "nohup sleep 600 >/dev/null 2>&1 </dev/null & echo $!")
    return int(out.strip())


def ip_identify(pid: int) -> str:
    done = subprocess.run(
        ["ip", "netns", "identify", str(pid)], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def eventually_reachable(where: str | None, address: str, timeout: float = 10.0) -> str:
    """Peers that tried during a partition retry ARP about once a second: allow for it."""
    deadline = time.monotonic() + timeout
    while True:
        seen = connect_from(where, address)
        if seen.startswith("SSH-") or time.monotonic() > deadline:
            return seen


# ----------------------------------------------------------------------------- tests


def test_plan_fits_linux_and_survives_json(lab: Lab) -> None:
    plan = lab.plan
    names = [plan.bridge, *(h.veth for h in plan.hosts.values())]
    assert all(len(name) <= 15 for name in names)
    assert set(plan.hosts) == {"dc1", "dc2", "edge"}
    assert netns.plan_from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    assert netns.plan_for(lab.dir) == plan  # planning again keeps the built subnet
    with pytest.raises(LabError) as err:
        netns.link_down(plan, "dc9")
    assert err.value.hint and "dc1" in err.value.hint


def test_root_and_every_machine_reach_each_other(lab: Lab) -> None:
    hosts = lab.plan.hosts.values()
    for target in hosts:
        assert connect_from(None, target.address).startswith("SSH-2.0-OpenSSH")
        for source in hosts:
            assert connect_from(source.netns, target.address).startswith("SSH-2.0-")


def test_ssh_logs_in_to_each_machine_inside_its_namespace(lab: Lab) -> None:
    for name, host in lab.plan.hosts.items():
        out = remote(lab, name, "sh", "-c", "ip netns identify $$; ip -j -4 addr show dev eth0")
        identity, addresses = out.split("\n", 1)
        assert identity == host.netns
        locals_ = [a["local"] for link in json.loads(addresses) for a in link["addr_info"]]
        assert locals_ == [host.address]
        pid = sshd.running_pid(lab.dir, lab.plan, name)
        assert pid is not None and ip_identify(pid) == host.netns


def test_up_twice_is_a_no_op_and_sshd_starts_and_stops_idempotently(lab: Lab) -> None:
    assert netns.up(lab.plan) == []
    before = sshd.running_pid(lab.dir, lab.plan, "dc1")
    assert sshd.start(lab.dir, lab.plan, "dc1") == before
    sshd.stop(lab.dir, lab.plan, "dc1")
    sshd.stop(lab.dir, lab.plan, "dc1")
    assert not sshd.is_running(lab.dir, lab.plan, "dc1")
    address = lab.plan.hosts["dc1"].address
    assert connect_from(None, address) == "unreachable ConnectionRefusedError"
    assert sshd.start(lab.dir, lab.plan, "dc1") != before
    assert remote(lab, "dc1", "true") == ""


def test_kill_all_kills_one_machine_and_nothing_else(lab: Lab) -> None:
    victim = start_sleeper(lab, "dc2")
    bystander = start_sleeper(lab, "dc1")
    assert ip_identify(victim) == lab.plan.hosts["dc2"].netns
    sshd_dc2 = sshd.running_pid(lab.dir, lab.plan, "dc2")
    try:
        killed = netns.kill_all(lab.plan.hosts["dc2"].netns)
        assert victim in killed and sshd_dc2 in killed
        assert not alive(victim) and sshd.running_pid(lab.dir, lab.plan, "dc2") is None
        assert netns.pids(lab.plan.hosts["dc2"].netns) == []
        assert connect_from(None, lab.plan.hosts["dc2"].address).startswith("unreachable")
        assert alive(bystander)
        assert sshd.is_running(lab.dir, lab.plan, "dc1")
        assert sshd.is_running(lab.dir, lab.plan, "edge")
        # the machine comes back: its sshd starts again with the same pinned host key
        sshd.start(lab.dir, lab.plan, "dc2")
        assert remote(lab, "dc2", "true") == ""
    finally:
        os.kill(bystander, 9)


def test_link_down_cuts_a_machine_off_while_it_keeps_running(lab: Lab) -> None:
    dc1, dc2, edge = (lab.plan.hosts[n] for n in ("dc1", "dc2", "edge"))
    sleeper = start_sleeper(lab, "dc1")
    sshd_pid = sshd.running_pid(lab.dir, lab.plan, "dc1")
    netns.link_down(lab.plan, "dc1")
    try:
        assert netns.is_partitioned(lab.plan, "dc1")
        assert connect_from(None, dc1.address) == "unreachable TimeoutError"
        assert connect_from(edge.netns, dc1.address) == "unreachable TimeoutError"
        assert connect_from(dc1.netns, dc2.address) == "unreachable TimeoutError"
        assert connect_from(dc1.netns, lab.plan.root_address).startswith("unreachable")
        assert alive(sleeper) and sshd.running_pid(lab.dir, lab.plan, "dc1") == sshd_pid
        assert connect_from(edge.netns, dc2.address).startswith("SSH-")
    finally:
        netns.link_up(lab.plan, "dc1")
    assert not netns.is_partitioned(lab.plan, "dc1")
    assert eventually_reachable(None, dc1.address).startswith("SSH-")
    assert eventually_reachable(dc2.netns, dc1.address).startswith("SSH-")
    assert eventually_reachable(dc1.netns, edge.address).startswith("SSH-")
    os.kill(sleeper, 9)


def test_two_labs_coexist_a_half_built_one_is_completed_and_down_leaves_nothing(
    lab: Lab, root: Path
) -> None:
    directory = root / "b"
    directory.mkdir()
    plan = netns.plan_for(directory)
    assert plan.id != lab.plan.id and plan.subnet != lab.plan.subnet
    assert not {h.netns for h in plan.hosts.values()} & {h.netns for h in lab.plan.hosts.values()}
    # half-built: the bridge and one namespace exist already, nothing else
    subprocess.run(["ip", "link", "add", plan.bridge, "type", "bridge"], check=True)
    subprocess.run(["ip", "netns", "add", plan.hosts["dc1"].netns], check=True)
    assert netns.up(plan) != []
    b = Lab(directory, plan)
    sshd.prepare(directory, plan)
    sshd.start_all(directory, plan)
    # a veth lost: up makes it again, and the machine's running sshd answers again
    subprocess.run(["ip", "link", "del", plan.hosts["dc2"].veth], check=True)
    assert connect_from(None, plan.hosts["dc2"].address).startswith("unreachable")
    assert netns.up(plan) != [] and netns.up(plan) == []
    for name, host in plan.hosts.items():
        assert eventually_reachable(None, host.address).startswith("SSH-")
        assert remote(b, name, "sh", "-c", "ip netns identify $$").strip() == host.netns
    for host in lab.plan.hosts.values():
        assert connect_from(None, host.address).startswith("SSH-")
    sleeper = start_sleeper(b, "edge")

    started = time.monotonic()
    netns.down(plan)
    assert time.monotonic() - started < 15
    assert netns.down(plan) == []
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"fb{plan.id}" not in namespaces
    links = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, text=True).stdout)
    assert not [link["ifname"] for link in links if plan.id in link["ifname"]]
    assert not alive(sleeper)
    assert not _processes_mentioning(str(directory))
    for host in lab.plan.hosts.values():  # the other lab is untouched
        assert connect_from(None, host.address).startswith("SSH-")


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if text.encode() in cmdline:
                found.append(int(entry))
    return found
