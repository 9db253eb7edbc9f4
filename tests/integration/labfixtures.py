"""Shared helpers for the PostgreSQL failover/failback tests: a real lab, driven by the CLI.

Every lab lives in a fresh directory under /tmp made with ``tempfile.mkdtemp`` and
opened to mode 0755: pytest's own ``tmp_path`` (/tmp/pytest-of-root/...) is 0700, and
PostgreSQL runs as the ``postgres`` OS user, which must traverse every parent of the
lab. The finalizers take every lab down (``lab_down(purge=True)``) even when the test
failed, so no PostgreSQL or HAProxy process outlives its test.

Failover and failback are driven through the real CLI in a subprocess
(``run_cli(..., "--yes", "--json", "-c", config)``), as a user would run them.
Nothing here is a mock: the servers are real PostgreSQL 15 and HAProxy processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from failback.hosts import LocalHost
from failback.lab import (
    LabInfo,
    lab_break,
    lab_down,
    lab_processes,
    lab_repair,
    lab_status,
    lab_up,
)
from tests.conftest import CliResult, failback_argv, run_cli

SERVICE = "app"


# --------------------------------------------------------------------------- status


@dataclass
class ServiceStatus:
    """``failback status --json`` of the lab's one service, decoded."""

    doc: dict[str, Any]

    @property
    def active_site(self) -> str:
        return str(self.doc["active_site"])

    @property
    def needs_resync(self) -> list[str]:
        return list(self.doc["needs_resync"])

    @property
    def current_run(self) -> dict[str, Any] | None:
        return self.doc["current_run"]

    def component(self, name: str, site: str) -> dict[str, Any]:
        for comp in self.doc["components"]:
            if comp["component"] == name and comp["site"] == site:
                return comp
        raise AssertionError(f"no component {name}@{site} in status: {self.doc}")

    def db(self, site: str) -> dict[str, Any]:
        return self.component("db", site)

    def router(self, site: str) -> dict[str, Any]:
        return self.component("router", site)

    def summary(self) -> str:
        parts = [f"active={self.active_site} needs_resync={self.needs_resync}"]
        parts += [
            f"{c['component']}@{c['site']}={c['role']}({c['detail']})"
            for c in self.doc["components"]
        ]
        return "; ".join(parts)


# --------------------------------------------------------------------------- the lab


@dataclass
class Lab:
    """One running lab and the ways a test uses it."""

    info: LabInfo
    base: Path

    @property
    def dir(self) -> Path:
        return Path(self.info.dir)

    @property
    def config(self) -> Path:
        return Path(self.info.config)

    @property
    def journal_path(self) -> Path:
        return self.dir / "state" / "journal.sqlite3"

    def port(self, site: str) -> int:
        return self.info.sites[site].port

    def address(self, site: str) -> str:
        """Where the site's machine answers: 127.0.0.1, or its namespace's address."""
        return self.info.sites[site].address

    def secret(self, which: str) -> str:
        return (self.dir / "secrets" / f"{which}.pass").read_text().strip()

    # CLI -------------------------------------------------------------------

    def cli(self, *args: str, config: Path | None = None, timeout: float = 180) -> CliResult:
        return run_cli(*args, "-c", str(config or self.config), timeout=timeout)

    def cli_json(self, *args: str, config: Path | None = None, timeout: float = 180) -> Any:
        result = self.cli(*args, "--json", config=config, timeout=timeout)
        assert "Traceback" not in result.stderr, result.stderr
        try:
            return result.json()
        except json.JSONDecodeError as exc:
            raise AssertionError(
                f"failback {' '.join(args)}: exit {result.returncode}, no JSON on stdout\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            ) from exc

    def status(self, config: Path | None = None) -> ServiceStatus:
        result = self.cli("status", SERVICE, "--json", config=config)
        assert result.returncode == 0, result.stderr
        (doc,) = result.json()["services"]
        return ServiceStatus(doc)

    def runs(self) -> list[dict[str, Any]]:
        result = self.cli("runs", "--json")
        assert result.returncode == 0, result.stderr
        return list(result.json()["runs"])

    def plan_step_ids(self, kind: str) -> list[str]:
        doc = self.cli_json("plan", kind, SERVICE)
        return [step["id"] for step in doc["plan"]["steps"]]

    def run_show(self, run_id: int) -> dict[str, Any]:
        return self.cli_json("run", "show", str(run_id))

    def failover(self, *extra: str) -> dict[str, Any]:
        """``failover app --yes --json`` that must succeed; returns its JSON document."""
        result = self.cli("failover", SERVICE, *extra, "--yes", "--json")
        assert result.returncode == 0, f"failover failed: {result.stdout}\n{result.stderr}"
        doc = result.json()
        assert doc["status"] == "succeeded", doc
        return dict(doc)

    def failback(self) -> dict[str, Any]:
        """``failback app --yes --json`` that must succeed; returns its JSON document."""
        result = self.cli("failback", SERVICE, "--yes", "--json", timeout=300)
        assert result.returncode == 0, f"failback failed: {result.stdout}\n{result.stderr}"
        doc = result.json()
        assert doc["status"] == "succeeded", doc
        return dict(doc)

    def unplanned_failover(self) -> dict[str, Any]:
        """dc1 crashes (SIGKILL), the service fails over to dc2; returns the CLI document.

        The monitor runs first, as in production: it records the primary's last seen
        WAL position (observing alone never writes), which the failover uses to measure
        what may have been lost.
        """
        self.record_primary_position()
        lab_break(self.dir, "dc1", "db")
        return self.failover()

    def record_primary_position(self, timeout: float = 60) -> None:
        """Run ``failback monitor`` (manual policy: it acts on nothing) until it has saved
        the primary's position, then stop it with SIGTERM."""
        proc = subprocess.Popen(
            failback_argv("monitor", "-c", str(self.config)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + timeout
            while self.status().doc.get("last_primary") is None:
                assert proc.poll() is None, f"monitor exited: {proc.stderr and proc.stderr.read()}"
                assert time.monotonic() < deadline, "the monitor never recorded the position"
                time.sleep(0.2)
        finally:
            proc.terminate()
            proc.wait(timeout=60)

    def repair(self, site: str = "dc1") -> None:
        lab_repair(self.dir, site, "db")

    # SQL ------------------------------------------------------------------

    def connect(self, site: str, *, user: str = "failback") -> psycopg.Connection[Any]:
        """A direct connection to one site's PostgreSQL (not through the router)."""
        return psycopg.connect(
            host=self.address(site),
            port=self.port(site),
            dbname="app",
            user=user,
            password=self.secret(user),
            autocommit=True,
            connect_timeout=5,
        )

    def connect_dsn(self) -> psycopg.Connection[Any]:
        """A client's connection: through the router's write endpoint."""
        return psycopg.connect(self.info.dsn, autocommit=True, prepare_threshold=None)

    def write_via_router(self, table: str, value: str) -> int:
        """Insert ``value`` through the write endpoint; the port of the server that took it."""
        with self.connect_dsn() as conn:
            conn.execute(f"INSERT INTO {table} (v) VALUES (%s)", (value,))
            row = conn.execute("SELECT inet_server_port()").fetchone()
        assert row is not None
        return int(row[0])

    def values_on(self, site: str, table: str) -> set[str]:
        with self.connect(site) as conn:
            rows = conn.execute(f"SELECT v FROM {table}").fetchall()
        return {str(r[0]) for r in rows}

    def wait_values_on(self, site: str, table: str, values: set[str], timeout: float = 30) -> None:
        """Wait until every value is visible on the site (replication is asynchronous)."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(psycopg.Error):
                missing = values - self.values_on(site, table)
                if not missing:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"{site} never got all of {sorted(values)} in {table}")
            time.sleep(0.05)

    # end states -------------------------------------------------------------

    def wait_home_end_state(self, timeout: float = 60) -> ServiceStatus:
        """Wait (bounded) until the lab is home, then assert it precisely.

        Home: active site dc1, nothing to resync, no run holding the service, dc1 the
        primary, dc2 a standby streaming from dc1 on dc1's timeline, and the router
        sending writes to dc1 only.
        """
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            try:
                assert_home(self, status)
                return status
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.2)


def assert_home(lab: Lab, status: ServiceStatus) -> None:
    dc1, dc2 = status.db("dc1"), status.db("dc2")
    assert status.active_site == "dc1", status.summary()
    assert status.needs_resync == [], status.summary()
    assert status.current_run is None, status.summary()
    assert dc1["role"] == "primary" and dc1["healthy"], status.summary()
    assert dc2["role"] == "standby" and dc2["healthy"], status.summary()
    assert dc2["data"]["streaming"] is True, status.summary()
    upstream = f"{lab.address('dc1')}:{lab.port('dc1')}"
    assert dc2["data"]["upstream"] == upstream, status.summary()
    assert dc2["data"]["timeline"] == dc1["data"]["timeline"], status.summary()
    lab_view = lab_status(lab.dir)
    assert lab_view["router"]["write_target"] == "dc1", lab_view
    assert lab_view["router"]["servers"]["dc2"] == "maint", lab_view


def measurement(report: dict[str, Any], name: str) -> dict[str, Any]:
    """The measurement ``name`` of a run's report (AssertionError naming the others)."""
    for m in report.get("measurements", []):
        if m["name"] == name:
            return dict(m)
    names = [m["name"] for m in report.get("measurements", [])]
    raise AssertionError(f"no measurement {name!r} in the report; it has {names}")


def step_of(report: dict[str, Any], step_id: str) -> dict[str, Any]:
    for step in report["steps"]:
        if step["id"] == step_id:
            return dict(step)
    raise AssertionError(f"no step {step_id!r} in the report: {[s['id'] for s in report['steps']]}")


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# --------------------------------------------------------------------------- journal (read-only)


def journal_step_statuses(lab: Lab, run_id: int) -> dict[str, str]:
    """Each step's status, read straight from the SQLite journal (read-only)."""
    with contextlib.closing(
        sqlite3.connect(f"file:{lab.journal_path}?mode=ro", uri=True, timeout=5)
    ) as db:
        rows = db.execute(
            "SELECT step_id, status FROM steps WHERE run_id = ? ORDER BY idx", (run_id,)
        ).fetchall()
    return {str(step): str(status) for step, status in rows}


def newest_run_id(lab: Lab, *, after: int, kind: str) -> int | None:
    with contextlib.closing(
        sqlite3.connect(f"file:{lab.journal_path}?mode=ro", uri=True, timeout=5)
    ) as db:
        row = db.execute(
            "SELECT max(id) FROM runs WHERE id > ? AND kind = ?", (after, kind)
        ).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def max_run_id(lab: Lab) -> int:
    runs = lab.runs()
    return max((int(r["id"]) for r in runs), default=0)


# --------------------------------------------------------------------------- lab directories


@contextlib.contextmanager
def lab_base(prefix: str = "fb-pg-") -> Iterator[Path]:
    """A fresh directory under /tmp the ``postgres`` OS user can traverse; labs inside
    it are taken down (purged) on exit, whatever happened."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(root, 0o755)
    try:
        yield root
    finally:
        errors: list[BaseException] = []
        for child in sorted(root.iterdir()):
            if (child / "lab.json").exists():
                try:
                    lab_down(child, purge=True)
                except Exception as exc:  # still kill what is left, then report it
                    errors.append(exc)
            host = LocalHost()
            for pid in lab_processes(host, child):
                host.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)
        if errors:
            raise errors[0]


QUICK_WINDOWS: dict[str, str] = {
    "stability_window": "1s",
    "bake_time": "300ms",
    "observation_window": "1s",
}
"""The policy windows of a test lab whose test is not about them: a third of the lab's
own (3 s, 1 s per traffic step, 3 s), whose eight seconds per failback, over a hundred
failbacks, were a sixth of the suite's time. A test that acts inside a window, or
counts on its length, asks for ``windows=None`` (the lab's own) or sets its own with
``with_policy``."""


def with_policy(text: str, **values: str) -> str:
    """The topology ``text`` with each ``key: value`` line of its policy replaced.

    Line by line, so that the file keeps its shape (and its comments); a key that is not
    there exactly once is an AssertionError: the lab's topology changed shape.
    """
    for key, value in values.items():
        pattern = re.compile(rf"^(\s+{re.escape(key)}:) .*$", re.MULTILINE)
        text, count = pattern.subn(rf"\g<1> {value}", text)
        assert count == 1, f"{key} is not in the lab's topology once (found {count})"
    return text


def new_lab(
    root: Path,
    name: str = "lab",
    *,
    hosts: str = "local",
    windows: dict[str, str] | None = QUICK_WINDOWS,
) -> Lab:
    """``lab up`` in ``root/name``; its policy windows shortened unless ``windows=None``."""
    return set_windows(Lab(info=lab_up(root / name, hosts=hosts), base=root), windows)


def set_windows(lab: Lab, windows: dict[str, str] | None) -> Lab:
    """``lab`` with ``windows`` written into its topology's policy (None: left as is)."""
    if windows:
        lab.config.write_text(with_policy(lab.config.read_text(), **windows))
    return lab
