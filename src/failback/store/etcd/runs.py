"""Runs in etcd: the run records and what each run owns (steps, values, measurements,
approvals, the service lock, rollback bookkeeping). See ``RunStore`` in store/base.py
for why each method exists; here is how each stays one transaction.

A run is several keys (keys.py), split by how often each changes and who reads it: the
small record (``runs/<id>``: status, times, error, pid) is rewritten at every step;
the plan and the topology snapshot, read whole, are written at creation and on the rare
switch back or reload; the values have a key of their own because ``run_value`` is
polled while a run executes. Every write that touches the record rewrites it with a
fresh ``write`` token, its proof (keys.py) when an answer is lost.
"""

from __future__ import annotations

import base64
import json
import time
import zlib
from collections.abc import Collection
from typing import Any

from failback.coord.etcd_types import Delete, Put
from failback.errors import StateError
from failback.model.states import transition_allowed
from failback.store.base import RunRecord, StepRecord
from failback.store.etcd.backend import EtcdBackend
from failback.store.etcd.keys import Change, Proof, Snapshot, dump, load, number, prefix_end, token

MAX_RUN_ID = 2**63
"""Run ids are 64-bit like SQLite's: an id at or beyond this names no run in either store."""

LIST_PAGE = 200
"""Run records read per range while ``list_runs`` looks for runs that match."""

READ_BATCH = 25
"""Runs read per transaction (5 keys each: etcd takes 128 operations in one)."""


class EtcdRuns(EtcdBackend):
    """``RunStore`` on the shared client."""

    # runs ---------------------------------------------------------------

    def create_run(
        self,
        *,
        service: str,
        kind: str,
        plan: dict[str, Any],
        topology_path: str,
        topology_text: str,
        options: dict[str, Any],
        lock: str | None = None,
    ) -> int:
        """Create a run, its pending steps and the service's lock (or ``lock``) in one
        transaction,
        that holds only if the lock key does not exist and the run counter is the one
        read: of two processes asking at once, one commits, the other reads again and
        finds the lock taken. The lock carries the run's creation token, so a commit
        whose answer was lost is recognised instead of reported as someone else's lock.
        """
        now = time.time()
        creation = token()
        step_ids = [step["id"] for step in plan.get("steps", [])]
        plan_text = dump(plan)
        # events of this run come after it exists: reading them stops at this id
        events_after = self._last_event_id()
        keys = self.keys
        lock_key = keys.lock(lock or service)

        def decide(snapshot: Snapshot) -> Change[int]:
            held = snapshot.doc(lock_key)
            if held is not None:
                if held.get("token") == creation:
                    return Change(int(held["run_id"]))
                raise self._locked(lock or service, int(held["run_id"]))
            run_id = number(snapshot.text(keys.run_seq)) + 1
            record = {
                "id": run_id,
                "service": service,
                "kind": kind,
                "status": "pending",
                "created_at": now,
                "updated_at": now,
                "finished_at": None,
                "topology_path": topology_path,
                "options": options,
                "error": None,
                "hint": None,
                "pid": None,
                "token": creation,
                "events_after": events_after,
                "write": creation,
            }
            lock_doc = {"run_id": run_id, "acquired_at": now, "token": creation}
            ops: list[Put | Delete] = [
                Put(keys.run_seq, str(run_id)),
                Put(keys.run(run_id), dump(record)),
                Put(keys.plan(run_id), plan_text),
                Put(keys.topology(run_id), topology_text),
                Put(keys.values(run_id), "{}"),
                Put(lock_key, dump(lock_doc)),
            ]
            ops += [
                Put(keys.step(run_id, idx), dump(_new_step(idx, step_id)))
                for idx, step_id in enumerate(step_ids)
            ]
            proof = Proof(keys.run(run_id), creation, field="token", created=True)
            return Change(run_id, ops, proof)

        return self._etcd.optimistic(
            [keys.run_seq, lock_key], decide, what=f"creating a run of {service!r}"
        )

    def _locked(self, service: str, holder: int) -> StateError:
        key = self.keys.run(holder)
        record = self._etcd.read([key]).doc(key)
        detail = f" ({record['kind']}, {record['status']})" if record else ""
        return StateError(
            f"service {service!r} is locked by run {holder}{detail}",
            hint=f"see `failback run show {holder}`; finish it with "
            f"`failback resume {holder}` or `failback abort {holder}`",
        )

    def get_run(self, run_id: int) -> RunRecord:
        # an id beyond 64 bits names no run, as in SQLite; never a key of another width
        found = self._records([run_id]) if 0 < run_id < MAX_RUN_ID else []
        if not found:
            raise self._no_run(run_id)
        return found[0]

    def _records(self, run_ids: list[int]) -> list[RunRecord]:
        """The runs of ``run_ids`` that exist, in that order; each run read whole in one
        transaction (its record, plan, topology, values and report at one revision)."""
        records: list[RunRecord] = []
        keys = self.keys
        for start in range(0, len(run_ids), READ_BATCH):
            batch = run_ids[start : start + READ_BATCH]
            snapshot = self._etcd.read(
                key
                for run_id in batch
                for key in (
                    keys.run(run_id),
                    keys.plan(run_id),
                    keys.topology(run_id),
                    keys.values(run_id),
                    keys.report(run_id),
                )
            )
            for run_id in batch:
                record = snapshot.doc(keys.run(run_id))
                if record is not None:
                    records.append(
                        _run_record(
                            record,
                            plan=snapshot.doc(keys.plan(run_id)),
                            topology_text=snapshot.text(keys.topology(run_id)) or "",
                            values=snapshot.doc(keys.values(run_id)),
                            report=snapshot.doc(keys.report(run_id)),
                        )
                    )
        return records

    def list_runs(
        self,
        *,
        service: str | None = None,
        limit: int = 50,
        kinds: Collection[str] | None = None,
    ) -> list[RunRecord]:
        """Run ids are dense (each is taken with its run, none is deleted): the newest
        are found by reading the records backward a page at a time, from the counter;
        then the chosen runs are read whole. A negative limit is no limit (as SQLite's)."""
        if limit == 0:
            return []
        wanted = None if kinds is None else set(kinds)
        chosen: list[int] = []
        high = self._last_run_id()
        while high >= 1 and (limit < 0 or len(chosen) < limit):
            low = max(1, high - LIST_PAGE + 1)
            kvs, _ = self._etcd.read_range(self.keys.run(low), self.keys.run(high + 1))
            for kv in reversed(kvs):
                record = load(kv)
                if service and record["service"] != service:
                    continue
                if wanted is not None and record["kind"] not in wanted:
                    continue
                chosen.append(int(record["id"]))
                if len(chosen) == limit:
                    break
            high = low - 1
        return self._records(chosen)

    def set_run_status(
        self,
        run_id: int,
        status: str,
        *,
        error: str | None = None,
        hint: str | None = None,
        finished: bool = False,
        pid: int | None = None,
    ) -> None:
        """The transition is checked on the status read, and the write holds only if
        the record is still the one read: an illegal move writes nothing."""
        key = self.keys.run(run_id)

        def decide(snapshot: Snapshot) -> Change[None]:
            record = snapshot.doc(key)
            if record is None:  # as SQLite's UPDATE of no row: nothing to move
                return Change(None)
            if not transition_allowed(record["status"], status):
                raise StateError(
                    f"run {run_id} cannot go from {record['status']} to {status}",
                    hint="a bug in failback's state machine use: please report it",
                )
            now = time.time()
            record.update(status=status, updated_at=now, error=error, hint=hint)
            if finished:
                record["finished_at"] = now
            if pid is not None:
                record["pid"] = pid
            return _rewrite(key, record)

        self._etcd.optimistic([key], decide, what=f"moving run {run_id} to {status}")

    def set_value(self, run_id: int, key: str, value: Any) -> None:
        """A read-modify-write of the values that holds only if neither the values nor
        the record changed since the read: a concurrent writer of another key is
        never overwritten."""
        record_key, values_key = self.keys.run(run_id), self.keys.values(run_id)

        def decide(snapshot: Snapshot) -> Change[None]:
            record = snapshot.doc(record_key)
            if record is None:
                raise self._no_run(run_id)
            values = snapshot.doc(values_key) or {}
            values[key] = value
            record["updated_at"] = time.time()
            return _rewrite(record_key, record, Put(values_key, dump(values)))

        self._etcd.optimistic(
            [record_key, values_key], decide, what=f"keeping {key!r} of run {run_id}"
        )

    def run_value(self, run_id: int, key: str) -> Any:
        values_key = self.keys.values(run_id)
        values = self._etcd.read([values_key]).doc(values_key)
        return None if values is None else values.get(key)

    def save_report(self, run_id: int, report: dict[str, Any]) -> None:
        """Written only beside an existing run; writing the same report twice is
        harmless, so a lost answer needs no proof."""
        record_key = self.keys.run(run_id)
        text = dump(report)

        def decide(snapshot: Snapshot) -> Change[None]:
            if snapshot.kvs[record_key] is None:
                return Change(None)
            return Change(None, [Put(self.keys.report(run_id), text)])

        self._etcd.optimistic([record_key], decide, what=f"saving the report of run {run_id}")

    def save_diverged(self, run_id: int, capture: dict[str, Any]) -> None:
        """Compressed: the rows of a busy primary's last second can be many, and etcd
        takes at most ~1.5 MB in one request. Writing it twice is harmless."""
        record_key = self.keys.run(run_id)
        text = "z:" + base64.b64encode(zlib.compress(dump(capture).encode(), 9)).decode()

        def decide(snapshot: Snapshot) -> Change[None]:
            if snapshot.kvs[record_key] is None:
                raise self._no_run(run_id)
            return Change(None, [Put(self.keys.diverged(run_id), text)])

        self._etcd.optimistic([record_key], decide, what=f"saving the capture of run {run_id}")

    def diverged(self, run_id: int) -> dict[str, Any] | None:
        key = self.keys.diverged(run_id)
        text = self._etcd.read([key]).text(key)
        if text is None:
            return None
        return dict(json.loads(zlib.decompress(base64.b64decode(text[2:]))))

    def replace_topology(self, run_id: int, path: str, text: str) -> None:
        record_key = self.keys.run(run_id)

        def decide(snapshot: Snapshot) -> Change[None]:
            record = snapshot.doc(record_key)
            if record is None:
                return Change(None)
            record.update(topology_path=path, updated_at=time.time())
            return _rewrite(record_key, record, Put(self.keys.topology(run_id), text))

        self._etcd.optimistic([record_key], decide, what=f"replacing the topology of run {run_id}")

    # the service lock ---------------------------------------------------

    def release_lock(self, service: str, run_id: int) -> None:
        """Deleted only if still held by ``run_id`` when deleted (compared, not assumed);
        after a lost answer, reading again finds it gone or someone else's: done."""
        lock_key = self.keys.lock(service)

        def decide(snapshot: Snapshot) -> Change[None]:
            lock = snapshot.doc(lock_key)
            if lock is None or int(lock["run_id"]) != run_id:
                return Change(None)
            return Change(None, [Delete(lock_key)])

        self._etcd.optimistic([lock_key], decide, what=f"releasing {service!r}")

    def lock_holder(self, service: str) -> int | None:
        lock_key = self.keys.lock(service)
        lock = self._etcd.read([lock_key]).doc(lock_key)
        return None if lock is None else int(lock["run_id"])

    # steps --------------------------------------------------------------

    def steps(self, run_id: int) -> list[StepRecord]:
        prefix = self.keys.steps(run_id)
        kvs, _ = self._etcd.read_range(prefix, prefix_end(prefix), remember=True)
        documents = sorted((load(kv) for kv in kvs), key=lambda step: int(step["idx"]))
        return [_step_record(run_id, step) for step in documents]

    def update_step(
        self,
        run_id: int,
        idx: int,
        *,
        status: str | None = None,
        started: bool = False,
        finished: bool = False,
        attempt: bool = False,
        output: dict[str, Any] | None = None,
        error: str | None = None,
        undo_status: str | None = None,
    ) -> None:
        """The step and the run's ``updated_at`` in one transaction; counting an
        attempt is a read-modify-write like any other (never counted twice)."""
        changes: dict[str, Any] = {}
        if status is not None:
            changes["status"] = status
        if output is not None:
            changes["output"] = output
        if error is not None:
            changes["error"] = error
        if undo_status is not None:
            changes["undo_status"] = undo_status
        if not (changes or started or finished or attempt):
            return
        record_key, step_key = self.keys.run(run_id), self.keys.step(run_id, idx)

        def decide(snapshot: Snapshot) -> Change[None]:
            record = snapshot.doc(record_key)
            if record is None:
                return Change(None)
            now = time.time()
            extra: list[Put] = []
            step = snapshot.doc(step_key)
            if step is not None:  # as SQLite: a step that does not exist is not created
                step.update(changes)
                if started and step.get("started_at") is None:
                    step["started_at"] = now
                if finished:
                    step["finished_at"] = now
                if attempt:
                    step["attempts"] = int(step.get("attempts") or 0) + 1
                extra.append(Put(step_key, dump(step)))
            record["updated_at"] = now
            return _rewrite(record_key, record, *extra)

        self._etcd.optimistic(
            [record_key, step_key], decide, what=f"recording step {idx} of run {run_id}"
        )

    # turning a run backward, switching back ---------------------------------

    def begin_rollback(
        self,
        run_id: int,
        *,
        reason: str,
        upto: int,
        ending: str,
        failed_idx: int | None = None,
        hint: str | None = None,
    ) -> None:
        """The failed step, the status (checked on the status read) and the values in
        one transaction that holds only if none of them changed since the read."""
        keys = self.keys
        record_key, values_key = keys.run(run_id), keys.values(run_id)
        step_key = None if failed_idx is None else keys.step(run_id, failed_idx)

        def decide(snapshot: Snapshot) -> Change[None]:
            record = snapshot.doc(record_key)
            if record is None:
                raise self._no_run(run_id)
            if not transition_allowed(record["status"], "rolling-back"):
                raise StateError(f"run {run_id} cannot start rolling back from {record['status']}")
            now = time.time()
            extra: list[Put] = []
            step = None if step_key is None else snapshot.doc(step_key)
            if step_key is not None and step is not None:
                step.update(status="failed", finished_at=now, error=reason)
                extra.append(Put(step_key, dump(step)))
            values = snapshot.doc(values_key) or {}
            values["rollback"] = {"reason": reason, "upto": upto, "ending": ending, "at": now}
            values.pop("abort_requested", None)
            extra.append(Put(values_key, dump(values)))
            record.update(status="rolling-back", error=reason, hint=hint, updated_at=now)
            return _rewrite(record_key, record, *extra)

        read = [record_key, values_key] + ([] if step_key is None else [step_key])
        self._etcd.optimistic(read, decide, what=f"rolling run {run_id} back")

    def record_revert(
        self, run_id: int, idx: int, reason: str, steps: list[dict[str, Any]]
    ) -> None:
        """The deciding step, the reason, the abort request consumed, the plan grown and
        its new steps: one transaction, based on the plan read (the new steps' places
        come from its length, so a concurrent append makes this one read again)."""
        keys = self.keys
        record_key, plan_key = keys.run(run_id), keys.plan(run_id)
        values_key, step_key = keys.values(run_id), keys.step(run_id, idx)

        def decide(snapshot: Snapshot) -> Change[None]:
            record = snapshot.doc(record_key)
            if record is None:
                raise self._no_run(run_id)
            plan = snapshot.doc(plan_key)
            values = snapshot.doc(values_key) or {}
            values["reverted_because"] = reason
            values.pop("abort_requested", None)
            first = len(plan["steps"])
            added = [_new_step(first + offset, step["id"]) for offset, step in enumerate(steps)]
            plan["steps"].extend(steps)
            now = time.time()
            extra = [Put(plan_key, dump(plan)), Put(values_key, dump(values))]
            step = snapshot.doc(step_key)
            if step is not None:
                step.update(status="reverted", finished_at=now, error=f"switch back: {reason}")
                extra.append(Put(step_key, dump(step)))
            extra += [Put(keys.step(run_id, new["idx"]), dump(new)) for new in added]
            record["updated_at"] = now
            return _rewrite(record_key, record, *extra)

        self._etcd.optimistic(
            [record_key, plan_key, values_key, step_key],
            decide,
            what=f"switching run {run_id} back",
        )

    # measurements, approvals ------------------------------------------------

    def add_measurement(
        self,
        run_id: int,
        name: str,
        value: float | None,
        unit: str | None = None,
        *,
        step_id: str | None = None,
        note: str | None = None,
    ) -> None:
        """A key of its own (a random name under the run), created only if absent:
        sending it again after a lost answer cannot add it twice. Their order is etcd's
        (``create_revision``), as SQLite's is its AUTOINCREMENT id."""
        key = self.keys.measurements(run_id) + token()
        document = {
            "name": name,
            "value": value,
            "unit": unit,
            "step": step_id,
            "note": note,
            "ts": time.time(),
        }

        def decide(snapshot: Snapshot) -> Change[None]:
            if snapshot.kvs[key] is not None:
                return Change(None)
            return Change(None, [Put(key, dump(document))])

        self._etcd.optimistic([key], decide, what=f"measuring {name} of run {run_id}")

    def measurements(self, run_id: int) -> list[dict[str, Any]]:
        prefix = self.keys.measurements(run_id)
        kvs, _ = self._etcd.read_range(prefix, prefix_end(prefix))
        ordered = sorted(kvs, key=lambda kv: kv.create_revision)
        return [{key: value for key, value in load(kv).items() if key != "ts"} for kv in ordered]

    def approve(self, run_id: int, step_id: str, approved_by: str) -> None:
        """Created only if absent: the first approval is the one kept."""
        key = self.keys.approval(run_id, step_id)
        document = dump({"approved_by": approved_by, "ts": time.time()})

        def decide(snapshot: Snapshot) -> Change[None]:
            if snapshot.kvs[key] is not None:
                return Change(None)
            return Change(None, [Put(key, document)])

        self._etcd.optimistic([key], decide, what=f"approving {step_id} of run {run_id}")

    def is_approved(self, run_id: int, step_id: str) -> bool:
        key = self.keys.approval(run_id, step_id)
        return self._etcd.read([key]).kvs[key] is not None


def _rewrite(key: str, record: dict[str, Any], *extra: Put) -> Change[None]:
    """Write a run's record (with a fresh ``write`` token, the proof) and ``extra``."""
    record["write"] = token()
    return Change(None, [*extra, Put(key, dump(record))], Proof(key, record["write"]))


def _new_step(idx: int, step_id: str) -> dict[str, Any]:
    return {
        "idx": idx,
        "step_id": step_id,
        "status": "pending",
        "attempts": 0,
        "started_at": None,
        "finished_at": None,
        "output": None,
        "error": None,
        "undo_status": None,
    }


def _step_record(run_id: int, step: dict[str, Any]) -> StepRecord:
    return StepRecord(
        run_id=run_id,
        idx=int(step["idx"]),
        step_id=step["step_id"],
        status=step["status"],
        attempts=int(step["attempts"]),
        started_at=step["started_at"],
        finished_at=step["finished_at"],
        output=step["output"] or {},
        error=step["error"],
        undo_status=step["undo_status"],
    )


def _run_record(
    record: dict[str, Any],
    *,
    plan: Any,
    topology_text: str,
    values: Any,
    report: Any,
) -> RunRecord:
    return RunRecord(
        id=int(record["id"]),
        service=record["service"],
        kind=record["kind"],
        status=record["status"],
        created_at=record["created_at"],
        updated_at=record["updated_at"],
        finished_at=record["finished_at"],
        plan=plan if plan is not None else {},
        topology_path=record["topology_path"],
        topology_text=topology_text,
        options=record["options"],
        values=values or {},
        error=record["error"],
        hint=record["hint"],
        pid=record["pid"],
        report=report,
    )
