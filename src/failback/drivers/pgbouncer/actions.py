"""Plan steps on PgBouncer: hold clients' queries (PAUSE), then retarget and RESUME.

Against HAProxy's fence, clients see refused connections; against PAUSE, they see a
stall and no error (transaction pooling; see the PgBouncer note in docs/concepts.md).
"""

from __future__ import annotations

import time
from typing import Any

from failback.drivers.base import Action, StepContext
from failback.drivers.pgbouncer.admin import Pgbouncer
from failback.drivers.pgbouncer.target import database_lines, pgbouncer_of
from failback.errors import FailbackError, StepFailed
from failback.model.plan import StepSpec

LOGIN_RETRY = "server_login_retry"
"""PgBouncer's pause between connection attempts after a failed one (per pool)."""
LIFT_WAIT_S = 1.0
"""How long a RESUME with the backoff lifted waits for a first server connection."""


class PoolAction(Action):
    def __init__(self, spec: StepSpec, ctx: StepContext) -> None:
        super().__init__(spec, ctx)
        if spec.component is None or spec.site is None:
            raise FailbackError(f"step {spec.id}: a pgbouncer step needs a component and a site")
        self.component = ctx.service.components[spec.component]
        self.bouncer: Pgbouncer = pgbouncer_of(self.component)
        self.databases: list[str] = list(self.component.options.databases)

    def _pointing_at(self, site: str) -> bool:
        where = self.component.sites[site]
        targets = self.bouncer.targets()
        return all(
            n in targets and targets[n].host == where.host and targets[n].port == where.port
            for n in self.databases
        )

    def _paused(self) -> bool:
        targets = self.bouncer.targets()
        return all(targets.get(n) is not None and targets[n].paused for n in self.databases)


class PoolPause(PoolAction):
    """PAUSE the pooled databases: from now on clients' queries wait (writes stop).

    Undo RESUMEs them (still pointing at the old primary): a rollback before any
    promotion gives clients their primary back with a stall instead of errors.
    """

    name = "pgbouncer.pause"
    has_undo = True

    def check(self) -> bool:
        only = self.spec.params.get("only_if_pointing_at")
        if only and not self._pointing_at(only):
            self.ctx.log(f"{self.spec.component} no longer points at {only}: nothing to hold")
            return True
        return self._paused()

    def apply(self) -> dict[str, Any] | None:
        if self.spec.params.get("stop_writes"):
            self.ctx.writes_stopped(self.spec.site or "")
        kill_after = self.spec.params.get("kill_after_s")
        killed = self.bouncer.pause(
            self.databases,
            timeout=float(self.component.options.pause_timeout),
            kill_after=None if kill_after is None else float(kill_after),
        )
        if killed:
            self.ctx.event(
                "pool.killed",
                f"{self.spec.component}: PAUSE did not finish within {kill_after}s on a "
                f"failed site: KILLed {', '.join(killed)} (every client connection of it "
                "dropped, idle ones too; new ones wait for the RESUME)",
                data={"databases": killed},
            )
        return {"paused": self.databases, "killed": killed}

    def verify(self) -> None:
        only = self.spec.params.get("only_if_pointing_at")
        if not (only and not self._pointing_at(only)) and not self._paused():
            raise StepFailed(f"{self.spec.component}: {self.databases} not paused after PAUSE")
        # applied now or found in place: the site's database fence may rely on it
        self.ctx.remember(f"entry_fenced.{self.spec.site}", True)

    def undo(self) -> dict[str, Any] | None:
        self.bouncer.resume(self.databases)
        self.ctx.writes_restored(self.spec, time.time())
        return {"resumed": self.databases}


class PoolRoute(PoolAction):
    """Point the pooled databases at the site's server, RELOAD, then RESUME.

    Clients' held queries run on the new primary; the time from the PAUSE to the
    RESUME is the write-unavailability (measured when ``measure_unavailability``).

    ``lift_login_backoff`` (unplanned failovers): a server that died on a live machine
    refuses PgBouncer's connection attempts until the PAUSE, and after a refused one
    PgBouncer opens no connection for that pool for ``server_login_retry`` (15 s by
    default) — also after a RELOAD has pointed it elsewhere: the pool outlives the
    RELOAD. Held clients would wait up to that long after the RESUME (measured: the
    first write up to 1 s after it with the lab's 1 s). So the RESUME runs with
    ``server_login_retry`` SET to 0 (after the retarget's RELOAD) until the pools have a
    server connection, or ``LIFT_WAIT_S`` at most when no client asks for one; then a
    RELOAD puts back what PgBouncer's file says (or its default): nothing to remember,
    and a runner that died in between has it done by ``verify`` on resume. The setting
    is PgBouncer-wide: for that moment a pool of another database whose server is down
    is retried without pause.
    """

    name = "pgbouncer.route"

    def _pointing_here(self) -> bool:
        return self._pointing_at(self.spec.site or "")

    def _lifts(self) -> bool:
        return bool(self.spec.params.get("lift_login_backoff"))

    def check(self) -> bool:
        done = self._pointing_here() and not any(
            t.paused for n, t in self.bouncer.targets().items() if n in self.databases
        )
        if done and self.ctx.writes_resume_unrecorded(self.spec.site or ""):
            self.ctx.writes_resumed(self.spec, time.time(), interrupted=True)
        return done

    def apply(self) -> dict[str, Any] | None:
        where = self.component.sites[self.spec.site]
        self.bouncer.retarget(self.host(), database_lines(self.component, self.spec.site))
        self.bouncer.wait_target(self.databases, where.host, int(where.port))
        lift = self._lifts()
        if lift:
            self.bouncer.set_setting(LOGIN_RETRY, "0")
        try:
            self.bouncer.resume(self.databases)
            self.ctx.writes_resumed(self.spec, time.time())
            if lift:
                # PgBouncer launches a server connection for a held client in its next
                # loop (a launch clears the backoff once it succeeds); none within
                # LIFT_WAIT_S: no client asked for one
                self.bouncer.wait_server_connection(self.databases, LIFT_WAIT_S)
        finally:
            if lift:
                self.bouncer.command("RELOAD")  # server_login_retry: the file's again
        return {"target": f"{where.host}:{where.port}", "resumed": self.databases}

    def verify(self) -> None:
        if self._lifts() and self.bouncer.setting(LOGIN_RETRY) == "0":
            # a runner died between the lift and its RELOAD: PgBouncer's file again
            self.bouncer.command("RELOAD")
        if not self._pointing_here():
            raise FailbackError(f"PgBouncer does not point at {self.spec.site} after the switch")
