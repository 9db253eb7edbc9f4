"""The planner's own steps: gates (checks, stability, approval, observation) and the
final bookkeeping step. They belong to no driver: every procedure may use them."""

from __future__ import annotations

from typing import Any

from failback.model.plan import StepSpec


def checks_gate(use: str, site: str) -> StepSpec:
    """Declared checks of one kind (precheck | postcheck) for ``site``."""
    return StepSpec(
        id=use, title=f"{use}s for {site}", action="gate.checks", site=site, kind="gate",
        params={"use": use},
    )  # fmt: skip


def stability_gate(site: str, window_s: float) -> StepSpec:
    """``site`` healthy continuously for the stability window (any failure restarts it)."""
    return StepSpec(
        id="stability", title=f"{site} healthy for its stability window ({window_s:g}s)",
        action="gate.stability", site=site, kind="gate", params={"window_s": window_s},
    )  # fmt: skip


def approval_gate(site: str, question: str) -> StepSpec:
    return StepSpec(
        id="approve", title=f"approval to switch to {site}", action="gate.approval",
        kind="gate", params={"question": question}, why="policy: approval required",
    )  # fmt: skip


def clean_room_gate(site: str, mark: dict[str, Any]) -> StepSpec:
    """Compare ``site`` with its baseline and wait for a person, whatever the policy says
    (``failback.engine.clean_room``): the service was marked after a security incident."""
    return StepSpec(
        id="clean_room", title=f"clean room: {site} compared with its baseline, then approval",
        action="gate.clean_room", site=site, kind="gate",
        params={"marked_at": mark.get("at"), "reason": mark.get("reason") or ""},
        why="marked after_incident: nothing flows back to the site until a person has seen "
        "every difference from its baseline and approved",
    )  # fmt: skip


def incident_clear_step(mark: dict[str, Any]) -> StepSpec:
    """The last step of a failback that passed the clean room: clear the mark it was
    planned for (not one set again since)."""
    return StepSpec(
        id="incident_clear", title="clear the after_incident mark", action="incident.clear",
        params={"marked_at": mark.get("at"), "undo": False},
    )  # fmt: skip


def record_step(active_site: str, needs_resync: list[str]) -> StepSpec:
    """Record where the service runs now and which sites need a resync."""
    return StepSpec(
        id="record", title=f"record {active_site} as the active site", action="state.record",
        params={"active_site": active_site, "needs_resync": needs_resync},
    )  # fmt: skip


def observation_gate(home: str, away: str, db: str, window_s: float) -> StepSpec:
    """Watch the service at ``home`` after a failback; until the window passes, a failed
    gate or ``failback abort`` switches back with no loss (``failback.plan.revert``)."""
    return StepSpec(
        id="observe", title=f"observe {home} for {window_s:g}s (undo possible)",
        action="gate.observation", kind="gate",
        params={"window_s": window_s, "home": home, "away": away, "db": db},
        why="until the window passes, abort or a failed gate switches back with no loss",
    )  # fmt: skip


def approval_needed(policy_approval: str, override: bool | None) -> bool:
    return override if override is not None else policy_approval == "required"
