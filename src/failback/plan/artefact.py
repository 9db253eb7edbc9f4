"""A plan as a file: made by ``failback plan ... --out FILE``, executed by ``--plan FILE``.

Terraform's lesson: the plan a person reviewed is the plan that runs, or nothing
runs. So the file carries, besides the plan itself, what the plan was made *from*:
the options it was planned with, a fingerprint of the topology file, and the
observed facts that decide a plan. Before applying it, failback observes again and
refuses when any of those facts changed, naming what changed; a plan made from a
world that no longer exists is a plan nobody reviewed.

The facts are a small, explicit list (``ComponentFacts``, ``ObservedFacts``): the
active and primary sites, the sites that need a resync, each component's role and
health at each site, and a database's system identifier and timeline where they
were observed. Volatile values (LSNs, lag, timestamps, free-text details) are left
out on purpose: they change between any two observations, and a fingerprint that
included them would refuse every apply.

The ``digest`` covers the whole content, so a hand-edited or truncated file is
refused. It is a checksum against accidents, not a signature: anyone who can write
the file can recompute it.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from failback import __version__
from failback.config import Topology
from failback.errors import FailbackError, UsageError
from failback.model.observed import ServiceState
from failback.model.plan import Plan

FORMAT = 1
"""The version of the file's layout; a reader refuses any other."""


class PlanFileError(UsageError):
    """The plan file cannot be used as given: unreadable, tampered with, or not for this
    command. Nothing was observed or changed."""


class StalePlan(FailbackError):
    """The plan was made from a topology or an observed state that no longer holds."""

    exit_code = 1


class PlanOptions(BaseModel):
    """The options a plan was made with; applying it re-uses them, never new ones."""

    model_config = ConfigDict(extra="forbid")

    planned: bool = False
    force: bool = False
    accept_data_loss: bool = False
    approval: bool | None = None
    stability_window_s: float | None = None

    def as_planner_options(self) -> dict[str, Any]:
        """Keyword arguments for ``engine.starter.make_plan`` (and the planners)."""
        return self.model_dump()


class TopologyFingerprint(BaseModel):
    """Which topology file, with which exact text, the plan was made from.

    The path counts as well as the text: relative paths inside the file (secrets,
    scripts) are resolved against its directory.
    """

    model_config = ConfigDict(extra="forbid")

    path: str
    sha256: str


def topology_fingerprint(topology: Topology) -> TopologyFingerprint:
    """The fingerprint of a loaded topology (its ``path`` and ``text``)."""
    return TopologyFingerprint(
        path=os.path.abspath(str(topology.path)),
        sha256=hashlib.sha256(str(topology.text).encode("utf-8")).hexdigest(),
    )


class ComponentFacts(BaseModel):
    """The facts of one component at one site that decide a plan."""

    model_config = ConfigDict(extra="forbid")

    component: str
    site: str
    role: str
    healthy: bool
    system_identifier: str | None = None
    timeline: int | None = None

    @property
    def where(self) -> str:
        return f"{self.component} at {self.site}"


class ObservedFacts(BaseModel):
    """What a plan was made from, reduced to the facts that decide it.

    ``sync_mode`` is the replication mode last recorded for the primary (``sync``,
    ``relaxed``, ``async``) without its timestamp: a failover plan depends on it.
    """

    model_config = ConfigDict(extra="forbid")

    service: str
    primary_site: str
    active_site: str
    needs_resync: list[str]
    sync_mode: str | None = None
    components: list[ComponentFacts]

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of the facts: equal facts, equal fingerprint."""
        return _sha256(self.model_dump(mode="json"))


def observed_facts(state: ServiceState) -> ObservedFacts:
    """The plan-deciding facts of an observation, in a stable order."""
    components = [
        ComponentFacts(
            component=obs.component,
            site=obs.site,
            role=obs.role,
            healthy=obs.healthy,
            system_identifier=_text_or_none(obs.data.get("system_identifier")),
            timeline=_int_or_none(obs.data.get("timeline")),
        )
        for obs in state.components
    ]
    components.sort(key=lambda c: (c.component, c.site))
    mode = (state.sync_mode or {}).get("mode")
    return ObservedFacts(
        service=state.service,
        primary_site=state.primary_site,
        active_site=state.active_site,
        needs_resync=sorted(state.needs_resync),
        sync_mode=None if mode is None else str(mode),
        components=components,
    )


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def fact_changes(before: ObservedFacts, now: ObservedFacts) -> list[str]:
    """What differs between two observations, one short phrase each, for a person.

    Empty exactly when the fingerprints are equal.
    """
    changes: list[str] = []
    if before.service != now.service:
        changes.append(f"service was {before.service}, is now {now.service}")
    if before.active_site != now.active_site:
        changes.append(f"active site was {before.active_site}, is now {now.active_site}")
    if before.primary_site != now.primary_site:
        changes.append(f"primary site was {before.primary_site}, is now {now.primary_site}")
    if before.needs_resync != now.needs_resync:
        changes.append(
            f"sites needing a resync were {_sites(before.needs_resync)}, "
            f"are now {_sites(now.needs_resync)}"
        )
    if before.sync_mode != now.sync_mode:
        changes.append(f"replication mode was {before.sync_mode}, is now {now.sync_mode}")
    old = {(c.component, c.site): c for c in before.components}
    new = {(c.component, c.site): c for c in now.components}
    for key in sorted(old.keys() | new.keys()):
        was, is_ = old.get(key), new.get(key)
        if was is None and is_ is not None:
            changes.append(f"{is_.where} was not observed, is now {is_.role}")
        elif was is not None and is_ is None:
            changes.append(f"{was.where} was {was.role}, is no longer observed")
        elif was is not None and is_ is not None:
            changes.extend(_component_changes(was, is_))
    return changes


def _component_changes(was: ComponentFacts, now: ComponentFacts) -> list[str]:
    changes: list[str] = []
    if (was.role, was.healthy) != (now.role, now.healthy):
        changes.append(f"{was.where} was {_seen_as(was)}, is now {_seen_as(now)}")
    if was.system_identifier != now.system_identifier:
        changes.append(
            f"{was.where} had system identifier {was.system_identifier}, "
            f"now has {now.system_identifier}"
        )
    if was.timeline != now.timeline:
        changes.append(f"{was.where} was on timeline {was.timeline}, is now on {now.timeline}")
    return changes


def _sites(sites: list[str]) -> str:
    return "[" + ", ".join(sites) + "]"


def _seen_as(facts: ComponentFacts) -> str:
    """``standby``, or ``down (unhealthy)``: the role, and the health when it is bad."""
    return facts.role if facts.healthy else f"{facts.role} (unhealthy)"


class PlanArtefact(BaseModel):
    """Everything ``apply`` needs to run exactly the reviewed plan, or to refuse."""

    model_config = ConfigDict(extra="forbid")

    format: Literal[1] = FORMAT
    kind: str
    service: str
    plan: Plan
    options: PlanOptions
    topology: TopologyFingerprint
    observed: ObservedFacts
    observed_fingerprint: str
    failback_version: str
    created_at: float
    created_by: str
    digest: str = Field(default="", description="sha256 of every other field, canonical JSON")

    def content_digest(self) -> str:
        """The digest the content should have (everything but ``digest`` itself)."""
        return _sha256(self.model_dump(mode="json", exclude={"digest"}))


def build_artefact(
    plan: Plan,
    *,
    options: PlanOptions,
    topology: Topology,
    state: ServiceState,
    created_by: str | None = None,
    created_at: float | None = None,
) -> PlanArtefact:
    """The artefact of a plan just made from ``state`` and ``topology``, digest included."""
    facts = observed_facts(state)
    artefact = PlanArtefact(
        kind=plan.kind,
        service=plan.service,
        plan=plan,
        options=options,
        topology=topology_fingerprint(topology),
        observed=facts,
        observed_fingerprint=facts.fingerprint(),
        failback_version=__version__,
        created_at=time.time() if created_at is None else created_at,
        created_by=created_by or who_am_i(),
    )
    artefact.digest = artefact.content_digest()
    return artefact


def who_am_i() -> str:
    """``user@host`` of the person (or job) making the plan, for the record."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


# --------------------------------------------------------------------------- the file


def write_artefact(path: Path, artefact: PlanArtefact) -> Path:
    """Write the artefact to ``path`` (mode 0600, atomically: temp file + rename).

    An existing *plan file* is replaced, as Terraform's ``plan -out`` does: planning
    again to the same file is the normal way to refresh a stale plan. Any other
    existing file is refused, so that a slip such as ``--out failback.yaml`` cannot
    destroy the topology file.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise PlanFileError(f"{path} is a directory", hint="give --out a file name")
    if path.exists() and not _is_plan_file(path):
        raise PlanFileError(
            f"{path} exists and is not a failback plan file; it was left untouched",
            hint="choose another --out file (an existing plan file is replaced)",
        )
    text = json.dumps(artefact.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise PlanFileError(
            f"cannot write the plan file in {directory}: {exc.strerror or exc}",
            hint="choose a directory you can write to",
        ) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise PlanFileError(
            f"cannot write the plan file {path}: {exc.strerror or exc}",
            hint="choose a file you can write",
        ) from None
    _fsync_directory(directory)
    return path


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (best effort: not every file system allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _is_plan_file(path: Path) -> bool:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(document, dict) and "format" in document and "plan" in document


def read_artefact(path: Path) -> PlanArtefact:
    """Load and check a plan file: its format, its digest, then its fields.

    The digest is checked on the document as read, before any field is interpreted,
    so an edited step (or any edited value) is refused even when it is still valid.
    """
    path = Path(path).expanduser()
    hint = "give --plan a file written by `failback plan KIND SERVICE --out FILE`, or plan again"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanFileError(f"no such plan file {path}", hint=hint) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise PlanFileError(f"cannot read the plan file {path}: {reason}", hint=hint) from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise PlanFileError(
            f"{path} is not a failback plan file (not JSON, or truncated: {exc})", hint=hint
        ) from None
    if not isinstance(document, dict) or "format" not in document:
        raise PlanFileError(f"{path} is not a failback plan file (no format)", hint=hint)
    if type(document["format"]) is not int or document["format"] != FORMAT:
        raise PlanFileError(
            f"{path} has plan file format {document['format']!r}; this failback reads"
            f" format {FORMAT}",
            hint=hint,
        )
    stored = document.pop("digest", None)
    if not isinstance(stored, str) or stored != _sha256(document):
        raise PlanFileError(
            f"{path} was changed after it was written (its digest does not match its content)",
            hint=hint,
        )
    document["digest"] = stored
    try:
        return PlanArtefact.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top)"
        raise PlanFileError(
            f"{path} is not a valid plan file: {where}: {first['msg']}", hint=hint
        ) from None


def _sha256(document: Any) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- apply checks


def replan_command(artefact: PlanArtefact, path: Path) -> str:
    """The command that makes this plan again, with the options it was made with."""
    flags = [
        f"--{name.replace('_', '-')}"
        for name in ("planned", "force", "accept_data_loss")
        if getattr(artefact.options, name)
    ]
    words = ["failback plan", artefact.kind, artefact.service, *flags, "--out", str(path)]
    return " ".join(words)


def check_request(artefact: PlanArtefact, *, kind: str, service: str, path: Path) -> None:
    """The file is a plan of ``kind`` for ``service`` (what the command line asks for)."""
    if artefact.kind != kind:
        raise PlanFileError(
            f"{path} is a {artefact.kind} plan, not a {kind} plan",
            hint=f"run it with: failback {artefact.kind} {artefact.service} --plan {path}",
        )
    if artefact.service != service:
        raise PlanFileError(
            f"{path} is a plan for service {artefact.service}, not {service}",
            hint=f"run it with: failback {artefact.kind} {artefact.service} --plan {path}",
        )


def check_same_origin(artefact: PlanArtefact, *, topology: Topology, path: Path) -> None:
    """Refuse (``StalePlan``) when failback or the topology file changed since the plan.

    Checked before observing: a different failback may plan differently, and a
    different topology file may name other components, sites or services.
    """
    if artefact.failback_version != __version__:
        raise StalePlan(
            f"{path} was made by failback {artefact.failback_version}; this is failback"
            f" {__version__}",
            hint=f"make a new plan: {replan_command(artefact, path)}",
        )
    now = topology_fingerprint(topology)
    if now.path != artefact.topology.path:
        raise StalePlan(
            f"the plan was made from the topology file {artefact.topology.path}, not {now.path}",
            hint=f"pass -c {artefact.topology.path}, or make a new plan",
        )
    if now.sha256 != artefact.topology.sha256:
        raise StalePlan(
            f"the topology changed since the plan was made ({now.path} has other content)",
            hint=f"make a new plan from the file as it is now: {replan_command(artefact, path)}",
        )


def check_same_facts(artefact: PlanArtefact, *, facts: ObservedFacts, path: Path) -> None:
    """Refuse (``StalePlan``) when what is observed now differs from what the plan was
    made from, naming each difference."""
    if facts.fingerprint() == artefact.observed_fingerprint:
        return
    changes = fact_changes(artefact.observed, facts) or [
        "the observed facts differ from those the plan recorded"
    ]
    raise StalePlan(
        f"what is observed changed since the plan was made: {'; '.join(changes)}",
        hint=f"review what changed (failback status {artefact.service}), then make a new"
        f" plan: {replan_command(artefact, path)}",
    )


def check_same_plan(artefact: PlanArtefact, replanned: Plan, *, path: Path) -> None:
    """The planner, given the same facts and options now, makes the same steps.

    The fingerprint keeps a small list of facts; the planner reads a few more (a data
    directory that stopped being usable, say). Planning again from the fresh
    observation and comparing catches those too.
    """
    saved, fresh = artefact.plan, replanned
    if (saved.from_site, saved.to_site) != (fresh.from_site, fresh.to_site):
        raise StalePlan(
            f"{path} moves {saved.service} from {saved.from_site} to {saved.to_site}; planned"
            f" now it would move from {fresh.from_site} to {fresh.to_site}",
            hint=f"make a new plan: {replan_command(artefact, path)}",
        )
    saved_steps = [s.model_dump(mode="json") for s in saved.steps]
    fresh_steps = [s.model_dump(mode="json") for s in fresh.steps]
    if saved_steps == fresh_steps:
        return
    for idx, (old, new) in enumerate(zip(saved_steps, fresh_steps, strict=False), 1):
        if old != new:
            detail = (
                f"step {idx} was {old['title']!r}, would now be {new['title']!r}"
                if old["title"] != new["title"]
                else f"step {idx} ({old['title']}) would now have other parameters"
            )
            break
    else:
        detail = f"it had {len(saved_steps)} steps, would now have {len(fresh_steps)}"
    raise StalePlan(
        f"planned now, {saved.kind} of {saved.service} would differ from {path}: {detail}",
        hint=f"make a new plan: {replan_command(artefact, path)}",
    )
