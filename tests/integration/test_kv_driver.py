"""The driver interface, proven by a driver failback does not ship (issue 12).

``tests/kvdriver`` is a file-backed fake key-value store with primary/replica roles. It
is added to failback by one line, ``FAILBACK_DRIVERS=tests.kvdriver.driver:KvDriver``
(or a ``failback.drivers`` entry point), with no edit anywhere else; these tests then
take it through the real CLI and engine: validation with FILE:LINE messages, a planned
failover, an unplanned failover after its primary died, a failback after a resync, a
failback rolled back by its undo, and ``status``. Needs no server: every site is a
directory of this test's tmp dir.

The store's replica copies its source only when a step asks (catch-up, replay), so
the order of the steps is visible in the data: a replica promoted before it replayed
the stopped primary's final position has lost the last writes, and the planned
failover's key check fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from failback.hosts import LocalHost
from tests.conftest import REPO, CliResult, failback_argv, run_cli
from tests.kvdriver.store import PRIMARY, REPLICA, STOPPED, KvRefused, KvStore

PLUGIN = "tests.kvdriver.driver:KvDriver"
SITES = ("dc1", "dc2")


def kv_env(**extra: str) -> dict[str, str]:
    """The one line that adds the driver, and the repository on the import path."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {"FAILBACK_DRIVERS": PLUGIN, "PYTHONPATH": path, **extra}


def write_topology(
    tmp: Path,
    *,
    options: str = "{max_lag: 1000}",
    dc2_path: str | None = None,
    more: str = "",
    observation: str = "0s",
    policy: str = "",
) -> Path:
    """Service ``app``: one kv component ``store`` at dc1 (primary site) and dc2, and
    ``more`` components (YAML at the indentation of ``store``)."""
    text = f"""\
sites:
  dc1: {{}}
  dc2: {{}}
services:
  app:
    primary_site: dc1
    components:
      store:
        driver: kv
        options: {options}
        sites:
          dc1:
            path: {tmp / "dc1"}
          dc2:
            path: {dc2_path or tmp / "dc2"}
{more}
    policy:
      approval: none
      stability_window: 100ms
      observation_window: {observation}
{policy}
"""
    path = tmp / "failback.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def stores(tmp: Path) -> dict[str, KvStore]:
    host = LocalHost()
    return {site: KvStore(host, str(tmp / site)) for site in SITES}


@pytest.fixture
def lab(tmp_path: Path) -> tuple[Path, dict[str, KvStore]]:
    """dc1 primary, dc2 its replica, both empty; the topology file."""
    kv = stores(tmp_path)
    kv["dc1"].create(PRIMARY)
    kv["dc2"].create(REPLICA, follows=kv["dc1"].path)
    return write_topology(tmp_path), kv


def cli(config: Path, *args: str, env: dict[str, str] | None = None) -> CliResult:
    return run_cli(*args, "-c", str(config), env=kv_env() if env is None else env)


def ok(result: CliResult) -> Any:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.json()


def service(config: Path) -> dict[str, Any]:
    return dict(ok(cli(config, "status", "--json"))["services"][0])


def roles(config: Path) -> dict[str, str]:
    """site -> the kv component's role as ``failback status --json`` shows it."""
    return {
        c["site"]: c["role"] for c in service(config)["components"] if c["component"] == "store"
    }


def write_keys(store: KvStore, prefix: str, count: int) -> dict[str, str]:
    """Acknowledged client writes: each returned once the store took it."""
    written = {f"{prefix}{i}": f"value-{prefix}{i}" for i in range(count)}
    for key, value in written.items():
        store.write(key, value)
    return written


def step_ids(report: dict[str, Any], status: str | None = None) -> list[str]:
    return [s["id"] for s in report["steps"] if status is None or s["status"] == status]


# --------------------------------------------------------------------------- (a) validate


def test_validate_accepts_a_kv_topology_only_with_the_driver_registered(
    lab: tuple[Path, dict[str, KvStore]],
) -> None:
    config, _ = lab
    result = cli(config, "validate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout

    # without the catalog line, ``driver: kv`` is a driver failback does not know
    unknown = cli(config, "validate", env={"FAILBACK_DRIVERS": ""})
    assert unknown.returncode == 2, unknown.stdout + unknown.stderr
    assert f"{config}:9" in unknown.stderr and "unknown driver 'kv'" in unknown.stderr


def problems(result: CliResult) -> list[dict[str, Any]]:
    assert result.returncode == 2, result.stdout + result.stderr
    (checked,) = result.json()["files"]
    return list(checked["problems"])


def test_validate_reports_a_bad_kv_setting_at_its_line(tmp_path: Path) -> None:
    config = write_topology(tmp_path, dc2_path="relative/dc2")
    result = cli(config, "validate")
    assert result.returncode == 2, result.stdout + result.stderr
    line = config.read_text().splitlines().index("            path: relative/dc2") + 1
    assert f"{config}:{line}" in result.stderr, result.stderr
    assert "absolute path" in result.stderr and "Traceback" not in result.stderr

    # the driver's own problems() are reported the same way
    config = write_topology(tmp_path, dc2_path=str(tmp_path / "dc1"))
    (problem,) = problems(cli(config, "validate", "--json"))
    assert problem["key"] == "services.app.components.store.sites.dc2.path"
    assert problem["line"] == line and "uses the directory of dc1" in problem["message"]

    config = write_topology(tmp_path, options="{fail_at: nowhere}")
    (problem,) = problems(cli(config, "validate", "--json"))
    assert problem["key"] == "services.app.components.store.options.fail_at"
    assert problem["line"] == 10


def test_a_bad_registration_is_one_line_naming_the_variable(
    lab: tuple[Path, dict[str, KvStore]],
) -> None:
    config, _ = lab
    for value, says in [
        ("tests.kvdriver.driver", "is not module:Class"),
        ("tests.kvdriver.nosuch:KvDriver", "cannot import 'tests.kvdriver.nosuch'"),
        ("tests.kvdriver.store:KvStore", "is not a Driver class"),
    ]:
        result = cli(config, "status", env=kv_env(FAILBACK_DRIVERS=value))
        assert result.returncode == 2, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        first, hint = result.stderr.strip().splitlines()
        assert first.startswith(f"error: FAILBACK_DRIVERS={value!r}: ") and says in first
        assert hint.startswith("hint: FAILBACK_DRIVERS is a comma-separated list")


def test_a_driver_name_taken_twice_is_refused_and_a_repeat_counts_once(
    lab: tuple[Path, dict[str, KvStore]], tmp_path: Path
) -> None:
    config, _ = lab
    (tmp_path / "impostor.py").write_text(
        "from tests.kvdriver.driver import KvDriver\n\n\n"
        "class Impostor(KvDriver):\n    name = 'postgres'\n"
    )
    path = os.pathsep.join([str(tmp_path), str(REPO)])
    taken = cli(config, "status", env=kv_env(FAILBACK_DRIVERS="impostor:Impostor", PYTHONPATH=path))
    assert taken.returncode == 2 and "Traceback" not in taken.stderr, taken.stderr
    assert "two drivers are named 'postgres': PostgresDriver and Impostor" in taken.stderr

    twice = kv_env(FAILBACK_DRIVERS=f"{PLUGIN}, {PLUGIN}")
    assert cli(config, "validate", env=twice).returncode == 0


def test_an_entry_point_registers_the_driver_too(
    lab: tuple[Path, dict[str, KvStore]], tmp_path: Path
) -> None:
    """An installed plugin declares its driver in the ``failback.drivers`` group: here
    the metadata of a distribution on the import path, read by importlib.metadata."""
    config, _ = lab
    dist = tmp_path / "plugins" / "kvplugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kvplugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[failback.drivers]\nkv = {PLUGIN}\n")
    path = os.pathsep.join([str(tmp_path / "plugins"), str(REPO)])
    env = {"FAILBACK_DRIVERS": "", "PYTHONPATH": path}
    assert cli(config, "validate", env=env).returncode == 0
    assert roles_with(config, env) == {"dc1": "primary", "dc2": "standby"}

    (dist / "entry_points.txt").write_text("[failback.drivers]\nkv = tests.kvdriver.store\n")
    broken = cli(config, "validate", env=env)
    assert broken.returncode == 2 and "Traceback" not in broken.stderr, broken.stderr
    assert "entry point 'kv' of group 'failback.drivers'" in broken.stderr


def roles_with(config: Path, env: dict[str, str]) -> dict[str, str]:
    doc = ok(cli(config, "status", "--json", env=env))
    return {c["site"]: c["role"] for c in doc["services"][0]["components"]}


# --------------------------------------------------------------------------- (b) planned


def test_planned_failover_moves_the_primary_and_loses_no_acknowledged_key(
    lab: tuple[Path, dict[str, KvStore]],
) -> None:
    config, kv = lab
    assert roles(config) == {"dc1": "primary", "dc2": "standby"}  # (f) status shows roles
    written = write_keys(kv["dc1"], "before-", 20)
    # the replica has not copied them yet: only the switch's replay can bring them over
    assert kv["dc2"].read().position == 0

    doc = ok(cli(config, "failover", "app", "--planned", "--yes", "--json"))
    assert doc["status"] == "succeeded", doc
    done = step_ids(doc["report"])
    # the order is the product: stop (final position) -> replay it -> promote -> re-protect
    order = ["stop-store-dc1", "replay-store-dc2", "promote-store-dc2", "reprotect-store-dc1"]
    assert [s for s in done if s in order] == order, done

    dc2, dc1 = kv["dc2"].read(), kv["dc1"].read()
    assert dc2.role == PRIMARY and not dc2.fenced
    assert {k: dc2.data.get(k) for k in written} == written  # not one acknowledged key lost
    assert dc1.role == REPLICA and dc1.follows == kv["dc2"].path  # re-protected
    assert roles(config) == {"dc1": "standby", "dc2": "primary"}
    assert service(config)["active_site"] == "dc2"
    kv["dc2"].write("after", "x")  # the new primary takes writes
    with pytest.raises(KvRefused):
        kv["dc1"].write("after", "x")  # the old one does not


def test_a_command_beside_the_store_does_not_see_the_registration(tmp_path: Path) -> None:
    """FAILBACK_DRIVERS is for failback's own processes: a command run by the ``command``
    driver in the same run gets only the allow-listed environment (hosts.INHERITED_ENV)."""
    kv = stores(tmp_path)
    kv["dc1"].create(PRIMARY)
    kv["dc2"].create(REPLICA, follows=kv["dc1"].path)
    seen = tmp_path / "env.txt"
    more = textwrap.indent(
        f"vip:\n  driver: command\n  sites:\n    dc1: {{verify: 'true'}}\n"
        f"    dc2: {{verify: 'env > {seen}'}}",
        " " * 6,
    )
    config = write_topology(tmp_path, more=more)
    doc = ok(cli(config, "failover", "app", "--planned", "--yes", "--json"))
    assert doc["status"] == "succeeded", doc
    assert "verify-vip-dc2" in step_ids(doc["report"], "done")
    env = seen.read_text()
    assert "FAILBACK_SITE=dc2" in env and "FAILBACK_DRIVERS" not in env, env
    assert kv["dc2"].read().role == PRIMARY


# --------------------------------------------------------------------------- (c) unplanned


def kill(store: KvStore) -> None:
    """The primary's server dies: its files stay, it serves nothing."""
    store.set_role(STOPPED)


def test_unplanned_failover_after_the_primary_died(
    lab: tuple[Path, dict[str, KvStore]],
) -> None:
    config, kv = lab
    replicated = write_keys(kv["dc1"], "replicated-", 10)
    assert kv["dc2"].pull() == 10  # replication ran
    kv["dc1"].write("unreplicated", "lost with dc1")

    refused = cli(config, "failover", "app", "--yes", "--json")  # dc1 is healthy
    assert refused.returncode == 1 and "healthy primary" in refused.json()["error"]
    assert kv["dc2"].read().role == REPLICA  # a refusal changes nothing

    kill(kv["dc1"])
    assert roles(config)["dc1"] == "down"
    doc = ok(cli(config, "failover", "app", "--yes", "--json"))
    assert doc["status"] == "succeeded", doc
    dc2 = kv["dc2"].read()
    assert dc2.role == PRIMARY and {k: dc2.data.get(k) for k in replicated} == replicated
    assert kv["dc1"].read().fenced  # a dead primary that comes back takes no write
    status = service(config)
    assert status["active_site"] == "dc2" and status["needs_resync"] == ["dc1"]


# --------------------------------------------------------------------------- (d) failback


def test_failback_after_resync_brings_dc2s_writes_home(
    lab: tuple[Path, dict[str, KvStore]],
) -> None:
    config, kv = lab
    write_keys(kv["dc1"], "replicated-", 5)
    kv["dc2"].pull()
    kv["dc1"].write("unreplicated", "divergent")
    kill(kv["dc1"])
    ok(cli(config, "failover", "app", "--yes", "--json"))
    at_dc2 = write_keys(kv["dc2"], "at-dc2-", 10)

    # dc1's server comes back as it died: a primary, fenced, with a divergent write
    kv["dc1"].set_role(PRIMARY)
    assert roles(config)["dc1"] == "stale-primary"
    with pytest.raises(KvRefused):
        kv["dc1"].write("split-brain", "x")

    doc = ok(cli(config, "failback", "app", "--yes", "--json"))
    assert doc["status"] == "succeeded", doc
    done = step_ids(doc["report"])
    assert done.index("resync-store-dc1") < done.index("stop-store-dc2"), done
    assert done.index("replay-store-dc1") < done.index("promote-store-dc1"), done

    dc1, dc2 = kv["dc1"].read(), kv["dc2"].read()
    assert dc1.role == PRIMARY and not dc1.fenced
    assert {k: dc1.data.get(k) for k in at_dc2} == at_dc2  # dc2's writes are home
    assert "unreplicated" not in dc1.data  # the divergent write was discarded by the resync
    assert dc2.role == REPLICA and dc2.follows == kv["dc1"].path
    status = service(config)
    assert status["active_site"] == "dc1" and status["needs_resync"] == []
    assert roles(config) == {"dc1": "primary", "dc2": "standby"}
    kv["dc1"].write("home", "again")


# --------------------------------------------------------------------------- (e) undo


def test_a_failback_failing_before_promotion_is_undone_and_dc2_still_serves(
    lab: tuple[Path, dict[str, KvStore]], tmp_path: Path
) -> None:
    config, kv = lab
    ok(cli(config, "failover", "app", "--planned", "--yes", "--json"))
    at_dc2 = write_keys(kv["dc2"], "at-dc2-", 10)

    # the replay of dc2's final position fails, after dc2 was stopped for it
    write_topology(tmp_path, options="{max_lag: 1000, fail_at: replay}")
    result = cli(config, "failback", "app", "--yes", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    doc = result.json()
    assert doc["status"] == "rolled-back", doc
    steps = {s["id"]: s for s in doc["report"]["steps"]}
    assert steps["replay-store-dc1"]["status"] == "failed"
    assert "fail_at: replay" in doc["error"]
    assert steps["stop-store-dc2"]["undo"] == "undone"  # dc2 was stopped, then started
    assert steps["resync-store-dc1"]["status"] == "skipped"  # dc1 followed dc2 already
    assert steps["promote-store-dc1"]["status"] == "pending"

    dc2, dc1 = kv["dc2"].read(), kv["dc1"].read()
    assert dc2.role == PRIMARY and not dc2.fenced
    assert {k: dc2.data.get(k) for k in at_dc2} == at_dc2
    assert dc1.role == REPLICA and dc1.follows == kv["dc2"].path  # as before the run
    status = service(config)
    assert status["active_site"] == "dc2" and status["current_run"] is None
    assert roles(config) == {"dc1": "standby", "dc2": "primary"}
    kv["dc2"].write("still", "served by dc2")

    # the cause removed, the same failback succeeds
    write_topology(tmp_path)
    assert ok(cli(config, "failback", "app", "--yes", "--json"))["status"] == "succeeded"
    assert {k: kv["dc1"].read().data.get(k) for k in at_dc2} == at_dc2


# ------------------------------------------------------------ undo in the observation window


@pytest.fixture
def runner() -> Iterator[list[subprocess.Popen[str]]]:
    """Runs started in the background; a failing test leaves none behind."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def status_of(config: Path, run_id: int) -> str:
    runs = ok(cli(config, "runs", "--json"))["runs"]
    return str(next(r["status"] for r in runs if r["id"] == run_id))


def test_abort_in_the_observation_window_switches_back_with_no_loss(
    lab: tuple[Path, dict[str, KvStore]],
    tmp_path: Path,
    runner: list[subprocess.Popen[str]],
) -> None:
    """The way back (plan/revert.py) is built from the kv driver's steps too: a zero-loss
    switchover home -> away, so the writes made at home during the window go back."""
    config, kv = lab
    ok(cli(config, "failover", "app", "--planned", "--yes", "--json"))
    at_dc2 = write_keys(kv["dc2"], "at-dc2-", 5)
    write_topology(tmp_path, observation="60s")
    env = {**os.environ, **kv_env()}
    argv = failback_argv("failback", "app", "--yes", "--json", "-c", str(config))
    runner.append(subprocess.Popen(argv, env=env, text=True, stdout=subprocess.PIPE))
    deadline = time.monotonic() + 60
    while service(config)["current_run"] is None or kv["dc1"].read().role != PRIMARY:
        assert time.monotonic() < deadline, "the failback never reached dc1"
        time.sleep(0.1)
    (run,) = [r for r in ok(cli(config, "runs", "--json"))["runs"] if r["kind"] == "failback"]
    while status_of(config, run["id"]) != "observing":
        assert time.monotonic() < deadline, "the failback never began observing"
        time.sleep(0.1)
    at_dc1 = write_keys(kv["dc1"], "in-window-", 5)  # home takes writes in the window

    doc = ok(cli(config, "abort", str(run["id"]), "--yes", "--json"))
    assert doc["status"] == "rolled-back", doc
    back = step_ids(doc["report"], "done")
    assert back[-6:] == [
        "back-stop-store-dc1",
        "back-replay-store-dc2",
        "back-promote-store-dc2",
        "back-reprotect-store-dc1",
        "back-verify-store-dc2",
        "back-record",
    ], back
    dc2, expected = kv["dc2"].read(), {**at_dc2, **at_dc1}
    assert dc2.role == PRIMARY and {k: dc2.data.get(k) for k in expected} == expected
    assert kv["dc1"].read().role == REPLICA
    assert service(config)["active_site"] == "dc2"


# --------------------------------------------------------------------------- the monitor


def test_the_monitor_fails_over_a_dead_kv_primary_by_policy(
    lab: tuple[Path, dict[str, KvStore]],
    tmp_path: Path,
    runner: list[subprocess.Popen[str]],
) -> None:
    """``failback monitor`` is a long-running process of its own: it knows the driver by
    the same variable, observes the store through it, and fails over through its steps."""
    config, kv = lab
    replicated = write_keys(kv["dc1"], "replicated-", 5)
    kv["dc2"].pull()
    policy = textwrap.indent(
        "failover: automatic\ndetection: {interval: 100ms, timeout: 1s, failure_threshold: 2}",
        " " * 6,
    )
    write_topology(tmp_path, policy=policy)
    env = {**os.environ, **kv_env()}
    monitor = subprocess.Popen(
        failback_argv("monitor", "-c", str(config), "--log-file", str(tmp_path / "mon.log")),
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    runner.append(monitor)
    deadline = time.monotonic() + 30
    while "monitor.started" not in _read(tmp_path / "mon.log"):
        assert monitor.poll() is None and time.monotonic() < deadline, monitor.communicate()
        time.sleep(0.05)
    assert kv["dc1"].read().role == PRIMARY  # a healthy primary is left alone

    kill(kv["dc1"])
    while service(config)["active_site"] != "dc2":
        assert monitor.poll() is None and time.monotonic() < deadline, _read(tmp_path / "mon.log")
        time.sleep(0.1)
    monitor.send_signal(signal.SIGTERM)
    monitor.communicate(timeout=30)
    dc2 = kv["dc2"].read()
    assert dc2.role == PRIMARY and {k: dc2.data.get(k) for k in replicated} == replicated
    assert kv["dc1"].read().fenced
    assert "failover.succeeded" in _read(tmp_path / "mon.log")


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""
