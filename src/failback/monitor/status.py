"""What ``failback status`` shows about the monitor: health history, decisions, zero-loss.

Read-only, from the journal the monitor writes (so another process shows it) plus
the observation ``status`` just made (zero-loss mode is judged from what the primary
reports right now, not from a record).
"""

from __future__ import annotations

import time
from typing import Any

from failback.monitor.decide import human

STALE_AFTER_S = 10.0


def monitor_document(journal: Any, service: Any, state_doc: dict[str, Any]) -> dict[str, Any]:
    """The ``monitor`` section of one service in ``failback status --json``."""
    recorded = journal.service_state(service.name) or {}
    mon = recorded.get("monitor") or {}
    heartbeat = mon.get("heartbeat")
    now = time.time()
    running = heartbeat is not None and now - float(heartbeat) < STALE_AFTER_S
    return {
        "running": running,
        "pid": mon.get("pid"),
        "heartbeat": heartbeat,
        "failover": mon.get("failover"),
        "failback": mon.get("failback"),
        "auto_failback": recorded.get("auto_failback") or {"enabled": True},
        "sync_mode": recorded.get("sync_mode"),
        "synchronous_policy": bool(service.policy.synchronous),
        "zero_loss": zero_loss_now(state_doc),
        "health": journal.health(service.name),
    }


def zero_loss_now(state_doc: dict[str, Any]) -> dict[str, Any]:
    """Whether the active primary waits for a standby right now, as it reports itself."""
    active = state_doc.get("active_site")
    for comp in state_doc.get("components", []):
        if comp.get("driver") != "postgres" or comp.get("site") != active:
            continue
        if comp.get("role") != "primary":
            return {"on": False, "why": f"no reachable primary at {active}"}
        replicas = comp.get("data", {}).get("replicas", [])
        sync = [
            r["application_name"]
            for r in replicas
            if r.get("sync_state") in ("sync", "quorum") and r.get("state") == "streaming"
        ]
        if sync:
            return {"on": True, "why": f"{', '.join(sync)} synchronous"}
        return {"on": False, "why": "asynchronous replication"}
    return {"on": False, "why": "no postgres component"}


def status_lines(doc: dict[str, Any]) -> list[str]:
    """Plain lines for people (the CLI prints them under the service's heading)."""
    mon = doc["monitor"]
    now = time.time()
    lines = []
    if mon["running"]:
        lines.append(f"monitor: running (pid {mon['pid']})")
    elif mon["heartbeat"]:
        lines.append(f"monitor: NOT running (last seen {human(now - mon['heartbeat'])} ago)")
    else:
        lines.append("monitor: never ran for this state directory")
    z = mon["zero_loss"]
    lines.append(f"zero-loss mode: {'yes' if z['on'] else 'no'} ({z['why']})")
    recorded = mon.get("sync_mode")
    if mon["synchronous_policy"] and recorded:
        lines.append(
            f"synchronous policy: {recorded['mode']} since "
            f"{time.strftime('%H:%M:%S', time.localtime(recorded['since']))}: {recorded['reason']}"
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
