"""How often the monitor reconciles a service: every TICK_S while anything may be under
way, every STEADY_TICK_S when nothing is (every probe passing, at home, nothing held),
woken at once when what a probe sees changes; and how its heartbeat and health reach the
journal (together with every other service's). The decisions themselves are the same
(test_monitor_policy.py, test_monitor.py); the journal is a real SQLite one."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from failback.config import load_topology_text
from failback.config.journal import journal_for
from failback.hosts import HostSet
from failback.model.observed import ComponentObservation
from failback.monitor.reconcile import (
    STEADY_TICK_S,
    TICK_S,
    ServiceMonitor,
    sees_differently,
)
from failback.monitor.run_worker import JournalPerThread
from failback.monitor.saves import Saves
from failback.observe.probes import ProbeHealth, ProbeResult, build_probes
from failback.store import batched
from tests.unit.test_planner import PG_TOPOLOGY

ROLES = {"db@dc1": "primary", "db@dc2": "standby", "router@dc1": "active", "router@dc2": "standby"}


def result(key: str, role: str, *, ok: bool = True, at: float | None = None) -> ProbeResult:
    component, site = key.split("@")
    kind = "database" if component == "db" else "router"
    observation = ComponentObservation(
        component=component, site=site, driver="postgres" if kind == "database" else "haproxy",
        healthy=ok, role=role if ok else "down", kind=kind, detail=role,
        observed_at=at or time.time(),
    )  # fmt: skip
    return ProbeResult(
        ok=ok, detail=role, at=at or time.time(), duration_s=0.001, observation=observation
    )


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ServiceMonitor:
    monkeypatch.setenv("PGPASSWORD", "unused")
    topology = load_topology_text(PG_TOPOLOGY, str(tmp_path / "failback.yaml"))
    state_dir = tmp_path / "state"
    journal_for(topology, state_dir).close()
    spec = topology.services["app"]
    probes = build_probes("app", spec, HostSet())
    return ServiceMonitor(
        name="app",
        service=spec,
        topology=topology,
        state_dir=state_dir,
        journals=JournalPerThread(state_dir),
        health={p.key: ProbeHealth(p) for p in probes},
    )


def feed(svc: ServiceMonitor, **failed: bool) -> None:
    for key, health in svc.health.items():
        ok = not failed.get(key.replace("@", "_"), False)
        svc.on_result(health.probe, result(key, ROLES[key], ok=ok))


def test_a_steady_service_is_reconciled_every_steady_tick_and_a_failing_one_every_tick(
    service: ServiceMonitor,
) -> None:
    assert service.next_tick() == TICK_S, "nothing seen yet: not steady"
    feed(service)
    now = time.time()
    service.reconcile(service.views(records=service.save_due(now)), now)
    assert service.steady and service.next_tick() == STEADY_TICK_S
    feed(service, db_dc2=True)  # one failed check: the failure count has begun
    service.reconcile(service.views(), now + 0.25)
    assert not service.steady and service.next_tick() == TICK_S
    feed(service)
    service.reconcile(service.views(), now + 0.5)
    assert service.steady


def test_health_is_saved_as_often_as_before_and_only_from_views_with_records(
    service: ServiceMonitor,
) -> None:
    feed(service)
    journal = service.journals.get()
    now = time.time()
    assert service.save_due(now)
    service.reconcile(service.views(records=False), now)  # a view without records: not saved
    assert journal.health("app") == {}
    service.reconcile(service.views(records=service.save_due(now)), now)
    assert set(journal.health("app")) == set(ROLES)
    history = journal.history("app")  # the console's history is recorded with the health
    assert {f"{r['component']}@{r['site']}" for r in history} == set(ROLES)
    assert all(r["healthy"] for r in history)
    assert not service.save_due(now + STEADY_TICK_S / 2)
    assert service.save_due(now + STEADY_TICK_S)


def test_what_a_probe_sees_changing_wakes_the_reconcile() -> None:
    standby = result("db@dc2", "standby")
    assert sees_differently(None, standby)
    assert not sees_differently(standby, result("db@dc2", "standby"))
    assert sees_differently(standby, result("db@dc2", "primary")), "a promoted standby"
    assert sees_differently(standby, result("db@dc2", "standby", ok=False))
    timed_out = ProbeResult(ok=False, detail="timed out", at=time.time(), duration_s=1.0)
    assert sees_differently(standby, timed_out)
    assert not sees_differently(timed_out, timed_out)


def test_saves_handed_over_are_written_together_and_the_newest_wins(
    service: ServiceMonitor,
) -> None:
    saves = Saves()
    service.saver = saves.put
    journal = service.journals.get()
    feed(service)
    now = time.time()
    service.reconcile(service.views(records=service.save_due(now)), now)
    assert journal.health("app") == {} and saves.pending() == 1, "handed over, not written"
    feed(service, db_dc2=True)
    later = now + STEADY_TICK_S
    service.reconcile(service.views(records=service.save_due(later)), later)
    assert saves.pending() == 1, "the newer save replaced the older one"
    assert journal.history("app") == [], "handed over, not written"
    assert saves.flush(journal) == 1 and saves.pending() == 0
    assert journal.health("app")["db@dc2"]["consecutive_failures"] == 1
    history = {(r["component"], r["site"]): r for r in journal.history("app")}
    assert not history[("db", "dc2")]["healthy"] and history[("db", "dc2")]["role"] == "down"
    assert history[("db", "dc1")]["healthy"]
    monitor_doc = (journal.service_state("app") or {})["monitor"]
    assert monitor_doc["heartbeat"] == later


def test_a_batch_commits_together_or_not_at_all(service: ServiceMonitor) -> None:
    journal = service.journals.get()
    with pytest.raises(RuntimeError), batched(journal):
        journal.save_health("one", {"p": {"status": "passing"}})
        journal.save_health("two", {"p": {"status": "passing"}})
        raise RuntimeError("a write failed half-way")
    assert journal.health("one") == {} and journal.health("two") == {}
    with batched(journal):
        journal.save_health("one", {"p": {"status": "passing"}})
        journal.update_service_data("one", "dc1", note=1)
    assert journal.health("one") and (journal.service_state("one") or {})["note"] == 1
