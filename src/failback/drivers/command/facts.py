"""Observation of a command-driven component: its ``observe`` command's exit status."""

from __future__ import annotations

import json
import time
from typing import Any

from failback.drivers.command.runner import CommandInvocation, configured_action, run_command
from failback.errors import FailbackError
from failback.hosts import Host
from failback.model.observed import ComponentObservation


def observe_command_component(
    host: Host, service: str, name: str, component: Any, site: str
) -> ComponentObservation:
    """Exit 0 means healthy; stdout may be JSON with a ``role`` (and any other facts)."""
    configured = configured_action(component, site, "observe")
    if configured is None:
        return ComponentObservation(
            component=name,
            site=site,
            driver="command",
            healthy=True,
            role="unknown",
            detail="no observe command configured",
            observed_at=time.time(),
        )
    try:
        result = run_command(
            host,
            component,
            configured.run,
            CommandInvocation(service=service, component=name, site=site, action="observe"),
            timeout=configured.timeout,
        )
    except FailbackError as exc:  # a secret in its env: cannot be read
        return ComponentObservation(
            component=name,
            site=site,
            driver="command",
            healthy=False,
            role="unknown",
            detail=f"observe not run: {exc.message}",
            observed_at=time.time(),
        )
    data: dict[str, Any] = {}
    role = "unknown"
    text = result.stdout.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
            role = str(data.get("role", role))
        except json.JSONDecodeError:
            data = {}
    detail = "ok" if result.ok else (result.tail() or f"exit {result.returncode}")
    if result.timed_out:
        detail = f"observe timed out after {result.duration_s:.1f}s"
    return ComponentObservation(
        component=name,
        site=site,
        driver="command",
        healthy=result.ok,
        role=role if result.ok else "down",
        detail=detail,
        data=data,
        observed_at=time.time(),
    )
