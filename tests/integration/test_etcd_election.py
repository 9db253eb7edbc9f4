"""The etcd client and the leader election against a real etcd started by the test.

One single-member etcd (Debian's ``etcd-server``, 3.4) runs on 127.0.0.1 with free
ports in a temporary data directory for the whole module; each test works under
its own key prefix. Two ``EtcdClient`` objects stand for two machines' monitors.
Leases are short (etcd's minimum at default timings is 2 s) so that expiry is
real and the file stays well under 30 s.
"""

from __future__ import annotations

import http.server
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from failback.coord import (
    Compare,
    Delete,
    EtcdClient,
    EtcdRequestFailed,
    EtcdUnavailable,
    Get,
    LeaderElection,
    Put,
)
from failback.errors import FailbackError
from failback.lab.ports import pick_ports
from tests.integration.etcdserver import Etcd, etcd_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    with etcd_server(tmp_path_factory.mktemp("etcd")) as server:
        yield server


@pytest.fixture
def prefix() -> str:
    return f"/failback-test/{uuid.uuid4().hex}"


@pytest.fixture
def clients(etcd: Etcd) -> Iterator[tuple[EtcdClient, EtcdClient]]:
    """Two clients, as two machines would have."""
    with EtcdClient([etcd.url]) as one, EtcdClient([etcd.url]) as two:
        yield one, two


def _dead_endpoint() -> str:
    """A 127.0.0.1 URL where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{pick_ports(1)[0]}"


# -- the client ------------------------------------------------------------------


def test_keys_txn_leases_and_cluster_calls(etcd: Etcd, prefix: str) -> None:
    with EtcdClient([etcd.url]) as client:
        assert client.get(f"{prefix}/a") is None
        revision = client.put(f"{prefix}/a", "1")
        client.put(f"{prefix}/b", b"\xff\x00binary")
        client.put(f"{prefix}0", "outside the prefix")
        kv = client.get(f"{prefix}/a")
        assert kv is not None and kv.text == "1" and kv.create_revision == revision
        assert [k.key for k in client.get_prefix(f"{prefix}/")] == [f"{prefix}/a", f"{prefix}/b"]
        assert client.get_prefix(f"{prefix}/")[1].value == b"\xff\x00binary"

        # A transaction whose comparison fails runs its failure branch.
        result = client.txn(
            [Compare.value(f"{prefix}/a", "2")], [Put(f"{prefix}/a", "3")], [Get(f"{prefix}/a")]
        )
        assert not result.succeeded and result.responses[0].kvs[0].text == "1"
        result = client.txn(
            [Compare.mod_revision(f"{prefix}/a", kv.mod_revision)],
            [Put(f"{prefix}/a", "3"), Delete(f"{prefix}/b")],
        )
        assert result.succeeded and result.responses[1].deleted == 1

        lease = client.lease_grant(5)
        assert lease.id > 0 and lease.ttl >= 5
        client.put(f"{prefix}/leased", "x", lease=lease.id)
        status = client.lease_time_to_live(lease.id, keys=True)
        assert status.found and status.granted_ttl == lease.ttl
        assert status.keys == (f"{prefix}/leased",)
        assert client.lease_keepalive(lease.id) == lease.ttl
        assert client.lease_revoke(lease.id) is True
        assert client.get(f"{prefix}/leased") is None  # revoking deletes the lease's keys
        assert client.lease_revoke(lease.id) is False
        assert client.lease_keepalive(lease.id) == 0
        assert not client.lease_time_to_live(lease.id).found

        with pytest.raises(EtcdRequestFailed) as refused:
            client.put(f"{prefix}/x", "y", lease=lease.id)
        assert "lease not found" in refused.value.message and refused.value.hint

        assert client.delete(f"{prefix}/", prefix=True) == 1
        node = client.status()
        assert node.endpoint == etcd.url and node.version.startswith("3.") and node.is_leader
        [member] = client.members()
        assert member.client_urls == (etcd.url,) and member.name == "test"


def test_only_dead_endpoints_give_one_clear_line(prefix: str) -> None:
    dead = [_dead_endpoint(), _dead_endpoint()]
    with EtcdClient(dead) as client:
        with pytest.raises(EtcdUnavailable) as caught:
            client.get(f"{prefix}/a")
        error = caught.value
        assert isinstance(error, FailbackError)
        assert error.message.startswith("no etcd endpoint answered")
        assert all(f"{url}: connection refused" in error.message for url in dead)
        assert "\n" not in error.message and error.hint and "etcdctl" in error.hint
        assert error.__cause__ is None and error.__context__ is None, "no httpx error attached"

        with pytest.raises(EtcdUnavailable):
            LeaderElection(client, prefix, "n1", ttl=2).campaign()

    with EtcdClient(dead[:1]) as client, pytest.raises(EtcdUnavailable) as caught:
        client.status()
    assert caught.value.message == f"etcd at {dead[0]}: connection refused"


def test_dead_endpoint_and_wrong_server_before_a_live_one(etcd: Etcd, prefix: str) -> None:
    """The first endpoint that answers is used; a plain HTTP server is not mistaken for etcd."""
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    wrong = f"http://127.0.0.1:{web.server_address[1]}"
    try:
        with EtcdClient([_dead_endpoint(), wrong, etcd.url]) as client:
            election = LeaderElection(client, prefix, "n1", ttl=2)
            assert election.campaign() and election.still_leader()
            assert client.status().endpoint == etcd.url
            assert election.resign()
        with EtcdClient([wrong]) as client, pytest.raises(EtcdUnavailable) as caught:
            client.get(f"{prefix}/a")
        assert "without JSON" in caught.value.message and wrong in caught.value.message
    finally:
        web.shutdown()
        web.server_close()


def test_an_endpoint_that_refused_a_connection_is_tried_last_by_the_next_clients(
    etcd: Etcd, prefix: str
) -> None:
    """A monitor opens clients often (a journal per run thread): each must not spend the
    connect timeout on a member that one of them just found dead. The dead endpoint
    then comes back as a server that counts what it is sent: a new client of the same
    endpoints asks the live member first, and sends the revived one nothing."""
    port = pick_ports(1)[0]
    dead = f"http://127.0.0.1:{port}"
    with EtcdClient([dead, etcd.url]) as first:
        assert first.get(f"{prefix}/a") is None  # refused by dead, answered by etcd
    asked: list[str] = []

    class Counting(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            asked.append(self.path)
            self.send_response(503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    revived = http.server.ThreadingHTTPServer(("127.0.0.1", port), Counting)
    threading.Thread(target=revived.serve_forever, daemon=True).start()
    try:
        with EtcdClient([dead, etcd.url]) as second:
            assert second.get(f"{prefix}/a") is None
            second.put(f"{prefix}/a", "1")
            assert second.get(f"{prefix}/a") is not None
        assert asked == [], "the endpoint found dead was asked before the live one"
        with EtcdClient([dead]) as only, pytest.raises(EtcdUnavailable):
            only.get(f"{prefix}/a")  # still tried when it is the only one left
        assert asked == ["/v3/kv/range"]
    finally:
        revived.shutdown()
        revived.server_close()


def test_a_write_without_an_answer_is_not_sent_elsewhere(etcd: Etcd, prefix: str) -> None:
    """A server that takes the request and never answers: a read moves on to the next
    endpoint; a write stops there, saying it may have been applied (sending it to
    another member could apply it twice)."""
    with socket.create_server(("127.0.0.1", 0)) as silent_socket:
        silent = f"http://127.0.0.1:{silent_socket.getsockname()[1]}"
        with EtcdClient([silent, etcd.url], request_timeout=0.3) as client:
            assert client.get(f"{prefix}/a") is None
    # (another silent server: the process now asks etcd.url first after silent)
    with socket.create_server(("127.0.0.1", 0)) as silent_socket:
        silent = f"http://127.0.0.1:{silent_socket.getsockname()[1]}"
        with EtcdClient([silent, etcd.url], request_timeout=0.3) as client:
            with pytest.raises(EtcdUnavailable) as caught:
                client.put(f"{prefix}/a", "1")
            assert caught.value.message == (
                f"etcd at {silent}: no answer within 0.3 s to /v3/kv/put; "
                "it may or may not have been applied"
            )
            assert client.get(f"{prefix}/a") is None, "the write went nowhere else"


# -- the election -----------------------------------------------------------------


def test_one_node_wins_the_other_loses_and_sees_the_winner(
    clients: tuple[EtcdClient, EtcdClient], prefix: str
) -> None:
    one = LeaderElection(clients[0], prefix, "n1", ttl=5)
    two = LeaderElection(clients[1], prefix, "n2", ttl=5)
    assert one.leader() is None
    assert one.campaign() is True
    assert two.campaign() is False
    assert two.leader() == "n1" and one.leader() == "n1"
    assert one.still_leader() is True and one.may_act()
    assert two.still_leader() is False and not two.may_act()
    assert two.acting_deadline() is None and two.lease_id is None
    assert one.campaign() is True, "campaigning again keeps leadership"
    assert one.resign()


def test_expired_lease_hands_over_and_the_deposed_leader_fails_its_fencing_check(
    clients: tuple[EtcdClient, EtcdClient], prefix: str
) -> None:
    one = LeaderElection(clients[0], prefix, "n1", ttl=2)
    two = LeaderElection(clients[1], prefix, "n2", ttl=2)
    assert one.campaign()
    lease_deadline = one.lease_deadline()
    acting_deadline = one.acting_deadline()
    assert lease_deadline is not None and acting_deadline is not None
    assert acting_deadline < lease_deadline

    # n1 never renews. n2 campaigns until etcd has expired n1's lease.
    give_up = time.monotonic() + 10
    while not two.campaign():
        assert time.monotonic() < give_up, "n1's lease never expired"
        time.sleep(0.1)
    won_at = time.monotonic()

    # The promise self-fencing rests on: nobody else wins before n1's own clock says
    # its lease may have ended (same machine, same monotonic clock).
    assert won_at >= lease_deadline > acting_deadline
    assert two.leader() == "n2" and two.still_leader()
    assert not one.may_act()
    assert one.still_leader() is False
    assert one.keep_alive() is False, "a lease etcd has expired cannot be renewed"
    assert one.campaign() is False and one.leader() == "n2"
    assert two.resign()


def test_fencing_check_fails_for_a_deposed_leader_whose_clock_still_allows_it(
    clients: tuple[EtcdClient, EtcdClient], prefix: str
) -> None:
    """Leadership lost behind the leader's back (its lease revoked by an operator) is
    caught by the etcd transaction, not by the clock."""
    one = LeaderElection(clients[0], prefix, "n1", ttl=30)
    two = LeaderElection(clients[1], prefix, "n2", ttl=30)
    assert one.campaign()
    assert one.lease_id is not None
    assert clients[1].lease_revoke(one.lease_id)
    assert two.campaign()
    assert one.may_act(), "n1's clock alone still believes in its lease"
    assert one.still_leader() is False
    assert not one.may_act(), "a failed fencing check ends leadership"
    assert one.resign() is False, "n1 resigning does not delete n2's key"
    assert two.still_leader() and one.leader() == "n2"
    assert two.resign()


def test_campaign_replaces_a_lease_revoked_behind_its_back(
    clients: tuple[EtcdClient, EtcdClient], prefix: str
) -> None:
    one = LeaderElection(clients[0], prefix, "n1", ttl=30)
    assert one.campaign()
    old_lease = one.lease_id
    assert old_lease is not None and clients[1].lease_revoke(old_lease)
    assert one.leader() is None, "revoking the lease deleted the leader key"
    assert one.campaign() is True, "the put on a dead lease is refused; a fresh lease wins"
    assert one.lease_id not in (None, old_lease)
    assert one.still_leader()
    assert one.resign()


def test_resign_hands_over_at_once(clients: tuple[EtcdClient, EtcdClient], prefix: str) -> None:
    one = LeaderElection(clients[0], prefix, "n1", ttl=30)
    two = LeaderElection(clients[1], prefix, "n2", ttl=30)
    assert one.campaign() and not two.campaign()
    lease_id = one.lease_id
    assert lease_id is not None
    assert one.resign() is True
    assert not one.may_act() and one.leader() is None
    assert not clients[0].lease_time_to_live(lease_id).found, "resigning revokes the lease"
    assert two.campaign() is True and two.leader() == "n2"
    assert one.still_leader() is False
    assert one.resign() is False, "resigning again touches nothing"
    # A node resigning a key it does not hold (same name, another lease) leaves it alone.
    impostor = LeaderElection(clients[0], prefix, "n2", ttl=30)
    assert impostor.campaign() is False
    assert impostor.resign() is False and two.still_leader()
    assert two.resign()


def test_keep_alive_keeps_leadership_past_the_ttl(
    clients: tuple[EtcdClient, EtcdClient], prefix: str
) -> None:
    one = LeaderElection(clients[0], prefix, "n1", ttl=2)
    two = LeaderElection(clients[1], prefix, "n2", ttl=2)
    assert one.campaign()
    first_deadline = one.acting_deadline()
    assert first_deadline is not None
    until = time.monotonic() + 2 * 2 + 0.5
    while time.monotonic() < until:
        time.sleep(0.4)
        assert one.keep_alive() is True
        assert two.campaign() is False
    assert one.still_leader() and one.leader() == "n1"
    later_deadline = one.acting_deadline()
    assert later_deadline is not None and later_deadline > first_deadline + 2
    assert one.resign()


def test_a_leader_cut_off_from_etcd_stops_acting_by_its_own_clock(etcd: Etcd, prefix: str) -> None:
    """Renewals that cannot reach etcd raise a clear error and move no deadline;
    ``may_act`` turns False at the acting deadline with no answer from etcd at all.
    (The node is cut off by handing its election a client whose only endpoint is dead.)"""
    with EtcdClient([etcd.url]) as live, EtcdClient([_dead_endpoint()]) as dead:
        one = LeaderElection(live, prefix, "n1", ttl=2, safety_margin=0.5)
        assert one.campaign()
        acting_deadline = one.acting_deadline()
        lease_deadline = one.lease_deadline()
        assert acting_deadline is not None and lease_deadline is not None
        one.client = dead
        while one.may_act():
            with pytest.raises(EtcdUnavailable):
                one.keep_alive()
            assert one.acting_deadline() == acting_deadline
            time.sleep(0.1)
        assert time.monotonic() >= acting_deadline
        assert one.still_leader() is False
        # Had etcd been asked before the lease deadline, it would still show n1 as leader:
        # stopping at the acting deadline came before anyone else could win.
        kv = live.get(one.key)
        if time.monotonic() < lease_deadline:
            assert kv is not None and kv.text == "n1"


def test_a_lease_that_outlived_its_holders_clock_is_renewed_not_replaced(
    clients: tuple[EtcdClient, EtcdClient], prefix: str
) -> None:
    """etcd that lost its quorum extends every lease when it elects a raft leader again:
    the old leader's key is still there on its lease. Its holder renews that lease and
    leads on at once, where replacing the lease would leave nobody leading until the
    old one expired (and nobody else can win meanwhile: the key is still on it)."""
    live, other = clients
    one = LeaderElection(live, prefix, "n1", ttl=6, safety_margin=4)
    two = LeaderElection(other, prefix, "n2", ttl=6)
    assert one.campaign()
    lease_id = one.lease_id
    with EtcdClient([_dead_endpoint()]) as dead:
        one.client = dead
        while one.may_act():
            with pytest.raises(EtcdUnavailable):
                one.keep_alive()
            time.sleep(0.1)
    one.client = live
    lease_deadline = one.lease_deadline()
    assert lease_deadline is not None and time.monotonic() < lease_deadline
    assert not two.campaign(), "the key still on n1's lease is nobody else's"
    assert one.campaign(), "n1 renews its live lease and finds its key on it"
    assert one.lease_id == lease_id
    assert one.may_act() and one.still_leader()
    assert one.resign()
