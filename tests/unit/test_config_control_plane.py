"""The ``control_plane:`` section: what it accepts, and one clear line for each mistake."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from failback.config import load_topology
from failback.errors import FailbackError
from tests.conftest import run_cli

BASE = """\
sites: {dc1: {}, dc2: {}}
services:
  app:
    primary_site: dc1
    components:
      vip:
        driver: command
        sites:
          dc1: {observe: "true", promote: "true"}
          dc2: {observe: "true", promote: "true"}
"""


def write(tmp: Path, section: str) -> Path:
    path = tmp / "failback.yaml"
    path.write_text(BASE + textwrap.dedent(section))
    return path


GOOD = """\
control_plane:
  etcd: {endpoints: ["http://10.0.0.1:2379", "http://10.0.0.2:2379/"], password: env:ETCD_PW,
         username: failback}
  prefix: /failback/app
  nodes: {dc1: {site: dc1}, dc2: {site: dc2}, witness: {}}
"""


def test_a_control_plane_loads_with_its_defaults(tmp_path: Path) -> None:
    topology = load_topology(write(tmp_path, GOOD))
    cp = topology.control_plane
    assert cp is not None
    assert cp.etcd.endpoints == ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
    assert cp.lease_ttl == 3 and cp.safety_margin is None
    assert cp.nodes["witness"].site is None
    binding = cp.binding()
    assert binding.password == "env:ETCD_PW" and binding.prefix == "/failback/app"
    assert load_topology(write(tmp_path, "")).control_plane is None


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("control_plane: {etcd: {endpoints: []}, nodes: {a: {}}}", "must not be empty"),
        ("control_plane: {etcd: {endpoints: [10.0.0.1:2379]}, nodes: {a: {}}}",
         "not an etcd client URL"),
        ("control_plane: {etcd: {endpoints: [http://a:1, https://b:1]}, nodes: {a: {}}}",
         "one scheme"),
        ("control_plane: {etcd: {endpoints: [http://a:1]}, nodes: {a: {}}, lease_ttl: 1}",
         "from 2 to 600"),
        ("control_plane: {etcd: {endpoints: [http://a:1]}, nodes: {a: {}}, prefix: /}",
         "not a key prefix"),
        ("control_plane: {etcd: {endpoints: [http://a:1], username: u}, nodes: {a: {}}}",
         "both username and password"),
        ("control_plane: {etcd: {endpoints: [http://a:1]}, nodes: {a: {site: dc3}}}",
         "site 'dc3' is not declared"),
        ("control_plane: {etcd: {endpoints: [http://a:1]}, nodes: {a: {}},"
         " lease_ttl: 2, safety_margin: 3s}", "below lease_ttl"),
        ("control_plane: {etcd: {endpoints: [http://a:1]}, nodes: {'-x': {}}}", "node name"),
    ],
)  # fmt: skip
def test_mistakes_are_one_line_each(tmp_path: Path, section: str, message: str) -> None:
    result = run_cli("validate", str(write(tmp_path, section + "\n")))
    assert result.returncode == 2
    assert message in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_an_inline_password_is_never_copied_into_a_state_directory(tmp_path: Path) -> None:
    section = GOOD.replace("env:ETCD_PW", "inline:hunter2hunter2")
    topology = load_topology(write(tmp_path, section))
    assert topology.control_plane is not None
    with pytest.raises(FailbackError, match="inline"):
        topology.control_plane.binding()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["monitor"], "has a control plane: say which of its nodes"),
        (["monitor", "--node", "dc3"], "no node 'dc3' in control_plane.nodes"),
    ],
)
def test_the_monitor_refuses_a_missing_or_unknown_node(
    tmp_path: Path, args: list[str], message: str
) -> None:
    config = write(tmp_path, GOOD)
    result = run_cli(*args, "-c", str(config), "--state-dir", str(tmp_path / "s"))
    assert result.returncode == 2
    assert message in result.stderr and "hint:" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "s").exists()  # nothing started, nothing written


def test_node_and_cluster_need_a_control_plane(tmp_path: Path) -> None:
    config = write(tmp_path, "")
    monitor = run_cli("monitor", "-c", str(config), "--node", "dc1")
    assert monitor.returncode == 2 and "has no control_plane section" in monitor.stderr
    status = run_cli("cluster", "status", "-c", str(config))
    assert status.returncode == 2 and "no control_plane section" in status.stderr
    assert "Traceback" not in monitor.stderr + status.stderr


def test_a_monitor_whose_peer_port_is_taken_says_so_in_one_line(tmp_path: Path) -> None:
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    token = tmp_path / "peer.token"
    token.write_text("a-peer-token-of-24-chars!\n")
    section = GOOD.replace(
        "nodes: {dc1: {site: dc1}, dc2: {site: dc2}, witness: {}}",
        f"peer_token: file:{token}\n  nodes: {{dc1: {{site: dc1, peer: '127.0.0.1:{port}'}},"
        " dc2: {site: dc2}}",
    )
    try:
        result = run_cli(
            "monitor", "-c", str(write(tmp_path, section)), "--node", "dc1",
            "--state-dir", str(tmp_path / "s"), env={"ETCD_PW": "x"},
        )  # fmt: skip
    finally:
        taken.close()
    assert result.returncode == 2, result.stderr
    assert f"cannot answer the other nodes on 127.0.0.1:{port}" in result.stderr
    assert "hint:" in result.stderr and "Traceback" not in result.stderr


def test_peers_need_a_token(tmp_path: Path) -> None:
    section = GOOD.replace("witness: {}", "witness: {peer: '10.0.0.9:2390'}")
    result = run_cli("validate", str(write(tmp_path, section)))
    assert result.returncode == 2 and "no peer_token" in result.stdout + result.stderr
