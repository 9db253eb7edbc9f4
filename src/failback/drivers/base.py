"""The one interface every driver implements, and what its steps may use.

A driver is what failback knows about one *kind* of component (a PostgreSQL pair, an
HAProxy backend, a PgBouncer, operator scripts...). It declares, in one place:

* ``name`` — the ``driver:`` value of the topology file;
* ``Settings`` — the pydantic model of such a component (``options`` and ``sites``): the
  config package assembles the component union from every driver's ``Settings``;
* ``role(settings)`` — the part the component plays in a service (``Role``). The planner,
  the monitor, the status and the metrics ask for roles and capabilities, never for a
  driver by name;
* ``observe(...)`` — read-only facts about the component at one site;
* ``actions`` — the step implementations (``Action`` subclasses) its plan steps name;
* the step builders the planner asks for, phase by phase (``steps``).

The catalog (``failback.drivers.catalog``) lists the drivers: adding one is one folder
and one line there. ``drivers/README.md`` walks through writing one.

A step's code receives a ``StepContext`` — measure, remember, event, progress, wait —
never the journal: a driver cannot corrupt a run's record, and the store behind the
context can change (SQLite today, etcd for a control plane) without touching drivers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from enum import StrEnum
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from failback.drivers.drilling import DrillRequest
from failback.drivers.planning import PlanCheck, PlanRequest
from failback.hosts import Host
from failback.model.component import ComponentSettings
from failback.model.observed import ComponentObservation
from failback.model.plan import StepSpec


class AbortRequested(Exception):
    """Another process asked (``failback abort``) to stop this run; waits raise it."""


class CheckOutcome(Protocol):
    """The result of one declared check (``failback.observe.checks.CheckResult``)."""

    name: str
    ok: bool
    detail: str


OBSERVE_DEADLINE: ContextVar[float | None] = ContextVar("failback_observe_deadline", default=None)
"""When the observation under way must be done by (``time.monotonic()``), if anyone
says: the monitor's probes do, so that an observation never outlives its probe's
timeout because one of its *optional* parts waited (a slow sshd beside a serving
database must not look like a dead one)."""


@contextmanager
def observing_within(seconds: float) -> Iterator[None]:
    """Observations made in this block should finish within ``seconds``."""
    token = OBSERVE_DEADLINE.set(time.monotonic() + max(0.0, seconds))
    try:
        yield
    finally:
        OBSERVE_DEADLINE.reset(token)


def observe_time_left(wanted: float) -> float:
    """``wanted`` seconds, or less when the observation under way must finish sooner."""
    deadline = OBSERVE_DEADLINE.get()
    if deadline is None:
        return wanted
    return max(0.0, min(wanted, deadline - time.monotonic()))


class Role(StrEnum):
    """The part a component plays in a service; what the planner orders steps by."""

    DATABASE = "database"
    """Holds the service's data, replicated between two sites; one site is primary."""
    POOL = "pool"
    """A connection pooler in front of the database: holds clients during a switch
    (paused first, resumed last)."""
    ROUTER = "router"
    """Sends clients' write connections to exactly one site: fenced, then re-pointed."""
    TIER = "tier"
    """A stateless tier whose traffic is shifted between sites in weighted steps."""
    OPERATOR = "operator"
    """Driven by the operator's own commands per action (fence, promote, sync...)."""


class Capability(StrEnum):
    """What a driver can do beyond its role's steps; others ask for a capability."""

    SQL = "sql"
    """Runs the ``sql`` declared check against the component."""
    WAL_POSITION = "wal-position"
    """Its observation reports the primary's position (``data.current_lsn``), recorded
    by the monitor so that an unplanned failover can say what may be lost."""
    SYNCHRONOUS_REPLICATION = "synchronous-replication"
    """Can switch its primary between synchronous and asynchronous commits (the
    monitor's zero-loss mode)."""
    CLIENT_ENDPOINT = "client-endpoint"
    """Knows the host:port clients write through (a write there verifies a switch)."""
    SELF_FENCE = "self-fence"
    """Can make its primary at one site refuse writes from that site itself, without a
    run or the journal (a control plane node cut off from etcd), and lift that fence."""
    DIVERGED_CAPTURE = "diverged-capture"
    """Keeps, on the primary, what it needs to read the commits an unplanned failover
    leaves behind (the monitor calls ``keep_capture`` every few seconds)."""
    TRAFFIC_HEALTH = "traffic-health"
    """Judges a stateless tier's health under real traffic at one site (errors, response
    time, health check): the failback's observation window watches it."""
    DRILL = "drill"
    """Can rehearse a takeover without touching production (``failback drill``): an
    isolated, writable copy of a standby, promoted and checked, then removed
    (``drill_precheck``, ``drill_steps``; ``drivers/drilling.py``)."""


TrafficWatch = Callable[[], list[str]]
"""A watch started on one site of a stateless tier: each call returns the problems seen
since it started (an empty list while the site serves well)."""


class StepContext(Protocol):
    """What a step may use while it runs: never the journal itself.

    Everything written goes through these methods, which journal it durably before they
    return (a crash right after still finds it), and attribute it to the run and step.
    """

    run_id: int
    service_name: str
    service: Any
    """The service's validated settings (``failback.config.Service``): its policy, its
    components' settings by name."""
    values: Mapping[str, Any]
    """Values remembered by earlier steps of the run (``remember``)."""
    options: Mapping[str, Any]
    """How the run was started (``from_site``, ``to_site``, ``by``...)."""

    def host_for(self, component: str | None, site: str | None) -> Host:
        """The machine ``component`` runs on at ``site`` (the topology's ``runs_on``),
        connected once per run. Process and file actions go there; network actions
        (SQL, admin sockets over TCP) need no host."""

    def remember(self, key: str, value: Any) -> None:
        """Keep a value for later steps, durably (it survives a crash and resume)."""

    def keep_diverged(self, capture: dict[str, Any]) -> None:
        """Keep what a returning site committed after the fork (every row), durably,
        beside the run: ``failback diverged RUN_ID`` prints it."""

    def ask_approval(self, step_id: str, question: str) -> None:
        """Return once a person approved ``step_id`` (``failback approve``); until then
        the run stops here, waiting, with ``question`` shown."""

    def measure(
        self, name: str, value: float | None, unit: str | None = None, note: str | None = None
    ) -> None:
        """Record a measurement for the run's report."""

    def log(self, message: str, **data: Any) -> None:
        """A line for the person following the run (journaled as a ``log`` event)."""

    def event(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        """A named event of this run and step (``sync.relaxed``, ``command.output``...)."""

    def progress(self, message: str, fraction: float | None = None) -> None:
        """Show where a long step is (not journaled)."""

    def wait_until(
        self,
        predicate: Callable[[], tuple[bool, str]],
        *,
        timeout: float,
        interval: float = 0.5,
        what: str,
    ) -> str:
        """Poll ``predicate`` until done; StepFailed after ``timeout``; honours abort."""

    def abort_requested(self) -> bool:
        """True once ``failback abort`` asked this run to stop."""

    def run_checks(self, check_type: str, site: str) -> list[CheckOutcome]:
        """Run the service's declared checks of ``check_type`` (``http``...) that speak
        for ``site``; never raises (a failing check is a result)."""

    def run_started_at(self) -> float:
        """When the run was created (epoch seconds): RTO is measured from there."""

    def service_facts(self) -> Mapping[str, Any]:
        """What is recorded about the service (active site, needs-resync, the primary's
        last seen position...): read-only."""

    def mark_in_sync(self, site: str) -> None:
        """``site`` was resynced and follows the primary again: it no longer needs a resync."""

    def set_run_status(self, status: str, hint: str | None = None) -> None:
        """Show a run-level state while a step works (``observing``)."""

    def writes_stopped(self, site: str) -> None:
        """The first router stops sending writes to ``site``: write-unavailability starts."""

    def writes_resumed(self, spec: StepSpec, at: float, *, interrupted: bool = False) -> None:
        """The last router sends writes to ``spec.site`` again: measure the window."""

    def writes_restored(self, spec: StepSpec, at: float) -> None:
        """A rollback sends writes back to where this run had stopped them."""

    def writes_resume_unrecorded(self, site: str) -> bool:
        """True while no step has recorded that writes resumed at ``site``."""


class Action:
    """The code behind a plan step's ``action`` name.

    ``check`` (already done?), ``apply``, ``verify`` and, where one exists, ``undo``.
    They must be idempotent: after a crash the engine calls ``check`` to learn whether
    an interrupted ``apply`` took effect, and re-applies only when it did not.
    """

    name: ClassVar[str]
    has_undo: bool = False
    can_check: bool = True
    """False when ``check`` cannot tell whether the effect is in place (a command with no
    ``check:``): a step interrupted while applying then waits for a person instead of
    being applied a second time."""

    def __init__(self, spec: StepSpec, ctx: StepContext) -> None:
        self.spec = spec
        self.ctx = ctx

    def host(self, site: str | None = None) -> Host:
        """The machine this step's component runs on at ``site`` (default: the step's
        site). Connected on first use, kept open for the rest of the run."""
        return self.ctx.host_for(self.spec.component, site or self.spec.site)

    def check(self) -> bool:
        """True when the step's effect is already in place (nothing to apply)."""
        return False

    def apply(self) -> dict[str, Any] | None:
        """Make the effect happen. Returns output kept in the journal."""
        raise NotImplementedError

    def verify(self) -> None:
        """Raise StepFailed unless the effect is really in place."""

    def undo(self) -> dict[str, Any] | None:
        """Reverse the effect (only called when ``has_undo``)."""
        raise NotImplementedError

    def undone(self) -> bool | None:
        """Asked after the process died inside ``undo``: True only when the undo is
        *proved* to have taken effect (the engine does not run it a second time); None
        (or False) when the step cannot tell: the undo runs again. A failing forward check
        is no proof (a machine that does not answer fails it too)."""
        return None


SettingsT = TypeVar("SettingsT", bound=ComponentSettings)
"""The settings model of one driver (``Driver[PostgresComponent]``...)."""


class Driver(Generic[SettingsT]):
    """One kind of component. Subclass it, fill in the class attributes, add it to the
    catalog. Methods have safe defaults: a driver that takes no part in a phase
    contributes no step to it."""

    name: ClassVar[str]
    """The ``driver:`` value in the topology file."""
    Settings: ClassVar[type[ComponentSettings]]
    """The component's settings model; its ``driver`` field is ``Literal[name]``."""
    actions: ClassVar[tuple[type[Action], ...]] = ()
    """Every step implementation this driver's steps name."""
    capabilities: ClassVar[frozenset[Capability]] = frozenset()

    def role(self, settings: SettingsT) -> Role:
        """The part a component with these settings plays (may depend on them)."""
        raise NotImplementedError

    def observe(
        self, host: Host, service: str, name: str, settings: SettingsT, site: str
    ) -> ComponentObservation:
        """Read-only facts about the component at ``site``. Never raises for a component
        that is down or refuses us: the observation says so (``healthy=False``)."""
        raise NotImplementedError

    def observe_at_hand(
        self, service: str, name: str, settings: SettingsT, site: str
    ) -> ComponentObservation | None:
        """What ``observe`` would say now, made only from an answer another probe
        received a moment ago (``failback.drivers.kept``: a server many services share),
        or None (the default: there is none, or this driver shares nothing).

        Called on the monitor's event loop before a probe is handed to a thread: it must
        not block (no I/O, no waiting for an answer under way) and must never share a
        failure. A probe's result from it is as fresh as ``observe`` would share."""
        return None

    def steps(self, request: PlanRequest) -> list[StepSpec]:
        """The steps this component contributes to one phase of a plan (none by default)."""
        return []

    def check_plan(self, check: PlanCheck) -> list[str]:
        """Refuse (raise ``failback.errors.PlanRefused``) when what is observed makes the
        run unsafe for this component; else return notes for the plan (none by default).

        Only the driver knows what makes its component unsafe to switch (a PostgreSQL
        site that was never resynced, a different cluster...); the planner asks."""
        return []

    def client_endpoint(self, settings: SettingsT) -> str | None:
        """host:port clients write through, for drivers with CLIENT_ENDPOINT."""
        return None

    # Capabilities: the monitor, the observer and the engine's gates ask for these only
    # when the driver declares the capability (``catalog.has_capability``); the defaults
    # say "cannot" instead of guessing.

    def run_sql(self, settings: SettingsT, site: str, query: str, timeout: float) -> str:
        """SQL: run a declared ``sql`` check's query at ``site`` within ``timeout`` seconds
        (connecting and running); what it answered. Raises when the query fails (the check
        then fails with that message)."""
        raise NotImplementedError(f"the {self.name} driver cannot run SQL")

    def zero_loss_setting(self, settings: SettingsT) -> str:
        """SYNCHRONOUS_REPLICATION: the setting under which a primary waits for one
        standby before it acknowledges a commit, whichever site is primary."""
        raise NotImplementedError(f"the {self.name} driver has no synchronous replication")

    def synchronous_setting(
        self, settings: SettingsT, site: str, observed: Mapping[str, Any] | None = None
    ) -> str:
        """SYNCHRONOUS_REPLICATION: the setting ``site``'s server uses ('' when it waits
        for no standby: asynchronous) — as ``observed`` (that server's observation data)
        shows it when it does, so a monitor never asks a server that may have just died;
        else asked now."""
        raise NotImplementedError(f"the {self.name} driver has no synchronous replication")

    def set_synchronous_setting(self, settings: SettingsT, site: str, value: str) -> None:
        """SYNCHRONOUS_REPLICATION: make ``site``'s server use ``value`` ('' relaxes it),
        without waiting for a standby to do so."""
        raise NotImplementedError(f"the {self.name} driver has no synchronous replication")

    def clear_synchronous_setting(self, settings: SettingsT, site: str) -> bool:
        """SYNCHRONOUS_REPLICATION: a standby about to be promoted must not wait for a
        standby of its own (its old primary may be dead). False when it cannot be reached."""
        return False

    def standby_streams(self, primary_data: Mapping[str, Any], standby_site: str) -> bool:
        """SYNCHRONOUS_REPLICATION: from the primary's observation data, whether the
        standby at ``standby_site`` streams and has caught up."""
        return False

    def synchronous_standbys(self, primary_data: Mapping[str, Any]) -> list[str]:
        """SYNCHRONOUS_REPLICATION: from the primary's observation data, the standbys it
        waits for right now (none: asynchronous)."""
        return []

    def self_fence(self, settings: SettingsT, site: str, host: Host) -> dict[str, Any]:
        """SELF_FENCE: make the component at ``site`` take no write now, acting from that
        site (its monitor lost etcd); what was done (``fenced``: False when there was
        nothing to fence: down, or not a primary). Must finish well within a second."""
        raise NotImplementedError(f"the {self.name} driver cannot fence itself")

    def self_fenced(self, observed: Mapping[str, Any]) -> bool:
        """SELF_FENCE: from an observation's data, the component carries failback's own
        self-fence (not a person's switch)."""
        return False

    def lift_self_fence(self, settings: SettingsT, site: str, host: Host) -> bool:
        """SELF_FENCE: undo ``self_fence`` at ``site`` (the site was never failed over
        from); False when it carried no fence of failback's."""
        return False

    def keep_capture(
        self, settings: SettingsT, primary_site: str, standby_site: str
    ) -> dict[str, Any]:
        """DIVERGED_CAPTURE: on the primary at ``primary_site``, create and move forward
        what reads its commits after a failover to ``standby_site`` (a write, but never
        of clients' data); what was done, with ``problem`` when a capture would fail."""
        raise NotImplementedError(f"the {self.name} driver captures nothing")

    def keep_capture_at_hand(
        self, settings: SettingsT, primary_site: str, standby_site: str
    ) -> dict[str, Any] | None:
        """DIVERGED_CAPTURE: what ``keep_capture`` would return, from a round another
        service's keeper made a moment ago on the same primary (``failback.drivers.kept``),
        or None (the default: there is none, or this driver shares nothing). Called on
        the monitor's event loop: no I/O, no waiting."""
        return None

    def drill_precheck(
        self, settings: SettingsT, site: str, host: Host, parent: str | None = None
    ) -> dict[str, Any]:
        """DRILL: refuse (``failback.errors.PlanRefused``) a drill of the standby at ``site``
        that would disturb production or cannot work (not a healthy streaming standby, not
        enough free space for the copy on its machine, in ``parent`` when given); else
        what was found (sizes...).
        Read-only: asked before the drill's run is created, so a refusal changes nothing."""
        raise NotImplementedError(f"the {self.name} driver cannot be drilled")

    def drill_steps(self, request: DrillRequest) -> list[StepSpec]:
        """DRILL: the steps of a drill of ``request.site``: copy, start isolated, promote,
        a verified write, the checks aimed at the copy, keep, remove. Each step that
        leaves something behind undoes it (abort, a failure): a drill leaves nothing."""
        raise NotImplementedError(f"the {self.name} driver cannot be drilled")

    def traffic_watch(self, settings: SettingsT, site: str, thresholds: Any) -> TrafficWatch:
        """TRAFFIC_HEALTH: start watching a stateless tier at ``site`` against
        ``thresholds`` (``policy.traffic_gate``); see ``TrafficWatch``."""
        raise NotImplementedError(f"the {self.name} driver cannot judge traffic")
