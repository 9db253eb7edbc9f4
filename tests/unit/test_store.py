"""The store interface (store/base.py) and its backends: every concern of the interface
is implemented with the same signature, and the writes the interface calls atomic stay
atomic under concurrent writers (each thread has its own connection, as the monitor's
threads and the run processes do).

The behavioural tests here take the store from the ``open_store`` fixture (a new
connection to one store at each call): SQLite in this module;
tests/integration/test_etcd_store.py collects the same test functions with an
``open_store`` of its own, so both backends keep one contract.
"""

from __future__ import annotations

import ast
import functools
import inspect
import itertools
import json
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

import failback
from failback.coord import EtcdClient, Get
from failback.errors import StateError
from failback.store import (
    EtcdStore,
    EventStore,
    HealthStore,
    RunRecord,
    RunStore,
    ServiceStateStore,
    SqliteStore,
    StepRecord,
    Store,
    open_journal,
)

SRC = Path(failback.__file__).parent
PLAN = {"steps": [{"id": "fence"}, {"id": "promote"}, {"id": "route"}]}


def new_run(store: Store, service: str = "app", kind: str = "failback") -> int:
    return store.create_run(
        service=service, kind=kind, plan=PLAN, topology_path="t.yaml",
        topology_text="", options={},
    )  # fmt: skip


@pytest.fixture
def open_store(tmp_path: Path) -> Callable[[], Store]:
    """Open a new connection to the store under test (one per thread, like the monitor's
    threads and the run processes); the caller closes it."""
    return lambda: open_journal(tmp_path / "state")


@pytest.fixture
def store(open_store: Callable[[], Store]) -> Iterator[Store]:
    opened = open_store()
    yield opened
    opened.close()


def together(count: int, work: Callable[[int], object]) -> list[object]:
    """Run ``work(i)`` in ``count`` threads released at the same instant; return what
    each returned or raised."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def body(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


@pytest.mark.parametrize("backend", [SqliteStore, EtcdStore])
@pytest.mark.parametrize("concern", [RunStore, EventStore, ServiceStateStore, HealthStore])
def test_each_backend_has_every_method_of_each_concern_with_its_signature(
    backend: type, concern: type
) -> None:
    methods = [
        name
        for name, member in vars(concern).items()
        if callable(member) and not name.startswith("_")
    ]
    assert methods
    for name in methods:
        assert inspect.signature(getattr(backend, name)) == inspect.signature(
            getattr(concern, name)
        ), name


def test_the_journal_of_a_state_directory_is_the_store_in_its_usual_file(
    tmp_path: Path,
) -> None:
    store = open_journal(tmp_path / "state")
    assert isinstance(store, Store)
    assert store.path == tmp_path / "state" / "journal.sqlite3"
    store.close()
    # a state directory written before the store package: rows found by their columns
    with sqlite3.connect(tmp_path / "state" / "journal.sqlite3") as db:
        db.execute(
            "INSERT INTO runs (service, kind, status, created_at, updated_at, plan_json,"
            " topology_path, topology_text, values_json) VALUES"
            " ('app', 'failback', 'succeeded', 1, 2, '{\"steps\": []}', 't.yaml', '',"
            ' \'{"final_lsn": "0/3000000"}\')'
        )
        db.execute(
            "INSERT INTO service_state (service, active_site, data_json, updated_at)"
            " VALUES ('app', 'b', '{\"needs_resync\": [\"a\"]}', 3)"
        )
    store = open_journal(tmp_path / "state")
    assert store.get_run(1).values == {"final_lsn": "0/3000000"}
    assert store.service_state("app") == {"needs_resync": ["a"], "active_site": "b",
                                          "updated_at": 3}  # fmt: skip
    store.close()


def test_concurrent_service_data_writers_keep_every_key(
    open_store: Callable[[], Store], store: Store
) -> None:
    """Four writers, each its own connection, set 40 keys each: a read-modify-write that
    let another writer in between its read and its write would lose keys."""
    store.set_service_state("app", "a")

    def write(i: int) -> None:
        writer = open_store()
        try:
            for n in range(40):
                writer.update_service_data("app", "z", **{f"w{i}_{n}": n})
        finally:
            writer.close()

    assert together(4, write) == [None] * 4
    data = store.service_state("app")
    assert data is not None
    assert data["active_site"] == "a"  # update_service_data never moves the active site
    assert {k for k in data if k.startswith("w")} == {
        f"w{i}_{n}" for i in range(4) for n in range(40)
    }


def test_mark_in_sync_and_a_concurrent_writer_both_take_effect(
    open_store: Callable[[], Store], store: Store
) -> None:
    sites = [f"s{n}" for n in range(30)]
    store.set_service_state("app", "a", needs_resync=sites)

    def work(i: int) -> list[bool]:
        writer = open_store()
        try:
            if i == 0:
                return [writer.mark_in_sync("app", site) for site in sites]
            for n in range(30):
                writer.update_service_data("app", "z", **{f"k{n}": n})
            return []
        finally:
            writer.close()

    marked, written = together(2, work)
    assert marked == [True] * 30, marked
    assert written == []
    data = store.service_state("app")
    assert data is not None
    assert data["needs_resync"] == []
    assert all(data[f"k{n}"] == n for n in range(30))


def test_two_runs_created_at_once_for_one_service_one_wins(
    open_store: Callable[[], Store], store: Store
) -> None:
    """The lock is checked and taken in the transaction that creates the run: every
    loser gets the StateError naming the holder, never a half-created run."""

    def create(i: int) -> int:
        creator = open_store()
        try:
            return new_run(creator)
        finally:
            creator.close()

    results = together(4, create)
    winners = [r for r in results if isinstance(r, int)]
    losers = [r for r in results if not isinstance(r, int)]
    assert len(winners) == 1, results
    assert all(isinstance(r, StateError) for r in losers), results
    assert all(f"locked by run {winners[0]} (failback, pending)" in str(r) for r in losers)
    assert store.lock_holder("app") == winners[0]
    assert [r.id for r in store.list_runs()] == winners
    assert len(store.steps(winners[0])) == 3


def test_an_illegal_run_transition_changes_nothing(store: Store) -> None:
    run_id = new_run(store)
    store.set_run_status(run_id, "running")
    store.set_run_status(run_id, "succeeded", finished=True)
    before = store.get_run(run_id)
    with pytest.raises(StateError, match="cannot go from succeeded to running"):
        store.set_run_status(run_id, "running", error="late", pid=4242)
    assert store.get_run(run_id) == before
    with pytest.raises(StateError, match="cannot start rolling back"):
        store.begin_rollback(run_id, reason="late", upto=2, ending="rolled-back", failed_idx=2)
    assert store.get_run(run_id) == before
    assert [s.status for s in store.steps(run_id)] == ["pending"] * 3  # the step not failed


def test_a_switch_back_that_fails_half_way_records_nothing(store: Store) -> None:
    run_id = new_run(store)
    store.set_run_status(run_id, "running")
    store.set_value(run_id, "abort_requested", "ops")
    before = store.get_run(run_id)
    with pytest.raises(KeyError):  # the second appended step has no id
        store.record_revert(run_id, 2, "error rate", [{"id": "route-back"}, {}])
    assert store.get_run(run_id) == before
    assert [s.step_id for s in store.steps(run_id)] == ["fence", "promote", "route"]
    assert store.steps(run_id)[2].status == "pending"


@pytest.mark.parametrize("run_id", [0, -1, 2**63 - 1, 2**63, 2**80])
def test_an_id_no_run_can_have_is_no_run(store: Store, run_id: int) -> None:
    new_run(store)
    with pytest.raises(StateError, match=f"no run {run_id} in") as info:
        store.get_run(run_id)
    assert info.value.hint == "run ids here go from 1 to 1; `failback runs` lists them"


def test_saving_health_replaces_the_whole_set(store: Store) -> None:
    store.save_health("app", {"pg-a": {"ok": True}, "pg-b": {"ok": False}})
    store.save_health("app", {"pg-a": {"ok": False}})
    health = store.health("app")
    assert list(health) == ["pg-a"]
    assert health["pg-a"]["ok"] is False
    assert "saved_at" in health["pg-a"]


def test_a_run_and_what_it_owns_read_back_as_written(store: Store) -> None:
    assert store.list_runs() == [] and store.lock_holder("app") is None
    first = new_run(store)
    run = store.get_run(first)
    assert (
        run.service,
        run.kind,
        run.status,
        run.plan,
        run.topology_path,
        run.topology_text,
        run.options,
        run.values,
        run.report,
        run.pid,
        run.finished_at,
        run.error,
    ) == ("app", "failback", "pending", PLAN, "t.yaml", "", {}, {}, None, None, None, None)
    assert run.created_at == run.updated_at
    assert [
        (s.idx, s.step_id, s.status, s.attempts, s.output, s.started_at, s.undo_status)
        for s in store.steps(first)
    ] == [
        (0, "fence", "pending", 0, {}, None, None),
        (1, "promote", "pending", 0, {}, None, None),
        (2, "route", "pending", 0, {}, None, None),
    ]
    with pytest.raises(StateError, match=rf"locked by run {first} \(failback, pending\)"):
        new_run(store)

    store.set_run_status(first, "running", pid=4242)
    store.update_step(first, 0, status="running", started=True, attempt=True)
    started = store.steps(first)[0].started_at
    before = store.get_run(first).updated_at
    store.update_step(
        first,
        0,
        status="succeeded",
        started=True,
        finished=True,
        attempt=True,
        output={"lsn": "0/3"},
        error="slow",
    )
    step = store.steps(first)[0]
    assert started is not None and step.started_at == started, "the first start is kept"
    assert (step.status, step.attempts) == ("succeeded", 2)
    assert (step.output, step.error) == ({"lsn": "0/3"}, "slow")
    assert step.finished_at is not None and store.get_run(first).updated_at > before
    store.update_step(first, 1, undo_status="undone")
    assert store.steps(first)[1].undo_status == "undone"

    store.set_value(first, "final_lsn", "0/3000000")
    store.set_value(first, "abort_requested", "ops")
    assert store.run_value(first, "final_lsn") == "0/3000000"
    assert store.run_value(first, "missing") is None and store.run_value(first + 99, "x") is None
    store.set_run_status(first, "succeeded", finished=True)
    run = store.get_run(first)
    assert (run.status, run.pid) == ("succeeded", 4242), "a status change keeps the pid"
    assert run.finished_at is not None
    assert run.values == {"final_lsn": "0/3000000", "abort_requested": "ops"}
    store.save_report(first, {"rto_s": 1.5})
    store.replace_topology(first, "u.yaml", "sites: {}\n")
    run = store.get_run(first)
    assert run.report == {"rto_s": 1.5}
    assert (run.topology_path, run.topology_text) == ("u.yaml", "sites: {}\n")
    assert store.diverged(first) is None
    store.save_diverged(first, {"captured": True, "changes": [{"op": "insert"}]})
    store.save_diverged(first, {"captured": True, "changes": []})  # a resumed capture's
    assert store.diverged(first) == {"captured": True, "changes": []}
    assert store.diverged(first + 99) is None

    store.add_measurement(first, "rto", 1.5, "s", step_id="promote")
    store.add_measurement(first, "lost_writes", None, note="not measured")
    assert store.measurements(first) == [
        {"name": "rto", "value": 1.5, "unit": "s", "step": "promote", "note": None},
        {"name": "lost_writes", "value": None, "unit": None, "step": None, "note": "not measured"},
    ]
    assert store.measurements(first + 99) == []
    store.approve(first, "gate", "ana")
    store.approve(first, "gate", "bob")
    assert store.is_approved(first, "gate") and not store.is_approved(first, "other")

    store.release_lock("app", first + 1)  # not the holder: nothing happens
    assert store.lock_holder("app") == first
    store.release_lock("app", first)
    assert store.lock_holder("app") is None
    second = new_run(store)
    third = new_run(store, "db", kind="fence")
    assert [r.id for r in store.list_runs()] == [third, second, first]
    assert [r.id for r in store.list_runs(service="app")] == [second, first]
    assert [r.id for r in store.list_runs(limit=2)] == [third, second]
    assert [r.id for r in store.list_runs(kinds=["failback"])] == [second, first]
    assert [r.id for r in store.list_runs(service="db", kinds=["failover"])] == []
    for name, value in {"doc": {"x": [1, True]}, "flag": True, "none": None, "n": 2.5}.items():
        store.set_value(second, name, value)
        read = store.run_value(second, name)
        assert read == value and type(read) is type(value), f"{name} reads back as itself"

    assert store.list_runs(limit=0) == []
    assert store.list_runs()[2] == store.get_run(first)


def test_concurrent_run_values_are_all_kept(open_store: Callable[[], Store], store: Store) -> None:
    """Four writers set 25 values each on one run: each set is one read-modify-write of
    the run's values, so none overwrites another's key with a stale copy."""
    run_id = new_run(store)

    def write(i: int) -> None:
        writer = open_store()
        try:
            for n in range(25):
                writer.set_value(run_id, f"w{i}_{n}", n)
        finally:
            writer.close()

    assert together(4, write) == [None] * 4
    assert store.get_run(run_id).values == {f"w{i}_{n}": n for i in range(4) for n in range(25)}


def test_turning_back_and_switching_back_are_recorded_whole(store: Store) -> None:
    run_id = new_run(store)
    store.set_run_status(run_id, "running")
    store.set_value(run_id, "abort_requested", "ops")
    store.begin_rollback(
        run_id,
        reason="verify failed",
        upto=1,
        ending="rolled-back",
        failed_idx=1,
        hint="see the log",
    )
    run = store.get_run(run_id)
    assert (run.status, run.error, run.hint) == ("rolling-back", "verify failed", "see the log")
    rollback = run.values["rollback"]
    assert rollback == {"reason": "verify failed", "upto": 1, "ending": "rolled-back",
                        "at": rollback["at"]}  # fmt: skip
    assert "abort_requested" not in run.values
    failed = store.steps(run_id)[1]
    assert (failed.status, failed.error) == ("failed", "verify failed")
    assert failed.finished_at is not None

    other = new_run(store, "db")
    store.set_run_status(other, "running")
    store.set_value(other, "abort_requested", "ops")
    store.record_revert(other, 2, "error rate", [{"id": "route-back"}, {"id": "unfence"}])
    run = store.get_run(other)
    assert run.plan == {"steps": [*PLAN["steps"], {"id": "route-back"}, {"id": "unfence"}]}
    assert run.values == {"reverted_because": "error rate"}
    assert [(s.idx, s.step_id, s.status) for s in store.steps(other)] == [
        (0, "fence", "pending"),
        (1, "promote", "pending"),
        (2, "route", "reverted"),
        (3, "route-back", "pending"),
        (4, "unfence", "pending"),
    ]
    assert store.steps(other)[2].error == "switch back: error rate"


def test_events_come_in_order_newest_last_by_run_and_since_an_id(store: Store) -> None:
    assert store.last_event_id() == 0
    assert store.events() == [] and store.events_since(0) == []
    run_id = new_run(store)
    for n in range(6):
        store.add_event(
            "step",
            f"m{n}",
            run_id=run_id if n % 2 else None,
            service="app",
            step_id="fence" if n == 1 else None,
            data={"n": n} if n else {},
        )
    every = store.events()
    ids = [e["id"] for e in every]
    assert len(ids) == 6 and ids == sorted(set(ids)) and store.last_event_id() == ids[-1]
    assert every[0]["data"] is None, "empty data is kept as none"
    assert every[1] == {
        "id": ids[1],
        "run_id": run_id,
        "service": "app",
        "ts": every[1]["ts"],
        "kind": "step",
        "step": "fence",
        "message": "m1",
        "data": {"n": 1},
    }
    assert isinstance(every[1]["ts"], float)
    assert [e["message"] for e in store.events(limit=2)] == ["m4", "m5"]
    assert [e["message"] for e in store.events(run_id=run_id)] == ["m1", "m3", "m5"]
    assert [e["message"] for e in store.events(run_id=run_id, limit=2)] == ["m3", "m5"]
    assert store.events(run_id=run_id + 99) == []
    assert [e["message"] for e in store.events_since(ids[1], limit=3)] == ["m2", "m3", "m4"]
    assert store.events_since(ids[1]) == every[2:]
    assert store.events_since(ids[-1]) == []


def test_service_state_keeps_its_site_unless_told(store: Store) -> None:
    assert store.service_state("app") is None
    assert store.mark_in_sync("app", "a") is False
    store.update_service_data("app", "a", monitor={"seen": 1})  # no record yet: default site
    state = store.service_state("app")
    assert state is not None and state["active_site"] == "a" and state["monitor"] == {"seen": 1}
    store.set_service_state("app", "b", needs_resync=["a", "c"])
    store.update_service_data("app", "z", note="n")
    assert store.mark_in_sync("app", "a") is True
    assert store.mark_in_sync("app", "a") is False
    state = store.service_state("app")
    assert state is not None
    assert state == {
        "monitor": {"seen": 1},
        "needs_resync": ["c"],
        "note": "n",
        "active_site": "b",
        "updated_at": state["updated_at"],
    }


# -- readers racing writers ------------------------------------------------------------
# The API, the dashboard and `failback run show` read the journal while a run writes it,
# and the monitor forwards events by polling `events_since`: what a reader may see while
# a writer writes, on its own connection.


def race(bodies: Sequence[Callable[[], object]], *, timeout: float = 30.0) -> list[object]:
    """Run each of ``bodies`` in a thread of its own, all released at the same instant;
    return what each raised (None: it returned). A thread still running ``timeout``
    seconds later fails the test: a reader that never catches up or a writer that is
    stuck is a failure, not a hung suite (the threads are daemons)."""
    barrier = threading.Barrier(len(bodies))
    raised: list[object] = [None] * len(bodies)

    def body(i: int) -> None:
        try:
            barrier.wait(timeout)
            bodies[i]()
        except BaseException as exc:  # an assertion in a thread fails the test
            raised[i] = exc

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [i for i, thread in enumerate(threads) if thread.is_alive()]
    if stuck:
        pytest.fail(f"threads {stuck} still running after {timeout} s")
    return raised


EVENT_WRITERS, EVENTS_EACH, EVENT_PAGE = 3, 100, 16


def test_a_reader_polling_events_since_misses_none_and_sees_none_twice(
    open_store: Callable[[], Store], store: Store
) -> None:
    """``events_since``: "a reader that keeps the last id it saw misses none and sees
    none twice" while events are being added, as the monitor forwards them. Three
    writers, each on its own connection, add 100 events each; a reader on a fourth polls
    ``events_since(last id seen)`` (a page of 16 at a time, so the limit cuts) until the
    writers are done and it has caught up. It gets every event once, ids increasing,
    each writer's in the order that writer added them (``add_event``: an id orders an
    event after every event already stored), each as a read after the fact gives it."""
    store.add_event("before", "older than the reader: not forwarded")
    start = store.last_event_id()
    remaining = [EVENT_WRITERS]
    counting = threading.Lock()
    writers_done = threading.Event()
    seen: list[dict[str, Any]] = []
    pages_while_writing = [0]

    def write(i: int) -> None:
        writer = open_store()
        try:
            for n in range(EVENTS_EACH):
                writer.add_event("step", f"w{i}-{n}", service="app", data={"w": i, "n": n})
        finally:
            writer.close()
            with counting:
                remaining[0] -= 1
                if remaining[0] == 0:
                    writers_done.set()

    def read() -> None:
        reader = open_store()
        try:
            last = start
            deadline = time.monotonic() + 25
            while time.monotonic() < deadline:
                done = writers_done.is_set()  # then the poll below comes after every event
                page = reader.events_since(last, limit=EVENT_PAGE)
                if page and page[0]["id"] <= last:  # fail now: polling again would loop
                    raise AssertionError(f"events_since({last}) began with {page[0]['id']}")
                seen.extend(page)
                if page:
                    last = page[-1]["id"]  # as the monitor: the id of the last one forwarded
                    pages_while_writing[0] += not done
                elif done:
                    return
            raise AssertionError(f"the reader had not caught up after 25 s (at id {last})")
        finally:
            reader.close()

    writers = [functools.partial(write, i) for i in range(EVENT_WRITERS)]
    assert race([*writers, read]) == [None] * (EVENT_WRITERS + 1)
    ids = [event["id"] for event in seen]
    assert all(a < b for a, b in itertools.pairwise(ids)), "ids increase: none twice"
    assert len(seen) == EVENT_WRITERS * EVENTS_EACH, "none missed"
    assert seen == store.events_since(start, limit=10_000), "each whole, as stored"
    assert ids[-1] == store.last_event_id()
    for i in range(EVENT_WRITERS):
        mine = [event["message"] for event in seen if event["data"]["w"] == i]
        assert mine == [f"w{i}-{n}" for n in range(EVENTS_EACH)]
    assert pages_while_writing[0] > 0, "the reader got nothing while the writers wrote"


@contextmanager
def write_counter(store: Store) -> Iterator[Callable[[], tuple[int, ...]]]:
    """A reading that changes whenever something is written to ``store`` by any
    connection (compare two readings).

    SQLite: ``PRAGMA data_version`` on a connection of its own that never writes:
    SQLite changes it whenever another connection commits a change to the file (a
    connection's own commits do not show, hence a connection of its own). It misses a
    write that leaves every byte as it was (SQLite does not even write the page), which
    ``write_lock_held`` catches. Not the file's mtime: a commit in WAL mode writes the
    -wal file, not the database, and two commits within its resolution look alike.
    etcd: the store's revision (raised by every transaction that puts or deletes a key,
    even a put of the value already there) and the raft index (raised by every entry the
    cluster commits, leases too; reads, even linearizable ones, commit none), asked of
    the member with a client of its own; and, as for SQLite, the local file where the
    etcd store keeps the health (store/etcd/health.py).
    """
    observer = sqlite3.connect(store.state_dir / SqliteStore.FILE_NAME, isolation_level=None)
    client = EtcdClient(store.client.endpoints) if isinstance(store, EtcdStore) else None

    def reading() -> tuple[int, ...]:
        counts = [int(observer.execute("PRAGMA data_version").fetchone()[0])]
        if isinstance(store, EtcdStore) and client is not None:
            counts.append(client.txn([], [Get(store.keys.run_seq)], idempotent=True).revision)
            counts.append(client.status().raft_index)
        return tuple(counts)

    try:
        yield reading
    finally:
        observer.close()
        if client is not None:
            client.close()


@contextmanager
def write_lock_held(path: Path, *, at_most: float = 5.0) -> Iterator[Callable[[], bool]]:
    """Hold the write lock of the SQLite file at ``path`` (an IMMEDIATE transaction of
    a connection of its own, in a thread of its own) until the block ends, ``at_most``
    seconds at most; yields whether it is still held. Readers do not need that lock (WAL
    mode); anything that writes, or merely begins a write transaction, waits for it: a
    read that did would return only once the lock is let go, so after a burst of reads
    the lock must still be held."""
    held, release = threading.Event(), threading.Event()
    holding = [False]

    def hold() -> None:
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            holding[0] = True
            held.set()
            release.wait(at_most)
            holding[0] = False
            db.execute("ROLLBACK")
        finally:
            db.close()
            held.set()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        assert held.wait(at_most) and holding[0], f"could not take the write lock of {path}"
        yield lambda: holding[0]
    finally:
        release.set()
        thread.join(at_most)


def read_everything(reader: Store, live: int, done: int) -> list[object]:
    """Every read of store/base.py, of what exists and of what does not: their answers."""
    answers: list[object] = [
        reader.get_run(live),
        reader.get_run(done),
        reader.list_runs(),
        reader.list_runs(service="db", limit=1),
        reader.list_runs(kinds=["fence"]),
        reader.run_value(live, "final_lsn"),
        reader.run_value(live, "missing"),
        reader.run_value(live + 99, "final_lsn"),
        reader.lock_holder("app"),
        reader.lock_holder("db"),
        reader.steps(live),
        reader.steps(done),
        reader.measurements(live),
        reader.measurements(live + 99),
        reader.is_approved(live, "gate"),
        reader.is_approved(live, "other"),
        reader.events(),
        reader.events(run_id=live, limit=2),
        reader.events(run_id=live + 99),
        reader.events_since(0),
        reader.events_since(reader.last_event_id()),
        reader.last_event_id(),
        reader.service_state("app"),
        reader.service_state("nowhere"),
        reader.health("app"),
        reader.health("nowhere"),
    ]
    for missing in (live + 99, 0, 2**63):
        with pytest.raises(StateError) as info:
            reader.get_run(missing)
        answers.append(str(info.value))
    return answers


def test_reading_writes_nothing(open_store: Callable[[], Store], store: Store) -> None:
    """The interfaces "only read state" (DESIGN.md): a read of the journal, through any
    connection, writes nothing, so a dashboard polling it cannot hold up a run (no write
    lock taken, no raft round, no fsync) nor change what it reads. A burst of every
    read the interface offers, through two connections, answers while another connection
    holds the SQLite file's write lock (``write_lock_held``: no read began a write), leaves
    the store's write counter (``write_counter``) where it was, and gives the same
    answers each time. One write through the reading connection then moves the counter:
    the counter would have seen a read that wrote."""
    done = new_run(store, "db", kind="fence")
    store.set_run_status(done, "running", pid=4242)
    store.update_step(done, 0, status="applying", started=True, attempt=True)
    store.update_step(done, 0, status="done", finished=True, output={"lsn": "0/3"})
    store.set_run_status(done, "succeeded", finished=True)
    store.save_report(done, {"rto_s": 1.5})
    store.release_lock("db", done)
    live = new_run(store)
    store.set_run_status(live, "running", pid=4343)
    store.update_step(live, 0, status="applying", started=True, attempt=True)
    store.set_value(live, "final_lsn", "0/3000000")
    store.add_measurement(live, "rto", 1.5, "s", step_id="promote")
    store.approve(live, "gate", "ana")
    store.add_event("step", "started", run_id=live, service="app", data={"n": 1})
    store.add_event("step", "other", service="db")
    store.set_service_state("app", "b", needs_resync=["a"])
    store.save_health("app", {"pg-a": {"ok": True}})
    reader = open_store()
    journal_file = store.state_dir / SqliteStore.FILE_NAME
    try:
        with write_counter(store) as written:
            before = written()
            with write_lock_held(journal_file) as still_held:
                with (
                    closing(sqlite3.connect(journal_file, timeout=0)) as other,
                    pytest.raises(sqlite3.OperationalError, match="locked"),
                ):
                    other.execute("BEGIN IMMEDIATE")  # the lock is really held
                first = read_everything(reader, live, done)
                for _ in range(5):
                    assert read_everything(reader, live, done) == first
                    assert read_everything(store, live, done) == first
                assert still_held(), "a read waited for the write lock: it began a write"
            assert written() == before, "a read wrote to the store"
            reader.set_value(live, "seen", True)
            after_value = written()
            assert after_value != before, "the counter missed a write: it proves nothing"
            reader.save_health("app", {"pg-a": {"ok": False}})
            assert written() != after_value, "the counter missed a write of the health"
    finally:
        reader.close()


# What a step's journal entry can read as: the writer decides these fields, the store
# the times (so only whether each is set is compared here).
StepShape = tuple[str, int, bool, bool, str, str | None, str | None]
RunShape = tuple[str, bool, str | None, int | None, str | None]


def step_shape(step: StepRecord) -> StepShape:
    return (
        step.status,
        step.attempts,
        step.started_at is not None,
        step.finished_at is not None,
        json.dumps(step.output, sort_keys=True),
        step.error,
        step.undo_status,
    )


def run_shape(run: RunRecord) -> RunShape:
    rollback = run.values.get("rollback") or {}
    return (run.status, run.finished_at is not None, run.error, run.pid, rollback.get("reason"))


def stepped(
    status: str,
    attempts: int,
    started: bool,
    finished: bool,
    output: dict[str, Any] | None = None,
    error: str | None = None,
    undo: str | None = None,
) -> StepShape:
    return (status, attempts, started, finished, json.dumps(output or {}), error, undo)


RecordName = str | int
"""A record a reader reads: ``"run"``, ``"lock"`` (held by the run?) or a step's index."""
Shape = StepShape | RunShape | bool
Write = Callable[[Store, int, str], object]
"""One write of a run's journal: ``write(store, run_id, service)``."""
Seen = list[tuple[RecordName, Shape, tuple[float | None, ...]]]
"""What one read returned: each record, as it read, and its times."""


def undo_write(idx: int, undo: str) -> Write:
    return lambda s, r, _: s.update_step(r, idx, undo_status=undo)


WHY = "verify failed"
JOURNEY_PLAN = {"steps": [{"id": "fence"}, {"id": "replay"}, {"id": "sync"}, {"id": "promote"}]}
JOURNEY: list[tuple[Write, dict[RecordName, Shape]]] = [
    # A run's life as the executor journals it (engine/executor.py): each write, and the
    # records it changes, as they read after it. Created with the lock, 4 pending steps.
    (
        lambda s, r, _: s.set_run_status(r, "running", pid=4242),
        {"run": ("running", False, None, 4242, None)},
    ),
    (
        lambda s, r, _: s.update_step(r, 0, status="applying", started=True, attempt=True),
        {0: stepped("applying", 1, True, False)},
    ),
    (
        lambda s, r, _: s.update_step(r, 0, status="done", finished=True, output={"lsn": "0/3"}),
        {0: stepped("done", 1, True, True, {"lsn": "0/3"})},
    ),
    (
        lambda s, r, _: s.update_step(r, 1, status="applying", started=True, attempt=True),
        {1: stepped("applying", 1, True, False)},
    ),
    (  # applied again (a resume after a crash): one more attempt, the first start kept
        lambda s, r, _: s.update_step(r, 1, status="applying", started=True, attempt=True),
        {1: stepped("applying", 2, True, False)},
    ),
    (
        lambda s, r, _: s.update_step(r, 1, status="done", finished=True, output={"n": 1}),
        {1: stepped("done", 2, True, True, {"n": 1})},
    ),
    (
        lambda s, r, _: s.update_step(r, 2, status="verifying", started=True),
        {2: stepped("verifying", 0, True, False)},
    ),
    (
        lambda s, r, _: s.update_step(
            r, 2, status="skipped", finished=True, output={"note": "already in place"}
        ),
        {2: stepped("skipped", 0, True, True, {"note": "already in place"})},
    ),
    (
        lambda s, r, _: s.update_step(r, 3, status="applying", started=True, attempt=True),
        {3: stepped("applying", 1, True, False)},
    ),
    (  # one transaction: the failed step, the status and the rollback value
        lambda s, r, _: s.begin_rollback(r, reason=WHY, upto=3, ending="rolled-back", failed_idx=3),
        {
            3: stepped("failed", 1, True, True, error=WHY),
            "run": ("rolling-back", False, WHY, 4242, WHY),
        },
    ),
    *(
        (undo_write(idx, undo), {idx: (*after[:-1], undo)})
        for idx, after in (
            (3, stepped("failed", 1, True, True, error=WHY)),
            (1, stepped("done", 2, True, True, {"n": 1})),
            (0, stepped("done", 1, True, True, {"lsn": "0/3"})),
        )
        for undo in ("undoing", "undone")
    ),
    (
        lambda s, r, _: s.set_run_status(r, "rolled-back", finished=True, error=WHY),
        {"run": ("rolled-back", True, WHY, 4242, WHY)},
    ),
    (lambda s, r, service: s.release_lock(service, r), {"lock": False}),
]


def journey_states() -> list[dict[RecordName, Shape]]:
    """Every record after each write of ``JOURNEY`` (0: as created)."""
    states: list[dict[RecordName, Shape]] = [
        {
            "run": ("pending", False, None, None, None),
            "lock": True,
            **{idx: stepped("pending", 0, False, False) for idx in range(4)},
        }
    ]
    for _, changes in JOURNEY:
        states.append({**states[-1], **changes})
    for name in states[0]:  # no record comes back to an earlier shape: spans are ranges
        shapes = [state[name] for state in states]
        assert all(
            shapes.index(shape) == i or shape == shapes[i - 1] for i, shape in enumerate(shapes)
        ), name
    return states


def test_a_reader_sees_each_step_and_run_whole_and_never_going_back(
    open_store: Callable[[], Store], store: Store
) -> None:
    """Every write "is durable as a whole when it returns, or not at all" (store/base.py),
    ``update_step`` changes a step in one transaction, ``begin_rollback`` the failed
    step, the status and the rollback value in one; and a write that returned stays
    written. So a reader, on its own connection while a writer journals runs, reads
    each record (a step, a run, the lock) as one of the versions the writer wrote whole
    (never ``done`` without ``finished_at``, never a fresh attempt without its status),
    and never older than a version it has already read, whatever it read it through
    (``get_run`` showing ``rolling-back``, then ``steps`` must show the step failed).
    One call of ``steps`` is not promised to be one snapshot: the steps of one answer
    are each checked on their own. A second writer sets a value on the run being
    journaled meanwhile (what ``failback abort`` does), so writes overtake each other."""
    states = journey_states()
    runs = [
        (
            store.create_run(
                service=f"svc{n}",
                kind="failback",
                plan=JOURNEY_PLAN,
                topology_path="t.yaml",
                topology_text="",
                options={},
            ),
            f"svc{n}",
        )
        for n in range(4)
    ]
    journaling = [0]  # the index in ``runs`` of the run being journaled
    requested = [0, 0]  # the values the second writer set, and the run it set the last on
    writer_done = threading.Event()
    observed: list[tuple[int, Seen]] = []  # each read: the run, the records it returned
    rounds_while_writing = [0]

    def journal() -> None:
        writer = open_store()
        try:
            for n, (run_id, service) in enumerate(runs):
                journaling[0] = n
                for write, _ in JOURNEY:
                    write(writer, run_id, service)
        finally:
            writer.close()
            writer_done.set()

    def request() -> None:
        other = open_store()
        try:
            while not writer_done.is_set():
                run_id = runs[journaling[0]][0]
                other.set_value(run_id, "polled", requested[0] + 1)
                requested[:] = [requested[0] + 1, run_id]
        finally:
            other.close()

    def read() -> None:
        reader = open_store()
        try:
            deadline = time.monotonic() + 25
            while time.monotonic() < deadline:
                done = writer_done.is_set()  # then this round reads the last writes
                for n, (run_id, service) in enumerate(runs):
                    run = reader.get_run(run_id)
                    stamps = (run.created_at, run.finished_at)
                    observed.append((n, [("run", run_shape(run), stamps)]))
                    observed.append(
                        (
                            n,
                            [
                                (s.idx, step_shape(s), (s.started_at, s.finished_at))
                                for s in reader.steps(run_id)
                            ],
                        )
                    )
                    observed.append((n, [("lock", reader.lock_holder(service) == run_id, ())]))
                if done:
                    return
                rounds_while_writing[0] += 1
            raise AssertionError("the reader was still reading after 25 s")
        finally:
            reader.close()

    assert race([journal, request, read]) == [None, None, None]

    newest = [0] * len(runs)  # per run: the newest write the reader has seen
    times: dict[tuple[int, RecordName, int], float] = {}
    last_seen: list[dict[RecordName, Shape]] = [{} for _ in runs]
    for number, (n, records) in enumerate(observed):
        seen_now = []
        for name, shape, stamps in records:
            written = [k for k, state in enumerate(states) if state[name] == shape]
            assert written, f"read {number}: run {n}'s {name} as {shape}: never written whole"
            first, last = written[0], written[-1]
            assert last >= newest[n], (
                f"read {number}: run {n}'s {name} as {shape}, which write {last + 1} of"
                f" JOURNEY replaced, after the reader had seen write {newest[n]}"
            )
            seen_now.append(first)
            last_seen[n][name] = shape
            for place, stamp in enumerate(stamps):  # a time once set is never changed
                if stamp is not None:
                    assert times.setdefault((n, name, place), stamp) == stamp, (number, name)
        newest[n] = max([newest[n], *seen_now])
    assert last_seen == [states[-1]] * len(runs), "the reader's last round sees the end"
    assert rounds_while_writing[0] >= 3, "the reader hardly read while the writer wrote"
    assert requested[0] > 0 and store.run_value(requested[1], "polled") == requested[0]


def imported_modules(package: Path) -> dict[str, set[str]]:
    """Every module imported by each file under ``package`` (absolute imports)."""
    found: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
        found[str(path.relative_to(SRC))] = names
    return found


def test_the_store_sits_below_the_engine_and_drivers_never_reach_it() -> None:
    allowed = ("failback.store", "failback.coord", "failback.model", "failback.errors")
    for path, names in imported_modules(SRC / "store").items():
        for name in names:
            top = name.split(".")[0]
            assert top in sys.stdlib_module_names or name.startswith(allowed), (path, name)
    for path, names in imported_modules(SRC / "drivers").items():
        assert not any(
            n.startswith(("failback.store", "failback.engine.journal")) for n in names
        ), path


def test_a_state_directory_opens_the_backend_it_is_bound_to(tmp_path: Path) -> None:
    """``open_journal`` reads the directory's binding: SQLite without one, the control
    plane's etcd with one (opening does not connect); the binding is private, names
    secrets by reference only, and a damaged one is a clear error."""
    from failback.store import EtcdBinding, bind, read_binding

    state = tmp_path / "state"
    plain = open_journal(state)
    assert isinstance(plain, SqliteStore)
    plain.close()
    binding = EtcdBinding(
        endpoints=("http://127.0.0.1:1",), prefix="/failback/t", password="env:ETCD_PW",
        username="failback",
    )  # fmt: skip
    bind(state, binding)
    path = state / "control-plane.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_binding(state) == binding
    bound = open_journal(state)
    assert isinstance(bound, EtcdStore) and bound.keys.root == "/failback/t/store"
    bound.close()
    bind(state, None)
    assert read_binding(state) is None
    path.write_text("{not json")
    with pytest.raises(StateError, match="cannot be read"):
        open_journal(state)
