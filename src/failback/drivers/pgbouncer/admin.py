"""PgBouncer's admin console (the ``pgbouncer`` pseudo-database), and the file we own.

The admin console speaks only the simple query protocol; psycopg uses it for a query
without parameters, which is all the console needs.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from failback.drivers.pgbouncer.names import console_name
from failback.errors import FailbackError, StepFailed
from failback.hosts import Host

if TYPE_CHECKING:
    import psycopg


class PgbouncerError(FailbackError):
    """The admin console is unreachable, refuses us, or a command failed."""


@dataclass(frozen=True)
class PoolTarget:
    """Where one pooled database points now, and whether it is paused."""

    name: str
    host: str | None
    port: int | None
    dbname: str | None
    paused: bool


@dataclass(frozen=True)
class Pgbouncer:
    """One PgBouncer: how to reach its admin console and which file holds its databases."""

    host: str
    port: int
    admin_user: str
    admin_password: str | None
    databases_file: str
    os_user: str | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def connect(self, timeout: float = 2.0) -> psycopg.Connection[Any]:
        import psycopg  # here: commands that never reach PgBouncer skip loading it

        try:
            return psycopg.connect(
                host=self.host, port=self.port, user=self.admin_user,
                password=self.admin_password or None, dbname="pgbouncer", autocommit=True,
                connect_timeout=max(1, round(timeout)), prepare_threshold=None,
            )  # fmt: skip
        except psycopg.OperationalError as exc:
            text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            hint = "check the pgbouncer component's host/port and that PgBouncer runs"
            if "password" in text or "not allowed" in text or "admin" in text:
                hint = "the admin user must be in admin_users and its password right"
            raise PgbouncerError(
                f"PgBouncer admin console at {self.address}: {text}", hint=hint
            ) from exc

    def command(self, sql: str) -> list[tuple[Any, ...]]:
        import psycopg

        with self.connect() as conn:
            try:
                cur = conn.execute(sql)
            except psycopg.Error as exc:
                raise PgbouncerError(f"PgBouncer {self.address}: {sql}: {exc}") from exc
            return cur.fetchall() if cur.description else []

    def targets(self) -> dict[str, PoolTarget]:
        """SHOW DATABASES, by name."""
        with self.connect() as conn:
            rows = _named_rows(conn, "SHOW DATABASES")
        return {
            r["name"]: PoolTarget(
                name=r["name"],
                host=r.get("host"),
                port=int(r["port"]) if r.get("port") is not None else None,
                dbname=r.get("database"),
                paused=bool(int(r.get("paused") or 0)),
            )
            for r in rows
        }

    def pause(
        self, databases: list[str], *, timeout: float, kill_after: float | None = None
    ) -> list[str]:
        """PAUSE each database: running transactions finish, new queries wait.

        PAUSE returns only once every server connection of the database is released;
        a client holding a long transaction would make it wait for ever, so past
        ``timeout`` the databases are RESUMEd and the step fails (nothing changed).

        ``kill_after``: the server is gone (a failed site): its transactions will never
        finish (a partitioned server never answers), so past ``kill_after`` seconds the
        databases are KILLed instead — every client and server connection dropped, new
        clients wait for the RESUME. Returns the databases that had to be killed.
        """
        errors: list[BaseException] = []
        given_up = threading.Event()

        def run() -> None:
            try:
                for name in databases:
                    if given_up.is_set():  # killed instead: never PAUSE after the RESUME
                        return
                    self.command(f"PAUSE {_ident(name)}")
            except BaseException as exc:  # reported to the caller below
                errors.append(exc)

        worker = threading.Thread(target=run, name="pgbouncer-pause", daemon=True)
        worker.start()
        killed: list[str] = []
        if kill_after is not None:
            kill_after = min(kill_after, timeout / 2)
            worker.join(kill_after)
            if worker.is_alive():
                given_up.set()
                for name in databases:
                    self.command(f"KILL {_ident(name)}")
                    killed.append(name)
                # a killed database stays paused until RESUME: the PAUSE still pending
                # on its own admin connection no longer matters
                return killed
        worker.join(timeout)
        if worker.is_alive():
            given_up.set()
            self.resume(databases)
            raise StepFailed(
                f"PgBouncer {self.address}: PAUSE did not finish within {timeout:g}s "
                "(a client holds a long transaction); resumed, nothing changed",
                hint="raise pause_timeout on the pgbouncer component, or end that transaction",
            )
        if errors:
            raise errors[0]
        return killed

    def resume(self, databases: list[str]) -> None:
        for name in databases:
            try:
                self.command(f"RESUME {_ident(name)}")
            except PgbouncerError as exc:
                if "not paused" not in exc.message:
                    raise

    def setting(self, key: str) -> str | None:
        """One setting as SHOW CONFIG prints it (None: this PgBouncer has no such key)."""
        for row in self.command("SHOW CONFIG"):
            if row[0] == key:
                return str(row[1])
        return None

    def set_setting(self, key: str, value: str) -> None:
        """``SET key = 'value'`` on the running PgBouncer (not written to its file)."""
        quoted = value.replace("'", "''")
        self.command(f"SET {key} = '{quoted}'")

    def wait_server_connection(self, databases: list[str], timeout: float) -> bool:
        """Until these databases' pools have a server connection, open or being opened
        (``sv_login``), as SHOW POOLS says (asked on one connection), or ``timeout``
        passed: whether they have one."""
        deadline = time.monotonic() + timeout
        with self.connect() as conn:
            while True:
                rows = _named_rows(conn, "SHOW POOLS")
                if any(int(r.get(k) or 0) for r in rows if r.get("database") in databases
                       for k in _SERVER_COUNTS):  # fmt: skip
                    return True
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.005)

    def retarget(self, host: Host, lines: dict[str, str]) -> None:
        """Rewrite the databases file and RELOAD; SHOW DATABASES must then agree."""
        text = "".join(f"{name} = {conninfo}\n" for name, conninfo in lines.items())
        host.write_text(self.databases_file, text, owner=self.os_user, mode=0o640)
        self.command("RELOAD")

    def wait_target(
        self, databases: list[str], want_host: str, want_port: int, timeout: float = 5.0
    ) -> None:
        deadline = time.monotonic() + timeout
        while True:
            current = self.targets()
            if all(
                name in current and current[name].host == want_host
                and current[name].port == want_port for name in databases
            ):  # fmt: skip
                return
            if time.monotonic() > deadline:
                seen = {n: f"{t.host}:{t.port}" for n, t in current.items() if n in databases}
                raise StepFailed(
                    f"PgBouncer {self.address} still points at {seen}, not "
                    f"{want_host}:{want_port}, after RELOAD",
                    hint="is databases_file the file %include-d by pgbouncer.ini?",
                )
            time.sleep(0.005)


def _ident(name: str) -> str:
    """The database name as an admin-console argument: checked, double-quoted."""
    try:
        return console_name(name)
    except ValueError as exc:
        raise PgbouncerError(str(exc), hint="fix databases of the pgbouncer component") from None


_SERVER_COUNTS = ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login")
"""SHOW POOLS columns that count a pool's server connections, open or being opened."""


def _named_rows(conn: Any, sql: str) -> list[dict[str, Any]]:
    """An admin-console SHOW as rows by column name."""
    cur = conn.execute(sql)
    names = [c.name for c in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
