"""The netns lab's control plane: a real three-member etcd cluster on dc1, dc2 and a witness.

``failback lab up --hosts netns --control-plane`` is run through the real CLI once for
the module; the tests then cut machines off (``lab partition``), kill them (``lab break
SITE host``), bring them back, start and stop the monitors, and check with real etcd
requests (puts and linearizable reads through one member's client URL, made from
inside a machine's namespace where it matters) who still has quorum. Nothing is
mocked: Debian's etcd 3.4, real namespaces, real sshd. Needs root and ``ip netns``;
skips with the reason when the machine cannot.

The tests share the lab and run in file order; each one leaves the cluster 3/3 healthy,
and the last takes the lab down and checks that nothing of it is left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from failback.config import load_topology
from failback.coord import EtcdClient
from failback.lab import etcd as lab_etcd
from failback.lab import load_info
from failback.lab.control_plane import WITNESS, LabControlPlane
from failback.lab.detached import alive
from failback.lab.info import LabInfo
from failback.lab.netns import identify, leftovers, netns_available, pids, plan_from_dict
from tests.conftest import CliResult, run_cli
from tests.integration.labfixtures import lab_base

AVAILABLE, WHY_NOT = netns_available()
HAS_ETCD = os.access(lab_etcd.ETCD, os.X_OK)
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not AVAILABLE, reason=f"netns lab unavailable: {WHY_NOT}"),
    pytest.mark.skipif(not HAS_ETCD, reason="no etcd: apt-get install etcd-server (setup.sh)"),
]

MACHINES = ("dc1", "dc2", WITNESS)


@dataclass
class CpLab:
    dir: Path
    doc: dict[str, Any]
    """``lab up --json``."""

    @property
    def info(self) -> LabInfo:
        return load_info_of(self.dir)

    @property
    def cp(self) -> LabControlPlane:
        cp = self.info.control_plane
        assert cp is not None
        return cp

    def url(self, machine: str) -> str:
        return self.cp.members[machine].client_url

    def netns(self, machine: str) -> str:
        return self.cp.members[machine].netns

    def lab(self, *args: str, timeout: float = 180) -> CliResult:
        """``failback lab ARGS --dir DIR``, checked: exit 0, no traceback."""
        result = run_cli("lab", *args, "--dir", str(self.dir), timeout=timeout)
        assert "Traceback" not in result.stderr, result.stderr
        assert result.returncode == 0, f"lab {args}: {result.stdout}\n{result.stderr}"
        return result

    def lab_json(self, *args: str, timeout: float = 180) -> Any:
        return self.lab(*args, "--json", timeout=timeout).json()


def load_info_of(directory: Path) -> LabInfo:
    from failback.hosts import LocalHost

    return load_info(LocalHost(), directory)


@pytest.fixture(scope="module")
def lab() -> Iterator[CpLab]:
    with lab_base("fb-cp-") as root:
        directory = root / "lab"
        result = run_cli(
            "lab", "up", "--dir", str(directory), "--hosts", "netns", "--control-plane",
            "--json", timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, f"lab up failed: {result.stdout}\n{result.stderr}"
        yield CpLab(directory, result.json())


# --------------------------------------------------------------------------- helpers

_CLIENT = """\
import sys
from failback.coord import EtcdClient
from failback.errors import FailbackError
url, op, key, value = sys.argv[1:5]
try:
    with EtcdClient([url], connect_timeout=1.0, request_timeout=3.0) as client:
        if op == "put":
            client.put(key, value)
            print("ok")
        elif op == "get":
            kv = client.get(key)
            print("ok", kv.text if kv else "")
        else:
            import httpx
            print("ok", httpx.get(url + "/health", timeout=2).json()["health"])
except FailbackError as exc:
    print("failed", exc.message)
except Exception as exc:
    print("failed", type(exc).__name__, exc)
"""


def etcd_from(netns: str | None, url: str, op: str, key: str = "", value: str = "") -> str:
    """One request to the member at ``url``, made from inside ``netns`` (None: from the
    root namespace): ``put`` and ``get`` are linearizable (they need the cluster's quorum);
    ``health`` is etcd's /health. Returns ``ok ...`` or ``failed <why>``."""
    argv = [sys.executable, "-c", _CLIENT, url, op, key, value]
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def wait_all_healthy(lab: CpLab, timeout: float = 30) -> None:
    """Every member healthy, as etcd's /health says, asked from the root namespace."""
    wait_for(
        "3/3 healthy etcd members",
        lambda: all(lab_etcd.health(lab.cp).values()),
        timeout,
    )


def put_eventually(url: str, key: str, value: str, netns: str | None = None) -> None:
    """A put that succeeds within a few seconds (a new leader may be being elected)."""
    last = ""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        last = etcd_from(netns, url, "put", key, value)
        if last == "ok":
            return
        time.sleep(0.2)
    raise AssertionError(f"put through {url} never succeeded: {last}")


def member_ids(lab: CpLab) -> dict[str, int]:
    with EtcdClient(lab.cp.endpoints) as client:
        return {m.name: m.id for m in client.members()}


def key() -> str:
    return f"/failback-test/{uuid.uuid4().hex}"


# ----------------------------------------------------------------------------- tests


def test_up_gives_a_healthy_three_member_cluster_on_three_machines(lab: CpLab) -> None:
    cp_doc = lab.doc["control_plane"]
    info = lab.info
    assert info.network is not None
    hosts = info.network["hosts"]
    assert set(hosts) == {"dc1", "dc2", "edge", WITNESS}
    addresses = {name: hosts[name]["address"] for name in MACHINES}
    assert cp_doc["endpoints"] == [f"http://{addresses[n]}:2379" for n in MACHINES]
    assert cp_doc["witness"] == {"netns": hosts[WITNESS]["netns"], "address": addresses[WITNESS]}
    assert set(cp_doc["members"]) == set(MACHINES) == set(cp_doc["monitors"])
    for name, member in cp_doc["members"].items():
        assert member["healthy"] is True, (name, member)
        assert member["address"] == addresses[name] and member["netns"] == hosts[name]["netns"]
        # started through the machine's sshd: it lives in that machine's namespace
        assert identify(member["pid"]) == member["netns"], name
        assert Path(member["data_dir"]).is_relative_to(lab.dir)
        assert Path(member["log_file"]).is_relative_to(lab.dir)
    assert all(m["running"] is False for m in cp_doc["monitors"].values())
    assert sorted(member_ids(lab)) == sorted(MACHINES)
    # every machine (the edge too) reaches every member
    for where in (*MACHINES, "edge"):
        for name in MACHINES:
            seen = etcd_from(hosts[where]["netns"], lab.url(name), "health")
            assert seen == "ok true", f"from {where} to {name}: {seen}"
    status = lab.lab_json("status")
    assert status["up"] is True
    assert {n: m["healthy"] for n, m in status["control_plane"]["members"].items()} == {
        n: True for n in MACHINES
    }


def test_the_topology_has_a_control_plane_that_validates(lab: CpLab) -> None:
    config = lab.doc["config"]
    doc = yaml.safe_load(Path(config).read_text())
    address = {n: m["address"] for n, m in lab.doc["control_plane"]["members"].items()}
    assert doc["control_plane"] == {
        "etcd": {"endpoints": lab.doc["control_plane"]["endpoints"]},
        "prefix": "/failback/lab",
        "lease_ttl": 3,
        "peer_token": f"file:{lab.dir / 'secrets' / 'peer.token'}",
        "nodes": {
            "dc1": {"site": "dc1", "peer": f"{address['dc1']}:2390"},
            "dc2": {"site": "dc2", "peer": f"{address['dc2']}:2390"},
            WITNESS: {"peer": f"{address[WITNESS]}:2390"},
        },
    }
    token = lab.dir / "secrets" / "peer.token"
    assert token.stat().st_mode & 0o777 == 0o600 and len(token.read_text().strip()) >= 16
    assert doc["hosts"][WITNESS]["via"] == "ssh"
    result = run_cli("validate", "-c", config)
    assert result.returncode == 0, result.stdout + result.stderr
    topology = load_topology(config)
    assert topology.control_plane is not None
    assert list(topology.control_plane.nodes) == list(MACHINES)


def test_mistakes_get_one_line_and_a_hint(lab: CpLab, tmp_path: Path) -> None:
    target = tmp_path / "not-made"
    result = run_cli("lab", "up", "--dir", str(target), "--control-plane")
    assert result.returncode != 0 and not target.exists()
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: --control-plane needs --hosts netns (etcd members live on the lab's machines)"
    ], result.stderr
    assert "hint: failback lab up --dir DIR --hosts netns --control-plane" in result.stderr

    wrong = run_cli("lab", "break", "dc3", "host", "--dir", str(lab.dir))
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr
    assert "error: the lab has no site 'dc3'" in wrong.stderr
    assert "did you mean" in wrong.stderr and "witness" in wrong.stderr
    witness_db = run_cli("lab", "break", WITNESS, "db", "--dir", str(lab.dir))
    assert witness_db.returncode != 0 and "witness runs only the control plane" in (
        witness_db.stderr
    )

    # a lab without a control plane: the same lab's description without it
    other = tmp_path / "plain"
    other.mkdir()
    plain = json.loads((lab.dir / "lab.json").read_text())
    del plain["control_plane"]
    plain["dir"] = str(other)
    (other / "lab.json").write_text(json.dumps(plain))
    refused = run_cli("lab", "monitors", "up", "--dir", str(other))
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "has no control plane" in refused.stderr
    assert "hint:" in refused.stderr and "--control-plane" in refused.stderr
    assert not (other / "monitors").exists()


def test_partitioned_witness_leaves_a_quorum_of_two(lab: CpLab) -> None:
    k = key()
    lab.lab("partition", WITNESS)
    try:
        put_eventually(lab.url("dc1"), k, "written while the witness is cut off")
        assert etcd_from(None, lab.url("dc2"), "get", k) == (
            "ok written while the witness is cut off"
        )
        # the witness's member, alone, serves no linearizable read and takes no write
        inside = lab.netns(WITNESS)
        assert etcd_from(inside, lab.url(WITNESS), "get", k).startswith("failed")
        assert etcd_from(inside, lab.url(WITNESS), "put", k, "from the minority").startswith(
            "failed"
        )
    finally:
        lab.lab("heal", WITNESS)
    wait_all_healthy(lab)
    assert etcd_from(None, lab.url(WITNESS), "get", k) == "ok written while the witness is cut off"


def test_partitioned_dc1_loses_its_member_while_dc2_and_witness_go_on(lab: CpLab) -> None:
    k = key()
    inside = lab.netns("dc1")
    lab.lab("partition", "dc1")
    try:
        # its member is still running, cut off: it serves neither a linearizable read
        # nor a write, even to a client on its own machine
        member = lab_etcd.member_pid(lab.cp, "dc1")
        assert member is not None and identify(member) == inside
        assert etcd_from(inside, lab.url("dc1"), "put", k, "from the minority").startswith("failed")
        assert etcd_from(inside, lab.url("dc1"), "get", k).startswith("failed")
        put_eventually(lab.url("dc2"), k, "majority")
        assert etcd_from(None, lab.url(WITNESS), "get", k) == "ok majority"
    finally:
        lab.lab("heal", "dc1")
    wait_all_healthy(lab)
    assert etcd_from(None, lab.url("dc1"), "get", k) == "ok majority"
    # dc1's monitor may have fenced its primary while cut off (read-only: its site could
    # have been failed over from); nobody failed over, so the leader lifts that fence
    # once dc1's node is back in etcd: the service takes writes again
    deadline = time.monotonic() + 60
    while not writable(lab.doc["dsn"]):
        assert time.monotonic() < deadline, "dc1's primary still read-only after the heal"
        time.sleep(0.2)


def writable(dsn: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=2, autocommit=True) as conn:
            row = conn.execute("SHOW default_transaction_read_only").fetchone()
    except psycopg.Error:
        return False
    return row is not None and row[0] == "off"


def test_a_dead_dc2_machine_takes_its_member_and_monitor_and_repair_rejoins(lab: CpLab) -> None:
    ids = member_ids(lab)
    up = lab.lab_json("monitors", "up")
    assert up["ok"] is True, up
    for name, mon in up["monitors"].items():
        assert mon["started"] is True and mon["running"] is True, (name, mon)
        assert identify(mon["pid"]) == lab.netns(name), name
        assert mon["state_dir"] == str(lab.dir / "monitors" / name / "state")
    again = lab.lab_json("monitors", "up")  # idempotent: running ones are left alone
    assert {n: (m["pid"], m["started"]) for n, m in again["monitors"].items()} == {
        n: (m["pid"], False) for n, m in up["monitors"].items()
    }

    member = lab_etcd.member_pid(lab.cp, "dc2")
    assert member is not None
    broken = lab.lab_json("break", "dc2", "host")
    assert broken["etcd_pid"] == member
    assert broken["monitor_pid"] == up["monitors"]["dc2"]["pid"]
    assert not alive(member) and not alive(up["monitors"]["dc2"]["pid"])
    assert pids(lab.netns("dc2")) == []
    assert alive(up["monitors"]["dc1"]["pid"]) and alive(up["monitors"][WITNESS]["pid"])
    k = key()
    put_eventually(lab.url("dc1"), k, "while dc2 was dead")  # two of three: quorum

    repaired = lab.lab_json("repair", "dc2", "host")
    assert repaired["etcd"]["healthy"] is True, repaired
    assert identify(repaired["etcd"]["pid"]) == lab.netns("dc2")
    wait_all_healthy(lab)
    assert member_ids(lab) == ids, "dc2 came back as a new member instead of rejoining"
    assert etcd_from(lab.netns("dc2"), lab.url("dc2"), "get", k) == "ok while dc2 was dead"
    # repair restarts the member, never the monitor: 'monitors up' does, and only that one
    status = lab.lab_json("monitors", "status")["monitors"]
    assert status["dc2"]["running"] is False and status["dc1"]["running"] is True
    restarted = lab.lab_json("monitors", "up")["monitors"]
    assert {n for n, m in restarted.items() if m["started"]} == {"dc2"}
    assert identify(restarted["dc2"]["pid"]) == lab.netns("dc2")

    down = lab.lab_json("monitors", "down")
    assert set(down["stopped"]) == set(MACHINES)
    for name, mon in down["stopped"].items():
        assert mon["how"] in ("terminated", "killed") and not alive(mon["pid"]), name
    assert lab.lab_json("monitors", "down")["stopped"] == {}


def test_the_witness_dies_and_comes_back(lab: CpLab) -> None:
    ids = member_ids(lab)
    member = lab_etcd.member_pid(lab.cp, WITNESS)
    broken = lab.lab_json("break", WITNESS, "host")
    assert broken["etcd_pid"] == member and not alive(member or 0)
    assert pids(lab.netns(WITNESS)) == []
    k = key()
    put_eventually(lab.url("dc2"), k, "without the witness")
    repaired = lab.lab_json("repair", WITNESS, "host")
    assert repaired["etcd"]["healthy"] is True, repaired
    wait_all_healthy(lab)
    assert member_ids(lab) == ids
    assert etcd_from(None, lab.url(WITNESS), "get", k) == "ok without the witness"


def test_lab_down_stops_monitors_and_members_and_leaves_nothing(lab: CpLab) -> None:
    lab.lab_json("monitors", "up")
    info = lab.info
    assert info.network is not None
    plan = plan_from_dict(info.network)
    members = {n: lab_etcd.member_pid(lab.cp, n) for n in MACHINES}
    down = lab.lab_json("down")
    stopped = set(down["stopped"])
    assert {f"monitor@{n}" for n in MACHINES} <= stopped
    assert {f"etcd@{n}" for n in MACHINES} <= stopped
    assert "network" in stopped
    assert leftovers(plan) == []
    assert WITNESS in plan.hosts  # the witness's namespace was checked too
    assert not any(alive(pid) for pid in members.values() if pid)
    assert not _processes_mentioning(str(lab.dir))
    mounts = Path("/proc/self/mountinfo").read_text()
    assert f"fb{plan.id}" not in mounts
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"fb{plan.id}" not in namespaces


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if text.encode() in cmdline and alive(int(entry)):
                found.append(int(entry))
    return found
