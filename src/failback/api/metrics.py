"""``GET /metrics``: Prometheus text exposition, built from the status and the journal.

A collector computes every family at scrape time from the shared status cache (at
most a second old) and the journal, so the figures are those of ``failback status``
and of the run reports, whichever process produced them (CLI, API or monitor).
A registry of its own per app: two apps in one process never clash.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import anyio
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from failback.api.state import AppState, app_state
from failback.engine.executor import Executor
from failback.report.summary import headline

router = APIRouter(tags=["metrics"])

ENDED = ("succeeded", "rolled-back", "aborted", "failed")
RUNS_SCANNED = 100_000


class FailbackCollector:
    """Every failback metric, computed on each scrape."""

    def __init__(self, state: AppState, status: dict[str, Any]) -> None:
        self.state = state
        self.status = status

    def collect(self) -> Iterator[Metric]:
        status = self.status
        yield from _component_metrics(status["services"])
        yield from _service_metrics(status["services"])
        with self.state.journal() as journal:
            yield from _run_metrics(journal, list(self.state.topology.services))


def _component_metrics(services: list[dict[str, Any]]) -> Iterator[Metric]:
    labels = ["service", "component", "site", "driver"]
    up = GaugeMetricFamily("failback_component_up", "1 when the component answers", labels=labels)
    role = GaugeMetricFamily(
        "failback_component_role", "1 for the component's observed role", labels=[*labels, "role"]
    )
    lag_b = GaugeMetricFamily(
        "failback_replication_lag_bytes", "WAL not yet replayed by a standby", labels=labels
    )
    lag_s = GaugeMetricFamily(
        "failback_replication_lag_seconds", "replay delay of a standby", labels=labels
    )
    weight = GaugeMetricFamily(
        "failback_traffic_weight", "router weight of the site's server (0: no new sessions)",
        labels=labels,
    )  # fmt: skip
    share = GaugeMetricFamily(
        "failback_traffic_share", "share of new sessions the router sends to the site",
        labels=labels,
    )  # fmt: skip
    for svc in services:
        for comp in svc["components"]:
            values = [svc["service"], comp["component"], comp["site"], comp["driver"]]
            up.add_metric(values, 1.0 if comp["healthy"] else 0.0)
            role.add_metric([*values, comp["role"]], 1.0)
            if comp.get("lag_bytes") is not None:
                lag_b.add_metric(values, float(comp["lag_bytes"]))
            if comp.get("lag_seconds") is not None:
                lag_s.add_metric(values, float(comp["lag_seconds"]))
            traffic = svc["traffic"].get(comp["component"], {}).get(comp["site"])
            if traffic is not None:
                weight.add_metric(values, float(traffic["effective_weight"]))
                share.add_metric(values, float(traffic["share"]))
    yield from (up, role, lag_b, lag_s, weight, share)


def _service_metrics(services: list[dict[str, Any]]) -> Iterator[Metric]:
    active = GaugeMetricFamily(
        "failback_service_active_site",
        "1 for the site the service runs at",
        labels=["service", "site"],
    )
    degraded = GaugeMetricFamily(
        "failback_service_degraded", "1 when the service runs away from its primary site",
        labels=["service"],
    )  # fmt: skip
    auto = GaugeMetricFamily(
        "failback_auto_failback_enabled", "1 when the monitor may fail the service back by itself",
        labels=["service"],
    )  # fmt: skip
    suspended = GaugeMetricFamily(
        "failback_auto_failback_suspended",
        "1 when the switch suspends automatic failback (by: monitor after a flap, or operator)",
        labels=["service", "by"],
    )
    monitor_up = GaugeMetricFamily(
        "failback_monitor_up", "1 when the service's monitor reports (heartbeat is recent)",
        labels=["service"],
    )  # fmt: skip
    latency = GaugeMetricFamily(
        "failback_monitor_check_latency_seconds",
        "duration of the monitor's last check of each probe (as it journaled it)",
        labels=["service", "probe", "site"],
    )
    for svc in services:
        name = svc["service"]
        for site in svc["sites"]:
            active.add_metric([name, site], 1.0 if site == svc["active_site"] else 0.0)
        degraded.add_metric([name], 1.0 if svc["degraded"] else 0.0)
        auto.add_metric([name], 1.0 if svc["auto_failback"]["effective"] else 0.0)
        switch = svc["auto_failback"]
        off = switch.get("enabled") is False
        by = ("monitor" if switch.get("by") == "monitor" else "operator") if off else ""
        suspended.add_metric([name, by], 1.0 if off else 0.0)
        monitor_up.add_metric([name], 1.0 if (svc.get("monitor") or {}).get("running") else 0.0)
        for probe, record in ((svc.get("monitor") or {}).get("health") or {}).items():
            history = record.get("history") or []
            if history and history[-1].get("s") is not None:
                site = record.get("site") or ""
                latency.add_metric([name, probe, site], float(history[-1]["s"]))
    yield from (active, degraded, auto, suspended, monitor_up, latency)


def _run_metrics(journal: Any, services: list[str]) -> Iterator[Metric]:
    executor = Executor(journal)
    runs = journal.list_runs(limit=RUNS_SCANNED)
    ended: Counter[tuple[str, str, str]] = Counter()
    in_progress: Counter[tuple[str, str, str]] = Counter()
    for run in runs:
        status = executor.effective_status(run)
        (ended if status in ENDED else in_progress)[(run.service, run.kind, status)] += 1
    total = CounterMetricFamily(
        "failback_runs", "runs that ended, by kind and outcome",
        labels=["service", "kind", "outcome"],
    )  # fmt: skip
    for (service, kind, outcome), count in sorted(ended.items()):
        total.add_metric([service, kind, outcome], float(count))
    current = GaugeMetricFamily(
        "failback_runs_in_progress", "runs not ended, by kind and status",
        labels=["service", "kind", "status"],
    )  # fmt: skip
    for (service, kind, status), count in sorted(in_progress.items()):
        current.add_metric([service, kind, status], float(count))
    rto = GaugeMetricFamily(
        "failback_last_failover_rto_seconds", "RTO measured by the last failover that measured one",
        labels=["service"],
    )  # fmt: skip
    unavailable = GaugeMetricFamily(
        "failback_last_failback_write_unavailability_seconds",
        "write-unavailability measured by the last failback", labels=["service"],
    )  # fmt: skip
    for service in services:
        mine = [r for r in runs if r.service == service]  # newest first
        value = _last(journal, mine, "failover", "rto_s")
        if value is not None:
            rto.add_metric([service], value)
        value = _last(journal, mine, "failback", "write_unavailability_s")
        if value is not None:
            unavailable.add_metric([service], value)
    yield from (total, current, rto, unavailable)


def _last(journal: Any, runs: list[Any], kind: str, name: str) -> float | None:
    for run in runs:
        if run.kind == kind and run.status == "succeeded":
            value = headline(journal.measurements(run.id)).get(name)
            if value is not None:
                return float(value)
    return None


def _exposition(state: AppState, status: dict[str, Any]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FailbackCollector(state, status))  # type: ignore[arg-type]
    return bytes(generate_latest(registry))


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """The status is awaited from the shared cache without holding a worker thread; the
    journal is read in one."""
    state = app_state(request)
    status = await state.status.aget()
    body = await anyio.to_thread.run_sync(_exposition, state, status)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
