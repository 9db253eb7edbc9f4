"""What the CLI loads before it knows which command runs.

Every ``failback`` invocation pays for its imports (the test suite spawns hundreds):
commands that never reach PostgreSQL, PgBouncer or etcd (``--help``, ``validate``,
a bad argument) must not load their client libraries. The drivers import psycopg, the
etcd client httpx, and the dns driver dnspython, when they first connect.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("psycopg", "httpx", "dns")


def _loaded_after(code: str) -> list[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_the_cli_loads_no_database_or_etcd_client_until_a_command_needs_one() -> None:
    loaded = _loaded_after("import failback.cli.main")
    assert [name for name in HEAVY if name in loaded] == []


def test_loading_a_topology_loads_no_database_or_etcd_client() -> None:
    loaded = _loaded_after("import failback.config, failback.store, failback.drivers.catalog")
    assert [name for name in HEAVY if name in loaded] == []


def test_the_drivers_still_load_psycopg_when_they_connect() -> None:
    """The lazy import is really there (a refused connection still goes through it)."""
    loaded = _loaded_after(
        "from failback.drivers.postgres.conn import connect\n"
        "from failback.drivers.postgres.node import PgNode\n"
        "from failback.errors import FailbackError\n"
        "try:\n"
        "    connect(PgNode(site='dc1', host='127.0.0.1', port=1, pgdata='/x', bin_dir='/x'))\n"
        "except FailbackError:\n"
        "    pass"
    )
    assert "psycopg" in loaded
