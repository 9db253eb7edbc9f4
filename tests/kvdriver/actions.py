"""The code behind the kv driver's plan steps.

Each one is idempotent the way the engine needs after a crash: ``check`` reads the
store's files and says whether the effect is already in place (then ``apply`` is not
called again), ``verify`` proves the effect after ``apply``, and ``undo`` reverses it
where a reverse exists (fence, stop). ``promote`` has no undo: it is the
point of no return of a switch. No step touches the journal; what a step keeps for
later (the role a site had before it was stopped) goes through ``ctx.remember``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from failback.drivers.base import Action, StepContext
from failback.errors import FailbackError, StepFailed
from failback.model.plan import StepSpec
from tests.kvdriver.store import PRIMARY, REPLICA, STOPPED, KvFacts, KvRefused, KvStore

VERIFY_KEY = "failback.verify"
"""The key ``kv.verify`` writes: a client's write must land on the new primary."""


class KvAction(Action):
    """Base: the component's settings and the store at the step's site."""

    verb: ClassVar[str]
    """The step's short name, which ``options.fail_at`` may name."""

    def __init__(self, spec: StepSpec, ctx: StepContext) -> None:
        super().__init__(spec, ctx)
        if spec.component is None or spec.site is None:
            raise FailbackError(f"step {spec.id}: a kv step needs a component and a site")
        self.settings: Any = ctx.service.components[spec.component]
        self.store = self.store_at(spec.site)

    def store_at(self, site: str) -> KvStore:
        return KvStore(self.host(site), self.settings.sites[site].path)

    @property
    def source(self) -> KvStore:
        """The store of ``params.source``: the site this one copies from."""
        return self.store_at(self.spec.params["source"])

    def facts(self) -> KvFacts:
        return self.store.read()

    def _memory_key(self, what: str) -> str:
        return f"kv.{self.spec.component}.{self.spec.site}.{what}"

    def fail_if_asked(self) -> None:
        """``options.fail_at`` names this step: fail before acting (tests of undo)."""
        if self.settings.options.fail_at == self.verb:
            raise StepFailed(
                f"{self.spec.id}: failing on purpose (options.fail_at: {self.verb})",
                hint="remove options.fail_at from the topology file",
            )


class KvPreflight(KvAction):
    """Gate: the site is what the plan assumes (its role, whom it follows)."""

    name = "kv.preflight"
    verb = "preflight"

    def apply(self) -> dict[str, Any] | None:
        self.fail_if_asked()
        facts = self.facts()
        expect = self.spec.params.get("expect", "any")
        if not facts.exists or facts.role not in (PRIMARY, REPLICA):
            raise StepFailed(
                f"{self.spec.site}: the store at {self.store.path} is "
                f"{facts.role if facts.exists else 'missing'}",
                hint="start that site's store, or fix its path in the topology file",
            )
        if expect != "any" and facts.role != expect:
            raise StepFailed(
                f"{self.spec.site} is {facts.role}, the plan expects {expect}",
                hint="`failback status` shows each site's role; plan again",
            )
        source = self.spec.params.get("source")
        if source is not None and facts.follows != self.store_at(source).path:
            raise StepFailed(
                f"{self.spec.site} does not follow {source} (it follows {facts.follows})",
                hint=f"make {self.spec.site} a replica of {source} first",
            )
        return {"role": facts.role, "position": facts.position}


class KvFence(KvAction):
    """The site refuses writes whatever its role; works on a dead site (a file)."""

    name = "kv.fence"
    verb = "fence"
    has_undo = True

    def check(self) -> bool:
        return self.facts().fenced

    def apply(self) -> dict[str, Any] | None:
        self.fail_if_asked()
        self.store.fence()
        return None

    def verify(self) -> None:
        if not self.facts().fenced:
            raise StepFailed(f"{self.spec.site} is not fenced after fencing it")

    def undo(self) -> dict[str, Any] | None:
        # the engine undoes only a fence this run applied (a fence found in place was
        # skipped), so unfencing restores what was there before the run
        self.store.unfence()
        return None


class KvStop(KvAction):
    """The site losing the role stops; its position then is final (what must be replayed)."""

    name = "kv.stop"
    verb = "stop"
    has_undo = True

    def check(self) -> bool:
        return self.facts().role == STOPPED

    def apply(self) -> dict[str, Any] | None:
        self.fail_if_asked()
        facts = self.facts()
        self.ctx.remember(self._memory_key("role_before_stop"), facts.role)
        self.store.set_role(STOPPED)
        self.ctx.measure("kv_final_position", facts.position)
        return {"final_position": facts.position, "role_before": facts.role}

    def verify(self) -> None:
        if self.facts().role != STOPPED:
            raise StepFailed(f"{self.spec.site} still runs after stopping it")

    def undo(self) -> dict[str, Any] | None:
        """Start it again in the role it had (primary: it takes writes again)."""
        before = self.ctx.values.get(self._memory_key("role_before_stop")) or PRIMARY
        facts = self.facts()
        if before == REPLICA and facts.follows:
            self.store.set_role(REPLICA, follows=facts.follows)
        else:
            self.store.set_role(PRIMARY)
        return {"role": self.facts().role}


class KvCatchup(KvAction):
    """A replica pulls until it is at most ``max_lag`` writes behind its source."""

    name = "kv.catchup"
    verb = "catchup"

    def _lag(self) -> int:
        return self.source.read().position - self.facts().position

    def check(self) -> bool:
        return self.facts().role == REPLICA and self._lag() <= self.settings.options.max_lag

    def apply(self) -> dict[str, Any] | None:
        self.fail_if_asked()
        limit = self.settings.options.max_lag

        def caught_up() -> tuple[bool, str]:
            self.store.pull()
            lag = self._lag()
            return lag <= limit, f"{lag} writes behind (at most {limit})"

        message = self.ctx.wait_until(
            caught_up,
            timeout=float(self.settings.options.replay_timeout),
            interval=0.05,
            what=f"{self.spec.site} catching up",
        )
        return {"result": message}

    def verify(self) -> None:
        if not self.check():
            raise StepFailed(f"{self.spec.site} fell behind again: {self._lag()} writes")


class KvReplay(KvAction):
    """The replica reaches the stopped primary's final position, exactly."""

    name = "kv.replay"
    verb = "replay"

    def _final(self) -> KvFacts:
        source = self.source.read()
        if source.role == PRIMARY and not source.fenced:
            raise StepFailed(
                f"{self.spec.params['source']} still takes writes: its position is not final",
                hint="the stop step must come first",
            )
        return source

    def check(self) -> bool:
        final = self.source.read()
        is_final = final.role != PRIMARY or final.fenced
        return is_final and self.facts().position == final.position

    def apply(self) -> dict[str, Any] | None:
        self.fail_if_asked()
        final = self._final()

        def replayed() -> tuple[bool, str]:
            position = self.store.pull()
            return position >= final.position, f"{position} of {final.position}"

        message = self.ctx.wait_until(
            replayed,
            timeout=float(self.settings.options.replay_timeout),
            interval=0.05,
            what=f"{self.spec.site} replaying position {final.position}",
        )
        return {"result": message, "final_position": final.position}

    def verify(self) -> None:
        final, facts = self._final(), self.facts()
        if facts.position != final.position or facts.data != final.data:
            raise StepFailed(
                f"{self.spec.site} is at {facts.position}, not the final {final.position}"
            )


class KvPromote(KvAction):
    """The replica becomes the primary: the point of no return of a switch."""

    name = "kv.promote"
    verb = "promote"

    def check(self) -> bool:
        return self.facts().role == PRIMARY

    def apply(self) -> dict[str, Any] | None:
        self.fail_if_asked()
        facts = self.facts()
        if facts.role != REPLICA:
            raise StepFailed(
                f"{self.spec.site} is {facts.role or 'missing'}: only a replica can be promoted",
                hint="`failback status` shows each site's role",
            )
        self.store.set_role(PRIMARY)
        self.ctx.measure("kv_promoted_position", facts.position)
        return {"position": facts.position}

    def verify(self) -> None:
        if self.facts().role != PRIMARY:
            raise StepFailed(f"{self.spec.site} is not primary after promoting it")


class KvResync(KvAction):
    """The site becomes a replica of ``params.source`` with exactly its data.

    Used to bring a returning site back (resync) and to re-protect the old primary
    after a switch: whatever the site wrote that its source does not have is
    discarded, as a rewind would. The fence an unplanned failover left on a returning
    site is lifted once it is a replica (its role refuses writes from then on).
    """

    name = "kv.resync"
    verb = "resync"

    def check(self) -> bool:
        facts, source = self.facts(), self.source.read()
        return (
            facts.role == REPLICA
            and not facts.fenced
            and facts.follows == self.source.path
            and facts.position <= source.position
        )

    def apply(self) -> dict[str, Any] | None:
        self.fail_if_asked()
        try:
            position = self.store.copy_from(self.source)
        except KvRefused as exc:
            raise StepFailed(f"{self.spec.site}: cannot resync: {exc}") from exc
        # a replica refuses writes by its role: the fence of a returning site ends here
        self.store.unfence()
        self.ctx.mark_in_sync(self.spec.site or "")
        return {"position": position}

    def verify(self) -> None:
        if not self.check():
            raise StepFailed(f"{self.spec.site} does not follow {self.spec.params['source']}")


class KvVerify(KvAction):
    """A client's write lands on the new primary and reads back there."""

    name = "kv.verify"
    verb = "verify"

    def apply(self) -> dict[str, Any] | None:
        value = f"run {self.ctx.run_id}"
        try:
            position = self.store.write(VERIFY_KEY, value)
        except KvRefused as exc:
            raise StepFailed(f"{self.spec.site} refuses writes: {exc}") from exc
        return {"position": position}

    def verify(self) -> None:
        if self.store.get(VERIFY_KEY) != f"run {self.ctx.run_id}":
            raise StepFailed(f"the verification write is not readable at {self.spec.site}")


KV_ACTIONS: tuple[type[Action], ...] = (
    KvPreflight,
    KvFence,
    KvStop,
    KvCatchup,
    KvReplay,
    KvPromote,
    KvResync,
    KvVerify,
)
