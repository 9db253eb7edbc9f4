"""The local two-site lab with real PostgreSQL and HAProxy processes.

Each test makes its labs in a fresh directory under /tmp (mode 0711 so that the
``postgres`` OS user can reach it when the tests run as root) and removes them,
with every process, at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from failback.config import load_topology
from failback.hosts import LocalHost
from failback.lab import (
    LabError,
    LabInfo,
    lab_break,
    lab_down,
    lab_processes,
    lab_repair,
    lab_status,
    lab_up,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def base() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="fb-lab-", dir="/tmp"))
    os.chmod(root, 0o711)
    try:
        yield root
    finally:
        for child in root.iterdir():
            if (child / "lab.json").exists():
                lab_down(child, purge=True)
        shutil.rmtree(root, ignore_errors=True)


def _site_conn(info: LabInfo, site: str, user: str = "app") -> psycopg.Connection:
    """A direct connection to one site's PostgreSQL (not through the router)."""
    password = Path(info.dir, "secrets", f"{user}.pass").read_text().strip()
    return psycopg.connect(
        host="127.0.0.1",
        port=info.sites[site].port,
        dbname="app",
        user=user,
        password=password,
        autocommit=True,
    )


def _wait_row_on(info: LabInfo, site: str, value: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with _site_conn(info, site) as conn:
                row = conn.execute("SELECT count(*) FROM t WHERE v = %s", (value,)).fetchone()
        except psycopg.errors.UndefinedTable:  # asynchronous: CREATE TABLE not replayed yet
            row = None
        if row and row[0] == 1:
            return
        assert time.monotonic() < deadline, f"{value!r} never replicated to {site}"
        time.sleep(0.05)


def test_up_write_break_repair_down(base: Path) -> None:
    directory = base / "lab"
    info = lab_up(directory)
    d = info.to_dict()
    assert d["service"] == "app" and d["dir"] == str(directory)
    assert set(d["sites"]) == {"dc1", "dc2"}
    assert all(s["port"] < 32768 for s in d["sites"].values()) and d["router"]["port"] < 32768
    assert Path(d["config"]).exists() and (directory / "lab.json").exists()
    assert oct((directory / "secrets" / "app.pass").stat().st_mode & 0o777) == "0o600"
    topology = load_topology(d["config"])
    assert topology.service("app").primary_site == "dc1"

    # a write through the router lands on dc1 and replicates to dc2
    with psycopg.connect(info.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (v text)")
        conn.execute("INSERT INTO t VALUES ('one')")
        port = conn.execute("SELECT current_setting('port')").fetchone()
    assert port == (str(info.sites["dc1"].port),)
    _wait_row_on(info, "dc2", "one")
    status = lab_status(directory)
    assert status["up"] is True
    assert status["sites"]["dc1"]["role"] == "primary"
    assert status["sites"]["dc2"]["role"] == "standby"
    assert status["router"]["write_target"] == "dc1"

    # up again on a running lab: refused, saying it is up
    with pytest.raises(LabError, match="already up"):
        lab_up(directory)

    # the dsn is PgBouncer's; HAProxy's write endpoint reaches dc1 too
    assert d["pool"]["port"] == int(info.dsn.split("port=")[1].split()[0])
    with psycopg.connect(info.router_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)

    # break dc1: writes through the router fail
    killed = lab_break(directory, "dc1")
    assert killed["killed_pid"] == status["sites"]["dc1"]["pid"]
    with (
        pytest.raises(psycopg.OperationalError),
        psycopg.connect(info.router_dsn, autocommit=True) as conn,
    ):
        conn.execute("INSERT INTO t VALUES ('lost')")
    assert lab_status(directory)["sites"]["dc1"]["up"] is False

    # repair dc1: it comes back exactly as it was, believing it is primary
    lab_repair(directory, "dc1")
    assert not (Path(info.sites["dc1"].pgdata) / "standby.signal").exists()
    status = lab_status(directory)
    assert status["sites"]["dc1"]["role"] == "primary"
    assert status["sites"]["dc2"]["role"] == "standby"
    lab_repair(directory, "dc1")  # idempotent

    # break/repair the router
    lab_break(directory, "dc1", "router")
    assert lab_status(directory)["router"]["up"] is False
    lab_repair(directory, "dc1", "router")
    assert lab_status(directory)["router"]["write_target"] == "dc1"

    # down: no process of the lab is left; idempotent; up restarts a stopped lab
    pids = [s["pid"] for s in status["sites"].values()]
    lab_down(directory)
    assert lab_processes(LocalHost(), directory) == []
    assert not any(LocalHost().pid_alive(pid) for pid in pids)  # gone, or a zombie init reaps
    assert lab_status(directory)["up"] is False
    lab_down(directory)
    again = lab_up(directory)
    assert again.dsn == info.dsn
    with psycopg.connect(info.dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)
    lab_down(directory, purge=True)
    assert not directory.exists()
    lab_down(directory, purge=True)  # idempotent on a purged lab


def test_two_labs_side_by_side_and_refusals(base: Path) -> None:
    first = lab_up(base / "a")
    second = lab_up(base / "b", sync=True)
    ports_a = {first.router.port, *(s.port for s in first.sites.values())}
    ports_b = {second.router.port, *(s.port for s in second.sites.values())}
    assert not ports_a & ports_b
    for info, value in ((first, "a"), (second, "b")):
        with psycopg.connect(info.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (v text)")
            conn.execute("INSERT INTO t VALUES (%s)", (value,))
        _wait_row_on(info, "dc2", value)
    with _site_conn(second, "dc1", "failback") as conn:
        row = conn.execute(
            "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'dc2'"
        ).fetchone()
        assert conn.execute("SHOW synchronous_standby_names").fetchone() == ("ANY 1 (dc1, dc2)",)
    assert row == ("quorum",)

    foreign = base / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not a lab")
    with pytest.raises(LabError, match="not empty"):
        lab_up(foreign)
    with pytest.raises(LabError, match="not a failback lab"):
        lab_status(foreign)
    with pytest.raises(LabError, match="not a failback lab"):
        lab_down(foreign, purge=True)
    assert (foreign / "keep.txt").exists()
    with pytest.raises(LabError, match="no site 'dc3'"):
        lab_break(base / "a", "dc3")
    with pytest.raises(LabError, match="no component 'cache'"):
        lab_repair(base / "a", "dc1", "cache")

    lab_down(base / "a", purge=True)
    assert lab_status(base / "b")["up"] is True  # the other lab is untouched
    lab_down(base / "b", purge=True)
    assert lab_processes(LocalHost(), base) == []
