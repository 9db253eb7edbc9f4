"""Declared ``sql`` checks against a real PostgreSQL: aimed at the site a gate judges when
they name none, and bounded by their own timeout (a hanging query never hangs a gate)."""

from __future__ import annotations

import time

import pytest

from failback.config import load_topology_text
from failback.hosts import LocalHost
from failback.observe.checks import run_check
from tests.integration.pgcluster import ADMIN_PASSWORD, ADMIN_USER, pg_single

pytestmark = pytest.mark.integration


def topology(port: int, pgdata: str) -> str:
    return f"""\
sites:
  dc9: {{}}
  dc8: {{}}
services:
  app:
    primary_site: dc9
    components:
      db:
        driver: postgres
        options: {{user: {ADMIN_USER}, password: "env:FB_TEST_SQL_PASSWORD", dbname: postgres}}
        sites:
          dc9: {{host: 127.0.0.1, port: {port}, pgdata: {pgdata}}}
          dc8: {{host: 127.0.0.1, port: 1, pgdata: /nonexistent}}
    checks:
      - {{name: anywhere, type: sql, component: db, query: "select 42"}}
      - {{name: slow, type: sql, component: db, site: dc9, timeout: 500ms,
          query: "select pg_sleep(30)"}}
"""


def test_sql_checks_run_where_asked_and_within_their_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FB_TEST_SQL_PASSWORD", ADMIN_PASSWORD)
    with pg_single() as (_host, node):
        service = load_topology_text(topology(node.port, node.pgdata), "/tmp/f.yaml").service("app")
        anywhere, slow = service.checks
        local = LocalHost()
        result = run_check(anywhere, service, local, "dc9")  # a gate judging dc9
        assert result.ok and "42" in result.detail, result
        elsewhere = run_check(anywhere, service, local, "dc8")  # nothing listens there
        assert not elsewhere.ok, elsewhere
        alone = run_check(anywhere, service, local)  # the monitor: no gate names a site
        assert not alone.ok and "give it `site:`" in alone.detail, alone

        started = time.monotonic()
        timed = run_check(slow, service, local, "dc9")
        assert not timed.ok and "statement timeout" in timed.detail, timed
        assert time.monotonic() - started < 10, "the 30 s query was not cut at its timeout"
