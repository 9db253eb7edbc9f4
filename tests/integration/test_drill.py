"""Drills against a real lab (PostgreSQL 15, HAProxy, PgBouncer), through the real CLI.

One lab for the module (labs are expensive). What must hold, from issue 15:

* during a drill, a client writing through the lab's endpoint sees no error and no gap
  over 0.5 s; the standby keeps replicating (its replay passes a primary position taken
  after the drill started); the drill's checks ran against the copy (the sql check
  queries a table that exists only in the copy); afterwards no process, socket or
  directory of the copy is left;
* a SIGKILL of the drill in the middle, then ``abort`` (or ``resume``), leaves nothing;
* bad input: one line + hint, non-zero exit, no run created;
* a drill never blocks a failover: a planned failover started during a drill runs,
  and the drill yields (its copy removed); with ``require_drill_within`` the monitor's
  automatic failback waits, saying why.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from failback.hosts import LocalHost
from failback.lab.pg import lab_node
from failback.lab.probe import WriteProbe
from tests.conftest import failback_argv, run_cli
from tests.integration.labfixtures import (
    SERVICE,
    Lab,
    error_lines,
    journal_step_statuses,
    lab_base,
    max_run_id,
    measurement,
    new_lab,
    newest_run_id,
    step_of,
)

pytestmark = pytest.mark.integration

COPY_ONLY_CHECK = {
    "name": "copy-only-table",
    "type": "sql",
    "component": "db",
    "query": "SELECT count(*) FROM failback_drill_write",
    "use": ["postcheck"],
}
"""Passes only where the drill wrote: the copy. Against production it fails (no such
table), so a passing check proves it was aimed at the copy."""

WEB_CHECK = {
    "name": "web",
    "type": "http",
    "url": "http://127.0.0.1:9/health",
    "use": ["postcheck"],
}


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    sockets_before = set(Path("/tmp").glob("failback-drill-*"))
    try:
        with lab_base("fb-drill-") as root:
            lab = new_lab(root)
            doc = yaml.safe_load(lab.config.read_text())
            doc["services"][SERVICE]["checks"] += [COPY_ONLY_CHECK, WEB_CHECK]
            lab.config.write_text(yaml.safe_dump(doc, sort_keys=False))
            yield lab
    finally:  # a failed test may leave a copy's socket directory (the lab purge removed the rest)
        for left in set(Path("/tmp").glob("failback-drill-*")) - sockets_before:
            shutil.rmtree(left, ignore_errors=True)


# --------------------------------------------------------------------------- helpers


def copy_dir(lab: Lab, run_id: int, site: str = "dc2") -> Path:
    return Path(f"{lab.info.sites[site].pgdata}.failback-drill-{run_id}")


def processes_in(path: Path) -> list[int]:
    """PIDs whose command line names ``path`` (the copy's postmaster and pg_basebackup)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(path).encode() in cmdline and state != "Z":
            found.append(int(entry))
    return found


def socket_dirs(run_id: int) -> list[Path]:
    return sorted(Path("/tmp").glob(f"failback-drill-{run_id}-*"))


def psql_copy(socket_dir: Path, port: int, sql: str) -> subprocess.CompletedProcess[str]:
    """psql in the copy through its socket, as the postgres OS user (how a person looks)."""
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-X", "-At", "-h", str(socket_dir),
         "-p", str(port), "-U", "failback", "-d", "app", "-c", sql],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def assert_nothing_left(lab: Lab, run_id: int, socket_dir: Path | None = None) -> None:
    copy = copy_dir(lab, run_id)
    assert not copy.exists(), f"{copy} was left behind"
    assert processes_in(copy) == [], f"processes of {copy} left: {processes_in(copy)}"
    assert socket_dirs(run_id) == [], f"socket directories left: {socket_dirs(run_id)}"
    if socket_dir is not None:  # nothing answers where the copy answered
        result = psql_copy(socket_dir, lab.port("dc2"), "SELECT 1")
        assert result.returncode != 0 and "No such file" in result.stderr, result


def start_drill(lab: Lab, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        failback_argv("drill", SERVICE, "--yes", "--json", "-c", str(lab.config), *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_step(lab: Lab, after: int, step: str, status: str, timeout: float = 120) -> int:
    """The new drill's id once its ``step`` is ``status``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run_id = newest_run_id(lab, after=after, kind="drill")
        if run_id is not None and journal_step_statuses(lab, run_id).get(step) == status:
            return run_id
        time.sleep(0.05)
    raise AssertionError(f"no drill reached {step} {status} within {timeout}s")


def lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


# --------------------------------------------------------------------------- tests


def test_a_drill_under_writes_disturbs_nothing_and_leaves_nothing(lab: Lab) -> None:
    before = max_run_id(lab)
    probe = WriteProbe(lab.info.dsn).start()
    try:
        time.sleep(1.0)
        began = time.time()
        proc = start_drill(lab, "--keep-for", "5s")
        run_id = wait_step(lab, before, "drill-keep-dc2", "applying")
        # the standby keeps replicating: it replays past a position taken now
        with lab.connect("dc1") as conn:
            (primary,) = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone() or ("",)
        deadline = time.monotonic() + 30
        while True:
            with lab.connect("dc2") as conn:
                (replayed,) = conn.execute("SELECT pg_last_wal_replay_lsn()::text").fetchone() or (
                    "0/0",
                )
            if lsn(replayed) >= lsn(primary):
                break
            assert time.monotonic() < deadline, f"standby stuck at {replayed} < {primary}"
            time.sleep(0.05)
        # while it is kept: a person reaches it through its socket; it is isolated
        (sockets,) = [socket_dirs(run_id)]
        assert len(sockets) == 1 and oct(sockets[0].stat().st_mode & 0o777) == "0o700"
        seen = psql_copy(
            sockets[0],
            lab.port("dc2"),
            "SELECT pg_is_in_recovery(), current_setting('listen_addresses'),"
            " current_setting('archive_mode'), current_setting('primary_conninfo'),"
            " (SELECT count(*) FROM failback_drill_write)",
        )
        assert seen.returncode == 0, seen.stderr
        assert seen.stdout.strip() == "f||off||1"
        out, err = proc.communicate(timeout=120)
        ended = time.time()
        time.sleep(0.3)
    finally:
        stats = probe.stop()
    assert proc.returncode == 0, f"{out}\n{err}"
    doc = json.loads(out)
    assert doc["status"] == "succeeded", doc
    report = doc["report"]
    # clients saw nothing of it
    assert stats.failures_between(began, ended) == 0, stats.failures[-3:]
    gap = stats.longest_gap(began, ended)
    assert gap < 0.5, f"longest gap between acknowledged writes during the drill: {gap:.3f}s"
    assert probe.missing(stats.acked_ids()) == []
    # the checks ran against the copy: the sql one passed (its table exists only there)
    checks = step_of(report, "drill-checks-dc2")["output"]
    assert [(c["name"], c["ok"], c["detail"]) for c in checks["checks"]] == [
        ("copy-only-table", True, "1")
    ]
    assert {s["name"] for s in checks["skipped"]} == {"write-endpoint", "db-dc1", "web"}
    with lab.connect("dc1") as conn:
        row = conn.execute("SELECT to_regclass('failback_drill_write')").fetchone()
    assert row == (None,), "the drill wrote to production"
    rto = measurement(report, "drill_rto_s")["value"]
    assert 0 < rto < report["duration_s"]
    print(f"drill RTO {rto:.3f}s, longest client gap {gap:.3f}s, run {report['duration_s']:.2f}s")
    assert_nothing_left(lab, run_id, sockets[0])
    # listed, and shown by status
    listed = run_cli("drills", SERVICE, "--json", "-c", str(lab.config)).json()["drills"]
    assert listed[0]["id"] == run_id and listed[0]["status"] == "succeeded"
    assert listed[0]["site"] == "dc2" and listed[0]["rto_s"] == pytest.approx(rto)
    status = lab.status().doc
    assert status["drill"]["last"]["id"] == run_id and status["current_run"] is None


@pytest.mark.parametrize("then", ["abort", "resume"])
def test_a_drill_killed_in_the_middle_leaves_nothing_after_abort_or_resume(
    lab: Lab, then: str
) -> None:
    before = max_run_id(lab)
    proc = start_drill(lab, "--keep-for", "60s" if then == "abort" else "3s")
    run_id = wait_step(lab, before, "drill-keep-dc2", "applying")
    copy = copy_dir(lab, run_id)
    assert processes_in(copy), "the copy should run while it is kept"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    shown = lab.run_show(run_id)["run"]
    assert shown["status"] == "interrupted", shown["status"]
    drill = lab.status().doc["drill"]["last"]
    assert (drill["id"], drill["status"]) == (run_id, "interrupted"), drill
    if then == "abort":
        result = lab.cli("abort", str(run_id), "--yes", "--json")
        assert result.returncode == 0, result.stderr
        assert result.json()["status"] == "aborted"
        report = lab.run_show(run_id)["run"]
        assert step_of(report, "drill-copy-dc2")["undo"] == "undone"
    else:
        result = lab.cli("resume", "--yes", str(run_id), "--json")
        assert result.returncode == 0, result.stderr
        assert result.json()["status"] == "succeeded"
        assert step_of(lab.run_show(run_id)["run"], "drill-remove-dc2")["status"] == "done"
    assert_nothing_left(lab, run_id)
    assert lab.status().db("dc2")["data"]["streaming"] is True


def test_bad_drill_requests_change_nothing(lab: Lab) -> None:
    before = max_run_id(lab)
    dc2_pgdata = lab_node(LocalHost(), lab.info, "dc2").pgdata
    cases = [
        (["drill", "nope"], "no service 'nope'"),
        (["drill", SERVICE, "--site", "dc9"], "has no site 'dc9'"),
        (["drill", SERVICE, "--site", "dc1"], "dc1 is the active site of app"),
        (["drill", SERVICE, "--keep-for", "5 minutes"], "--keep-for '5 minutes'"),
        (["drill", SERVICE, "--dir", "/nonexistent-drill-dir"], "is not a directory"),
        # inside the standby's own data directory: the copy would grow in production
        (["drill", SERVICE, "--dir", f"{dc2_pgdata}/base"], "is inside the standby's"),
    ]
    for args, message in cases:
        result = lab.cli(*args, "--yes")
        assert result.returncode != 0, (args, result.stdout)
        assert "Traceback" not in result.stderr, result.stderr
        errors = error_lines(result.stderr)
        assert len(errors) == 1 and message in errors[0], (args, result.stderr)
        assert "hint:" in result.stderr, result.stderr
    assert max_run_id(lab) == before, "a refused drill created a run"


def test_a_failover_during_a_drill_is_not_delayed_and_the_drill_yields(lab: Lab) -> None:
    """The drill holds its own lock: a planned failover to the drilled site starts at
    once; the drill sees its standby promoted, cuts its keep short, removes its copy.
    Then, degraded, the monitor's automatic failback waits for a recent drill."""
    before = max_run_id(lab)
    proc = start_drill(lab, "--keep-for", "120s")
    run_id = wait_step(lab, before, "drill-keep-dc2", "applying")
    started = time.monotonic()
    lab.failover("--planned")
    out, _ = proc.communicate(timeout=60)
    yielded_after = time.monotonic() - started
    doc = json.loads(out)
    assert doc["status"] == "succeeded", doc  # its proof was complete before the failover
    keep = step_of(doc["report"], "drill-keep-dc2")["output"]
    assert keep["cut_short"] and "dc2" in keep["cut_short"], keep
    assert yielded_after < 60
    assert_nothing_left(lab, run_id)
    assert lab.status().active_site == "dc2"
    try:
        _monitor_waits_for_a_drill(lab)
    finally:
        lab.failover("--planned")  # home again for whatever runs next
    assert lab.status().active_site == "dc1"


def _monitor_waits_for_a_drill(lab: Lab) -> None:
    config = lab.dir / "drill-policy.yaml"
    doc = yaml.safe_load(lab.config.read_text())
    doc["services"][SERVICE]["policy"].update(
        {"failback": "automatic", "stability_window": "1s", "require_drill_within": "1s"}
    )
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    time.sleep(1.5)  # the last successful drill is older than 1 s
    proc = subprocess.Popen(
        failback_argv("monitor", "-c", str(config)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            status = run_cli("status", SERVICE, "--json", "-c", str(config)).json()["services"][0]
            decision: dict[str, Any] = (status.get("monitor") or {}).get("failback") or {}
            if decision.get("code") == "drill":
                break
            assert proc.poll() is None, "the monitor exited"
            assert time.monotonic() < deadline, f"no drill decision: {decision}"
            time.sleep(0.3)
        assert decision["reason"].startswith("drill required: last successful drill")
        assert status["drill"]["requirement_met"] is False
        assert status["active_site"] == "dc2"  # it did not fail back
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def test_the_drill_copy_never_reaches_production_by_tcp(lab: Lab) -> None:
    """Nothing listens for the copy: its postmaster has no TCP socket at all."""
    before = max_run_id(lab)
    proc = start_drill(lab, "--keep-for", "30s")
    run_id = wait_step(lab, before, "drill-keep-dc2", "applying")
    try:
        (pid,) = [
            p for p in processes_in(copy_dir(lab, run_id))
            if Path(f"/proc/{p}/cmdline").read_bytes().startswith(b"/usr/lib/postgresql")
        ]  # fmt: skip
        inodes = {
            os.readlink(f"/proc/{pid}/fd/{fd}")
            for fd in os.listdir(f"/proc/{pid}/fd")
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        }
        tcp = Path("/proc/net/tcp").read_text() + Path("/proc/net/tcp6").read_text()
        listening = [
            line for line in tcp.splitlines()[1:]
            if line.split()[3] == "0A" and f"socket:[{line.split()[9]}]" in inodes
        ]  # fmt: skip
        assert listening == [], listening
        assert inodes, "the copy's postmaster has its unix socket at least"
    finally:
        lab.cli("abort", str(run_id), "--yes")
        proc.wait(timeout=60)
    assert_nothing_left(lab, run_id)


def test_a_drill_killed_while_copying_leaves_no_partial_copy(lab: Lab) -> None:
    """SIGKILL while pg_basebackup runs (the standby made big enough that the copy takes
    a while): its process group dies with the runner, and ``abort`` removes the partial
    copy; nothing writes into the directory after it is gone. Last in the module: the
    data added here makes every later copy slower."""
    with lab.connect_dsn() as conn:
        conn.execute(
            "CREATE TABLE drill_bulk AS SELECT g, repeat(md5(g::text), 16) AS pad"
            " FROM generate_series(1, 600000) AS g"
        )
        (primary,) = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone() or ("",)
    deadline = time.monotonic() + 120
    while True:
        with lab.connect("dc2") as conn:
            (replayed,) = conn.execute("SELECT pg_last_wal_replay_lsn()::text").fetchone() or (
                "0/0",
            )
        if lsn(replayed) >= lsn(primary):
            break
        assert time.monotonic() < deadline, "the standby never replayed the bulk table"
        time.sleep(0.2)
    before = max_run_id(lab)
    proc = start_drill(lab)
    run_id = wait_step(lab, before, "drill-copy-dc2", "applying")
    copy = copy_dir(lab, run_id)
    deadline = time.monotonic() + 30
    while not processes_in(copy):  # pg_basebackup writing into the copy
        assert time.monotonic() < deadline, "pg_basebackup never started"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert journal_step_statuses(lab, run_id)["drill-copy-dc2"] == "applying"
    deadline = time.monotonic() + 10
    while processes_in(copy):  # the runner's reaper kills the command's group
        assert time.monotonic() < deadline, f"left running: {processes_in(copy)}"
        time.sleep(0.05)
    result = lab.cli("abort", str(run_id), "--yes", "--json")
    assert result.returncode == 0 and result.json()["status"] == "aborted", result.stdout
    time.sleep(1.0)  # nothing writes there any more
    assert_nothing_left(lab, run_id)
