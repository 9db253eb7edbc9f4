"""The name rules of validate are the real programs' own: real PgBouncer, real HAProxy.

A name ``failback validate`` accepts must work at run time: PgBouncer must PAUSE,
RESUME and route a pooled database called ``my-db`` or ``app.v2`` (its console reads
an unquoted argument as ``[0-9a-z_]+`` only, so the driver quotes it), and HAProxy
must load a backend and a server with every character the rule allows. A name the
rule refuses, HAProxy refuses too.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from failback.config import load_topology_text
from failback.drivers.haproxy.names import name_problem
from failback.drivers.pgbouncer.admin import Pgbouncer
from failback.drivers.pgbouncer.target import database_lines, pgbouncer_of
from failback.hosts import LocalHost
from failback.lab.pool import PGBOUNCER_BIN, LabPool, start_pool, stop_pool, write_files
from tests.integration.pgcluster import free_port

pytestmark = pytest.mark.integration

OS_USER = "postgres"
HAPROXY_BIN = shutil.which("haproxy") or "/usr/sbin/haproxy"
DATABASES = ["app", "my-db", "app.v2", "App_2"]

TOPOLOGY = """\
sites: {{dc1: {{}}, dc2: {{}}}}
services:
  app:
    primary_site: dc1
    components:
      pool:
        driver: pgbouncer
        options:
          port: {port}
          admin_user: failback
          admin_password: inline:pool-secret
          databases: [{databases}]
          databases_file: {databases_file}
          os_user: postgres
        sites:
          dc1: {{host: 127.0.0.1, port: {dc1}, dbname: app.v2}}
          dc2: {{host: localhost, port: {dc2}}}
"""


@pytest.fixture
def bouncer() -> Iterator[tuple[Pgbouncer, object]]:
    if not os.path.exists(PGBOUNCER_BIN):
        pytest.skip(f"no PgBouncer at {PGBOUNCER_BIN}")
    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        pytest.skip(f"no OS user {OS_USER!r} to run PgBouncer as")
    base = tempfile.mkdtemp(prefix="fb-names-", dir="/tmp")
    os.chmod(base, 0o755)
    host = LocalHost()
    pool = LabPool(port=free_port(), dir=os.path.join(base, "pool"), database="app")
    dc1, dc2 = free_port({pool.port}), free_port({pool.port})
    write_files(host, pool, os_user=OS_USER, users={"failback": "pool-secret"}, target_port=dc1)
    text = TOPOLOGY.format(
        port=pool.port,
        databases=", ".join(DATABASES),
        databases_file=pool.databases_file,
        dc1=dc1,
        dc2=dc2,
    )
    component = (
        load_topology_text(text, os.path.join(base, "failback.yaml"))
        .services["app"]
        .components["pool"]
    )
    try:
        start_pool(host, pool, os_user=OS_USER)
        yield pgbouncer_of(component), component
    finally:
        stop_pool(host, pool)
        shutil.rmtree(base, ignore_errors=True)


def test_pgbouncer_pauses_routes_and_resumes_every_name_validate_accepts(
    bouncer: tuple[Pgbouncer, object],
) -> None:
    admin, component = bouncer
    host = LocalHost()
    for site, target in (("dc1", "127.0.0.1"), ("dc2", "localhost")):
        lines = database_lines(component, site)
        admin.retarget(host, lines)
        port = int(component.sites[site].port)  # type: ignore[attr-defined]
        admin.wait_target(DATABASES, target, port)
        admin.pause(DATABASES, timeout=10)
        seen = admin.targets()
        assert all(seen[name].paused for name in DATABASES), seen
        assert seen["my-db"].dbname == ("app.v2" if site == "dc1" else "my-db")
        admin.resume(DATABASES)
        assert not any(t.paused for n, t in admin.targets().items() if n in DATABASES)


HAPROXY_CFG = """\
defaults
  mode tcp
  timeout connect 1s
  timeout client 1s
  timeout server 1s
frontend fe
  bind 127.0.0.1:{port}
  default_backend {name}
backend {name}
  server {name} 127.0.0.1:1
"""


@pytest.mark.parametrize(
    "name",
    ["pg_write", "pg-dc1.example:5432", "A9", "a/b", "a b", "a;b", "é", "a#b", "a,b", "a'b"],
)
def test_haproxy_accepts_exactly_what_the_rule_accepts(name: str, tmp_path: Path) -> None:
    if not os.path.exists(HAPROXY_BIN):
        pytest.skip(f"no HAProxy at {HAPROXY_BIN}")
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(HAPROXY_CFG.format(port=free_port(), name=name))
    checked = subprocess.run([HAPROXY_BIN, "-c", "-f", str(cfg)], capture_output=True, check=False)
    haproxy_accepts = checked.returncode == 0
    output = (checked.stdout + checked.stderr).decode(errors="replace")
    assert haproxy_accepts == (name_problem("server", name) is None), output
