"""What ``failback status`` shows about the monitor: alive or not, health history,
decisions, zero-loss.

Read-only, from the journal the monitor writes (so another process shows it) plus
the observation ``status`` just made (zero-loss mode is judged from what the primary
reports right now, not from a record).

"Running" means alive now, not "started once": the monitor's process exists (when it
runs on this host) *and* it reported within the last few cycles. A monitor that was
killed, that stopped, or that hangs is shown as such, with when it last reported.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from failback.config import Service
from failback.drivers.base import Capability, Role
from failback.drivers.catalog import driver_named
from failback.monitor.decide import human
from failback.store import Journal

REPORT_EVERY_S = 1.0
"""How often a live monitor writes its heartbeat and decisions."""

STALE_AFTER_S = 5 * REPORT_EVERY_S
"""No report for this long: the monitor is not doing its job, whatever its PID says."""


def process_alive(pid: int) -> bool:
    """The process exists and is not a zombie (a killed monitor whose parent has not
    reaped it yet has a PID and does nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


def liveness(mon: dict[str, Any], now: float) -> dict[str, Any]:
    """``state``: running | stalled (alive, not reporting) | dead (process gone) |
    stopped (exited cleanly) | never; ``running`` is True only for ``running``."""
    heartbeat = mon.get("heartbeat")
    pid = mon.get("pid")
    if heartbeat is None:
        return {"state": "never", "running": False, "reported_ago_s": None, "pid_alive": None}
    ago = max(0.0, now - float(heartbeat))
    pid_alive = None
    if pid is not None and mon.get("host", socket.gethostname()) == socket.gethostname():
        pid_alive = process_alive(int(pid))
    if mon.get("stopped_at"):
        state = "stopped"
    elif pid_alive is False:
        state = "dead"
    elif ago >= STALE_AFTER_S:
        state = "stalled" if pid_alive else "silent"
    else:
        state = "running"
    return {
        "state": state,
        "running": state == "running",
        "reported_ago_s": round(ago, 3),
        "pid_alive": pid_alive,
    }


def monitor_document(
    journal: Journal, service: Service, state_doc: dict[str, Any]
) -> dict[str, Any]:
    """The ``monitor`` section of one service in ``failback status --json``."""
    recorded = journal.service_state(service.name) or {}
    mon = recorded.get("monitor") or {}
    heartbeat = mon.get("heartbeat")
    alive = liveness(mon, time.time())
    return {
        **alive,
        "pid": mon.get("pid"),
        "host": mon.get("host"),
        "heartbeat": heartbeat,
        "stopped_at": mon.get("stopped_at"),
        "failover": mon.get("failover"),
        "failback": mon.get("failback"),
        "auto_failback": recorded.get("auto_failback") or {"enabled": True},
        "sync_mode": recorded.get("sync_mode"),
        # what the monitor keeps on the primary to capture a failover's lost commits
        "capture": mon.get("capture"),
        "synchronous_policy": bool(service.policy.synchronous),
        "zero_loss": zero_loss_now(state_doc),
        "health": journal.health(service.name),
    }


def zero_loss_now(state_doc: dict[str, Any]) -> dict[str, Any]:
    """Whether the active primary waits for a standby right now, as it reports itself
    (its driver reads that from the primary's observation)."""
    active = state_doc.get("active_site")
    for comp in state_doc.get("components", []):
        driver = driver_named(str(comp.get("driver")))
        if (
            comp.get("kind") != Role.DATABASE
            or comp.get("site") != active
            or driver is None
            or Capability.SYNCHRONOUS_REPLICATION not in driver.capabilities
        ):
            continue
        if comp.get("role") != "primary":
            return {"on": False, "why": f"no reachable primary at {active}"}
        sync = driver.synchronous_standbys(comp.get("data") or {})
        if sync:
            return {"on": True, "why": f"{', '.join(sync)} synchronous"}
        return {"on": False, "why": "asynchronous replication"}
    return {"on": False, "why": "no database with synchronous replication"}


def monitor_line(mon: dict[str, Any], now: float) -> str:
    """``running (pid 42)``, or why it is not running and when it last reported."""
    state = mon["state"]
    if state == "never":
        return "never ran for this state directory"
    pid = mon.get("pid")
    last = f"last report {human(now - float(mon['heartbeat']))} ago"
    if state == "running":
        return f"running (pid {pid})"
    if state == "stopped":
        stopped = time.strftime("%H:%M:%S", time.localtime(float(mon["stopped_at"])))
        return f"NOT running: stopped at {stopped} (pid {pid})"
    if state == "dead":
        return f"NOT running: process {pid} is gone ({last})"
    if state == "stalled":
        return f"NOT working: process {pid} exists but does not report ({last})"
    return f"NOT reporting ({last}; process {pid} runs on {mon.get('host')})"


def status_lines(doc: dict[str, Any]) -> list[str]:
    """Plain lines for people (the CLI prints them under the service's heading)."""
    mon = doc["monitor"]
    now = time.time()
    lines = []
    lines.append(f"monitor: {monitor_line(mon, now)}")
    z = mon["zero_loss"]
    lines.append(f"zero-loss mode: {'yes' if z['on'] else 'no'} ({z['why']})")
    recorded = mon.get("sync_mode")
    if mon["synchronous_policy"] and recorded:
        lines.append(
            f"synchronous policy: {recorded['mode']} since "
            f"{time.strftime('%H:%M:%S', time.localtime(recorded['since']))}: {recorded['reason']}"
        )
    capture = mon.get("capture")
    if capture and mon["running"]:
        problem = capture.get("problem")
        lines.append(
            f"capture of diverged transactions at {capture.get('site')}: "
            + (f"UNAVAILABLE ({problem})" if problem else "ready")
        )
    auto = mon["auto_failback"]
    if auto.get("enabled") is False:
        lines.append(f"automatic failback: OFF ({auto.get('by')}: {auto.get('reason')})")
    for kind in ("failover", "failback"):
        decision = mon.get(kind)
        if decision and mon["running"]:
            lines.append(f"{kind} decision: {decision['reason']}")
    for key, h in mon["health"].items():
        since = h.get("passing_since") if h["status"] == "passing" else h.get("failing_since")
        since_text = f" for {human(now - since)}" if since else ""
        marks = "".join("." if r["ok"] else "x" for r in h.get("history", []))
        lines.append(
            f"  {key:<24} {h['status']}{since_text} [{marks}] {(h.get('last_detail') or '')[:80]}"
        )
    return lines
