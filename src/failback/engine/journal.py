"""The run journal: SQLite in WAL mode, written before and after every action.

Promise 3 of the design rests here: a run survives the death of the process that
runs it because every transition is committed (and fsynced by SQLite) before the
next action starts. Each write is its own short transaction so that a reader
(``failback status`` in another terminal) never waits on a long one.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from failback.errors import StateError
from failback.model.states import transition_allowed

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    service TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    finished_at REAL,
    plan_json TEXT NOT NULL,
    topology_path TEXT NOT NULL,
    topology_text TEXT NOT NULL,
    options_json TEXT NOT NULL DEFAULT '{}',
    values_json TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    hint TEXT,
    pid INTEGER,
    report_json TEXT
);
CREATE TABLE IF NOT EXISTS steps (
    run_id INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    step_id TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at REAL,
    finished_at REAL,
    output TEXT,
    error TEXT,
    undo_status TEXT,
    PRIMARY KEY (run_id, idx)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER,
    service TEXT,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    step_id TEXT,
    message TEXT NOT NULL,
    data_json TEXT
);
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL,
    step_id TEXT,
    name TEXT NOT NULL,
    value REAL,
    unit TEXT,
    note TEXT,
    ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS locks (
    service TEXT PRIMARY KEY,
    run_id INTEGER NOT NULL,
    acquired_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS approvals (
    run_id INTEGER NOT NULL,
    step_id TEXT NOT NULL,
    approved_by TEXT,
    ts REAL NOT NULL,
    PRIMARY KEY (run_id, step_id)
);
CREATE TABLE IF NOT EXISTS service_state (
    service TEXT PRIMARY KEY,
    active_site TEXT NOT NULL,
    data_json TEXT NOT NULL DEFAULT '{}',
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS health (
    service TEXT NOT NULL,
    probe TEXT NOT NULL,
    data_json TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (service, probe)
);
"""


@dataclass
class RunRecord:
    """One row of ``runs``, decoded."""

    id: int
    service: str
    kind: str
    status: str
    created_at: float
    updated_at: float
    finished_at: float | None
    plan: dict[str, Any]
    topology_path: str
    topology_text: str
    options: dict[str, Any]
    values: dict[str, Any]
    error: str | None
    hint: str | None
    pid: int | None
    report: dict[str, Any] | None


@dataclass
class StepRecord:
    """One row of ``steps``, decoded."""

    run_id: int
    idx: int
    step_id: str
    status: str
    attempts: int
    started_at: float | None
    finished_at: float | None
    output: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    undo_status: str | None = None


class Journal:
    """The state store of one state directory."""

    FILE_NAME = "journal.sqlite3"

    def __init__(self, state_dir: Path) -> None:
        """Open (creating it if needed) the journal in ``state_dir``.

        The journal holds command outputs, topology copies and errors: only the user
        that runs failback may read it. A state directory failback creates is 0700; the
        journal file is created 0600 before SQLite opens it (SQLite gives its -wal and
        -shm files the database file's mode), and an older, more open one is tightened.
        An existing directory keeps its mode: it may be a shared place chosen by a person.
        """
        self.state_dir = Path(state_dir)
        try:
            if not self.state_dir.is_dir():
                self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                self.state_dir.chmod(0o700)  # whatever the umask
        except OSError as exc:
            raise StateError(
                f"cannot create the state directory {self.state_dir}: {exc.strerror}",
                hint="choose a writable place with --state-dir or state_dir: in the topology file",
            ) from exc
        self.path = self.state_dir / self.FILE_NAME
        try:
            if not self.path.exists():
                self.path.touch(mode=0o600)
        except OSError as exc:
            raise StateError(
                f"cannot create the journal {self.path}: {exc.strerror}",
                hint="choose a writable place with --state-dir or state_dir: in the topology file",
            ) from exc
        for path in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
            try:
                if path.stat().st_mode & 0o077:
                    path.chmod(0o600)
            except OSError:  # absent, or not ours to change: opening it says what matters
                continue
        try:
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StateError(
                f"cannot open the journal {self.path}: {exc}",
                hint="is it a failback state directory? Use --state-dir to point elsewhere",
            ) from exc
        self._db.row_factory = sqlite3.Row

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE transaction: writers queue instead of failing half-way."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")

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
    ) -> int:
        """Create a run and take the service's lock in one transaction.

        Raises StateError naming the run that holds the lock, so two runs can never
        act on the same service at once.
        """
        now = time.time()
        with self.transaction() as db:
            held = db.execute("SELECT run_id FROM locks WHERE service = ?", (service,)).fetchone()
            if held is not None:
                holder = self.get_run(int(held["run_id"]))
                raise StateError(
                    f"service {service!r} is locked by run {held['run_id']}"
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
                (service, run_id, now),
            )
            for idx, step in enumerate(plan.get("steps", [])):
                db.execute(
                    "INSERT INTO steps (run_id, idx, step_id, status) VALUES (?,?,?,?)",
                    (run_id, idx, step["id"], "pending"),
                )
        return run_id

    def get_run(self, run_id: int) -> RunRecord:
        # an id SQLite cannot hold (beyond 64 bits) names no run; never an OverflowError
        in_range = 0 < run_id < 2**63
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

    def list_runs(self, *, service: str | None = None, limit: int = 50) -> list[RunRecord]:
        if service:
            rows = self._db.execute(
                "SELECT * FROM runs WHERE service = ? ORDER BY id DESC LIMIT ?", (service, limit)
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,)
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
        with self.transaction() as db:
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
        """Persist one value a step computed for later steps (e.g. the final LSN)."""
        with self.transaction() as db:
            row = db.execute("SELECT values_json FROM runs WHERE id = ?", (run_id,)).fetchone()
            values = json.loads(row["values_json"])
            values[key] = value
            db.execute(
                "UPDATE runs SET values_json = ?, updated_at = ? WHERE id = ?",
                (json.dumps(values), time.time(), run_id),
            )

    def run_value(self, run_id: int, key: str) -> Any:
        """One run value, read alone: polled while a run executes (abort requests), so it
        must not load the plan and the topology snapshot each time."""
        row = self._db.execute(
            "SELECT json_extract(values_json, ?) AS v FROM runs WHERE id = ?",
            (f'$."{key}"', run_id),
        ).fetchone()
        return None if row is None else row["v"]

    def save_report(self, run_id: int, report: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute("UPDATE runs SET report_json = ? WHERE id = ?", (json.dumps(report), run_id))

    def release_lock(self, service: str, run_id: int) -> None:
        with self.transaction() as db:
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
        with self.transaction() as db:
            db.execute(f"UPDATE steps SET {', '.join(sets)} WHERE run_id = ? AND idx = ?", params)
            db.execute("UPDATE runs SET updated_at = ? WHERE id = ?", (now, run_id))

    # events, measurements, approvals -------------------------------------

    def add_event(
        self,
        kind: str,
        message: str,
        *,
        run_id: int | None = None,
        service: str | None = None,
        step_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO events (run_id, service, ts, kind, step_id, message, data_json)"
                " VALUES (?,?,?,?,?,?,?)",
                (
                    run_id,
                    service,
                    time.time(),
                    kind,
                    step_id,
                    message,
                    json.dumps(data) if data else None,
                ),
            )

    def events(self, *, run_id: int | None = None, limit: int = 200) -> list[dict[str, Any]]:
        if run_id is None:
            rows = self._db.execute(
                "SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM events WHERE run_id = ? ORDER BY id DESC LIMIT ?", (run_id, limit)
            ).fetchall()
        return [_event_from_row(row) for row in reversed(rows)]

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
        with self.transaction() as db:
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
        """Turn a run backward, durably, before its first undo runs.

        One transaction records the failed step (if a step failed), the run's new
        status ``rolling-back`` and the ``rollback`` value (why, from which step down,
        and how the run ends when every undo succeeded). A crash after it finds a run
        that can only continue undoing; a crash before it finds the step not yet failed.
        """
        now = time.time()
        with self.transaction() as db:
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

    def replace_topology(self, run_id: int, path: str, text: str) -> None:
        """Continue a run with an edited topology file (``resume --reload``)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET topology_path = ?, topology_text = ?, updated_at = ? WHERE id = ?",
                (path, text, time.time(), run_id),
            )

    def record_revert(
        self, run_id: int, idx: int, reason: str, steps: list[dict[str, Any]]
    ) -> None:
        """Decide a switch back in one transaction: the step that decided it, the reason
        (a run value), the abort request consumed, and the steps that carry it out.

        A crash can then find either no decision or the whole of it, never a run that
        says "switched back" without the steps to do so.
        """
        now = time.time()
        with self.transaction() as db:
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

    def approve(self, run_id: int, step_id: str, approved_by: str) -> None:
        with self.transaction() as db:
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

    # service state --------------------------------------------------------

    def service_state(self, service: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT * FROM service_state WHERE service = ?", (service,)
        ).fetchone()
        if row is None:
            return None
        data = json.loads(row["data_json"])
        data["active_site"] = row["active_site"]
        data["updated_at"] = row["updated_at"]
        return data

    def _edit_service_data(
        self, service: str, edit: Callable[[dict[str, Any]], bool], *, site: str,
        set_active: bool,
    ) -> bool:  # fmt: skip
        """The one read-modify-write of a service's state: read its data, let ``edit``
        change it (False: nothing to write), write it back, in one IMMEDIATE transaction,
        so a concurrent writer of other keys is never overwritten with a stale read.
        ``site`` becomes the active site when ``set_active``, else only for a new row."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT data_json FROM service_state WHERE service = ?", (service,)
            ).fetchone()
            data = json.loads(row["data_json"]) if row is not None else {}
            if not edit(data):
                return False
            active = " active_site = excluded.active_site," if set_active else ""
            db.execute(
                "INSERT INTO service_state (service, active_site, data_json, updated_at)"
                f" VALUES (?,?,?,?) ON CONFLICT(service) DO UPDATE SET{active}"
                " data_json = excluded.data_json, updated_at = excluded.updated_at",
                (service, site, json.dumps(data), time.time()),
            )
            return True

    def set_service_state(self, service: str, active_site: str, **data: Any) -> None:
        """Record where the service runs now and facts like sites needing a resync."""
        self._edit_service_data(service, _merging(data), site=active_site, set_active=True)

    def update_service_data(self, service: str, default_site: str, **data: Any) -> None:
        """Set data keys atomically without touching ``active_site`` (the monitor's writes).

        ``set_service_state`` rewrites the active site it is given; a long-running
        writer such as the monitor must never put back an active site it read before
        a run recorded a new one. ``default_site`` is used only when no row exists yet.
        """
        self._edit_service_data(service, _merging(data), site=default_site, set_active=False)

    def mark_in_sync(self, service: str, site: str) -> bool:
        """Take ``site`` off the sites needing a resync (it streams from the primary now);
        True when it was on the list."""

        def drop(data: dict[str, Any]) -> bool:
            pending = list(data.get("needs_resync") or [])
            if site not in pending:
                return False
            data["needs_resync"] = [s for s in pending if s != site]
            return True

        return self._edit_service_data(service, drop, site=site, set_active=False)

    # health (written by the monitor, read by `failback status`) -----------------

    def save_health(self, service: str, probes: dict[str, dict[str, Any]]) -> None:
        """Replace the health records of ``service`` (one per probe) in one transaction."""
        now = time.time()
        with self.transaction() as db:
            db.execute("DELETE FROM health WHERE service = ?", (service,))
            db.executemany(
                "INSERT INTO health (service, probe, data_json, updated_at) VALUES (?,?,?,?)",
                [(service, name, json.dumps(data), now) for name, data in probes.items()],
            )

    def health(self, service: str) -> dict[str, dict[str, Any]]:
        rows = self._db.execute(
            "SELECT probe, data_json, updated_at FROM health WHERE service = ? ORDER BY probe",
            (service,),
        ).fetchall()
        return {
            row["probe"]: {**json.loads(row["data_json"]), "saved_at": row["updated_at"]}
            for row in rows
        }

    def events_since(self, after_id: int, limit: int = 500) -> list[dict[str, Any]]:
        """Events with an id above ``after_id``, oldest first (the monitor forwards them)."""
        rows = self._db.execute(
            "SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
        ).fetchall()
        return [_event_from_row(row) for row in rows]

    def last_event_id(self) -> int:
        row = self._db.execute("SELECT max(id) AS m FROM events").fetchone()
        return int(row["m"] or 0)


def _merging(data: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    """An edit for ``_edit_service_data`` that sets ``data``'s keys (always writes)."""

    def merge(current: dict[str, Any]) -> bool:
        current.update(data)
        return True

    return merge


def _event_from_row(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "run_id": row["run_id"],
        "service": row["service"],
        "ts": row["ts"],
        "kind": row["kind"],
        "step": row["step_id"],
        "message": row["message"],
        "data": json.loads(row["data_json"]) if row["data_json"] else None,
    }


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
