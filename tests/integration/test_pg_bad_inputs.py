"""Promise 5 on real servers: a bad topology file gets one clear error line and changes nothing.

The lab's failback.yaml is copied and broken in one way each:

* ``closed-port``: dc2's port is a port nothing listens on;
* ``wrong-password``: the admin password secret is a file holding a wrong password;
* ``other-cluster``: dc2's port and pgdata point at a third, independent cluster
  (initdb-ed here with the driver's own ``initdb`` and ``start``, with the same roles
  and passwords, so that only its system identifier differs).

Each is tried with ``failover app --force --yes`` while the service is at home, and
with both ``failback app --yes`` and ``failover app --force --yes`` after a real
failover to dc2. Every attempt must exit non-zero with one ``error:`` line and no
traceback, and leave roles, router, journal and locks exactly as they were.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from failback.drivers.postgres.node import PgNode
from failback.drivers.postgres.process import initdb, stop
from failback.hosts import LocalHost
from failback.lab import lab_status
from failback.lab import pg as lab_pg
from failback.lab.ports import pick_ports
from tests.integration.labfixtures import SERVICE, Lab, error_lines, lab_base, new_lab

pytestmark = pytest.mark.integration

VARIANTS = ("closed-port", "wrong-password", "other-cluster")
# what the one error line must name, per variant
EXPECTED = {
    "closed-port": ("dc2",),
    "wrong-password": ("password",),
    "other-cluster": ("different PostgreSQL clusters",),
}


@dataclass
class BadLab:
    lab: Lab
    configs: dict[str, Path]
    last: dict[str, Any] | None = None
    """The snapshot the last ``attempt`` took after its command."""


def _third_cluster(lab: Lab) -> PgNode:
    """An independent cluster with the lab's roles and passwords: only its identity differs."""
    host = LocalHost()
    base = lab.dir / "other"
    host.make_dirs(str(base), owner="postgres", mode=0o700)
    (port,) = pick_ports(1, avoid={lab.port("dc1"), lab.port("dc2"), lab.info.router.port})
    node = PgNode(
        site="other",
        host="127.0.0.1",
        port=port,
        pgdata=str(base / "pgdata"),
        bin_dir=lab.info.bin_dir,
        os_user="postgres",
        user=lab_pg.ADMIN_USER,
        password=lab.secret("failback"),
        dbname=lab_pg.DBNAME,
        replication_user=lab_pg.REPLICATION_USER,
        replication_password=lab.secret("replicator"),
    )
    run_dir = str(lab.dir / "run")
    initdb(host, node, settings=lab_pg.settings(run_dir, sync=False), sync=False)
    node = lab_pg.start_on_free_port(host, node, set(), check_connect=False)
    lab_pg.create_roles(host, node, run_dir, lab.secret("app"))
    return node


def _write_bad_configs(lab: Lab, other: PgNode) -> dict[str, Path]:
    good = yaml.safe_load(lab.config.read_text())
    wrong = lab.dir / "secrets" / "wrong.pass"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    (closed,) = pick_ports(1, avoid={lab.port("dc1"), lab.port("dc2"), other.port})
    configs = {}
    for variant in VARIANTS:
        doc = yaml.safe_load(yaml.safe_dump(good))
        db = doc["services"][SERVICE]["components"]["db"]
        if variant == "closed-port":
            db["sites"]["dc2"]["port"] = closed
        elif variant == "wrong-password":
            db["options"]["password"] = f"file:{wrong}"
        else:
            db["sites"]["dc2"]["port"] = other.port
            db["sites"]["dc2"]["pgdata"] = other.pgdata
        path = lab.dir / f"failback-{variant}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        configs[variant] = path
    return configs


@pytest.fixture(scope="module")
def bad() -> Iterator[BadLab]:
    with lab_base(prefix="fb-pgbad-") as root:
        lab = new_lab(root)
        other = _third_cluster(lab)
        try:
            yield BadLab(lab, _write_bad_configs(lab, other))
        finally:
            with contextlib.suppress(Exception):
                stop(LocalHost(), other, mode="fast", timeout=30)


def snapshot(lab: Lab) -> dict[str, Any]:
    """Everything a bad run could have changed: roles, processes, router, journal, locks."""
    view = lab_status(lab.dir)
    status = lab.status()
    with contextlib.closing(
        sqlite3.connect(f"file:{lab.journal_path}?mode=ro", uri=True, timeout=5)
    ) as db:
        locks = db.execute("SELECT service, run_id FROM locks").fetchall()
    return {
        "sites": {
            site: (s["role"], s["pid"], s["timeline"], s["up"]) for site, s in view["sites"].items()
        },
        "router": (view["router"]["write_target"], view["router"]["servers"]),
        "active_site": status.active_site,
        "needs_resync": status.needs_resync,
        "current_run": status.current_run,
        "roles": {site: status.db(site)["role"] for site in ("dc1", "dc2")},
        "runs": [(r["id"], r["status"]) for r in lab.runs()],
        "locks": locks,
    }


def attempt(
    bad: BadLab,
    variant: str,
    *command: str,
    expect: tuple[str, ...] = (),
    before: dict[str, Any] | None = None,
) -> str | None:
    """Run the command with the broken file; what went wrong, or None when all is right.

    ``before``: the snapshot to compare with, when the caller has one (the last attempt's,
    which changed nothing); the snapshot taken after is kept in ``bad.last``.
    """
    lab = bad.lab
    before = snapshot(lab) if before is None else before
    result = lab.cli(*command, SERVICE, "--yes", config=bad.configs[variant])
    after = bad.last = snapshot(lab)
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    what = (
        f"`{' '.join(command)}` with {variant}: exit {result.returncode}\n{result.stderr}\n"
        f"changed (before, after): {changed}"
    )
    lines = error_lines(result.stderr)
    ok = (
        result.returncode != 0
        and "Traceback" not in result.stderr + result.stdout
        and changed == {}
        and len(lines) == 1
        and all(word in lines[0] for word in expect)
    )
    return None if ok else what


@pytest.mark.parametrize("variant", VARIANTS)
def test_bad_config_failover_at_home_changes_nothing(bad: BadLab, variant: str) -> None:
    assert bad.lab.status().active_site == "dc1"
    problem = attempt(bad, variant, "failover", "--force", expect=EXPECTED[variant])
    assert problem is None, problem


def test_bad_config_after_failover_changes_nothing(bad: BadLab) -> None:
    """Away at dc2 with a stale primary at dc1: failback and failover --force must both be
    refused with every broken file (a dc2 that merely looks down must not make the stale
    dc1 the primary again)."""
    lab = bad.lab
    lab.unplanned_failover()
    lab.repair("dc1")
    status = lab.status()
    assert status.active_site == "dc2" and status.db("dc1")["role"] == "stale-primary"
    problems: list[str | None] = []
    bad.last = None  # the failover and repair above changed everything: snapshot anew
    for command, expect in (("failback", True), ("failover", False)):
        for v in VARIANTS:  # each compared with the state the attempt before it left
            words = EXPECTED[v] if expect else ()
            extra = () if command == "failback" else ("--force",)
            problems.append(attempt(bad, v, command, *extra, expect=words, before=bad.last))
    found = [p for p in problems if p is not None]
    assert not found, "\n\n".join(found)
    # the good file still works afterwards: nothing was left half-done
    lab.failback()
    lab.wait_home_end_state()
