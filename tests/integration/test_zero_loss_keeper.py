"""The monitor's zero-loss keeper on real PostgreSQL: what it records is what the
primary uses, even when the observation it decides from predates its own last change."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from failback.config import load_topology_text
from failback.drivers.postgres.process import start, stop
from failback.drivers.postgres.replication import wait_streaming
from failback.drivers.postgres.sync_mode import read_names, set_names, zero_loss_value
from failback.hosts import HostSet
from failback.monitor.zero_loss import ReplicationManager
from failback.observe.probes import HealthView, Probe, ProbeHealth, ProbeResult
from failback.observe.service import observe_component
from failback.store import open_journal
from tests.integration.pgcluster import PgPair, pg_pair

pytestmark = pytest.mark.integration


@pytest.fixture
def pair() -> Iterator[PgPair]:
    with pg_pair() as fresh:
        wait_streaming(fresh.standby, timeout=20, upstream=fresh.primary)
        yield fresh


def _topology(pair: PgPair, secrets: Path):  # type: ignore[no-untyped-def]
    p, s = pair.primary, pair.standby
    password = secrets / "admin.pass"
    password.write_text(f"{p.password}\n")
    password.chmod(0o600)
    text = f"""\
sites: {{dc1: {{}}, dc2: {{}}}}
services:
  app:
    primary_site: dc1
    components:
      db:
        driver: postgres
        options: {{user: {p.user}, password: "file:{password}", bin_dir: {p.bin_dir}}}
        sites:
          dc1: {{host: {p.host}, port: {p.port}, pgdata: {p.pgdata}}}
          dc2: {{host: {s.host}, port: {s.port}, pgdata: {s.pgdata}}}
    policy: {{synchronous: true}}
"""
    return load_topology_text(text, "/tmp/failback.yaml")


def _view(hosts: HostSet, service, site: str, *, failed: bool = False) -> HealthView:  # type: ignore[no-untyped-def]
    probe = Probe(
        key=f"db@{site}", kind="component", site=site, component="db", driver="postgres",
        interval=0.5, timeout=1.0, threshold=3, run=lambda: None,  # type: ignore[arg-type,return-value]
        role="database",
    )  # fmt: skip
    health = ProbeHealth(probe)
    obs = observe_component(hosts, "app", "db", service.components["db"], site)
    for _ in range(3 if failed else 1):
        health.record(
            ProbeResult(
                ok=not failed and obs.healthy,
                detail=obs.role,
                at=obs.observed_at,
                duration_s=0.0,
                observation=None if failed else obs,
            )
        )
    return HealthView.of(health)


def test_zero_loss_is_recorded_only_when_the_primary_uses_it(pair: PgPair) -> None:
    """The standby fails: the keeper relaxes the primary. It comes back; the keeper now
    decides from an observation taken *before* it relaxed (it still shows the zero-loss
    value): it must not believe the value is in place — it sets it again, so the record
    "sync" never stands beside a primary that waits for no standby."""
    value = zero_loss_value(["dc1", "dc2"])
    set_names(pair.primary, value)
    with tempfile.TemporaryDirectory() as state, HostSet() as hosts:
        service = _topology(pair, Path(state)).service("app")
        keeper = ReplicationManager("app", service, "db")
        journal = open_journal(Path(state))
        try:
            before_relax = _view(hosts, service, "dc1")  # the value set, dc2 streaming
            stop(pair.host, pair.standby, mode="fast", timeout=30)
            standby_down = {
                "db@dc1": _view(hosts, service, "dc1"),
                "db@dc2": _view(hosts, service, "dc2", failed=True),
            }
            record = keeper.reconcile(journal, standby_down, "dc1", None, now=1.0)
            assert record is not None and record["mode"] == "relaxed", record
            assert read_names(pair.primary) == ""
            start(pair.host, pair.standby, timeout=30)
            wait_streaming(pair.standby, timeout=20, upstream=pair.primary)
            # the standby streams again, and the primary's observation the keeper gets
            # began before it relaxed: it still shows the zero-loss value in place
            back = {"db@dc1": before_relax, "db@dc2": _view(hosts, service, "dc2")}
            record = keeper.reconcile(journal, back, "dc1", record, now=2.0)
            assert record is not None and record["mode"] == "sync", record
            assert read_names(pair.primary) == value, "recorded zero-loss, primary relaxed"
        finally:
            journal.close()
