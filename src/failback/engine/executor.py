"""The executor: runs a plan's steps in order, journaling before and after each action.

Crash safety (promise 3): a step is marked ``applying`` before its apply starts and
``done`` after its verify passes. On resume a step found ``applying`` is asked
``check()`` first, so an effect that already happened is never repeated; a step that
cannot be checked stops the run for a person instead. Failure before any
point-of-no-return step rolls back through the undos, newest first; failure after it
stops the run for a person (data safety over speed).

A run has a direction (model/states.py). Once a rollback is decided the run is
``rolling-back`` in the journal *before* the first undo runs, each undo is journaled
``undoing`` then ``undone``, and nothing ever continues such a run forward: after a
crash it can only finish undoing (``abort``, or the monitor for its own runs).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from failback.config import Topology, load_topology_text
from failback.engine.abort_watch import AbortWatch
from failback.engine.progress import NullReporter, Reporter
from failback.engine.run_context import (
    AbortRequested,
    Action,
    RevertRequested,
    RunContext,
    WaitingForApproval,
)
from failback.engine.step_code import build_action
from failback.errors import FailbackError, LeadershipLost, SafetyRefusal, StateError
from failback.hosts import CommandCancelled, HostSet
from failback.model.locks import run_lock
from failback.model.plan import Plan, StepSpec
from failback.model.states import (
    APPLIED_STEPS,
    DONE_STEPS,
    INTERRUPTED,
    TERMINAL,
    RunStatus,
    StepStatus,
    UndoStatus,
)
from failback.plan.revert import revert_steps
from failback.report.build import build_report
from failback.store import Journal, RunRecord, StepRecord

ABORT_FLAG = "abort_requested"
"""Run value another process sets to ask the process executing the run to stop."""


@dataclass
class RunOutcome:
    """How a call to the executor ended, with the exit code the CLI should use."""

    run_id: int
    status: str
    error: str | None = None
    hint: str | None = None
    deposed: bool = False
    """Interrupted because this process could not prove it still leads (control plane)."""

    @property
    def exit_code(self) -> int:
        if self.status == "succeeded":
            return 0
        if self.status == "waiting-approval":
            return 3
        return 1


class RunProcessLock:
    """An flock held while a process executes a run; the kernel frees it on death.

    That is how ``resume`` tells an interrupted run (nobody holds the lock) from a
    run another process is still executing.
    """

    def __init__(self, state_dir: Path, run_id: int) -> None:
        self.path = Path(state_dir) / "locks" / f"run-{run_id}.lock"
        self.run_id = run_id
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            # another process may be *probing* the lock for a moment (is_held_elsewhere,
            # the monitor every tick): retry briefly before saying someone executes it
            for attempt in range(20):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if attempt == 19:
                        raise
                    time.sleep(0.01)
        except BlockingIOError as exc:
            other = os.pread(fd, 32, 0).decode().strip() or "?"
            os.close(fd)
            raise StateError(
                f"run {self.run_id} is being executed right now by process {other}",
                hint="wait for it, or stop that process; `failback run show "
                f"{self.run_id}` shows where it is",
            ) from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def is_held_elsewhere(self) -> bool:
        """True when some live process executes the run."""
        if not self.path.exists():
            return False
        fd = os.open(self.path, os.O_RDWR)
        try:
            # shared: two probes at the same moment do not see each other as the executor
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)


def _topology_key(topology: Topology) -> str:
    return f"{topology.path}\0{topology.text}"


class SharedHosts:
    """Machines already connected for ``topology`` by a longer-lived owner (the
    monitor): a run of that same topology file uses them instead of connecting again,
    and leaves closing them to their owner. A run whose saved topology differs (it
    was started with another file) connects on its own."""

    def __init__(self, topology: Topology, hosts: HostSet) -> None:
        self.key = _topology_key(topology)
        self.hosts = hosts


class Executor:
    """Starts, continues, approves and aborts runs recorded in one journal."""

    def __init__(
        self,
        journal: Journal,
        *,
        reporter: Reporter | None = None,
        shared_hosts: SharedHosts | None = None,
        guard: Callable[[str], None] | None = None,
    ) -> None:
        self.journal = journal
        self.reporter: Reporter = reporter or NullReporter()
        self.guard = guard
        """The fencing check before anything is applied or undone (a control plane's
        leadership proof): raises ``LeadershipLost`` to refuse. None: one machine, no
        leader to prove."""
        self.shared_hosts = shared_hosts
        """Connections someone else keeps open (the monitor's): used, never closed."""
        self._hosts: dict[str, HostSet] = {}
        """The machines of each topology a locked operation used: connected once, reused
        by every step, closed when the operation ends (``_locked``)."""

    # creating ----------------------------------------------------------------

    def create(self, topology: Topology, plan: Plan, options: dict[str, Any] | None = None) -> int:
        """Record a new run of ``plan`` and take the service lock (changes nothing else)."""
        run_id = self.journal.create_run(
            service=plan.service,
            kind=plan.kind,
            plan=plan.model_dump(mode="json"),
            topology_path=str(topology.path),
            topology_text=topology.text,
            options=options or {},
            lock=run_lock(plan.service, plan.kind),
        )
        self.journal.add_event(
            f"{plan.kind}.created",
            f"{plan.kind} of {plan.service} from {plan.from_site} to {plan.to_site} planned"
            f" ({len(plan.steps)} steps)",
            run_id=run_id,
            service=plan.service,
        )
        return run_id

    # executing ---------------------------------------------------------------

    def execute(self, run_id: int) -> RunOutcome:
        """Continue ``run_id`` in the direction it was going, until it ends or waits.

        Forward for a run that never started undoing; otherwise the undo goes on (never
        forward: an undone step must not count as done). ``approve`` and the monitor
        (for its own runs) use this; a person's ``resume`` uses :meth:`resume`.
        """
        try:
            self._prove(f"run {run_id}")
            with self._locked(run_id) as run:
                if rolling_back(run):
                    return self._continue_rollback(run)
                return self._execute_locked(run)
        except LeadershipLost as lost:
            return self._deposed(run_id, lost)

    def _prove(self, what: str) -> None:
        if self.guard is not None:
            self.guard(what)

    def _deposed(self, run_id: int, lost: LeadershipLost) -> RunOutcome:
        """A step was refused because this process no longer leads: the run stays as it
        stands (never failed, never turned backward by a node that may not act), for the
        leader elected next to continue in its direction."""
        try:
            run = self.journal.get_run(run_id)
            self.journal.add_event(
                "run.deposed",
                f"run {run_id} left to the next leader: {lost.message}",
                run_id=run_id,
                service=run.service,
                step_id=next(
                    (s.step_id for s in self.journal.steps(run_id) if s.status not in DONE_STEPS),
                    None,
                ),
            )
        except FailbackError:
            pass  # a journal fenced by the lost lease (or out of reach) takes no event either
        return RunOutcome(run_id, INTERRUPTED, lost.message, lost.hint, deposed=True)

    def resume(self, run_id: int, *, reload: Any = None) -> RunOutcome:
        """Continue an interrupted, failed or waiting run *forward*; refused once it began
        undoing (``abort`` finishes an undo).

        ``reload`` (a validated Topology) replaces the run's saved copy of the topology
        file, after checking that the steps left to do still fit it.
        """
        with self._locked(run_id) as run:
            refuse_forward(run)
            if reload is not None:
                self._check_fits(run, reload)
                self.journal.replace_topology(run.id, str(reload.path), reload.text)
                self.journal.add_event(
                    "run.reloaded",
                    f"run {run.id} continues with the edited topology file {reload.path}",
                    run_id=run.id,
                    service=run.service,
                )
                run = self.journal.get_run(run_id)
            return self._execute_locked(run)

    def _check_fits(self, run: RunRecord, topology: Topology) -> None:
        """The steps left to do name the same components, drivers and sites in the edited
        file, and each can still be built from it (a command still configured...)."""
        saved = load_topology_text(run.topology_text, run.topology_path).service(run.service)
        if run.service not in topology.services:
            raise StateError(
                f"the edited topology file has no service {run.service!r}",
                hint=f"undo that edit, or `failback abort {run.id}` and plan again",
            )
        edited = topology.service(run.service)
        problems: list[str] = []
        if edited.primary_site != saved.primary_site:
            problems.append(f"primary site changed ({saved.primary_site} -> {edited.primary_site})")
        ctx, plan = self._context(run, topology)
        records = self.journal.steps(run.id)
        for spec, record in zip(plan.steps, records, strict=True):
            if record.status in DONE_STEPS or spec.component is None:
                continue
            before = saved.components.get(spec.component)
            after = edited.components.get(spec.component)
            if after is None:
                problems.append(f"{spec.id}: component {spec.component} is gone")
                continue
            if before is not None and before.driver != after.driver:
                problems.append(
                    f"{spec.id}: {spec.component} changed driver ({before.driver} ->"
                    f" {after.driver})"
                )
                continue
            if spec.site is not None and spec.site not in after.sites:
                problems.append(f"{spec.id}: {spec.component} has no site {spec.site} any more")
                continue
            try:
                build_action(spec, ctx)
            except FailbackError as exc:
                problems.append(f"{spec.id}: {exc.message}")
        if problems:
            raise StateError(
                f"run {run.id} cannot continue with the edited topology file: "
                + "; ".join(problems),
                hint=f"undo those edits and `failback resume {run.id} --reload`, or "
                f"`failback abort {run.id}` and plan again",
            )

    @contextmanager
    def _locked(self, run_id: int) -> Iterator[RunRecord]:
        """Take the run's process lock, then read the run: what another process did
        before we held the lock (finished it, turned it back) is what we act on."""
        refuse_ended(self.journal.get_run(run_id))
        lock = RunProcessLock(self.journal.state_dir, run_id)
        lock.acquire()
        try:
            run = self.journal.get_run(run_id)
            refuse_ended(run)
            yield run
        finally:
            self._close_hosts()
            lock.release()

    def _hosts_of(self, topology: Topology) -> HostSet:
        key = _topology_key(topology)
        if self.shared_hosts is not None and self.shared_hosts.key == key:
            return self.shared_hosts.hosts
        if key not in self._hosts:
            self._hosts[key] = topology.open_hosts()
        return self._hosts[key]

    def _close_hosts(self) -> None:
        opened, self._hosts = self._hosts, {}
        for hosts in opened.values():
            hosts.close()

    def _context(self, run: RunRecord, topology: Topology | None = None) -> tuple[RunContext, Plan]:
        """What the run's steps execute with: its saved topology (or ``topology``)."""
        if topology is None:
            topology = load_topology_text(run.topology_text, run.topology_path)
        service = topology.service(run.service)
        plan = Plan.model_validate(run.plan)
        ctx = RunContext(
            run_id=run.id,
            topology=topology,
            service_name=run.service,
            service=service,
            hosts=self._hosts_of(topology),
            journal=self.journal,
            reporter=self.reporter,
            values=dict(run.values),
            options=dict(run.options),
        )
        return ctx, plan

    def _execute_locked(self, run: RunRecord) -> RunOutcome:
        ctx, plan = self._context(run)
        records = self.journal.steps(run.id)
        touched = [r.step_id for r in records if r.undo_status is not None]
        if touched:  # a rollback began without being recorded as such: never go forward
            raise StateError(
                f"run {run.id} has undone steps ({', '.join(touched)}): it cannot continue forward",
                hint=f"`failback abort {run.id}` finishes the undo",
            )
        if run.status == RunStatus.RUNNING:
            self.journal.add_event(
                "run.resumed",
                f"run {run.id} resumed after an interruption",
                run_id=run.id,
                service=run.service,
            )
        self.journal.set_run_status(run.id, RunStatus.RUNNING, pid=os.getpid())
        ctx.warm_up(
            [s for s, r in zip(plan.steps, records, strict=True) if r.status not in DONE_STEPS]
        )
        idx = 0
        while idx < len(plan.steps):
            spec = plan.steps[idx]
            record = records[idx]
            if record.status in DONE_STEPS:
                idx += 1
                continue
            total = len(plan.steps)
            ctx.current_step = spec.id
            self.reporter.step_started(idx, total, spec.id, spec.title)
            started = time.monotonic()
            try:
                if ctx.abort_requested() and spec.action != "gate.observation":
                    raise AbortRequested("aborted by request")
                action = build_action(spec, ctx)
                try:
                    with self._abort_watch(ctx, plan, idx):
                        status = self._run_step(ctx, idx, spec, record, action)
                except CommandCancelled as cancelled:
                    if not ctx.abort_requested():
                        raise
                    raise AbortRequested(f"aborted by request ({cancelled.message})") from None
            except WaitingForApproval as waiting:
                self.journal.update_step(run.id, idx, status="waiting")
                self.journal.set_run_status(
                    run.id, "waiting-approval", hint=f"failback approve {run.id}"
                )
                self.journal.add_event(
                    "gate.waiting",
                    waiting.question,
                    run_id=run.id,
                    service=run.service,
                    step_id=spec.id,
                )
                self.reporter.step_finished(spec.id, "waiting", None, waiting.question)
                return RunOutcome(
                    run.id, "waiting-approval", waiting.question, f"failback approve {run.id}"
                )
            except RevertRequested as revert:
                plan, records = self._append_revert(
                    ctx, run, idx, spec, revert.reason, revert.params
                )
                self.reporter.step_finished(
                    spec.id, "reverted", time.monotonic() - started, revert.reason
                )
                idx += 1
                continue
            except AbortRequested:
                if _passed_point_of_no_return(plan, self.journal.steps(run.id)) is not None:
                    # too late to undo (a gate noticed the request after the promotion):
                    # refuse it and carry on; the observation window, if any, can switch back
                    self._refuse_abort(run, spec.id)
                    records = self.journal.steps(run.id)
                    continue
                self.reporter.step_finished(
                    spec.id, "failed", time.monotonic() - started, "aborted by request"
                )
                return self._after_abort_request(ctx, plan, run, idx)
            except LeadershipLost:
                raise  # not a failure of the step: nothing was applied
            except Exception as exc:
                message = _describe(exc)
                self.journal.add_event(
                    "step.failed",
                    f"{spec.id}: {message}",
                    run_id=run.id,
                    service=run.service,
                    step_id=spec.id,
                )
                self.reporter.step_finished(spec.id, "failed", time.monotonic() - started, message)
                return self._after_failure(ctx, plan, run, idx, message, exc)
            self.reporter.step_finished(spec.id, status, time.monotonic() - started)
            idx += 1
        ctx.current_step = None
        reverted = ctx.values.get("reverted_because")
        if reverted:
            self.journal.set_run_status(
                run.id, "rolled-back", finished=True, error=f"switched back: {reverted}"
            )
            self._finish(run, "rolled-back")
            return RunOutcome(run.id, "rolled-back", f"switched back: {reverted}")
        self.journal.set_run_status(run.id, "succeeded", finished=True)
        self._finish(run, "succeeded")
        return RunOutcome(run.id, "succeeded")

    def _append_revert(
        self,
        ctx: RunContext,
        run: RunRecord,
        idx: int,
        spec: StepSpec,
        reason: str,
        params: dict[str, Any],
    ) -> tuple[Plan, list[StepRecord]]:
        """Journal the decision to switch back and the steps that do it, then go on."""
        steps = revert_steps(ctx.service, {**spec.params, **params})
        # one transaction: the decision, its reason and the steps that carry it out
        self.journal.record_revert(
            run.id, idx, reason, [step.model_dump(mode="json") for step in steps]
        )
        ctx.values["reverted_because"] = reason
        ctx.values.pop(ABORT_FLAG, None)
        self.journal.add_event(
            "run.reverting",
            f"switching {run.service} back: {reason}",
            run_id=run.id,
            service=run.service,
            step_id=spec.id,
        )
        fresh = self.journal.get_run(run.id)
        return Plan.model_validate(fresh.plan), self.journal.steps(run.id)

    def _after_abort_request(
        self, ctx: RunContext, plan: Plan, run: RunRecord, idx: int
    ) -> RunOutcome:
        self.journal.begin_rollback(
            run.id,
            reason="aborted by request",
            upto=idx,
            ending=RunStatus.ABORTED,
            failed_idx=idx,
            hint=f"failback abort {run.id} finishes the undo",
        )
        return self._continue_rollback(self.journal.get_run(run.id), ctx=ctx, plan=plan)

    def _abort_watch(self, ctx: RunContext, plan: Plan, idx: int) -> AbstractContextManager[object]:
        """While a forward step runs: an abort requested elsewhere cancels its commands
        (``engine/abort_watch.py``). Gates poll for it themselves."""
        spec = plan.steps[idx]
        if spec.action.startswith("gate.") or any(
            s.point_of_no_return for s in plan.steps[: idx + 1]
        ):  # the point of no return, or past it (forward runs in plan order)
            return nullcontext()

        def before_point_of_no_return(journal: Journal) -> bool:
            return _passed_point_of_no_return(plan, journal.steps(ctx.run_id)) is None

        return AbortWatch(self.journal.state_dir, ctx.run_id, ctx.hosts, before_point_of_no_return)

    def _run_step(
        self, ctx: RunContext, idx: int, spec: StepSpec, record: StepRecord, action: Action
    ) -> str:
        """Check, apply, verify one step; the journal knows each transition."""
        run_id = ctx.run_id
        interrupted = record.status in ("applying", "verifying", "failed", "waiting")
        if (
            record.attempts > 0
            and record.status in (StepStatus.APPLYING, StepStatus.WAITING)
            and not action.can_check
            and not self.journal.is_approved(run_id, spec.id)
        ):
            # killed while applying, and nothing can tell whether the effect happened:
            # applying it again could do it twice; a person decides
            raise WaitingForApproval(
                spec.id,
                f"{spec.id} was interrupted while applying and has no check: failback "
                "cannot tell whether it took effect. Look, then `failback approve "
                f"{run_id}` to apply it again, or `failback abort {run_id}` to undo it",
            )
        already = True if record.status == "verifying" else action.check()
        if already:
            self.journal.update_step(run_id, idx, status="verifying", started=True)
            action.verify()
            final = "done" if interrupted and record.attempts > 0 else "skipped"
            self.journal.update_step(
                run_id,
                idx,
                status=final,
                finished=True,
                output={
                    "note": "already in place"
                    if final == "skipped"
                    else "took effect before the interruption"
                },
            )
            return final
        self._prove(f"step {spec.id} of run {run_id}")
        self.journal.update_step(run_id, idx, status="applying", started=True, attempt=True)
        output = action.apply() or {}
        action.verify()
        # one write after the action: if the process dies before it, resume asks check()
        self.journal.update_step(run_id, idx, status="done", finished=True, output=output)
        return "done"

    def _after_failure(
        self,
        ctx: RunContext,
        plan: Plan,
        run: RunRecord,
        failed_idx: int,
        message: str,
        exc: BaseException,
    ) -> RunOutcome:
        hint = exc.hint if isinstance(exc, FailbackError) else None
        records = self.journal.steps(run.id)
        ponr = _passed_point_of_no_return(plan, records)
        if ponr is not None:
            self.journal.update_step(
                run.id, failed_idx, status=StepStatus.FAILED, finished=True, error=message
            )
            stop_hint = (
                f"step {ponr} (point of no return) already took effect, so failback does not "
                f"roll back; fix the cause, then `failback resume {run.id}`"
            )
            self.journal.set_run_status(run.id, RunStatus.FAILED, error=message, hint=stop_hint)
            self._finish(run, RunStatus.FAILED)
            return RunOutcome(run.id, RunStatus.FAILED, message, hint or stop_hint)
        self.journal.begin_rollback(
            run.id,
            reason=message,
            upto=failed_idx,
            ending=RunStatus.ROLLED_BACK,
            failed_idx=failed_idx,
            hint=hint,
        )
        return self._continue_rollback(self.journal.get_run(run.id), ctx=ctx, plan=plan)

    def _continue_rollback(
        self,
        run: RunRecord,
        *,
        ctx: RunContext | None = None,
        plan: Plan | None = None,
    ) -> RunOutcome:
        """Undo what is left to undo of a run turned backward, then end it as decided
        (``rolled-back`` after a failure, ``aborted`` after an abort)."""
        if ctx is None or plan is None:
            ctx, plan = self._context(run)
        rollback = run.values.get("rollback") or {}
        reason = str(rollback.get("reason") or run.error or "rolled back")
        ending = RunStatus(rollback.get("ending", RunStatus.ROLLED_BACK))
        upto = int(rollback.get("upto", len(plan.steps) - 1))
        # also a run that ended ``failed`` because an undo failed: it goes on undoing
        self.journal.set_run_status(
            run.id, RunStatus.ROLLING_BACK, error=reason, hint=run.hint, pid=os.getpid()
        )
        self.journal.add_event(
            "run.rolling_back",
            f"undoing run {run.id}: {reason}",
            run_id=run.id,
            service=run.service,
        )
        if self._undo(ctx, plan, self.journal.steps(run.id), upto=upto):
            self.journal.set_run_status(run.id, ending, error=reason, finished=True)
            self._finish(run, ending)
            return RunOutcome(run.id, ending, reason)
        stop_hint = f"an undo failed: repair by hand, then `failback abort {run.id}` again"
        self.journal.set_run_status(run.id, RunStatus.FAILED, error=reason, hint=stop_hint)
        self._finish(run, RunStatus.FAILED)
        return RunOutcome(run.id, RunStatus.FAILED, reason, stop_hint)

    def _undo(self, ctx: RunContext, plan: Plan, records: list[StepRecord], *, upto: int) -> bool:
        """Undo applied steps newest first; True when every needed undo succeeded."""
        ok = True
        for idx in range(min(upto, len(plan.steps) - 1), -1, -1):
            record = records[idx]
            spec = plan.steps[idx]
            applied = record.status in APPLIED_STEPS and record.attempts > 0
            if not applied or record.undo_status == UndoStatus.UNDONE:
                continue
            ctx.current_step = spec.id
            action = build_action(spec, ctx)
            if not action.has_undo or spec.params.get("undo") is False:
                continue  # ``undo: false``: the plan says this step is never undone
            self.reporter.step_started(idx, len(plan.steps), spec.id, f"undo: {spec.title}")
            started = time.monotonic()
            if record.undo_status == UndoStatus.UNDOING and _undo_took_effect(action):
                # the process died inside this undo after its effect: not a second time
                self._record_undone(
                    ctx, idx, spec, started, f"{spec.title} (undone before the interruption)"
                )
                continue
            self._prove(f"undo of step {spec.id} of run {ctx.run_id}")
            # before the undo acts: a crash here leaves a step that is undone again
            self.journal.update_step(ctx.run_id, idx, undo_status=UndoStatus.UNDOING)
            try:
                action.undo()
            except Exception as exc:
                message = _describe(exc)
                self.journal.update_step(
                    ctx.run_id,
                    idx,
                    undo_status=UndoStatus.UNDO_FAILED,
                    error=f"undo failed: {message}",
                )
                self.journal.add_event(
                    "step.undo_failed",
                    f"{spec.id}: {message}",
                    run_id=ctx.run_id,
                    service=ctx.service_name,
                    step_id=spec.id,
                )
                self.reporter.step_finished(
                    spec.id, "undo-failed", time.monotonic() - started, message
                )
                ok = False
                break
            self._record_undone(ctx, idx, spec, started, spec.title)
        return ok

    def _record_undone(
        self, ctx: RunContext, idx: int, spec: StepSpec, started: float, message: str
    ) -> None:
        """The step's undo took effect: journal, event, progress."""
        self.journal.update_step(ctx.run_id, idx, undo_status=UndoStatus.UNDONE)
        self.journal.add_event(
            "step.undone", message, run_id=ctx.run_id, service=ctx.service_name, step_id=spec.id
        )
        self.reporter.step_finished(spec.id, "undone", time.monotonic() - started)

    # approving and aborting -------------------------------------------------------

    def approve(self, run_id: int, approved_by: str) -> str:
        """Record approval of the gate the run waits at; returns that gate's step id."""
        run = self.journal.get_run(run_id)
        if run.status != "waiting-approval":
            raise StateError(
                f"run {run_id} is {run.status}, not waiting for approval",
                hint=f"`failback run show {run_id}` shows where it is",
            )
        waiting = [s for s in self.journal.steps(run_id) if s.status == "waiting"]
        if not waiting:
            raise StateError(f"run {run_id} has no gate waiting for approval")
        step_id = waiting[0].step_id
        self.journal.approve(run_id, step_id, approved_by)
        self.journal.add_event(
            "gate.approved",
            f"{step_id} approved by {approved_by}",
            run_id=run_id,
            service=run.service,
            step_id=step_id,
            data={"by": approved_by},
        )
        return step_id

    def abort(self, run_id: int, *, force: bool = False, wait_s: float = 600) -> RunOutcome:
        """Undo what the run applied and end it as ``aborted`` (a safe state).

        While another process executes the run, the request is journaled and that
        process stops at its next step or gate poll (undoing, or switching back during
        an observation window); this call waits for the end. Past a point of no return
        without an open observation window, undoing could lose writes or create two
        primaries: refused, unless ``force`` ends the run without undo. A run that
        already began undoing (``rolling-back``, or ``failed`` after an undo failed)
        finishes its undo.
        """
        run = self.journal.get_run(run_id)
        refuse_ended(run)
        lock = RunProcessLock(self.journal.state_dir, run_id)
        if lock.is_held_elsewhere():
            if rolling_back(run):
                return self._wait_for_end(run_id, wait_s)  # it is undoing already
            plan = Plan.model_validate(run.plan)
            records = self.journal.steps(run_id)
            ponr = _passed_point_of_no_return(plan, records)
            if ponr is not None and not _open_observation(plan, records, run.values):
                raise SafetyRefusal(
                    f"run {run_id} passed its point of no return ({ponr}) and is not in its "
                    "observation window yet; undoing now could lose writes or create two "
                    "primaries",
                    hint="wait for its observation window (`failback status`), then abort; "
                    "or let it finish and plan the way back",
                )
            self._request_abort(run, force=force)
            return self._wait_for_end(run_id, wait_s, force=force)
        with self._locked(run_id) as run:
            if rolling_back(run):
                return self._continue_rollback(run)
            ctx, plan = self._context(run)
            records = self.journal.steps(run_id)
            ponr = _passed_point_of_no_return(plan, records)
            if ponr is not None and _open_observation(plan, records, ctx.values):
                self._request_abort(run, force=force)
                return self._execute_locked(self.journal.get_run(run_id))
            if ponr is not None and not force:
                raise SafetyRefusal(
                    f"run {run_id} passed its point of no return ({ponr}); undoing it could "
                    "lose writes or create two primaries",
                    hint=f"finish it with `failback resume {run_id}`, then plan the way back; "
                    "or `failback abort --force` to end it without undo",
                )
            self.journal.add_event(
                "run.aborting",
                f"abort of run {run_id} requested",
                run_id=run_id,
                service=run.service,
            )
            if ponr is not None:  # --force past the point of no return: no undo
                self.journal.set_run_status(
                    run_id, RunStatus.ABORTED, finished=True, error="aborted by request (forced)"
                )
                self._finish(run, RunStatus.ABORTED)
                return RunOutcome(run_id, RunStatus.ABORTED, "aborted by request (forced)")
            self.journal.begin_rollback(
                run_id,
                reason="aborted by request",
                upto=len(plan.steps) - 1,
                ending=RunStatus.ABORTED,
                hint=f"failback abort {run_id} finishes the undo",
            )
            return self._continue_rollback(self.journal.get_run(run_id), ctx=ctx, plan=plan)

    def _refuse_abort(self, run: RunRecord, step_id: str) -> None:
        self.journal.set_value(run.id, ABORT_FLAG, None)
        self.journal.add_event(
            "run.abort_refused",
            f"abort of run {run.id} refused at {step_id}: past the point of no return",
            run_id=run.id,
            service=run.service,
            step_id=step_id,
        )

    def _request_abort(self, run: RunRecord, *, force: bool) -> None:
        self.journal.set_value(run.id, ABORT_FLAG, {"at": time.time(), "force": force})
        self.journal.add_event(
            "run.abort_requested",
            f"abort of run {run.id} requested",
            run_id=run.id,
            service=run.service,
        )

    def _wait_for_end(self, run_id: int, wait_s: float, *, force: bool = False) -> RunOutcome:
        """Wait for the executing process to act on an abort request."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            run = self.journal.get_run(run_id)
            held = RunProcessLock(self.journal.state_dir, run_id).is_held_elsewhere()
            if run.status in TERMINAL or (
                run.status == RunStatus.FAILED and rolling_back(run)
            ):  # over, or an undo failed: a person repairs, then aborts again
                return RunOutcome(run_id, run.status, run.error, run.hint)
            if not held:
                # it ended (or parked at a gate, or stopped failed) without acting on the
                # request, or that process died: abort here
                break
            time.sleep(0.2)
        else:
            raise StateError(
                f"run {run_id} did not stop within {wait_s:g}s of the abort request",
                hint=f"`failback run show {run_id}` shows where it is",
            )
        return self.abort(run_id, force=force)

    def effective_status(self, run: RunRecord) -> str:
        """``interrupted`` for a run marked running, observing or rolling-back that no live
        process executes (which way it was going is in ``run.values["rollback"]``)."""
        if (
            run.status in (RunStatus.RUNNING, RunStatus.OBSERVING, RunStatus.ROLLING_BACK)
            and not RunProcessLock(self.journal.state_dir, run.id).is_held_elsewhere()
        ):
            return INTERRUPTED
        return run.status

    # finishing -------------------------------------------------------------------

    def _finish(self, run: RunRecord, status: str) -> None:
        if status in TERMINAL:
            self.journal.release_lock(run_lock(run.service, run.kind), run.id)
        self.journal.add_event(
            f"{run.kind}.{status}",
            f"{run.kind} of {run.service} {status}",
            run_id=run.id,
            service=run.service,
        )
        self.journal.save_report(run.id, build_report(self.journal, run.id))


def refuse_ended(run: RunRecord) -> None:
    """StateError when ``run`` ended (succeeded, rolled back, aborted): nothing is left to
    continue or undo. The CLI asks it before its confirmation question, too."""
    if run.status in TERMINAL:
        raise StateError(
            f"run {run.id} is already {run.status}",
            hint=f"nothing to continue; `failback run show {run.id}` shows its report",
        )


def refuse_forward(run: RunRecord) -> None:
    """StateError when ``run`` began undoing: continuing it forward would count the steps
    it undid as done (issue: a crash during an undo resumed forward)."""
    if rolling_back(run):
        rollback = run.values.get("rollback") or {}
        raise StateError(
            f"run {run.id} started rolling back ({rollback.get('reason', run.error)}) and "
            "cannot continue forward: steps it undid would count as done",
            hint=f"`failback abort {run.id}` finishes the undo; then plan again",
        )


def rolling_back(run: RunRecord) -> bool:
    """The run began undoing (its direction is backward for good)."""
    return run.status == RunStatus.ROLLING_BACK or "rollback" in run.values


def _open_observation(plan: Plan, records: list[StepRecord], values: dict[str, Any]) -> bool:
    """The run waits in (or before) its observation window, and the window is open."""
    for spec, record in zip(plan.steps, records, strict=True):
        if record.status in DONE_STEPS:
            continue
        if spec.action != "gate.observation":
            return False
        until = values.get("undo_until")
        return until is None or float(until) > time.time()
    return False


def passed_point_of_no_return(run: RunRecord, records: list[StepRecord]) -> str | None:
    """The id of the point-of-no-return step ``run`` passed (undoing could then lose
    writes or create two primaries), or None."""
    return _passed_point_of_no_return(Plan.model_validate(run.plan), records)


def _passed_point_of_no_return(plan: Plan, records: list[StepRecord]) -> str | None:
    for spec, record in zip(plan.steps, records, strict=True):
        if (
            spec.point_of_no_return
            and (record.attempts > 0 or record.status in DONE_STEPS)
            and record.undo_status != UndoStatus.UNDONE
        ):
            return spec.id
    return None


def _undo_took_effect(action: Action) -> bool:
    """An interrupted undo's step says its effect is gone; a step that cannot tell (or
    whose check fails to run) has its undo run again, as undos are idempotent."""
    try:
        return action.undone() is True
    except Exception:
        return False


def _describe(exc: BaseException) -> str:
    if isinstance(exc, FailbackError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"
