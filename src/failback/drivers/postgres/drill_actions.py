"""The steps of a drill on PostgreSQL: preflight, copy, start, promote, write, checks,
keep, remove (``drill_copy.py`` does the work; these make it idempotent and undoable).

Every step that leaves something on the standby's machine undoes it: the copy step
removes the copy (stopping it first), the start step stops it. So ``failback abort``
at any point, or a failure, or a SIGKILL of the runner followed by ``abort``/``resume``,
leaves nothing behind. A drill has no point of no return: nothing it does touches
production.

A drill yields to production: when the service fails over to the drilled site while
the drill runs (its standby becomes the primary), the steps that are still to prove
something fail ("the drill yields"), the run rolls back and the copy is removed — it
would compete with the new primary for its machine's disk, memory and I/O. Once the
proof is complete (the write and the checks passed), only the keep is cut short.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from failback.drivers.base import Action, StepContext
from failback.drivers.postgres import drill_copy as dc
from failback.drivers.postgres.conn import connect
from failback.drivers.postgres.errors import PgError
from failback.drivers.postgres.node import PgNode, node_from_component
from failback.drivers.postgres.node_facts import observe
from failback.errors import FailbackError, PlanRefused, StepFailed
from failback.hosts import Host
from failback.model.plan import StepSpec


def drill_problem(host: Host, node: PgNode, copy: dc.DrillCopy) -> tuple[str, str] | None:
    """Why a drill of ``node`` (a standby) must not start now, as (message, hint); None
    when it may. Read-only: the CLI asks before creating the run, the preflight again."""
    seen = observe(host, node)
    if not seen.reachable:
        return (
            f"the standby at {node.site} is not healthy: {seen.error or seen.role}",
            "a drill copies a healthy standby; `failback status` shows why it is not",
        )
    if seen.role != "standby":
        return (
            f"{node.site} is {seen.role}, not a standby: a drill copies a standby",
            "drill the site that is not active (`failback status`)",
        )
    if not seen.streaming:
        return (
            f"the standby at {node.site} is not streaming from a primary",
            "a drill of a standby that does not follow production proves nothing; fix "
            "replication first (`failback status`)",
        )
    try:
        with connect(node, timeout=5) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_tablespace WHERE spcname NOT IN"
                " ('pg_default', 'pg_global')"
            ).fetchone()
    except PgError as exc:
        return exc.message, exc.hint or "check the credentials of the postgres component"
    if row and int(row[0]) > 0:
        return (
            f"the standby at {node.site} has {row[0]} tablespace(s) outside its data directory:"
            " a drill cannot copy them beside production's yet",
            "drills support clusters without extra tablespaces",
        )
    parent_real = host.realpath(copy.copy_dir.rsplit("/", 1)[0] or "/")
    for production in (node.pgdata, node.conf_dir):
        if production and _inside(parent_real, host.realpath(production)):
            return (
                f"{parent_real} is inside the standby's {production} on {host.name}: the copy "
                "would grow inside production's own files",
                "give --dir a directory outside the data and configuration directories",
            )
    if not dc.parent_usable(host, copy):
        parent = copy.copy_dir.rsplit("/", 1)[0]
        return (
            f"{parent} on {host.name} is not a directory the OS user {node.os_user!r} can use",
            "give --dir a directory on the standby's machine that user can reach",
        )
    space = dc.space_for(host, copy)
    if not space.enough:
        mb = 1024 * 1024
        return (
            f"not enough free space for the drill's copy on {host.name}: it needs about "
            f"{space.need_bytes // mb} MB and {space.reserve_bytes // mb} MB must stay free, "
            f"{space.available_bytes // mb} MB are available in "
            f"{copy.copy_dir.rsplit('/', 1)[0]}",
            "free space there, or put the copy on another filesystem of that machine with "
            "--dir DIR",
        )
    return None


def _inside(path: str, directory: str) -> bool:
    """``path`` is ``directory`` or below it (both real paths)."""
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def precheck(settings: Any, site: str, host: Host, parent: str | None) -> dict[str, Any]:
    """``Driver.drill_precheck``: PlanRefused, or the sizes found."""
    node = node_from_component(settings, site, host)
    copy = dc.DrillCopy(node, 0, parent)
    try:
        problem = drill_problem(host, node, copy)
    except FailbackError as exc:
        raise PlanRefused(exc.message, hint=exc.hint) from exc
    if problem is not None:
        raise PlanRefused(problem[0], hint=problem[1])
    return dc.space_for(host, copy).to_dict()


class DrillAction(Action):
    """Base: the standby's node, its copy for this run, and the production check."""

    def __init__(self, spec: StepSpec, ctx: StepContext) -> None:
        super().__init__(spec, ctx)
        if spec.component is None or spec.site is None:
            raise FailbackError(f"step {spec.id}: a drill step needs a component and a site")
        self.settings = ctx.service.components[spec.component]
        self.node = node_from_component(self.settings, spec.site, self.host())
        self.copy = dc.DrillCopy(self.node, ctx.run_id, spec.params.get("parent"))

    @property
    def site(self) -> str:
        return self.spec.site or ""

    def production_took_site(self) -> str | None:
        """Why the drill must yield (the service failed over to the drilled site), or
        None. Read from the journal (the failover's record) and the standby itself."""
        if self.ctx.service_facts().get("active_site") == self.site:
            return f"the service is active at {self.site} now"
        try:
            with connect(self.node, timeout=2) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        except PgError:
            return None  # a standby that does not answer is production's trouble, not ours
        if row is not None and not row[0]:
            return f"the standby at {self.site} was promoted (a failover)"
        return None

    def yield_to_production(self) -> None:
        reason = self.production_took_site()
        if reason is not None:
            raise StepFailed(
                f"{reason}: the drill yields to production and removes its copy",
                hint="run the drill again once the service is protected by a standby again",
            )


class DrillPreflight(DrillAction):
    """Gate: the standby is healthy and streaming, and its machine has room for the copy."""

    name = "postgres.drill_preflight"

    def apply(self) -> dict[str, Any] | None:
        self.yield_to_production()
        problem = drill_problem(self.host(), self.node, self.copy)
        if problem is not None:
            raise StepFailed(problem[0], hint=problem[1])
        seen = observe(self.host(), self.node)
        if seen.lag_bytes is not None:
            self.ctx.measure("standby_lag_bytes", seen.lag_bytes, "bytes",
                             note="how far the drilled standby was behind its primary")  # fmt: skip
        space = dc.space_for(self.host(), self.copy)
        return {"copy_dir": self.copy.copy_dir, **space.to_dict()}


class DrillCopyStep(DrillAction):
    """pg_basebackup of the standby beside it; undo removes the copy (stopped first)."""

    name = "postgres.drill_copy"
    has_undo = True

    def _key(self) -> str:
        return f"drill_copy.{self.site}"

    def check(self) -> bool:
        return bool(self.ctx.values.get(self._key())) and dc.copied(self.host(), self.copy)

    def apply(self) -> dict[str, Any] | None:
        self.yield_to_production()
        host = self.host()
        if host.exists(self.copy.copy_dir):
            if not self.ctx.values.get(self._key()):
                raise StepFailed(
                    f"{self.copy.copy_dir} already exists on {host.name} and is not this drill's",
                    hint="remove it if it is a leftover of another failback state directory",
                )
            self.ctx.log(f"removing the copy an interrupted attempt left: {self.copy.copy_dir}")
            dc.remove(host, self.copy)
        # before the directory exists: an undo after a crash knows it may remove it
        self.ctx.remember(self._key(), self.copy.copy_dir)
        self.ctx.progress(f"pg_basebackup of {self.site}'s standby into {self.copy.copy_dir}")
        seconds = dc.make_copy(host, self.copy)
        self.ctx.measure("drill_copy_s", seconds, "s", note="pg_basebackup of the standby")
        return {"copy_dir": self.copy.copy_dir, "copy_s": round(seconds, 3)}

    def verify(self) -> None:
        if not dc.copied(self.host(), self.copy):
            raise StepFailed(f"the drill's copy at {self.copy.copy_dir} is not complete")

    def undo(self) -> dict[str, Any] | None:
        if not self.ctx.values.get(self._key()):
            return {"removed": None}  # never began: whatever is there is not ours
        return dc.remove(self.host(), self.copy)


class DrillStart(DrillAction):
    """Start the copy isolated (no TCP, private socket, no replication, no archiving)."""

    name = "postgres.drill_start"
    has_undo = True

    def check(self) -> bool:
        return dc.postmaster_status(self.host(), self.copy) in ("standby", "ready") and (
            dc.copy_postmaster(self.host(), self.copy) is not None
        )

    def apply(self) -> dict[str, Any] | None:
        self.yield_to_production()
        seconds = dc.start_copy(self.host(), self.copy)
        self.ctx.measure("drill_start_s", seconds, "s", note="the copy replayed and accepts reads")
        return {"socket_dir": self.copy.socket_dir, "port": self.copy.port}

    def verify(self) -> None:
        if not self.check():
            raise StepFailed("the drill's copy does not run as a standby")

    def undo(self) -> dict[str, Any] | None:
        return {"stopped_pid": dc.stop_copy(self.host(), self.copy)}


class DrillPromote(DrillAction):
    """Promote the copy (``pg_ctl promote``): what a failover would do to the standby."""

    name = "postgres.drill_promote"

    def check(self) -> bool:
        return dc.is_primary(self.host(), self.copy)

    def apply(self) -> dict[str, Any] | None:
        self.yield_to_production()
        seconds = dc.promote_copy(self.host(), self.copy)
        self.ctx.remember("drill_promoted_at", time.time())
        self.ctx.measure("drill_promote_s", seconds, "s", note="pg_ctl promote of the copy")
        return {"promote_s": round(seconds, 4)}

    def verify(self) -> None:
        state = dc.recovery_state(self.host(), self.copy)
        if state != "f":
            raise StepFailed(
                "the drill's copy is not a primary after its promotion"
                f" ({'still in recovery' if state == 't' else state})",
                hint=f"see its server log {self.copy.log_file}",
            )


class DrillWrite(DrillAction):
    """A write in the promoted copy, read back: the drill's RTO ends here."""

    name = "postgres.drill_write"

    def apply(self) -> dict[str, Any] | None:
        self.yield_to_production()
        token = f"drill{self.ctx.run_id}-{secrets.token_hex(4)}"
        dc.verified_write(self.host(), self.copy, token)
        verified_at = time.time()
        if "drill_rto_s" not in self.ctx.values:
            rto = verified_at - self.ctx.run_started_at()
            self.ctx.remember("drill_rto_s", rto)
            self.ctx.measure(
                "drill_rto_s",
                rto,
                "s",
                note="from the start of the drill to the first verified write on the copy"
                " (the copy's making included)",
            )
            promoted = self.ctx.values.get("drill_promoted_at")
            if promoted:
                self.ctx.measure("drill_promote_to_write_s", verified_at - float(promoted), "s")
        return {"token": token}


class DrillChecks(DrillAction):
    """The service's sql checks, aimed at the copy; the others are listed as skipped."""

    name = "postgres.drill_checks"

    def apply(self) -> dict[str, Any] | None:
        self.yield_to_production()
        results = []
        for check in self.spec.params.get("checks", []):
            started = time.monotonic()
            answer = dc.psql(
                self.host(),
                self.copy,
                f"{check['query'].rstrip().rstrip(';')};\n",
                user=self.node.user,
                dbname=self.node.dbname,
                timeout=float(check.get("timeout_s", 10)),
            )
            ok = answer.ok
            detail = (answer.stdout.strip().splitlines() or ["no row"])[0] if ok else answer.tail()
            results.append(
                {
                    "name": check["name"],
                    "ok": ok,
                    "detail": detail[:200],
                    "duration_s": round(time.monotonic() - started, 4),
                    "target": f"the drill's copy ({self.copy.socket_dir})",
                }
            )
            self.ctx.event(
                "drill.check",
                f"check {check['name']} on the copy: {'passed' if ok else 'FAILED'} ({detail})",
                data=results[-1],
            )
        for skipped in self.spec.params.get("skipped", []):
            self.ctx.event(
                "drill.check_skipped",
                f"check {skipped['name']} ({skipped['type']}) skipped: {skipped['reason']}",
                data=skipped,
            )
        failed = [r for r in results if not r["ok"]]
        if failed:
            raise StepFailed(
                "checks failed on the drill's copy: "
                + "; ".join(f"{r['name']}: {r['detail']}" for r in failed),
                hint="the standby's data or schema would not serve after a takeover; look "
                "at the check's query and the copy's log",
            )
        return {"checks": results, "skipped": self.spec.params.get("skipped", [])}


class DrillKeep(DrillAction):
    """Keep the promoted copy for ``keep_for_s`` so a person can look at it."""

    name = "postgres.drill_keep"

    def apply(self) -> dict[str, Any] | None:
        keep = float(self.spec.params.get("keep_for_s", 0))
        until = self.ctx.values.get("drill_keep_until")
        if until is None:  # a resumed keep ends when the first one would have
            until = time.time() + keep
            self.ctx.remember("drill_keep_until", until)
        hint = self.copy.connect_hint(self.node.user, self.node.dbname)
        self.ctx.log(
            f"the drill's copy stays up for {keep:g}s on {self.host().name}; connect with: {hint}",
            socket_dir=self.copy.socket_dir,
            port=self.copy.port,
        )
        cut: list[str] = []

        def over() -> tuple[bool, str]:
            left = float(until) - time.time()
            reason = self.production_took_site()
            if reason is not None:
                cut.append(reason)
                return True, reason
            return left <= 0, f"kept; {max(0.0, left):.0f}s left ({hint})"

        self.ctx.wait_until(over, timeout=keep + 60, interval=0.5, what="keeping the copy")
        if cut:
            self.ctx.log(f"keep cut short: {cut[0]}; the copy is removed now")
        return {"socket_dir": self.copy.socket_dir, "port": self.copy.port, "connect": hint,
                "cut_short": cut[0] if cut else None}  # fmt: skip


class DrillRemove(DrillAction):
    """Stop the copy and delete it and its socket directory: nothing is left."""

    name = "postgres.drill_remove"

    def check(self) -> bool:
        return not dc.leftovers(self.host(), self.copy)

    def apply(self) -> dict[str, Any] | None:
        return dc.remove(self.host(), self.copy)

    def verify(self) -> None:
        left = dc.leftovers(self.host(), self.copy)
        if left:
            raise StepFailed(f"the drill's copy is not gone: {', '.join(left)} still there")


DRILL_ACTIONS: tuple[type[Action], ...] = (
    DrillPreflight,
    DrillCopyStep,
    DrillStart,
    DrillPromote,
    DrillWrite,
    DrillChecks,
    DrillKeep,
    DrillRemove,
)
