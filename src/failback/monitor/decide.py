"""Policy decisions of the monitor, as pure functions of what it knows.

Every decision comes with its reason, because "why did it not fail back?" is the
first question a person asks at 03:00; ``failback status`` shows it verbatim
("stable for 2m10s of 5m", "suspended: flapped at 14:02:07").
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from failback.model.states import EXECUTING
from failback.monitor import window as allowed
from failback.report.drills import drill_requirement


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
    last_drill_at: float | None = None
    """When the last successful drill of the service ended (``failback drill``), for the
    policy's ``require_drill_within``."""
    last_failback_ending: str | None = None
    """How the last failback ended: ``succeeded``, or ``rolled-back`` / ``aborted`` (a
    gate, the observation window or a person turned it back): the hold-down counts from
    its end either way, or the monitor would try again at once, pausing writes each
    time, for a site that was just refused."""


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
    within = getattr(policy, "require_drill_within", None)
    if within is not None:
        met, why = drill_requirement(float(within), f.last_drill_at, f.now)
        if not met:
            return Decision(False, f"drill required: {why}; run `failback drill`", "drill")
    stable_for = f.now - f.stable_since
    if stable_for < window:
        return Decision(False, f"stable for {human(stable_for)} of {human(window)}", "stabilizing")
    if policy.failback_window is not None and not allowed.inside(policy.failback_window, f.now):
        return Decision(False, allowed.describe_wait(policy.failback_window, f.now), "window")
    enabled_at = float(f.auto.get("at") or 0.0) if f.auto.get("enabled") else 0.0
    if f.last_failback_at is not None and f.last_failback_at > enabled_at:
        next_at = f.last_failback_at + float(policy.hold_down)
        if f.now < next_at:
            ended = {"rolled-back": "rolled back", "aborted": "aborted"}
            how = ended.get(f.last_failback_ending or "", "at")
            reason = (
                f"hold-down: last failback {how} {clock(f.last_failback_at)}, "
                f"next allowed at {clock(next_at)}"
            )
            if how != "at":
                reason += " (`failback auto enable` to try again now)"
            return Decision(False, reason, "hold_down")
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


# --------------------------------------------------------------------------- runs


RESUMABLE = EXECUTING
# (not ``pending``: between create_run and the executor taking the lock, a live run
# would look interrupted)
"""Journal statuses in which a run needs a live process; without one it was interrupted."""


@dataclass(frozen=True)
class RunFacts:
    """The run that holds the service, as the monitor sees it on this tick."""

    id: int
    kind: str
    by: str
    """``monitor`` for the runs the monitor started, else the person's name."""
    status: str
    """As journaled: ``running``, ``observing``, ``waiting-approval``, ``failed``..."""
    alive: bool
    """A live process executes it (it holds the run's lock)."""
    backward: bool
    """It began undoing: it can only finish its undo, never go forward again."""
    parked: bool = False
    """A failback that waits at a gate (approval) before its point of no return, with no
    process executing it: an abort undoes it safely."""

    @property
    def interrupted(self) -> bool:
        return not self.alive and self.status in RESUMABLE


def decide_run(run: RunFacts) -> Decision:
    """What the monitor does about the run holding the service (it starts nothing else).

    An interrupted run the monitor started is continued, in the direction it was going
    (the executor knows which). A person's interrupted run is left to that person: the
    monitor never turns someone's decision into an action of its own.
    """
    if run.interrupted:
        if run.by == "monitor":
            way = "finishes its undo" if run.backward else "continues it"
            return Decision(
                True, f"run {run.id} ({run.kind}) was interrupted: the monitor {way}", "resume"
            )
        what = f"failback abort {run.id}" if run.backward else (
            f"failback resume {run.id} / abort {run.id}"
        )  # fmt: skip
        return Decision(
            False, f"run {run.id} was interrupted; a person decides: {what}", "interrupted"
        )
    if run.status == "failed":
        return Decision(
            False,
            f"run {run.id} ({run.kind}, by {run.by}) stopped for a person: "
            f"`failback run show {run.id}`",
            "stopped",
        )
    return Decision(
        False, f"observing: run {run.id} ({run.kind}, by {run.by}) is {run.status}", "busy"
    )


# --------------------------------------------------------------------------- failover


@dataclass(frozen=True)
class FailoverFacts:
    """What the failover decision needs, gathered by the monitor on this tick."""

    policy: Any
    active: str
    failed: tuple[str, ...]
    """``probe: detail`` of every non-router probe of the active site declared failed,
    judged on results taken since the service was last free of runs."""
    run: RunFacts | None = None
    starting: str | None = None
    """The kind of run the monitor itself is starting right now."""
    refused: str | None = None
    """The reason of the last refusal while its retry delay runs."""


def decide_failover(f: FailoverFacts) -> Decision:
    """Fail over, or say why not: from the current state, never from a remembered edge.

    A failure that began while a run held the service is acted on as soon as the run
    ends, with the same policy as any other (nothing waits for it to pass and fail again).
    """
    what = "; ".join(f.failed)
    automatic = f.policy.failover == "automatic"
    if f.run is not None and f.failed and f.run.parked and automatic:
        # the run stopped at a gate: the failure is acted on now, with the same policy,
        # by undoing the parked failback first (nothing past its point of no return)
        return Decision(
            True,
            f"{f.active} failed ({what}) while run {f.run.id} ({f.run.kind}, by "
            f"{f.run.by}) waits at a gate before its point of no return: aborting it, "
            "then failing over",
            "abort-parked",
        )
    if f.run is not None:
        held = decide_run(f.run)
        if held.code != "busy" or not f.failed:
            return held
        return Decision(
            False,
            f"{held.reason}; {f.active} failed ({what}): acted on when run {f.run.id} ends",
            "busy",
        )
    if f.starting:
        return Decision(False, f"observing: the monitor's {f.starting} is starting", "busy")
    if not f.failed:
        return Decision(
            False, f"{f.active} healthy ({'automatic' if automatic else 'manual'} failover)",
            "healthy",
        )  # fmt: skip
    if not automatic:
        reason = f"manual: {f.active} failed ({what}); waiting for a person"
        return Decision(False, reason, "manual")
    if f.refused is not None:
        return Decision(False, f"{f.active} failed; refused: {f.refused}", "refused")
    return Decision(True, f"{f.active} failed ({what}): failing over", "go")


# --------------------------------------------------------------------------- flap damping


@dataclass(frozen=True)
class FailbackRunFacts:
    """The latest failback run of the service, as flap damping needs it."""

    id: int
    by: str
    ended_at: float | None
    """None while it holds the service."""
    went_home: bool
    """It passed its point of no return: the service ran at the primary site."""
    succeeded: bool
    home_quiet_since: float | None
    """When the run last stopped acting on the primary site's own components (0.0: it
    has not yet); None while it acts on them (a resync restarts the database on purpose)."""
    new_primary_died: str | None = None
    """Why its observation window switched back, when the new primary had died."""


@dataclass(frozen=True)
class FlapFacts:
    """What flap damping needs: the primary site's failures and the latest failback."""

    now: float
    service: str
    home: str
    hold_down: float
    auto: dict[str, Any]
    failures: tuple[tuple[str, float], ...]
    """``(probe: detail, failing since)`` of the primary site's non-router probes that
    are declared failed now."""
    failback: FailbackRunFacts | None


def decide_flap(f: FlapFacts) -> Decision:
    """Suspend automatic failback (``act``) when the primary site failed during a failback
    or within ``hold_down`` after one. Damps failbacks only: failovers go on by policy.

    Level-triggered: judged on every tick from the failures now and the latest failback
    run, so a failure that began while the run was still observing is not missed. A
    failure that began while the run itself restarted the site (its resync) is the run's
    to judge, not a flap.
    """
    fb = f.failback
    if f.auto.get("enabled") is False:
        return Decision(False, "automatic failback is off already", "off")
    if fb is None:
        return Decision(False, "no failback yet", "steady")
    enabled_at = float(f.auto.get("at") or 0.0) if f.auto.get("enabled") else 0.0
    if fb.ended_at is not None and (
        enabled_at >= fb.ended_at or f.now - fb.ended_at >= f.hold_down
    ):
        return Decision(False, f"run {fb.id} is older than the hold-down or re-enabled", "steady")
    hint = f"`failback auto enable {f.service}`"
    if fb.new_primary_died:
        return Decision(
            True,
            f"flapped at {clock(f.now)}: {f.home} failed during the observation window of "
            f"run {fb.id}, which switched back ({fb.new_primary_died}); {hint}",
            "flapped",
        )
    if fb.home_quiet_since is None:
        return Decision(False, f"run {fb.id} acts on {f.home} itself", "steady")
    failures = [what for what, since in f.failures if since > fb.home_quiet_since]
    if not failures:
        return Decision(False, f"{f.home} has not failed since run {fb.id}", "steady")
    if fb.ended_at is None:
        return Decision(
            True,
            f"flapped at {clock(f.now)}: {f.home} failed during the failback of run {fb.id}"
            f" ({failures[0]}); {hint}",
            "flapped",
        )
    if not (fb.succeeded or fb.went_home):
        return Decision(False, f"run {fb.id} never brought the service home", "steady")
    return Decision(
        True,
        f"flapped at {clock(f.now)}: {f.home} failed {human(f.now - fb.ended_at)} after the "
        f"failback of run {fb.id} (hold_down {human(f.hold_down)}); {hint}",
        "flapped",
    )


def abort_own_failback(f: FlapFacts) -> bool:
    """The primary site failed while the monitor's own failback has not reached its point
    of no return (and is not restarting that site itself): abort it (undo) rather than
    wait at its gates for a site that just proved unstable."""
    fb = f.failback
    if fb is None or fb.ended_at is not None or fb.by != "monitor" or fb.went_home:
        return False
    if fb.home_quiet_since is None:
        return False
    return any(since > fb.home_quiet_since for _, since in f.failures)


# --------------------------------------------------------------------------- fence on sight


@dataclass(frozen=True)
class FenceFacts:
    """A stale primary the monitor sees at ``site`` on this tick, and what it knows."""

    site: str
    routed: tuple[str, ...]
    """Routers and pools observed sending clients to the stale site."""
    seen: bool
    """Fenced (or found with nothing to fence) already since it became stale."""
    busy: str | None
    """What holds the service (a run, a run starting): runs route as their plans say."""
    retrying: str | None = None
    """Why the last fence of it did not succeed, while waiting to try again."""


def decide_fence(f: FenceFacts) -> Decision:
    """Fence a stale primary at once (promise 1, whatever the policy), once per episode,
    again whenever it is found routed; never while a run holds the service (a failback's
    new primary is "stale" until its last step records it, and runs route by plan)."""
    routed = ", ".join(f.routed)
    if f.busy is not None:
        return Decision(False, f"stale primary at {f.site}: {f.busy} holds the service", "busy")
    if f.seen and not f.routed:
        return Decision(False, f"stale primary at {f.site} is fenced", "fenced")
    if f.retrying is not None:
        return Decision(
            False, f"stale primary at {f.site}: fence retried soon ({f.retrying})", "retrying"
        )
    if f.routed:
        return Decision(True, f"stale primary at {f.site} is routed ({routed}): fencing", "go")
    return Decision(True, f"stale primary at {f.site}: fencing it (not routed)", "go")
