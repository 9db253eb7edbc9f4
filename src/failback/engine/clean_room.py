"""The clean_room gate and the step that clears the after_incident mark.

The gate measures the returning site again, exactly as its baseline declared (same
machines, files, globs and commands), lists every difference, and waits for a person:
always, even when the policy is automatic and even when nothing differs, because after
a security incident the decision to send data back to the site is a person's. The
monitor never approves a gate; ``failback approve RUN_ID`` (or the API) does.

What the person approved is what they saw: when the gate is approved it measures once
more, and if the differences are not the ones that were shown, it fails (the run rolls
back; nothing was resynced) instead of carrying on with something nobody looked at.
"""

from __future__ import annotations

from typing import Any

from failback.baseline.compare import Difference, compare, when
from failback.baseline.files import load_baseline
from failback.baseline.incident import INCIDENT_KEY, incident_mark
from failback.baseline.site import measure_declared
from failback.engine.run_context import Action, WaitingForApproval
from failback.errors import StepFailed

__all__ = ["CleanRoomGate", "ClearIncidentMark"]

SHOWN_KEY = "clean_room.shown"
"""Run value: the differences the question showed (what an approval approves)."""

QUESTION_LINES = 10
"""Differences named in the question itself; all of them are in the event's data, the
run's report and ``failback baseline diff SITE``."""


class CleanRoomGate(Action):
    name = "gate.clean_room"

    def check(self) -> bool:
        return False  # always measure: an approval is checked against a fresh look

    def apply(self) -> dict[str, Any] | None:
        site = str(self.spec.site)
        baseline = load_baseline(self.ctx.journal.state_dir, site)
        if baseline is None:
            raise StepFailed(
                f"no baseline of {site}: the clean room has nothing to compare it with",
                hint=f"record one only where {site} is known clean (`failback baseline record "
                f"{site}`), or clear the mark (`failback incident clear {self.ctx.service_name}`)",
            )
        found = compare(baseline, measure_declared(self.ctx.hosts, baseline["declared"]))
        lines = [d.line() for d in found]
        if self.ctx.journal.is_approved(self.ctx.run_id, self.spec.id):
            return self._approved(site, lines, found)
        self.ctx.remember(SHOWN_KEY, lines)
        self.ctx.measure(
            "clean_room.differences", float(len(found)), note=f"{site} against its baseline"
        )
        self.ctx.journal.add_event(
            "clean_room.compared",
            f"{site}: {len(found)} difference(s) from its baseline of "
            f"{when(baseline.get('recorded_at'))}",
            run_id=self.ctx.run_id, service=self.ctx.service_name, step_id=self.spec.id,
            data={"site": site, "baseline_recorded_at": baseline.get("recorded_at"),
                  "differences": [d.to_dict() for d in found]},
        )  # fmt: skip
        raise WaitingForApproval(self.spec.id, _question(site, baseline, found))

    def _approved(self, site: str, lines: list[str], found: list[Difference]) -> dict[str, Any]:
        shown = self.ctx.values.get(SHOWN_KEY)
        if shown is not None and sorted(shown) != sorted(lines):
            raise StepFailed(
                f"{site} changed after its differences were shown and approved: now "
                + ("; ".join(lines) or "no difference")
                + " (approved: "
                + ("; ".join(shown) or "no difference")
                + ")",
                hint="nothing was resynced; look again with `failback baseline diff "
                f"{site}`, then start the failback again",
            )
        return {"site": site, "differences": [d.to_dict() for d in found], "approved": True}


def _question(site: str, baseline: dict[str, Any], found: list[Difference]) -> str:
    since = f"its baseline of {when(baseline.get('recorded_at'))}"
    if not found:
        return (
            f"clean room: {site} matches {since}; after_incident, a person decides: "
            f"fail back to {site}?"
        )
    named = "; ".join(d.line() for d in found[:QUESTION_LINES])
    more = len(found) - QUESTION_LINES
    if more > 0:
        named += f"; and {more} more (failback baseline diff {site})"
    return (
        f"clean room: {site} differs from {since} in {len(found)} place(s): {named}. "
        f"Fail back to {site} anyway?"
    )


class ClearIncidentMark(Action):
    """Clear the mark this failback was planned for, once it got here: past the clean
    room, switched, and through the observation window. A switch back (the window
    failed) keeps it, and so does a mark set again during the run."""

    name = "incident.clear"

    def _mark(self) -> dict[str, Any] | None:
        return incident_mark(self.ctx.journal.service_state(self.ctx.service_name))

    def check(self) -> bool:
        mark = self._mark()
        return mark is None or mark.get("at") != self.spec.params.get("marked_at")

    def apply(self) -> dict[str, Any] | None:
        if self.ctx.values.get("reverted_because"):
            return {"kept": "the failback switched back: the mark stays"}
        service = self.ctx.service
        self.ctx.journal.update_service_data(
            self.ctx.service_name, service.primary_site, **{INCIDENT_KEY: None}
        )
        self.ctx.journal.add_event(
            "incident.cleared",
            f"{self.ctx.service_name}: after_incident mark cleared: the failback passed "
            "the clean room and succeeded",
            run_id=self.ctx.run_id, service=self.ctx.service_name, step_id=self.spec.id,
        )  # fmt: skip
        return {"cleared": True}
