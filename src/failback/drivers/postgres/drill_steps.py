"""The steps of a drill of one PostgreSQL standby (``failback drill``), in order.

Copy -> start isolated -> promote -> a verified write (the drill's RTO) -> the checks
aimed at the copy -> keep for a person -> remove. No step touches production, so the
plan has no point of no return: any failure, or an abort, undoes what was made.
"""

from __future__ import annotations

from failback.drivers.drilling import DrillRequest
from failback.model.plan import StepSpec


def drill_steps(r: DrillRequest) -> list[StepSpec]:
    site, comp = r.site, r.component
    common = {"parent": r.parent} if r.parent else {}

    def step(
        name: str, title: str, action: str, why: str | None = None, **params: object
    ) -> StepSpec:
        return StepSpec(
            id=f"drill-{name}-{site}", title=title, action=f"postgres.drill_{action}",
            component=comp, site=site, params={**common, **params}, why=why,
        )  # fmt: skip

    steps = [
        step("preflight", f"preflight: {site} is a healthy streaming standby with room for a copy",
             "preflight", why="a drill never disturbs production: refused before anything is made"),
        step("copy", f"copy {site}'s standby (pg_basebackup, beside it)", "copy",
             why="the copy is made from the standby: the primary is not touched"),
        step("start", "start the copy isolated (no TCP, private socket, no replication)", "start",
             why="no client and no replication can reach the copy, nor it production"),
        step("promote", "promote the copy", "promote"),
        step("write", "verify a write in the promoted copy (the drill's RTO)", "write"),
        step("checks", f"run the service's checks against the copy ({len(r.checks)} aimed,"
             f" {len(r.skipped)} skipped)", "checks",
             checks=[{"name": c.name, "query": c.query, "timeout_s": c.timeout_s}
                     for c in r.checks],
             skipped=[s.to_dict() for s in r.skipped]),
    ]  # fmt: skip
    if r.keep_for_s > 0:
        steps.append(
            step(
                "keep",
                f"keep the copy for {r.keep_for_s:g}s for a person to look",
                "keep",
                keep_for_s=r.keep_for_s,
            )
        )
    steps.append(
        step(
            "remove",
            "stop and remove the copy and its socket directory",
            "remove",
            why="a drill leaves nothing behind",
        )
    )
    return steps
