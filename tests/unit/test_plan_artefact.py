"""The plan file (``failback plan ... --out FILE``): round trip, digest, fingerprints.

Pure: observations are built as data (``ServiceState``), the way the planner's unit
tests build them; the plan comes from the real planner. The lab-backed proof that two
real observations of an unchanged lab have the same fingerprint is in
tests/integration/test_plan_apply.py.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from failback import __version__
from failback.config import load_topology_text
from failback.model.observed import ComponentObservation, ServiceState
from failback.plan.artefact import (
    PlanArtefact,
    PlanFileError,
    PlanOptions,
    StalePlan,
    _sha256,
    build_artefact,
    check_request,
    check_same_facts,
    check_same_origin,
    check_same_plan,
    fact_changes,
    observed_facts,
    read_artefact,
    replan_command,
    write_artefact,
)
from failback.plan.planners import plan_failback, plan_failover

TOPOLOGY = """\
sites:
  dc1: {}
  dc2: {}
services:
  app:
    primary_site: dc1
    components:
      db:
        driver: postgres
        options: {user: failback, password: "env:PGPASSWORD", dbname: app}
        sites:
          dc1: {host: 127.0.0.1, port: 5432, pgdata: /srv/dc1}
          dc2: {host: 127.0.0.1, port: 5433, pgdata: /srv/dc2}
      router:
        driver: haproxy
        options: {socket: /run/haproxy.sock, backend: pg_write, endpoint: "127.0.0.1:6432"}
        sites:
          dc1: {server: dc1}
          dc2: {server: dc2}
    policy:
      approval: required
      stability_window: 10s
"""


def topology(text: str = TOPOLOGY, path: str = "/tmp/failback.yaml") -> Any:
    return load_topology_text(text, path)


def db(site: str, role: str, *, healthy: bool = True, **data: Any) -> ComponentObservation:
    return ComponentObservation(
        component="db", site=site, driver="postgres", kind="database", healthy=healthy,
        role=role, data={"system_identifier": "7301", "timeline": 2, **data},
        detail=f"{role} at {data.get('current_lsn')}", observed_at=data.get("at", 0.0),
    )  # fmt: skip


def router(site: str, role: str) -> ComponentObservation:
    return ComponentObservation(
        component="router", site=site, driver="haproxy", kind="router", healthy=True, role=role
    )


def away_state(**overrides: Any) -> ServiceState:
    """The service runs at dc2; dc1 is a stale primary, fenced at the router."""
    components = overrides.pop("components", None) or [
        db("dc1", "stale-primary", current_lsn="0/3000060", at=100.0),
        db("dc2", "primary", current_lsn="0/5000000", at=100.0),
        router("dc1", "standby"),
        router("dc2", "active"),
    ]
    fields: dict[str, Any] = {
        "service": "app",
        "primary_site": "dc1",
        "active_site": "dc2",
        "needs_resync": ["dc1"],
        "components": components,
        **overrides,
    }
    return ServiceState(**fields)


def failback_artefact(state: ServiceState | None = None, **kw: Any) -> PlanArtefact:
    topo = kw.pop("topology", None) or topology()
    state = state or away_state()
    plan = plan_failback("app", topo.service("app"), state)
    return build_artefact(plan, options=PlanOptions(), topology=topo, state=state, **kw)


# --------------------------------------------------------------------------- file


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    artefact = failback_artefact()
    path = write_artefact(tmp_path / "plan.json", artefact)
    again = read_artefact(path)
    assert again == artefact
    assert again.plan == artefact.plan
    assert again.format == 1
    assert again.failback_version == __version__
    assert again.digest == again.content_digest()
    assert "@" in again.created_by


def test_file_is_private_and_no_temp_file_is_left(tmp_path: Path) -> None:
    path = write_artefact(tmp_path / "plan.json", failback_artefact())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]


def test_an_existing_plan_file_is_replaced_any_other_file_is_not(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    write_artefact(path, failback_artefact(created_at=1.0))
    write_artefact(path, failback_artefact(created_at=2.0))
    assert read_artefact(path).created_at == 2.0

    precious = tmp_path / "failback.yaml"
    precious.write_text(TOPOLOGY)
    with pytest.raises(PlanFileError, match="not a failback plan file; it was left untouched"):
        write_artefact(precious, failback_artefact())
    assert precious.read_text() == TOPOLOGY
    with pytest.raises(PlanFileError, match="is a directory"):
        write_artefact(tmp_path, failback_artefact())


def _edit(path: Path, change: Any) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document, indent=2))


def test_an_edited_step_is_refused(tmp_path: Path) -> None:
    path = write_artefact(tmp_path / "plan.json", failback_artefact())

    def drop_the_approval(document: dict[str, Any]) -> None:
        document["plan"]["steps"] = [
            s for s in document["plan"]["steps"] if s["action"] != "gate.approval"
        ]

    _edit(path, drop_the_approval)
    with pytest.raises(PlanFileError, match="changed after it was written") as refused:
        read_artefact(path)
    assert refused.value.exit_code == 2


def test_an_edited_digest_is_refused_too(tmp_path: Path) -> None:
    path = write_artefact(tmp_path / "plan.json", failback_artefact())
    _edit(path, lambda d: d.update(digest="0" * 64))
    with pytest.raises(PlanFileError, match="digest does not match"):
        read_artefact(path)


def test_a_truncated_file_is_refused(tmp_path: Path) -> None:
    path = write_artefact(tmp_path / "plan.json", failback_artefact())
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(PlanFileError, match="not JSON, or truncated"):
        read_artefact(path)


@pytest.mark.parametrize("value", [2, "1", True, None])
def test_another_format_is_refused(tmp_path: Path, value: Any) -> None:
    path = write_artefact(tmp_path / "plan.json", failback_artefact())
    _edit(path, lambda d: d.update(format=value))
    with pytest.raises(PlanFileError, match="format"):
        read_artefact(path)


def test_missing_and_foreign_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PlanFileError, match="no such plan file"):
        read_artefact(tmp_path / "nope.json")
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    with pytest.raises(PlanFileError, match="no format"):
        read_artefact(other)


def test_a_consistent_but_invalid_document_is_refused(tmp_path: Path) -> None:
    """Someone rewrote the digest after adding a field: still not a plan file."""
    artefact = failback_artefact()
    document = artefact.model_dump(mode="json", exclude={"digest"})
    document["surprise"] = True
    document["digest"] = _sha256(document)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(document))
    with pytest.raises(PlanFileError, match="surprise"):
        read_artefact(path)


# --------------------------------------------------------------------------- fingerprint


def test_volatile_values_do_not_change_the_fingerprint() -> None:
    """LSNs, lag, details and timestamps move between any two observations."""
    first = away_state()
    later = away_state(
        components=[
            db("dc1", "stale-primary", current_lsn="0/3000060", at=250.0, lag_bytes=9),
            db("dc2", "primary", current_lsn="0/7000000", at=250.0, streaming=True),
            router("dc1", "standby"),
            router("dc2", "active"),
        ],
        sync_mode={"mode": "async", "standby": None, "since": 123.0},
    )
    later_mode = away_state(sync_mode={"mode": "async", "standby": None, "since": 999.0})
    assert observed_facts(first).fingerprint() != observed_facts(later).fingerprint()  # mode
    assert observed_facts(later).fingerprint() == observed_facts(later_mode).fingerprint()
    first_async = away_state(sync_mode={"mode": "async"})
    assert observed_facts(first_async).fingerprint() == observed_facts(later).fingerprint()
    assert fact_changes(observed_facts(first_async), observed_facts(later)) == []


def test_component_order_does_not_change_the_fingerprint() -> None:
    state = away_state()
    shuffled = away_state(components=list(reversed(state.components)))
    assert observed_facts(state).fingerprint() == observed_facts(shuffled).fingerprint()


def test_changes_are_named() -> None:
    before = observed_facts(away_state())
    after = observed_facts(
        away_state(
            active_site="dc1",
            needs_resync=[],
            components=[
                db("dc1", "down", healthy=False),
                db("dc2", "primary", timeline=3),
                router("dc1", "standby"),
                router("dc2", "active"),
            ],
        )
    )
    changes = fact_changes(before, after)
    assert changes == [
        "active site was dc2, is now dc1",
        "sites needing a resync were [dc1], are now []",
        "db at dc1 was stale-primary, is now down (unhealthy)",
        "db at dc2 was on timeline 2, is now on 3",
    ]
    assert before.fingerprint() != after.fingerprint()


def test_a_new_system_identifier_is_a_change() -> None:
    before = observed_facts(away_state())
    after = observed_facts(
        away_state(
            components=[
                db("dc1", "stale-primary", system_identifier="999"),
                db("dc2", "primary"),
                router("dc1", "standby"),
                router("dc2", "active"),
            ]
        )
    )
    assert fact_changes(before, after) == ["db at dc1 had system identifier 7301, now has 999"]


# --------------------------------------------------------------------------- apply checks


def test_unchanged_world_passes_the_checks() -> None:
    artefact = failback_artefact()
    check_request(artefact, kind="failback", service="app", path=Path("p.json"))
    check_same_origin(artefact, topology=topology(), path=Path("p.json"))
    check_same_facts(artefact, facts=observed_facts(away_state()), path=Path("p.json"))
    replanned = plan_failback("app", topology().service("app"), away_state())
    check_same_plan(artefact, replanned, path=Path("p.json"))


def test_wrong_kind_or_service_is_refused() -> None:
    artefact = failback_artefact()
    with pytest.raises(PlanFileError, match="is a failback plan, not a failover plan"):
        check_request(artefact, kind="failover", service="app", path=Path("p.json"))
    with pytest.raises(PlanFileError, match="plan for service app, not web"):
        check_request(artefact, kind="failback", service="web", path=Path("p.json"))


def test_a_changed_topology_is_refused() -> None:
    artefact = failback_artefact()
    edited = topology(TOPOLOGY.replace("10s", "20s"))
    with pytest.raises(StalePlan, match="the topology changed since the plan was made"):
        check_same_origin(artefact, topology=edited, path=Path("p.json"))
    elsewhere = topology(path="/srv/other/failback.yaml")
    with pytest.raises(
        StalePlan, match=re.escape("made from the topology file /tmp/failback.yaml")
    ):
        check_same_origin(artefact, topology=elsewhere, path=Path("p.json"))


def test_changed_facts_are_refused_naming_them() -> None:
    artefact = failback_artefact()
    home = away_state(active_site="dc1", needs_resync=[])
    with pytest.raises(StalePlan) as refused:
        check_same_facts(artefact, facts=observed_facts(home), path=Path("p.json"))
    assert "active site was dc2, is now dc1" in refused.value.message
    assert "failback plan failback app --out p.json" in (refused.value.hint or "")


def test_another_failback_version_is_refused() -> None:
    artefact = failback_artefact()
    artefact.failback_version = "0.0.1"
    with pytest.raises(StalePlan, match=re.escape("made by failback 0.0.1")):
        check_same_origin(artefact, topology=topology(), path=Path("p.json"))


def test_a_different_plan_now_is_refused() -> None:
    artefact = failback_artefact()
    no_gate = topology(TOPOLOGY.replace("approval: required", "approval: none"))
    replanned = plan_failback("app", no_gate.service("app"), away_state())
    with pytest.raises(StalePlan, match=re.escape("would differ from p.json")):
        check_same_plan(artefact, replanned, path=Path("p.json"))


def test_replan_command_repeats_the_options() -> None:
    topo = topology()
    state = away_state(
        active_site="dc1",
        needs_resync=[],
        components=[db("dc1", "primary"), db("dc2", "standby"), router("dc1", "active"),
                    router("dc2", "standby")],
    )  # fmt: skip
    plan = plan_failover("app", topo.service("app"), state, planned=True)
    artefact = build_artefact(plan, options=PlanOptions(planned=True), topology=topo, state=state)
    assert replan_command(artefact, Path("p.json")) == (
        "failback plan failover app --planned --out p.json"
    )
