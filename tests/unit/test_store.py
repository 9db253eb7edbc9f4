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
import inspect
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import failback
from failback.errors import StateError
from failback.store import (
    EtcdStore,
    EventStore,
    HealthStore,
    RunStore,
    ServiceStateStore,
    SqliteStore,
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
