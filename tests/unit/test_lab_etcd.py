"""The lab's etcd timings against its monitors' lease: an etcd election must not depose
the leader (tests/integration/test_netns_control_plane.py, "etcd's raft leader lost")."""

from __future__ import annotations

from pathlib import Path

from failback.config.control_plane import ControlPlane
from failback.coord import EtcdClient
from failback.lab.control_plane import WITNESS, plan_control_plane
from failback.lab.etcd import ELECTION_MS, HEARTBEAT_MS, etcd_argv
from failback.monitor.leadership import Leadership

NETWORK = {
    "id": "t1",
    "hosts": {
        name: {"netns": f"fbt1-{name}", "address": f"10.211.7.{10 * (i + 1)}"}
        for i, name in enumerate(("dc1", "dc2", WITNESS))
    },
}


def test_an_etcd_election_fits_in_the_leaders_acting_window(tmp_path: Path) -> None:
    """The leader stops acting lease_ttl - margin after the last renewal it sent, which
    can be one renewal period older than etcd's raft leader's death; etcd's election
    takes up to two election timeouts (each follower waits a random time in [t, 2t))."""
    lab = plan_control_plane(tmp_path, NETWORK)
    section = lab.topology_section(["dc1", "dc2"])
    leadership = Leadership(
        ControlPlane.model_validate(section), WITNESS, EtcdClient(lab.endpoints)
    )
    acting_window = leadership.ttl - leadership.election.safety_margin
    worst_election = 2 * ELECTION_MS / 1000
    assert worst_election + leadership.period < acting_window, (
        worst_election,
        leadership.period,
        acting_window,
    )
    argv = etcd_argv(lab, "dc1")
    assert f"--election-timeout={ELECTION_MS}" in argv
    assert f"--heartbeat-interval={HEARTBEAT_MS}" in argv
    assert "--pre-vote=true" in argv
    assert ELECTION_MS >= 5 * HEARTBEAT_MS  # etcd refuses less
