"""An unplanned failover of a synchronously replicated pair must not leave writes hanging.

The lab's ``--sync`` pair names the standby in synchronous_standby_names on both
nodes; after the primary dies the promoted standby has no standby of its own, so
every commit would wait for ever unless the failover relaxes it (service not strict).
"""

from __future__ import annotations

import psycopg
import pytest

from failback.lab import lab_break, lab_up
from tests.conftest import run_cli
from tests.integration.labfixtures import lab_base

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
