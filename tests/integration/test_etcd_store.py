"""The etcd store (store/etcd/) against a real etcd started by the test.

The behavioural contract is the one the SQLite store keeps: the test functions of
tests/unit/test_store.py are collected here too, and get this module's ``open_store``
(an ``EtcdStore`` with a client of its own at each call, as separate processes and
machines have). Then what only etcd brings: the key layout, etcd's size limits, a
commit whose answer is lost on the way back (a proxy between the client and etcd
loses it), and etcd gone.

One single-member etcd serves the module; each test has a key prefix of its own.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from failback.coord import Compare, Delete, EtcdClient, EtcdUnavailable, Get
from failback.errors import StateError
from failback.store import EtcdStore
from failback.store.etcd import MAX_WRITE_BYTES
from failback.store.etcd.keys import MAX_LOST_ANSWERS
from tests.integration.etcdserver import Etcd, etcd_server
from tests.unit import test_store as contract
from tests.unit.test_store import new_run

pytestmark = pytest.mark.integration

# The contract both backends keep, run here on etcd (with this module's open_store).
test_concurrent_service_data_writers_keep_every_key = (
    contract.test_concurrent_service_data_writers_keep_every_key
)
test_mark_in_sync_and_a_concurrent_writer_both_take_effect = (
    contract.test_mark_in_sync_and_a_concurrent_writer_both_take_effect
)
test_two_runs_created_at_once_for_one_service_one_wins = (
    contract.test_two_runs_created_at_once_for_one_service_one_wins
)
test_an_illegal_run_transition_changes_nothing = (
    contract.test_an_illegal_run_transition_changes_nothing
)
test_a_switch_back_that_fails_half_way_records_nothing = (
    contract.test_a_switch_back_that_fails_half_way_records_nothing
)
test_an_id_no_run_can_have_is_no_run = contract.test_an_id_no_run_can_have_is_no_run
test_saving_health_replaces_the_whole_set = contract.test_saving_health_replaces_the_whole_set
test_a_run_and_what_it_owns_read_back_as_written = (
    contract.test_a_run_and_what_it_owns_read_back_as_written
)
test_concurrent_run_values_are_all_kept = contract.test_concurrent_run_values_are_all_kept
test_turning_back_and_switching_back_are_recorded_whole = (
    contract.test_turning_back_and_switching_back_are_recorded_whole
)
test_events_come_in_order_newest_last_by_run_and_since_an_id = (
    contract.test_events_come_in_order_newest_last_by_run_and_since_an_id
)
test_service_state_keeps_its_site_unless_told = (
    contract.test_service_state_keeps_its_site_unless_told
)
test_a_reader_polling_events_since_misses_none_and_sees_none_twice = (
    contract.test_a_reader_polling_events_since_misses_none_and_sees_none_twice
)
test_reading_writes_nothing = contract.test_reading_writes_nothing
test_a_reader_sees_each_step_and_run_whole_and_never_going_back = (
    contract.test_a_reader_sees_each_step_and_run_whole_and_never_going_back
)


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    with etcd_server(tmp_path_factory.mktemp("etcd")) as server:
        yield server


@pytest.fixture
def prefix() -> str:
    return f"/failback-test/{uuid.uuid4().hex}"


@pytest.fixture
def open_store(etcd: Etcd, tmp_path: Path, prefix: str) -> Callable[[], EtcdStore]:
    """A new store on a client of its own at each call (the caller closes it)."""
    return lambda: EtcdStore(tmp_path / "state", EtcdClient([etcd.url]), prefix)


@pytest.fixture
def store(open_store: Callable[[], EtcdStore]) -> Iterator[EtcdStore]:
    opened = open_store()
    yield opened
    opened.close()


# -- what the store needs of the client ---------------------------------------------


def test_the_client_reads_a_page_a_span_and_a_past_revision(etcd: Etcd, prefix: str) -> None:
    a, b, c = f"{prefix}/a", f"{prefix}/b", f"{prefix}/c"
    with EtcdClient([etcd.url]) as client:
        first = client.put(a, "1")
        client.put(a, "2")
        client.put(b, "3")
        client.put(c, "4")
        page, span, past = client.txn(
            [],
            [Get(f"{prefix}/", prefix=True, limit=2), Get(a, range_end=c), Get(a, revision=first)],
            idempotent=True,
        ).responses
        assert [kv.key for kv in page.kvs] == [a, b] and page.more
        assert [kv.text for kv in span.kvs] == ["2", "3"] and not span.more
        assert [kv.text for kv in past.kvs] == ["1"]
        deleted = client.txn([Compare.create_revision(a, 0, "GREATER")], [Delete(a, range_end=c)])
        assert deleted.succeeded and deleted.responses[0].deleted == 2
        assert [kv.key for kv in client.get_prefix(f"{prefix}/")] == [c]


# -- the layout -------------------------------------------------------------------


def test_everything_is_kept_under_the_prefix_as_documented(
    etcd: Etcd, store: EtcdStore, open_store: Callable[[], EtcdStore], prefix: str
) -> None:
    run_id = new_run(store)
    store.set_value(run_id, "final_lsn", "0/3")
    store.save_report(run_id, {"rto_s": 1.0})
    store.save_diverged(run_id, {"captured": True, "changes": []})
    store.add_measurement(run_id, "rto", 1.0, "s")
    store.approve(run_id, "gate", "ana")
    store.add_event("step", "started", run_id=run_id)
    store.set_service_state("app", "a")
    store.save_health("app", {"pg-a": {"ok": True}})
    store.record_history("app", [{"component": "db", "site": "a", "healthy": True}])
    assert [r["component"] for r in store.history("app")] == ["db"]  # kept, locally
    with EtcdClient([etcd.url]) as client:
        found = {
            re.sub(r"/[0-9a-f]{32}$", "/TOKEN", kv.key.removeprefix(f"{prefix}/store/"))
            for kv in client.get_prefix(f"{prefix}/")
        }
    run = f"{run_id:012d}"
    assert found == {
        "seq/runs",
        f"runs/{run}",
        f"plans/{run}",
        f"topologies/{run}",
        f"values/{run}",
        f"reports/{run}",
        f"diverged/{run}",
        f"steps/{run}/0000",
        f"steps/{run}/0001",
        f"steps/{run}/0002",
        f"measurements/{run}/TOKEN",
        f"approvals/{run}/gate",
        "locks/app",
        "services/app",
        "seq/events",
        "events/0000000000000001",
    }, "the health stays local"
    assert store.health("app")["pg-a"]["ok"] is True
    elsewhere = EtcdStore(store.state_dir, EtcdClient([etcd.url]), f"{prefix}-other")
    try:
        assert elsewhere.list_runs() == [] and elsewhere.lock_holder("app") is None
        assert new_run(elsewhere) == 1, "another prefix is another store"
    finally:
        elsewhere.close()
    with pytest.raises(StateError, match="prefix is empty"):
        EtcdStore(store.state_dir, EtcdClient([etcd.url]), "/")


def test_a_large_capture_of_diverged_rows_is_kept_whole(store: EtcdStore) -> None:
    """A busy primary's last second can be many rows: kept compressed, read back whole
    (about 3 MB of JSON; etcd takes at most 1.5 MB in one request)."""
    run_id = new_run(store)
    assert store.diverged(run_id) is None
    changes = [
        {"xid": 1000 + i // 10, "commit_time": "2026-12-06 17:00:00+00", "table": "public.t",
         "op": "insert", "key": {"id": i}, "old": None, "new": {"id": i, "v": f"row {i}"}}
        for i in range(20_000)
    ]  # fmt: skip
    capture = {"captured": True, "since_lsn": "0/3000060", "changes": changes}
    assert len(json.dumps(capture)) > 2_000_000
    store.save_diverged(run_id, capture)
    assert store.diverged(run_id) == capture


def test_old_events_are_trimmed_in_batches(store: EtcdStore) -> None:
    store.events_kept, store.trim_every = 5, 5
    run_id = new_run(store)
    for n in range(23):
        store.add_event("step", f"m{n}", run_id=run_id)
    # trimmed at 10, 15 and 20 to the newest 5; 21 to 23 came after
    assert [e["id"] for e in store.events_since(0)] == list(range(16, 24))
    assert store.last_event_id() == 23
    assert [e["message"] for e in store.events(limit=100)][:2] == ["m15", "m16"]
    assert [e["message"] for e in store.events(run_id=run_id, limit=2)] == ["m21", "m22"]
    assert len(store.events(run_id=run_id)) == 8


# -- what etcd refuses --------------------------------------------------------------


def test_a_write_etcd_would_refuse_is_refused_clearly_and_writes_nothing(
    store: EtcdStore,
) -> None:
    too_big = "x" * (MAX_WRITE_BYTES + 1)
    with pytest.raises(StateError) as caught:
        store.create_run(
            service="app", kind="failback", plan=contract.PLAN, topology_path="t.yaml",
            topology_text=too_big, options={},
        )  # fmt: skip
    assert re.fullmatch(
        r"creating a run of 'app': 1,0\d\d,\d{3} bytes in one write;"
        r" the etcd store takes at most 1,048,576 \(1 MiB\)",
        caught.value.message,
    )
    assert caught.value.hint is not None and "--max-request-bytes" in caught.value.hint
    assert store.lock_holder("app") is None and store.list_runs() == []

    almost = "y" * (MAX_WRITE_BYTES - 100 * 1024)
    run_id = store.create_run(
        service="app", kind="failback", plan=contract.PLAN, topology_path="t.yaml",
        topology_text=almost, options={},
    )  # fmt: skip
    assert store.get_run(run_id).topology_text == almost
    with pytest.raises(StateError, match=f"replacing the topology of run {run_id}: "):
        store.replace_topology(run_id, "u.yaml", too_big)
    assert store.get_run(run_id).topology_path == "t.yaml"

    long_plan = {"steps": [{"id": f"s{n}"} for n in range(130)]}
    with pytest.raises(StateError, match="more than etcd takes in one transaction") as caught:
        store.create_run(
            service="db", kind="failback", plan=long_plan, topology_path="t.yaml",
            topology_text="", options={},
        )  # fmt: skip
    assert caught.value.hint is not None and "--max-txn-ops" in caught.value.hint
    assert store.lock_holder("db") is None


# -- answers lost, etcd gone ----------------------------------------------------------


class LossyProxy:
    """An HTTP proxy in front of etcd that loses the answers of the next write
    transactions: after etcd applied them, or before etcd saw them; ``then`` runs in
    between (another writer getting there first)."""

    def __init__(self, upstream: str) -> None:
        self.lost = 0
        self._faults: list[tuple[bool, Callable[[], object] | None]] = []
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=5)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fault = proxy._fault(self.path, body)
                if fault is None or fault[0]:
                    answer = proxy._http.post(
                        upstream + self.path,
                        content=body,
                        headers={"Content-Type": "application/json"},
                    )
                if fault is not None:  # the connection closes with no answer
                    if fault[1] is not None:
                        fault[1]()
                    return
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def lose_next(
        self, *, applied: bool, then: Callable[[], object] | None = None, times: int = 1
    ) -> None:
        with self._lock:
            self._faults += [(applied, then)] * times

    def _fault(self, path: str, body: bytes) -> tuple[bool, Callable[[], object] | None] | None:
        """The fault for this request: only writes (a transaction with comparisons)."""
        if not path.endswith("/kv/txn") or not json.loads(body).get("compare"):
            return None
        with self._lock:
            if not self._faults:
                return None
            self.lost += 1
            return self._faults.pop(0)

    @contextmanager
    def running(self) -> Iterator[LossyProxy]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            self._http.close()


def test_a_commit_whose_answer_is_lost_is_applied_exactly_once(
    etcd: Etcd, store: EtcdStore, tmp_path: Path, prefix: str
) -> None:
    with LossyProxy(etcd.url).running() as proxy:
        lossy = EtcdStore(tmp_path / "state", EtcdClient([proxy.url]), prefix)
        try:
            # applied, answer lost: the run is known by its creation token, not taken
            # for someone else's lock
            proxy.lose_next(applied=True)
            run_id = new_run(lossy)
            assert [r.id for r in lossy.list_runs()] == [run_id]
            assert lossy.lock_holder("app") == run_id
            # lost before etcd saw it: written by the next round
            proxy.lose_next(applied=False)
            lossy.update_step(run_id, 0, attempt=True)
            # applied, then another writer rewrote the run: etcd's history says it was ours
            proxy.lose_next(applied=True, then=lambda: store.set_value(run_id, "other", 1))
            lossy.update_step(run_id, 0, attempt=True)
            # not applied, and another writer came first: the first write after ours read
            # is not ours, so it is written again
            proxy.lose_next(applied=False, then=lambda: store.set_value(run_id, "other", 2))
            lossy.update_step(run_id, 0, attempt=True)
            assert lossy.steps(run_id)[0].attempts == 3
            assert lossy.run_value(run_id, "other") == 2

            proxy.lose_next(applied=True)
            lossy.add_event("step", "once", run_id=run_id)
            proxy.lose_next(applied=True)
            lossy.record_revert(run_id, 2, "error rate", [{"id": "route-back"}])
            lossy.set_service_state("app", "a", needs_resync=["b"])
            proxy.lose_next(applied=True)
            assert lossy.mark_in_sync("app", "b") is True, "the removal it made itself"
            proxy.lose_next(applied=True)
            lossy.release_lock("app", run_id)
            assert proxy.lost == 8
            assert [e["message"] for e in lossy.events()] == ["once"]
            assert [s.step_id for s in lossy.steps(run_id)][-2:] == ["route", "route-back"]
            assert lossy.lock_holder("app") is None

            # every answer lost: after a few, the caller hears it, and nothing was written
            proxy.lose_next(applied=False, times=MAX_LOST_ANSWERS)
            with pytest.raises(EtcdUnavailable, match="may or may not have been applied"):
                lossy.set_value(run_id, "late", 1)
            assert lossy.run_value(run_id, "late") is None
        finally:
            lossy.close()


def test_etcd_gone_is_one_clear_error_and_the_health_stays_readable(
    tmp_path: Path, prefix: str
) -> None:
    with etcd_server(tmp_path / "etcd") as own:
        store = EtcdStore(tmp_path / "state", EtcdClient([own.url]), prefix)
        try:
            run_id = new_run(store)
            store.save_health("app", {"pg-a": {"ok": True}})
            store.record_history("app", [{"component": "db", "site": "a", "healthy": True}])
            own.stop()
            calls: list[Callable[[], object]] = [
                lambda: store.get_run(run_id),
                lambda: new_run(store, "db"),
                lambda: store.set_run_status(run_id, "running"),
                lambda: store.add_event("step", "x"),
                lambda: store.update_service_data("app", "a", seen=1),
                store.last_event_id,
            ]
            for call in calls:
                with pytest.raises(EtcdUnavailable) as caught:
                    call()
                error = caught.value
                assert error.message == f"etcd at {own.url}: connection refused"
                assert error.hint is not None and "etcdctl" in error.hint
                assert error.__cause__ is None and error.__context__ is None
            assert store.health("app")["pg-a"]["ok"] is True
            assert store.history("app")[0]["healthy"] is True
        finally:
            store.close()
