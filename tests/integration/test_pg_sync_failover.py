"""An unplanned failover of a synchronously replicated pair must not leave writes hanging.

The lab's ``--sync`` pair names the standby in synchronous_standby_names on both
nodes; after the primary dies the promoted standby has no standby of its own, so
every commit would wait for ever unless the failover relaxes it (service not strict).
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
import yaml

from failback.lab import lab_break, lab_repair, lab_up
from tests.conftest import run_cli
from tests.integration.labfixtures import SERVICE, Lab, lab_base, step_of
from tests.integration.pgholds import variant, wait_until

pytestmark = pytest.mark.integration


def test_failover_of_a_synchronous_pair_relaxes_and_writes_flow() -> None:
    with lab_base("fb-sync-") as root:
        info = lab_up(root / "lab", sync=True)
        lab_break(root / "lab", "dc1", "db")
        result = run_cli("failover", "app", "--yes", "--json", "-c", info.config, timeout=120)
        doc = result.json()
        assert result.returncode == 0, result.stderr
        assert doc["status"] == "succeeded", doc
        events = run_cli("run", "show", str(doc["run_id"]), "--json", "-c", info.config).json()
        assert any(e["kind"] == "sync.relaxed" for e in events["events"])
        with psycopg.connect(info.dsn, autocommit=True, prepare_threshold=None) as conn:
            conn.execute("SET statement_timeout = '10s'")
            conn.execute("CREATE TABLE after_failover (v int)")
            conn.execute("INSERT INTO after_failover VALUES (1)")
            port = conn.execute("SELECT inet_server_port()").fetchone()
        assert port == (info.sites["dc2"].port,)


def test_strict_synchronous_failover_makes_writes_wait_for_a_standby() -> None:
    """``strict: true``: after the failover the new primary keeps waiting for a
    synchronous standby (no relax), so a client's write waits instead of being
    acknowledged without a copy; it completes once the old primary is back as a
    standby, is not lost, and after the failback the service is synchronous again.

    No monitor runs here, so the zero-loss mode was never observed: ``--force``. The
    failover's own check write must not wait (it proves where writes land): before,
    the run hung for ever in that step.
    """
    with lab_base("fb-strict-") as root:
        lab = Lab(info=lab_up(root / "lab", sync=True), base=root)
        config = variant(lab, "strict")
        text = yaml.safe_load(config.read_text())
        text["services"][SERVICE]["policy"].update(synchronous=True, strict=True)
        config.write_text(yaml.safe_dump(text, sort_keys=False))
        with lab.connect_dsn() as conn:
            conn.execute("CREATE TABLE t_strict (v text)")
        lab_break(lab.dir, "dc1", "db")

        doc = lab.cli_json("failover", SERVICE, "--force", "--yes", config=config)
        assert doc["status"] == "succeeded", doc
        events = lab.run_show(doc["run_id"])["events"]
        assert not any(e["kind"] == "sync.relaxed" for e in events)
        assert sync_names(lab, "dc2") == "ANY 1 (dc1, dc2)"

        acked: list[float] = []

        def client_write() -> None:
            with psycopg.connect(lab.info.dsn, autocommit=True, prepare_threshold=None) as c:
                c.execute("INSERT INTO t_strict VALUES ('waited')")
            acked.append(time.time())

        writer = threading.Thread(target=client_write, daemon=True)
        writer.start()
        wait_until(lambda: waiting_for_a_standby(lab, "dc2") == 1)
        assert writer.is_alive() and not acked  # waiting, not acknowledged, not failed

        lab_repair(lab.dir, "dc1", "db")
        back = lab.cli_json("failback", SERVICE, "--yes", config=config)
        assert back["status"] == "succeeded", back
        writer.join(timeout=60)
        resync = step_of(back["report"], "resync-dc1")
        assert acked and acked[0] >= resync["started_at"], "acknowledged before a standby"
        assert "waited" in lab.values_on("dc1", "t_strict")
        # synchronous again after the failback: dc1 waits for dc2, which streams
        lab.wait_home_end_state()
        assert sync_names(lab, "dc1") == "ANY 1 (dc1, dc2)"
        wait_until(lambda: sync_state(lab, "dc1") == [("dc2", "quorum")])


def sync_names(lab: Lab, site: str) -> str:
    with lab.connect(site) as conn:
        row = conn.execute("SHOW synchronous_standby_names").fetchone()
    return str(row[0]) if row else ""


def sync_state(lab: Lab, site: str) -> list[tuple[str, str]]:
    with lab.connect(site) as conn:
        rows = conn.execute("SELECT application_name, sync_state FROM pg_stat_replication")
        return [(str(a), str(s)) for a, s in rows.fetchall()]


def waiting_for_a_standby(lab: Lab, site: str) -> int:
    with lab.connect(site) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event = 'SyncRep' AND query LIKE 'INSERT INTO t_strict%'"
        ).fetchone()
    return int(row[0]) if row else 0
