"""The ``hosts:`` section and ``runs_on``: where each component runs, how it is reached."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from failback.config import ConfigError, load_topology, load_topology_text
from failback.config.hosts import LocalMachine, SshMachine, ssh_target
from failback.errors import FailbackError
from failback.hosts import SshHost

GOOD = Path(__file__).resolve().parents[1] / "data" / "topologies" / "good" / "hosts.yaml"

BASE = """\
hosts:
  db1:
    via: ssh
    address: 10.0.1.10
    user: root
    key: file:/etc/failback/id
    known_hosts: known_hosts
sites:
  dc1: {runs_on: db1}
  dc2: {}
services:
  app:
    primary_site: dc1
    components:
      db:
        driver: postgres
        sites:
          dc1: {port: 5432, pgdata: /srv/pg1}
          dc2: {port: 5433, pgdata: /srv/pg2}
"""


def messages(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_topology_text(text, "/srv/cfg/t.yaml")
    return [f"{p.key}: {p.message} ({p.hint})" for p in info.value.problems]


def test_each_component_runs_where_the_topology_says() -> None:
    topology = load_topology(str(GOOD))
    app = topology.service("app")
    db, router = app.components["db"], app.components["router"]
    assert topology.host_name(db, "dc1") == "db1"  # the site's machine
    assert topology.host_name(db, "dc2") == "db2"
    assert topology.host_name(router, "dc1") == "edge"  # the component's own runs_on
    assert topology.host_name(router, "dc2") == "edge"


def test_without_a_hosts_section_everything_is_local() -> None:
    text = BASE.replace("  dc1: {runs_on: db1}\n", "  dc1: {}\n")
    topology = load_topology_text(text, "/srv/cfg/t.yaml")
    db = topology.service("app").components["db"]
    assert topology.host_name(db, "dc1") == topology.host_name(db, "dc2") == "local"
    with topology.open_hosts() as hosts:
        assert hosts.for_component(db, "dc1") is hosts.local()


def test_runs_on_per_site_wins_over_the_site_default() -> None:
    text = BASE.replace(
        "        driver: postgres\n", "        driver: postgres\n        runs_on: {dc2: db1}\n"
    )
    topology = load_topology_text(text, "/srv/cfg/t.yaml")
    db = topology.service("app").components["db"]
    assert topology.host_name(db, "dc1") == "db1"
    assert topology.host_name(db, "dc2") == "db1"


def test_known_hosts_is_relative_to_the_topology_file() -> None:
    topology = load_topology_text(BASE, "/srv/cfg/t.yaml")
    spec = topology.hosts["db1"]
    assert isinstance(spec, SshMachine)
    assert spec.known_hosts == "/srv/cfg/known_hosts"


def test_an_undeclared_machine_is_named_with_a_suggestion() -> None:
    found = messages(BASE.replace("dc1: {runs_on: db1}", "dc1: {runs_on: db-1}"))
    wanted = "sites.dc1.runs_on: host 'db-1' is not declared"
    assert any(wanted in m and "'db1'" in m for m in found)


def test_a_host_key_must_be_pinned_one_way() -> None:
    neither = BASE.replace("    known_hosts: known_hosts\n", "")
    assert any("exactly one of known_hosts" in m for m in messages(neither))
    both = BASE.replace(
        "    known_hosts: known_hosts\n",
        "    known_hosts: known_hosts\n    host_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA\n",
    )
    assert any("exactly one of known_hosts" in m for m in messages(both))


def test_passwords_are_not_a_way_in() -> None:
    found = messages(BASE.replace("    user: root\n", "    user: root\n    password: secret\n"))
    assert any("hosts.db1" in m and "password" in m for m in found)


def test_local_cannot_be_an_ssh_machine() -> None:
    text = BASE.replace("  db1:\n    via: ssh", "  local:\n    via: ssh").replace(
        "runs_on: db1", "runs_on: local"
    )
    assert any("'local' is the machine failback runs on" in m for m in messages(text))


def test_a_jump_loop_is_refused() -> None:
    text = BASE.replace(
        "    known_hosts: known_hosts\n",
        "    known_hosts: known_hosts\n    jump: db1\n",
    )
    assert any("jump hosts loop: db1 -> db1" in m for m in messages(text))


def test_a_key_held_in_the_environment_becomes_a_private_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LAB_TEST_SSH_KEY", "-----BEGIN OPENSSH PRIVATE KEY-----\nxyz\n")
    text = BASE.replace("key: file:/etc/failback/id", "key: env:LAB_TEST_SSH_KEY")
    topology = load_topology_text(text, "/srv/cfg/t.yaml")
    spec = topology.hosts["db1"]
    assert isinstance(spec, SshMachine)
    target = ssh_target("db1", spec, dict(topology.hosts))
    mode = stat.S_IMODE(os.stat(target.key_file).st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(target.key_file)).st_mode) == 0o700
    assert Path(target.key_file).read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")


def test_a_missing_key_file_is_a_clear_error() -> None:
    topology = load_topology_text(BASE, "/srv/cfg/t.yaml")
    spec = topology.hosts["db1"]
    assert isinstance(spec, SshMachine)
    with pytest.raises(FailbackError, match="the ssh key file:/etc/failback/id does not exist"):
        ssh_target("db1", spec, dict(topology.hosts))


def _with_key(
    key: str, text: str = BASE
) -> tuple[SshMachine, dict[str, LocalMachine | SshMachine]]:
    topology = load_topology_text(
        text.replace("key: file:/etc/failback/id", f"key: {key}"), "/srv/cfg/t.yaml"
    )
    spec = topology.hosts["db1"]
    assert isinstance(spec, SshMachine)
    return spec, dict(topology.hosts)


def test_a_key_file_others_can_read_is_a_clear_error(tmp_path: Path) -> None:
    """ssh would ignore it (UNPROTECTED PRIVATE KEY FILE) and report a refused login."""
    key = tmp_path / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nxyz\n")
    key.chmod(0o644)
    spec, hosts = _with_key(f"file:{key}")
    with pytest.raises(FailbackError) as caught:
        ssh_target("db1", spec, hosts)
    error = caught.value
    assert error.message == (
        f"host db1: the ssh key file:{key} can be read by others (mode 0644); "
        "ssh ignores such a key"
    )
    assert error.hint == f"chmod 600 {key}"
    key.chmod(0o600)
    assert ssh_target("db1", spec, hosts).key_file == str(key)


def test_a_key_from_the_environment_is_written_once_per_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A monitor or API server opens the hosts for every observation: one copy, not one
    more in the temp directory each time."""
    monkeypatch.setenv("LAB_TEST_SSH_KEY", "-----BEGIN OPENSSH PRIVATE KEY-----\none\n")
    monkeypatch.setenv("LAB_TEST_OTHER_KEY", "-----BEGIN OPENSSH PRIVATE KEY-----\ntwo\n")
    spec, hosts = _with_key("env:LAB_TEST_SSH_KEY")
    first = ssh_target("db1", spec, hosts).key_file
    again = load_topology_text(
        BASE.replace("key: file:/etc/failback/id", "key: env:LAB_TEST_SSH_KEY"), "/srv/cfg/t.yaml"
    )
    with again.open_hosts() as opened:
        host = opened.get("db1")
        assert isinstance(host, SshHost)
        assert host.target.key_file == first
    other_spec, other_hosts = _with_key("env:LAB_TEST_OTHER_KEY")
    other = ssh_target("db1", other_spec, other_hosts).key_file
    assert other != first and os.path.dirname(other) == os.path.dirname(first)
    assert Path(other).read_text().endswith("two\n")
    assert stat.S_IMODE(os.stat(other).st_mode) == 0o600
    os.unlink(first)  # someone removed it: written again rather than handed out missing
    rewritten = ssh_target("db1", spec, hosts).key_file
    assert Path(rewritten).read_text().endswith("one\n")


def test_key_copies_are_removed_when_the_process_exits(tmp_path: Path) -> None:
    program = (
        "from failback.config import load_topology_text\n"
        "from failback.config.hosts import ssh_target\n"
        "import sys\n"
        "t = load_topology_text(sys.stdin.read(), '/srv/cfg/t.yaml')\n"
        "print(ssh_target('db1', t.hosts['db1'], dict(t.hosts)).key_file)\n"
    )
    env = {**os.environ, "LAB_TEST_SSH_KEY": "-----BEGIN OPENSSH PRIVATE KEY-----\nxyz\n"}
    done = subprocess.run(
        [sys.executable, "-c", program],
        input=BASE.replace("key: file:/etc/failback/id", "key: env:LAB_TEST_SSH_KEY"),
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    path = done.stdout.strip()
    assert path.startswith(tempfile.gettempdir()) and "failback-key-" in path
    assert not os.path.exists(os.path.dirname(path))
