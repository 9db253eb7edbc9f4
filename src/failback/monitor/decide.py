"""Policy decisions of the monitor, as pure functions of what it knows.

Every decision comes with its reason, because "why did it not fail back?" is the
first question a person asks at 03:00; ``failback status`` shows it verbatim
("stable for 2m10s of 5m", "suspended: flapped at 14:02:07").
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from failback.monitor import window as allowed


@dataclass(frozen=True)
class Decision:
    """``act`` True: start the run now. ``reason`` is shown in status in either case."""

    act: bool
    reason: str
    code: str

    def to_dict(self, at: float) -> dict[str, Any]:
        return {"act": self.act, "reason": self.reason, "code": self.code, "at": at}


def human(seconds: float) -> str:
    """130 -> ``2m10s``; 3.25 -> ``3.2s``; 7200 -> ``2h00m``."""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        minutes, secs = divmod(int(seconds), 60)
        return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m"


def clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


@dataclass(frozen=True)
class FailbackFacts:
    """What the failback decision needs, gathered by the monitor."""

    now: float
    policy: Any
    home: str
    auto: dict[str, Any]
    stable_since: float | None
    failing: str
    last_failback_at: float | None
    automatic_failbacks_24h: int


def decide_failback(f: FailbackFacts) -> Decision:
    """Start the failback run, or say why not (in the order a person would check)."""
    policy = f.policy
    if policy.failback != "automatic":
        return Decision(False, "manual: policy failback is manual (`failback failback`)", "manual")
    if f.auto.get("enabled") is False:
        reason = f.auto.get("reason") or "no reason given"
        if f.auto.get("by") == "monitor":
            return Decision(False, f"suspended: {reason}", "suspended")
        return Decision(False, f"disabled by {f.auto.get('by') or '?'}: {reason}", "disabled")
    window = float(policy.stability_window)
    if f.stable_since is None:
        return Decision(False, f"{f.home} not healthy: {f.failing}", "unhealthy")
    stable_for = f.now - f.stable_since
    if stable_for < window:
        return Decision(False, f"stable for {human(stable_for)} of {human(window)}", "stabilizing")
    if policy.failback_window is not None and not allowed.inside(policy.failback_window, f.now):
        return Decision(False, allowed.describe_wait(policy.failback_window, f.now), "window")
    enabled_at = float(f.auto.get("at") or 0.0) if f.auto.get("enabled") else 0.0
    if f.last_failback_at is not None and f.last_failback_at > enabled_at:
        next_at = f.last_failback_at + float(policy.hold_down)
        if f.now < next_at:
            return Decision(
                False,
                f"hold-down: last failback at {clock(f.last_failback_at)}, "
                f"next allowed at {clock(next_at)}",
                "hold_down",
            )
    cap = int(policy.max_failbacks_per_day)
    if f.automatic_failbacks_24h >= cap:
        return Decision(
            False,
            f"capped: {f.automatic_failbacks_24h} automatic failbacks in 24h "
            f"(max_failbacks_per_day {cap})",
            "capped",
        )
    return Decision(True, f"stable for {human(stable_for)} of {human(window)}: failing back", "go")


def flapped(
    now: float, last_failback_at: float | None, hold_down: float, enabled_at: float = 0.0
) -> bool:
    """The primary site failed again within ``hold_down`` of a failback (that a person
    did not re-enable automatic failback after)."""
    if last_failback_at is None or last_failback_at <= enabled_at:
        return False
    return now - last_failback_at < hold_down
