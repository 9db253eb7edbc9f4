"""Drills, the pure parts: the policy's ``require_drill_within``, the failback decision
it gates, the drill planner's refusals and which checks it aims at the copy, and the
lock a drill holds (never the service's). The real drills run in
tests/integration/test_drill.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from failback.config import load_topology_text
from failback.config.policy import Policy
from failback.errors import PlanRefused, StateError, UsageError
from failback.model.locks import run_lock
from failback.model.observed import ComponentObservation, ServiceState
from failback.monitor import decide
from failback.plan.drill import plan_drill
from failback.report.drills import drill_requirement
from failback.store import open_journal

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
        options: {user: failback, dbname: app}
        sites:
          dc1: {host: 127.0.0.1, port: 5432, pgdata: /srv/dc1}
          dc2: {host: 127.0.0.1, port: 5433, pgdata: /srv/dc2}
    checks:
      - {name: rows, type: sql, component: db, query: "select count(*) from t"}
      - {name: rows-dc1, type: sql, component: db, site: dc1, query: "select 1"}
      - {name: endpoint, type: tcp, host: 127.0.0.1, port: 6432}
      - {name: web, type: http, url: "http://127.0.0.1:8080/health"}
      - {name: script, type: command, command: "true"}
"""


def service() -> Any:
    return load_topology_text(TOPOLOGY, "/tmp/failback.yaml").service("app")


def state(active: str = "dc1", standby: tuple[str, bool] = ("standby", True)) -> ServiceState:
    other = "dc2" if active == "dc1" else "dc1"
    comps = [
        ComponentObservation(
            component="db", site=active, driver="postgres", healthy=True, role="primary"
        ),
        ComponentObservation(
            component="db", site=other, driver="postgres", healthy=standby[1], role=standby[0],
            detail="seen",
        ),
    ]  # fmt: skip
    return ServiceState(service="app", primary_site="dc1", active_site=active, components=comps)


# --------------------------------------------------------------------------- policy


def test_require_drill_within_is_a_validated_duration() -> None:
    assert Policy.model_validate({}).require_drill_within is None
    assert Policy.model_validate({"require_drill_within": "7d"}).require_drill_within == 7 * 86400
    for bad in ("0s", "7 days", "-1d", "31d"):
        with pytest.raises(ValidationError, match="require_drill_within"):
            Policy.model_validate({"require_drill_within": bad})


def test_drill_requirement_says_why() -> None:
    now = 1_000_000.0
    assert drill_requirement(None, None, now) == (True, "no drill required")
    met, why = drill_requirement(7 * 86400, None, now)
    assert not met and why == "no successful drill yet (require_drill_within 7d)"
    met, why = drill_requirement(7 * 86400, now - 8 * 86400, now)
    assert not met and why == "last successful drill 8d ago, more than require_drill_within 7d"
    met, why = drill_requirement(7 * 86400, now - 3600, now)
    assert met and why == "last successful drill 1h ago (within 7d)"


# --------------------------------------------------------------------------- the decision


def facts(**overrides: Any) -> decide.FailbackFacts:
    base: dict[str, Any] = {
        "now": 10_000_000.0,
        "policy": Policy.model_validate(
            {"failback": "automatic", "stability_window": "5m", "require_drill_within": "7d"}
        ),
        "home": "dc1",
        "auto": {},
        "stable_since": 10_000_000.0 - 600,
        "failing": "",
        "last_failback_at": None,
        "automatic_failbacks_24h": 0,
    }
    base.update(overrides)
    return decide.FailbackFacts(**base)


def test_automatic_failback_waits_for_a_recent_successful_drill() -> None:
    never = decide.decide_failback(facts())
    assert not never.act and never.code == "drill"
    assert never.reason == (
        "drill required: no successful drill yet (require_drill_within 7d); run `failback drill`"
    )
    old = decide.decide_failback(facts(last_drill_at=10_000_000.0 - 8 * 86400))
    assert not old.act and old.code == "drill" and "8d ago" in old.reason
    recent = decide.decide_failback(facts(last_drill_at=10_000_000.0 - 86400))
    assert recent.act and recent.code == "go"
    # without the setting a drill is never asked for
    free = facts(policy=Policy.model_validate({"failback": "automatic", "stability_window": "5m"}))
    assert decide.decide_failback(free).code == "go"
    # what a person must fix first still comes first: an unhealthy home site
    sick = decide.decide_failback(facts(stable_since=None, failing="db@dc1: down"))
    assert sick.code == "unhealthy"


# --------------------------------------------------------------------------- the planner


def test_a_drill_copies_the_standby_and_aims_only_sql_checks_of_that_database_at_it() -> None:
    plan = plan_drill("app", service(), state(), keep_for_s=30)
    assert (plan.kind, plan.from_site, plan.to_site) == ("drill", "dc1", "dc2")
    ids = [s.id for s in plan.steps]
    assert ids == [
        f"drill-{name}-dc2"
        for name in ("preflight", "copy", "start", "promote", "write", "checks", "keep", "remove")
    ]
    assert not any(s.point_of_no_return for s in plan.steps)
    checks = next(s for s in plan.steps if s.id == "drill-checks-dc2").params
    assert [c["name"] for c in checks["checks"]] == ["rows"]
    reasons = {s["name"]: s["reason"] for s in checks["skipped"]}
    assert set(reasons) == {"rows-dc1", "endpoint", "web", "script"}
    assert "speaks for dc1" in reasons["rows-dc1"]
    assert "no TCP port" in reasons["endpoint"]
    assert "production" in reasons["web"]
    assert "cannot be aimed" in reasons["script"]
    # no keep: no keep step
    assert "drill-keep-dc2" not in [s.id for s in plan_drill("app", service(), state()).steps]


def test_the_drill_planner_refuses_what_would_touch_production_or_prove_nothing() -> None:
    with pytest.raises(PlanRefused, match="dc1 is the active site of app"):
        plan_drill("app", service(), state(), site="dc1")
    with pytest.raises(UsageError, match="no site 'dc9'"):
        plan_drill("app", service(), state(), site="dc9")
    with pytest.raises(PlanRefused, match="not a healthy standby"):
        plan_drill("app", service(), state(standby=("down", False)))
    with pytest.raises(PlanRefused, match="not a healthy standby"):
        plan_drill("app", service(), state(standby=("primary", True)))
    resync = state()
    resync.needs_resync = ["dc2"]
    with pytest.raises(PlanRefused, match="needs a resync"):
        plan_drill("app", service(), resync)
    # after a failover the standby is at the primary site: that is the one drilled
    assert plan_drill("app", service(), state(active="dc2")).to_site == "dc1"


# --------------------------------------------------------------------------- the lock


def test_a_drill_holds_its_own_lock_never_the_services(tmp_path: Path) -> None:
    assert run_lock("app", "failover") == "app" and run_lock("app", "drill") == "app:drill"
    journal = open_journal(tmp_path / "state")
    plan: dict[str, Any] = {"steps": [{"id": "s"}]}
    args: dict[str, Any] = {"plan": plan, "topology_path": "t", "topology_text": "", "options": {}}
    drill = journal.create_run(service="app", kind="drill", lock=run_lock("app", "drill"), **args)
    assert journal.lock_holder("app") is None  # a failover may start
    failover = journal.create_run(service="app", kind="failover", **args)
    assert journal.lock_holder("app") == failover
    with pytest.raises(StateError, match="'app:drill' of service 'app' is locked by run"):
        journal.create_run(service="app", kind="drill", lock="app:drill", **args)
    journal.release_lock("app:drill", drill)
    assert journal.create_run(service="app", kind="drill", lock="app:drill", **args) > drill
