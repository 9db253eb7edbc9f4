"""Runs in SQLite: the run rows and what each run owns (steps, values, measurements,
approvals, the service lock, rollback bookkeeping). See ``RunStore`` in store/base.py
for why each method exists; here is how each stays one transaction."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Collection
from typing import Any

from failback.errors import StateError
from failback.model.states import transition_allowed
from failback.store.base import RunRecord, StepRecord
from failback.store.sqlite.database import SqliteDatabase

MAX_RUN_ID = 2**63
"""SQLite integers are signed 64-bit: an id at or beyond this names no run."""


class SqliteRuns(SqliteDatabase):
    """``RunStore`` on the shared connection."""

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
        """Create a run and take the service's lock (or ``lock``) in one transaction.

        Raises StateError naming the run that holds the lock, so two runs can never
        act on the same service at once.
        """
        now = time.time()
        lock_name = lock or service
        with self._transaction() as db:
            held = db.execute("SELECT run_id FROM locks WHERE service = ?", (lock_name,)).fetchone()
            if held is not None:
                holder = self.get_run(int(held["run_id"]))
                raise StateError(
                    f"{_what(service, lock_name)} is locked by run {held['run_id']}"
                    f" ({holder.kind}, {holder.status})",
                    hint=f"see `failback run show {held['run_id']}`; finish it with "
                    f"`failback resume {held['run_id']}` or `failback abort {held['run_id']}`",
                )
            cursor = db.execute(
                "INSERT INTO runs (service, kind, status, created_at, updated_at, plan_json,"
                " topology_path, topology_text, options_json) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    service,
                    kind,
                    "pending",
                    now,
                    now,
                    json.dumps(plan),
                    topology_path,
                    topology_text,
                    json.dumps(options),
                ),
            )
            run_id = int(cursor.lastrowid or 0)
            db.execute(
                "INSERT INTO locks (service, run_id, acquired_at) VALUES (?,?,?)",
                (lock_name, run_id, now),
            )
            for idx, step in enumerate(plan.get("steps", [])):
                db.execute(
                    "INSERT INTO steps (run_id, idx, step_id, status) VALUES (?,?,?,?)",
                    (run_id, idx, step["id"], "pending"),
                )
        return run_id

    def get_run(self, run_id: int) -> RunRecord:
        # an id SQLite cannot hold (beyond 64 bits) names no run; never an OverflowError
        in_range = 0 < run_id < MAX_RUN_ID
        row = (
            self._db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if in_range
            else None
        )
        if row is None:
            last = self._db.execute("SELECT max(id) AS m FROM runs").fetchone()["m"]
            hint = (
                f"run ids here go from 1 to {last}; `failback runs` lists them"
                if last
                else "no run exists in this state directory yet"
            )
            raise StateError(f"no run {run_id} in {self.state_dir}", hint=hint)
        return _run_from_row(row)

    def list_runs(
        self,
        *,
        service: str | None = None,
        limit: int = 50,
        kinds: Collection[str] | None = None,
    ) -> list[RunRecord]:
        where: list[str] = []
        args: list[Any] = []
        if service:
            where.append("service = ?")
            args.append(service)
        if kinds is not None:
            wanted = list(kinds)
            where.append(f"kind IN ({', '.join('?' * len(wanted)) or 'NULL'})")
            args += wanted
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = self._db.execute(
            f"SELECT * FROM runs {clause}ORDER BY id DESC LIMIT ?", (*args, limit)
        ).fetchall()
        return [_run_from_row(row) for row in rows]

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
        now = time.time()
        with self._transaction() as db:
            row = db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is not None and not transition_allowed(row["status"], status):
                raise StateError(
                    f"run {run_id} cannot go from {row['status']} to {status}",
                    hint="a bug in failback's state machine use: please report it",
                )
            db.execute(
                "UPDATE runs SET status = ?, updated_at = ?, error = ?, hint = ?,"
                " finished_at = CASE WHEN ? THEN ? ELSE finished_at END,"
                " pid = COALESCE(?, pid) WHERE id = ?",
                (status, now, error, hint, finished, now, pid, run_id),
            )

    def set_value(self, run_id: int, key: str, value: Any) -> None:
        with self._transaction() as db:
            row = db.execute("SELECT values_json FROM runs WHERE id = ?", (run_id,)).fetchone()
            values = json.loads(row["values_json"])
            values[key] = value
            db.execute(
                "UPDATE runs SET values_json = ?, updated_at = ? WHERE id = ?",
                (json.dumps(values), time.time(), run_id),
            )

    def run_value(self, run_id: int, key: str) -> Any:
        # the values decoded here: json_extract gives an object as text and true as 1,
        # where the etcd store gives the values themselves
        row = self._db.execute("SELECT values_json FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None or not row["values_json"]:
            return None
        return json.loads(row["values_json"]).get(key)

    def save_report(self, run_id: int, report: dict[str, Any]) -> None:
        with self._transaction() as db:
            db.execute("UPDATE runs SET report_json = ? WHERE id = ?", (json.dumps(report), run_id))

    def save_diverged(self, run_id: int, capture: dict[str, Any]) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO diverged (run_id, capture_json) VALUES (?, ?)",
                (run_id, json.dumps(capture)),
            )

    def diverged(self, run_id: int) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT capture_json FROM diverged WHERE run_id = ?", (run_id,)
        ).fetchone()
        return None if row is None else dict(json.loads(row["capture_json"]))

    def replace_topology(self, run_id: int, path: str, text: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE runs SET topology_path = ?, topology_text = ?, updated_at = ? WHERE id = ?",
                (path, text, time.time(), run_id),
            )

    # the service lock ---------------------------------------------------

    def release_lock(self, service: str, run_id: int) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM locks WHERE service = ? AND run_id = ?", (service, run_id))

    def lock_holder(self, service: str) -> int | None:
        row = self._db.execute("SELECT run_id FROM locks WHERE service = ?", (service,)).fetchone()
        return None if row is None else int(row["run_id"])

    # steps --------------------------------------------------------------

    def steps(self, run_id: int) -> list[StepRecord]:
        rows = self._db.execute(
            "SELECT * FROM steps WHERE run_id = ? ORDER BY idx", (run_id,)
        ).fetchall()
        return [
            StepRecord(
                run_id=row["run_id"],
                idx=row["idx"],
                step_id=row["step_id"],
                status=row["status"],
                attempts=row["attempts"],
                started_at=row["started_at"],
                finished_at=row["finished_at"],
                output=json.loads(row["output"]) if row["output"] else {},
                error=row["error"],
                undo_status=row["undo_status"],
            )
            for row in rows
        ]

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
        now = time.time()
        sets: list[str] = []
        params: list[Any] = []
        if status is not None:
            sets.append("status = ?")
            params.append(status)
        if started:
            sets.append("started_at = COALESCE(started_at, ?)")
            params.append(now)
        if finished:
            sets.append("finished_at = ?")
            params.append(now)
        if attempt:
            sets.append("attempts = attempts + 1")
        if output is not None:
            sets.append("output = ?")
            params.append(json.dumps(output))
        if error is not None:
            sets.append("error = ?")
            params.append(error)
        if undo_status is not None:
            sets.append("undo_status = ?")
            params.append(undo_status)
        if not sets:
            return
        params.extend([run_id, idx])
        with self._transaction() as db:
            db.execute(f"UPDATE steps SET {', '.join(sets)} WHERE run_id = ? AND idx = ?", params)
            db.execute("UPDATE runs SET updated_at = ? WHERE id = ?", (now, run_id))

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
        now = time.time()
        with self._transaction() as db:
            if failed_idx is not None:
                db.execute(
                    "UPDATE steps SET status = 'failed', finished_at = ?, error = ?"
                    " WHERE run_id = ? AND idx = ?",
                    (now, reason, run_id, failed_idx),
                )
            row = db.execute(
                "SELECT status, values_json FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
            if not transition_allowed(row["status"], "rolling-back"):
                raise StateError(f"run {run_id} cannot start rolling back from {row['status']}")
            values = json.loads(row["values_json"])
            values["rollback"] = {"reason": reason, "upto": upto, "ending": ending, "at": now}
            values.pop("abort_requested", None)
            db.execute(
                "UPDATE runs SET status = 'rolling-back', error = ?, hint = ?, values_json = ?,"
                " updated_at = ? WHERE id = ?",
                (reason, hint, json.dumps(values), now, run_id),
            )

    def record_revert(
        self, run_id: int, idx: int, reason: str, steps: list[dict[str, Any]]
    ) -> None:
        now = time.time()
        with self._transaction() as db:
            row = db.execute(
                "SELECT plan_json, values_json FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
            plan = json.loads(row["plan_json"])
            values = json.loads(row["values_json"])
            values["reverted_because"] = reason
            values.pop("abort_requested", None)
            first = len(plan["steps"])
            plan["steps"].extend(steps)
            db.execute(
                "UPDATE runs SET plan_json = ?, values_json = ?, updated_at = ? WHERE id = ?",
                (json.dumps(plan), json.dumps(values), now, run_id),
            )
            db.execute(
                "UPDATE steps SET status = 'reverted', finished_at = ?, error = ?"
                " WHERE run_id = ? AND idx = ?",
                (now, f"switch back: {reason}", run_id, idx),
            )
            for offset, step in enumerate(steps):
                db.execute(
                    "INSERT INTO steps (run_id, idx, step_id, status) VALUES (?,?,?,?)",
                    (run_id, first + offset, step["id"], "pending"),
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
        with self._transaction() as db:
            db.execute(
                "INSERT INTO measurements (run_id, step_id, name, value, unit, note, ts)"
                " VALUES (?,?,?,?,?,?,?)",
                (run_id, step_id, name, value, unit, note, time.time()),
            )

    def measurements(self, run_id: int) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT * FROM measurements WHERE run_id = ? ORDER BY id", (run_id,)
        ).fetchall()
        return [
            {
                "name": row["name"],
                "value": row["value"],
                "unit": row["unit"],
                "step": row["step_id"],
                "note": row["note"],
            }
            for row in rows
        ]

    def approve(self, run_id: int, step_id: str, approved_by: str) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO approvals (run_id, step_id, approved_by, ts)"
                " VALUES (?,?,?,?)",
                (run_id, step_id, approved_by, time.time()),
            )

    def is_approved(self, run_id: int, step_id: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM approvals WHERE run_id = ? AND step_id = ?", (run_id, step_id)
        ).fetchone()
        return row is not None


def _run_from_row(row: sqlite3.Row) -> RunRecord:
    return RunRecord(
        id=row["id"],
        service=row["service"],
        kind=row["kind"],
        status=row["status"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
        plan=json.loads(row["plan_json"]),
        topology_path=row["topology_path"],
        topology_text=row["topology_text"],
        options=json.loads(row["options_json"]),
        values=json.loads(row["values_json"]),
        error=row["error"],
        hint=row["hint"],
        pid=row["pid"],
        report=json.loads(row["report_json"]) if row["report_json"] else None,
    )


def _what(service: str, lock: str) -> str:
    """How a refusal names the lock: the service's, or another one of it (a drill's)."""
    return f"service {service!r}" if lock == service else f"{lock!r} of service {service!r}"
