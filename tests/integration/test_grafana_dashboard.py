"""The Grafana dashboard queries only metrics failback exposes (issue 17, item 6).

``examples/grafana/failback.json`` is read as Grafana would import it; every PromQL
expression in it (panels, the ``service`` variable, annotations) is searched for the
metric names it uses, and each must be in a real scrape of ``/metrics`` from the real
app (uvicorn on 127.0.0.1, a journal with a real failover and failback of a
``command`` component): renaming a metric without the dashboard fails here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from failback.api import ApiServer, resolve_settings
from failback.config import load_topology
from tests.conftest import run_cli
from tests.integration.test_run_timeline import write_topology

DASHBOARD = Path(__file__).resolve().parents[2] / "examples" / "grafana" / "failback.json"
METRIC = re.compile(r"\bfailback_[a-z0-9_]+\b")


def expressions(node: Any) -> Iterator[str]:
    """Every PromQL expression of a dashboard: panel targets' ``expr``, annotations'
    ``expr``, template variables' ``query``/``definition``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            elif key == "query" and isinstance(value, str | dict):
                yield value if isinstance(value, str) else str(value.get("query", ""))
            else:
                yield from expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)


def exposed(text: str) -> set[str]:
    """Names a query can use: every sample's name, and a counter family's ``_total``
    (present in the exposition even before it has a sample)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        names.update(sample.name for sample in family.samples)
    return names


@pytest.fixture(scope="module")
def scrape(tmp_path_factory: pytest.TempPathFactory) -> str:
    config = write_topology(Path(tmp_path_factory.mktemp("grafana")))
    over = run_cli("failover", "app", "--planned", "-c", str(config), "--yes", "--json")
    assert over.json()["status"] == "succeeded", over.stdout + over.stderr
    back = run_cli("failback", "app", "-c", str(config), "--yes", "--json").json()
    assert back["status"] == "waiting-approval", back
    approved = run_cli("approve", str(back["run_id"]), "--yes", "-c", str(config), "--json")
    assert approved.json()["status"] == "succeeded", approved.stdout + approved.stderr
    settings = resolve_settings(load_topology(config), listen="127.0.0.1:0", environ={})
    server = ApiServer(settings, log_level="warning").start()
    try:
        response = httpx.get(f"{server.url}/metrics", timeout=60)
    finally:
        server.stop()
    assert response.status_code == 200
    return response.text


def test_every_metric_the_dashboard_queries_is_exposed(scrape: str) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = list(expressions(dashboard))
    assert len(exprs) >= 15, exprs
    available = exposed(scrape)
    used: set[str] = set()
    for expr in exprs:
        names = set(METRIC.findall(expr))
        assert names, f"an expression that queries no failback metric: {expr}"
        used |= names
    missing = sorted(used - available)
    assert not missing, f"the dashboard queries metrics /metrics does not expose: {missing}"
    # what the issue asks the dashboard to show
    for name in (
        "failback_runs_total",
        "failback_last_failback_write_unavailability_seconds",
        "failback_last_failover_rto_seconds",
        "failback_replication_lag_bytes",
        "failback_component_up",
        "failback_auto_failback_suspended",
    ):
        assert name in used, name


def test_the_dashboard_takes_its_prometheus_as_an_input() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    (source,) = dashboard["__inputs"]
    assert source["name"] == "DS_PROMETHEUS" and source["pluginId"] == "prometheus"
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_the_suspension_metric_follows_the_switch(tmp_path: Path) -> None:
    """``failback auto disable`` shows as suspended by an operator."""
    config = write_topology(tmp_path)
    off = run_cli("auto", "disable", "app", "--yes", "--reason", "maintenance", "-c", str(config))
    assert off.returncode == 0, off.stderr
    settings = resolve_settings(load_topology(config), listen="127.0.0.1:0", environ={})
    server = ApiServer(settings, log_level="warning").start()
    try:
        text = httpx.get(f"{server.url}/metrics", timeout=60).text
    finally:
        server.stop()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    key = ("failback_auto_failback_suspended", (("by", "operator"), ("service", "app")))
    assert samples[key] == 1.0
