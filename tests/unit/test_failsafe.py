"""The failsafe: nodes asking each other directly whether they can reach etcd.

A real HTTP server on 127.0.0.1 (the monitor's own ``FailsafeServer``) and the real
client; the answering node is a real ``Leadership`` on a clock the test moves (it needs
no etcd to answer: a node answers from what it knows of its own renewals).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from failback.config.control_plane import ControlPlane
from failback.coord import EtcdClient
from failback.errors import LeadershipLost
from failback.lab.ports import pick_ports
from failback.monitor.failsafe import (
    ASK_AGAIN_S,
    ASK_TIMEOUT_S,
    Answer,
    FailsafeServer,
    ask_peers,
    failsafe_decision,
)
from failback.monitor.leadership import Leadership

TOKEN = "a-peer-token-of-24-chars!"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def node() -> Iterator[tuple[Leadership, Clock]]:
    control_plane = ControlPlane.model_validate(
        {
            "etcd": {"endpoints": ["http://127.0.0.1:1"]},
            "nodes": {"dc1": {"site": "dc1"}, "dc2": {"site": "dc2"}},
            "lease_ttl": 3,
        }
    )
    clock = Clock()
    client = EtcdClient(["http://127.0.0.1:1"])
    yield Leadership(control_plane, "dc2", client, clock=clock), clock
    client.close()


def serve(answer: object) -> tuple[FailsafeServer, str]:
    (port,) = pick_ports(1)
    address = f"127.0.0.1:{port}"
    return FailsafeServer(address, TOKEN, answer).start(), address  # type: ignore[arg-type]


def test_a_node_that_reaches_etcd_never_confirms(node: tuple[Leadership, Clock]) -> None:
    leadership, clock = node
    leadership.begin()
    leadership.membership.renewed_at = clock.now  # it just renewed
    answer = leadership.confirm_failsafe("dc1")
    assert not answer.confirmed and "reaches etcd" in answer.reason
    assert not leadership.holding()


def test_a_node_without_etcd_confirms_and_stands_still_for_a_ttl(
    node: tuple[Leadership, Clock],
) -> None:
    leadership, clock = node
    leadership.begin()
    leadership.membership.renewed_at = clock.now
    clock.now += leadership.period * 1.5  # a renewal that should have happened did not
    answer = leadership.confirm_failsafe("dc1")
    assert answer.confirmed and "cannot reach etcd either" in answer.reason
    assert leadership.holding() and not leadership.may_act()
    with pytest.raises(LeadershipLost, match="stand still"):
        leadership.prove("step promote")
    clock.now += leadership.ttl + 0.01
    assert not leadership.holding()


def test_the_promise_ends_when_etcd_answers_the_promising_node_again(
    node: tuple[Leadership, Clock],
) -> None:
    """etcd's quorum is back: the promising node renews and may lead again at once (the
    asker's own member key, still alive, keeps its site from being failed over from)."""
    leadership, clock = node
    leadership.begin()
    leadership.membership.renewed_at = clock.now
    clock.now += leadership.period * 1.5
    assert leadership.confirm_failsafe("dc1").confirmed
    clock.now += 0.5
    assert leadership.holding(), "no renewal since the promise: it binds"
    leadership.membership.renewed_at = clock.now - 0.6  # sent before the promise: no
    assert leadership.holding()
    leadership.membership.renewed_at = clock.now  # etcd answered a renewal sent after it
    assert not leadership.holding()


def test_peers_are_asked_with_the_token_and_strangers_are_refused(
    node: tuple[Leadership, Clock],
) -> None:
    leadership, clock = node
    leadership.begin()
    clock.now += 10  # never renewed: without etcd
    server, address = serve(leadership.confirm_failsafe)
    try:
        [good] = ask_peers("dc1", {"dc2": address}, TOKEN)
        assert good == Answer("dc2", True, good.reason) and good.confirmed
        [bad] = ask_peers("dc1", {"dc2": address}, "not-the-token-at-all!!")
        assert not bad.confirmed and "HTTP 401" in bad.reason
    finally:
        server.close()
    [gone] = ask_peers("dc1", {"dc2": address}, TOKEN)
    assert not gone.confirmed and gone.reason.startswith("no answer")
    [none] = ask_peers("dc1", {"witness": None}, TOKEN)
    assert not none.confirmed and "no peer address" in none.reason


def test_a_peer_port_cannot_be_taken_twice() -> None:
    server, address = serve(lambda asker: Answer("x", False, ""))
    try:
        with pytest.raises(OSError):
            FailsafeServer(address, TOKEN, lambda asker: Answer("x", False, ""))
    finally:
        server.close()


def test_a_node_that_reaches_etcd_says_so_in_its_answer(node: tuple[Leadership, Clock]) -> None:
    """The asker tells "I reach etcd" (worth asking again) from every other refusal."""
    leadership, clock = node
    leadership.begin()
    leadership.membership.renewed_at = clock.now
    server, address = serve(leadership.confirm_failsafe)
    try:
        [reaching] = ask_peers("dc1", {"dc2": address}, TOKEN)
        assert not reaching.confirmed and reaching.reaches_etcd
        clock.now += leadership.period * 1.5  # its next renewal failed: it confirms now
        [confirming] = ask_peers("dc1", {"dc2": address}, TOKEN)
        assert confirming.confirmed and not confirming.reaches_etcd
    finally:
        server.close()
    [gone] = ask_peers("dc1", {"dc2": address}, TOKEN)
    assert not gone.confirmed and not gone.reaches_etcd


def test_only_nodes_that_reach_etcd_are_asked_again_and_only_briefly() -> None:
    """When etcd's quorum goes, nodes lose it a renewal apart: a cut-off node asks the ones
    that still reach etcd again, no longer than a silent node could have held it up; any
    other refusal (no answer, wrong token, no address) fences at once."""
    confirm = Answer("dc2", True, "cannot reach etcd either")
    reaches = Answer("witness", False, "witness reaches etcd", reaches_etcd=True)
    silent = Answer("witness", False, "no answer (ConnectTimeout)")
    assert failsafe_decision([confirm, confirm], None) == "hold"
    assert failsafe_decision([confirm, reaches], None) == "ask-again"
    assert failsafe_decision([confirm, reaches], ASK_AGAIN_S / 2) == "ask-again"
    assert failsafe_decision([confirm, reaches], ASK_AGAIN_S) == "fence"
    assert failsafe_decision([confirm, silent], None) == "fence"
    assert failsafe_decision([reaches, silent], None) == "fence"
    assert failsafe_decision([], None) == "fence", "no other node: nobody to confirm"
    assert ASK_AGAIN_S <= ASK_TIMEOUT_S, "never later than a silent node holds it up"
