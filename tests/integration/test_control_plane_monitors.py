"""Several monitors, one leader, one journal in etcd (issue 14), through the real CLI.

A real single-member etcd on 127.0.0.1 and a service driven by the command driver: each
site is a flag file (``dc1.up``) its observe command tests, and every effect appends a
line to an effects file, so the test counts how many times each happened. Each monitor
has a state directory of its own, as on separate machines; they share only etcd.

What must hold: only the leader acts; a leader killed in the middle of a run is
replaced and its run finished by the next leader with no effect applied twice; a
leader paused past its lease applies nothing once it runs again; a deposed leader's
journal writes fail in etcd itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from failback.coord import EtcdClient, LeaderElection
from failback.errors import LeadershipLost
from failback.store import EtcdStore
from tests.conftest import failback_argv, run_cli
from tests.integration.etcdserver import Etcd, etcd_server

pytestmark = pytest.mark.integration

TTL = 2
NODES = ("a", "b")


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    with etcd_server(tmp_path_factory.mktemp("etcd")) as server:
        yield server


def write_topology(tmp: Path, etcd: Etcd) -> Path:
    """Service ``app``: one command component whose promote records ``promote@SITE``; fail
    over automatically after two failed probes.

    ``tmp/signal`` holding a signal name makes the next promote, right after its effect,
    send that signal to the process that runs it (the leader monitor) and remove the
    file: the leader dies or pauses *inside* the step, after its effect and before the
    journal says so, whatever the machine's load."""
    effects = tmp / "effects.log"
    effects.touch()
    for site in ("dc1", "dc2"):
        (tmp / f"{site}.up").touch()
    flag = tmp / "signal"

    def actions(site: str) -> str:
        promote = (
            f"echo promote@{site} >> {effects}; if [ -e {flag} ]; then s=$(cat {flag}); "
            f"rm -f {flag}; kill -$s $PPID; fi"
        )
        return textwrap.dedent(
            f"""\
            observe: "test -f {tmp}/{site}.up"
            promote: {{run: "{promote}", check: "grep -qx promote@{site} {effects}"}}
            demote: "echo demote@{site} >> {effects}"
            fence: "echo fence@{site} >> {effects}"
            """
        )

    text = f"""\
sites: {{dc1: {{}}, dc2: {{}}}}
control_plane:
  etcd: {{endpoints: [{etcd.url}]}}
  prefix: /failback-test/{uuid.uuid4().hex}
  lease_ttl: {TTL}
  nodes: {{a: {{site: dc1}}, b: {{site: dc2}}}}
services:
  app:
    primary_site: dc1
    components:
      vip:
        driver: command
        options: {{timeout: 20s}}
        sites:
          dc1:
{textwrap.indent(actions("dc1"), " " * 12)}
          dc2:
{textwrap.indent(actions("dc2"), " " * 12)}
    policy:
      failover: automatic
      failback: manual
      detection: {{interval: 200ms, timeout: 1s, failure_threshold: 2}}
"""
    path = tmp / "failback.yaml"
    path.write_text(text)
    return path


class Monitors:
    """One ``failback monitor --node N`` process per node, each with its own state dir."""

    def __init__(self, tmp: Path, config: Path) -> None:
        self.tmp = tmp
        self.config = config
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, node: str, *extra: str) -> None:
        log = (self.tmp / f"{node}.log").open("ab")
        self.procs[node] = subprocess.Popen(
            failback_argv(
                "monitor", "-c", str(self.config), "--node", node,
                "--state-dir", str(self.tmp / f"state-{node}"), "--grace", "1", *extra,
            ),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def signal(self, node: str, sig: int) -> None:
        os.killpg(self.procs[node].pid, sig)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGCONT)
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def log(self, node: str) -> list[dict[str, object]]:
        """The node's event lines so far. The monitor may be writing as this reads: a
        last line without its newline yet is not read (it comes whole next time)."""
        text = (self.tmp / f"{node}.log").read_text()
        whole = text[: text.rfind("\n") + 1]
        return [json.loads(line) for line in whole.splitlines() if line.startswith("{")]


@pytest.fixture
def monitors(tmp_path: Path) -> Iterator[Monitors]:
    started: list[Monitors] = []

    def make(config: Path) -> Monitors:
        group = Monitors(tmp_path, config)
        started.append(group)
        return group

    yield make  # type: ignore[misc]
    for group in started:
        group.stop()


def cluster(config: Path) -> dict[str, object]:
    result = run_cli("cluster", "status", "-c", str(config), "--json")
    document: dict[str, object] = result.json()
    return document


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


def leader(config: Path) -> str | None:
    found = cluster(config).get("leader")
    return found["node"] if isinstance(found, dict) else None  # type: ignore[index]


def effects(tmp: Path) -> list[str]:
    return (tmp / "effects.log").read_text().split()


def runs(config: Path, node: str) -> list[dict[str, object]]:
    state = config.parent / f"state-{node}"
    result = run_cli("runs", "--state-dir", str(state), "--json")
    assert result.returncode == 0, result.stderr
    found: list[dict[str, object]] = result.json()["runs"]
    return found


def test_one_leader_acts_and_both_nodes_see_the_same_journal(
    tmp_path: Path, etcd: Etcd, monitors
) -> None:  # type: ignore[no-untyped-def]
    config = write_topology(tmp_path, etcd)
    group = monitors(config)
    group.start("a", "--listen", "127.0.0.1:0")
    group.start("b")
    wait_for(lambda: leader(config) in NODES, 15, "a leader elected")
    wait_for(lambda: "API and dashboard on" in (tmp_path / "a.log").read_text(), 15, "API up")
    line = next(x for x in (tmp_path / "a.log").read_text().splitlines() if "API and" in x)
    url = line.rsplit(" ", 1)[-1] + "/api/v1/cluster"
    # a leader may be elected before the other node's first renewal wrote its member key
    wait_for(
        lambda: all(m["present"] for m in httpx.get(url, timeout=10).json()["members"]),
        15,
        "both nodes members",
    )
    api = httpx.get(url, timeout=10).json()
    assert api["configured"] is True and api["leader"]["node"] == leader(config)
    assert {m["node"] for m in api["members"] if m["present"]} == set(NODES)
    document = cluster(config)
    members = {m["node"]: m for m in document["members"]}  # type: ignore[index, union-attr]
    assert all(members[n]["present"] for n in NODES)
    assert sum(bool(members[n]["leader"]) for n in NODES) == 1
    assert {members[n]["pid"] for n in NODES} == {group.procs[n].pid for n in NODES}
    (tmp_path / "dc1.up").unlink()
    wait_for(lambda: "promote@dc2" in effects(tmp_path), 20, "failover to dc2")
    time.sleep(1.0)  # a second actor, if any, would have acted by now
    assert effects(tmp_path).count("promote@dc2") == 1
    seen = [[(r["id"], r["kind"], r["status"]) for r in runs(config, n)] for n in NODES]
    assert seen[0] == seen[1] and len(seen[0]) == 1
    assert seen[0][0][1:] == ("failover", "succeeded")


def test_a_leader_killed_mid_run_is_replaced_and_its_run_finished_once(
    tmp_path: Path, etcd: Etcd, monitors
) -> None:  # type: ignore[no-untyped-def]
    config = write_topology(tmp_path, etcd)
    group = monitors(config)
    group.start("a")
    wait_for(lambda: leader(config) == "a", 15, "a leads")
    group.start("b")
    wait_for(lambda: any(m.get("node") == "b" and m.get("present")
                         for m in cluster(config)["members"]), 15, "b joined")  # type: ignore[union-attr]  # fmt: skip
    (tmp_path / "signal").write_text("KILL")
    (tmp_path / "dc1.up").unlink()
    wait_for(lambda: group.procs["a"].poll() is not None, 30, "a killed inside its promote")
    assert effects(tmp_path).count("promote@dc2") == 1
    wait_for(lambda: leader(config) == "b", 3 * TTL + 5, "b takes over")
    wait_for(lambda: [r["status"] for r in runs(config, "b")] == ["succeeded"], 20, "b finishes")
    assert effects(tmp_path).count("promote@dc2") == 1
    kinds = [e["kind"] for e in group.log("b")]
    assert "run.resumed_by_monitor" in kinds


def test_a_paused_leader_applies_nothing_after_it_resumes(
    tmp_path: Path, etcd: Etcd, monitors
) -> None:  # type: ignore[no-untyped-def]
    """SIGSTOP the leader inside a step (after its effect, before its journal write),
    longer than the lease: the other node finishes the run (the step's check finds the
    effect); SIGCONT: the old leader applies nothing more (its next step's proof fails,
    its journal writes are fenced)."""
    config = write_topology(tmp_path, etcd)
    group = monitors(config)
    group.start("a")
    wait_for(lambda: leader(config) == "a", 15, "a leads")
    group.start("b")
    wait_for(lambda: any(m.get("node") == "b" and m.get("present")
                         for m in cluster(config)["members"]), 15, "b joined")  # type: ignore[union-attr]  # fmt: skip
    (tmp_path / "signal").write_text("STOP")
    (tmp_path / "dc1.up").unlink()
    wait_for(lambda: not (tmp_path / "signal").exists(), 30, "a paused inside its promote")
    wait_for(lambda: leader(config) == "b", 3 * TTL + 5, "b takes over")
    wait_for(lambda: [r["status"] for r in runs(config, "b")] == ["succeeded"], 20, "b ends")
    finished = list(effects(tmp_path))
    group.signal("a", signal.SIGCONT)
    time.sleep(2 * TTL)
    assert effects(tmp_path) == finished  # not a single effect from the resumed leader
    assert effects(tmp_path).count("promote@dc2") == 1
    assert leader(config) == "b"
    assert [r["status"] for r in runs(config, "a")] == ["succeeded"]


def test_a_deposed_leaders_journal_writes_fail_in_etcd(etcd: Etcd, tmp_path: Path) -> None:
    prefix = f"/failback-test/{uuid.uuid4().hex}"
    election = LeaderElection(EtcdClient([etcd.url]), prefix, "a", TTL)
    assert election.campaign()
    fence = election.fence()
    assert fence is not None
    store = EtcdStore(tmp_path / "state", EtcdClient([etcd.url]), prefix)
    try:
        store.fence_writes(fence)
        store.add_event("test", "written while leading")
        lease = election.lease_id
        assert lease is not None
        election.client.lease_revoke(lease)  # the lease ends: another node may win now
        rival = LeaderElection(EtcdClient([etcd.url]), prefix, "b", TTL)
        assert rival.campaign()
        with pytest.raises(LeadershipLost):
            store.add_event("test", "written after losing the lease")
        messages = [e["message"] for e in store.events()]
        assert messages == ["written while leading"]
    finally:
        store.close()


def test_cluster_status_says_why_when_etcd_cannot_answer(tmp_path: Path) -> None:
    from failback.lab.ports import pick_ports

    (port,) = pick_ports(1)
    config = write_topology(tmp_path, Etcd(f"http://127.0.0.1:{port}", None, tmp_path))  # type: ignore[arg-type]
    result = run_cli("cluster", "status", "-c", str(config))
    assert result.returncode == 1
    assert "error:" in result.stderr and "connection refused" in result.stderr
    assert "hint:" in result.stderr and "Traceback" not in result.stderr
    document = run_cli("cluster", "status", "-c", str(config), "--json").json()
    assert document["leader"] is None and "connection refused" in document["error"]
    assert document["etcd"]["healthy"] == 0


def test_etcd_users_are_authenticated_and_a_wrong_password_is_one_line(
    tmp_path: Path,
) -> None:
    with etcd_server(tmp_path / "auth-etcd") as server:
        api = f"{server.url}/v3/auth"
        for path, body in (
            ("/role/add", {"name": "root"}),
            ("/user/add", {"name": "root", "password": "right-password"}),
            ("/user/grant", {"user": "root", "role": "root"}),
            ("/enable", {}),
        ):
            httpx.post(api + path, json=body, timeout=5).raise_for_status()
        config = write_topology(tmp_path, server)
        secret = tmp_path / "etcd.pass"
        text = config.read_text().replace(
            f"etcd: {{endpoints: [{server.url}]}}",
            f"etcd: {{endpoints: [{server.url}], username: root, password: file:{secret}}}",
        )
        config.write_text(text)
        secret.write_text("wrong-password\n")
        wrong = run_cli("cluster", "status", "-c", str(config))
        assert wrong.returncode == 1
        assert "refused user root: wrong user name or password" in wrong.stderr
        assert "wrong-password" not in wrong.stdout + wrong.stderr
        secret.write_text("right-password\n")
        right = run_cli("cluster", "status", "-c", str(config), "--json")
        assert right.json()["error"] is None  # authenticated: etcd answered (nobody leads)
        anonymous = httpx.post(f"{server.url}/v3/kv/range", json={"key": "Lw=="}, timeout=5)
        assert anonymous.status_code >= 400 or "error" in anonymous.text  # auth is on


def test_the_dashboard_shows_the_leader_and_says_when_nobody_leads(
    tmp_path: Path, etcd: Etcd, monitors
) -> None:  # type: ignore[no-untyped-def]
    """The header badge in headless Chromium, served by ``failback serve`` on its own: the
    leader's name while one leads, the next one after a kill, "no leader" once every
    monitor stopped (the API reads etcd, it needs no leader to answer)."""
    from failback.lab.ports import pick_ports
    from tests.integration.browser import launched_chromium

    config = write_topology(tmp_path, etcd)
    group = monitors(config)
    group.start("a")
    wait_for(lambda: leader(config) == "a", 15, "a leads")
    group.start("b")
    (port,) = pick_ports(1)
    serve = subprocess.Popen(
        failback_argv("serve", "-c", str(config), "--listen", f"127.0.0.1:{port}",
                      "--state-dir", str(tmp_path / "state-serve")),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    badge = "document.getElementById('leader')"
    try:
        with launched_chromium() as browser:
            page = browser.new_page()
            page.set_default_timeout(60_000)
            wait_for(lambda: _answers(f"http://127.0.0.1:{port}"), 30, "serve up")
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function(f"() => {badge}.dataset.leader === 'a'")
            assert page.locator("#leader").inner_text().startswith("leader a")
            group.signal("a", signal.SIGKILL)
            page.wait_for_function(f"() => {badge}.dataset.leader === 'b'")
            group.signal("b", signal.SIGTERM)  # b resigns as it stops: nobody leads
            page.wait_for_function(f"() => {badge}.textContent.includes('no leader')")
    finally:
        serve.terminate()
        serve.wait(30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/api/v1/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
