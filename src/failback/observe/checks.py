"""Declared checks (tcp, http, sql, command): prechecks before a failback, post-checks after.

Each check returns a result instead of raising, so a gate can report every failing
check at once with its numbers.
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

from failback.config import Service
from failback.drivers.base import Capability
from failback.drivers.catalog import driver_of, has_capability
from failback.errors import FailbackError
from failback.hosts import Host


@dataclass(frozen=True)
class CheckResult:
    name: str
    type: str
    ok: bool
    detail: str
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_check(check: Any, service: Service, host: Host, site: str | None = None) -> CheckResult:
    """Run one declared check with its timeout; never raises. ``site``: the site a gate
    judges, where an ``sql`` check that names none runs."""
    started = time.monotonic()
    try:
        ok, detail = _dispatch(check, service, host, site)
    except FailbackError as exc:
        ok, detail = False, exc.message
    except Exception as exc:
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    return CheckResult(check.name, check.type, ok, detail, time.monotonic() - started)


def _dispatch(check: Any, service: Service, host: Host, site: str | None) -> tuple[bool, str]:
    kind = check.type
    if kind == "tcp":
        return _tcp(check.host, check.port, check.timeout)
    if kind == "http":
        return _http(check.url, check.method, check.expect_status, check.timeout)
    if kind == "command":
        result = host.run(["/bin/sh", "-c", check.command], timeout=check.timeout)
        if result.timed_out:
            return False, f"timed out after {check.timeout:g}s"
        return result.ok, "exit 0" if result.ok else f"exit {result.returncode}: {result.tail()}"
    if kind == "sql":
        return _sql(check, service, check.site or site)
    return False, f"unknown check type {kind}"


def _tcp(host: str, port: int, timeout: float) -> tuple[bool, str]:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, f"{host}:{port} accepts connections"
    except OSError as exc:
        return False, f"{host}:{port}: {exc.strerror or exc}"


def _http(url: str, method: str, expect_status: int, timeout: float) -> tuple[bool, str]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"{url}: {reason}"
    ok = status == expect_status
    return ok, f"{url}: HTTP {status}" + ("" if ok else f" (expected {expect_status})")


def _sql(check: Any, service: Service, site: str | None) -> tuple[bool, str]:
    """Asked of the component's driver (``Capability.SQL``): the observer speaks no SQL."""
    component = service.components[check.component]
    if not has_capability(component, Capability.SQL):
        return False, f"{check.component} ({component.driver}) cannot run an sql check"
    if site is None:  # the monitor watches it alone: no gate says which site
        return False, (
            f"{check.name} names no site, and only a gate says which one to query: "
            "give it `site:` to have the monitor watch it"
        )
    answer = driver_of(component).run_sql(component, site, check.query, float(check.timeout))
    return True, f"{check.query!r} -> {answer}"


def checks_for(service: Service, use: str, site: str | None = None) -> list[Any]:
    """The service's declared checks used as ``use`` (precheck|postcheck)."""
    return [
        c
        for c in service.checks
        if use in c.use and (site is None or c.site is None or c.site == site)
    ]
