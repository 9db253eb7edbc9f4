"""``failback lab up|down|status|break|repair``: the whole lab as five functions.

The CLI only parses arguments and prints what these return. Everything runs on
127.0.0.1; when failback runs as root, PostgreSQL runs as the OS user
``postgres`` (it refuses root), HAProxy as root.
"""

from __future__ import annotations

import os
import pwd
import secrets
import signal
import time
from pathlib import Path
from typing import Any

from failback.config import load_topology
from failback.drivers.haproxy import HaproxyError, HaproxyRouter
from failback.drivers.postgres.conn import connect
from failback.drivers.postgres.errors import PgError
from failback.drivers.postgres.node import detect_bin_dir
from failback.drivers.postgres.node_facts import observe
from failback.drivers.postgres.process import (
    kill_postmaster,
    postmaster_pid_file,
    running_postmaster,
    start,
    stop,
    wait_pid_gone,
)
from failback.drivers.postgres.replication import wait_streaming
from failback.hosts import Host, LocalHost
from failback.lab import haproxy as lab_router
from failback.lab import pg
from failback.lab import pool as lab_pool
from failback.lab import web as lab_web
from failback.lab.info import (
    LAB_FILE,
    SITES,
    LabError,
    LabInfo,
    LabSite,
    check_component,
    load_info,
    save_info,
)
from failback.lab.pool import LabPool
from failback.lab.ports import pick_ports
from failback.lab.topology import render_topology
from failback.lab.web import LabWeb

SERVICE = "app"
_SUN_PATH_MAX = 107  # bytes of a unix socket path, NUL excluded
_STATE_KEY = "state"


def _host(host: Host | None) -> Host:
    return host if host is not None else LocalHost()


def _os_user() -> str:
    """Who runs PostgreSQL: ``postgres`` under root (it refuses root), else ourselves."""
    if os.geteuid() == 0:
        return "postgres"
    return pwd.getpwuid(os.geteuid()).pw_name


# --------------------------------------------------------------------------- up


def lab_up(
    directory: Path, *, sync: bool = False, auto: bool = False, host: Host | None = None
) -> LabInfo:
    """Create and start a lab in ``directory`` (new or empty); return how to use it.

    An existing lab whose processes are all up is refused (it is already there);
    one that is stopped is started again as it was. Any other non-empty directory
    is refused: the lab never writes into a directory it did not create.

    ``auto``: the topology's policies are automatic with windows short enough for
    tests (see ``failback.lab.topology.AUTO_POLICY``); with ``sync`` too, the
    monitor (not postgresql.conf) keeps replication synchronous.
    """
    h = _host(host)
    directory = Path(os.path.abspath(directory))
    if (directory / LAB_FILE).exists():
        return _restart_existing(h, directory)
    if directory.exists() and not directory.is_dir():
        raise LabError(f"{directory} is a file, not a directory", hint="choose another path")
    if directory.exists() and any(directory.iterdir()):
        raise LabError(
            f"{directory} is not empty and is not a failback lab",
            hint="choose a new or empty directory for the lab",
        )
    _check_paths(directory)
    created = not directory.exists()
    try:
        return _create(h, directory, sync=sync, auto=auto)
    except BaseException:
        _cleanup_failed(h, directory, remove_dir=created)
        raise


def _check_paths(directory: Path) -> None:
    longest = directory / "run" / ".s.PGSQL.32767.lock"
    if len(str(longest).encode()) > _SUN_PATH_MAX:
        raise LabError(
            f"lab directory path too long for unix sockets ({len(str(directory))} chars)",
            hint="use a shorter directory, e.g. under /tmp",
        )


def _check_traversable(h: Host, directory: Path, os_user: str) -> None:
    """PostgreSQL runs as ``os_user``: every parent of DIR must let it through."""
    if os.geteuid() != 0:
        return
    result = h.run(["/bin/sh", "-c", 'cd "$1"', "sh", str(directory)], as_user=os_user, timeout=10)
    if not result.ok:
        blocking = next(
            (str(p) for p in reversed(directory.parents) if not os.stat(p).st_mode & 0o001),
            str(directory.parent),
        )
        raise LabError(
            f"OS user {os_user!r} (who runs PostgreSQL) cannot reach {directory}: "
            f"{blocking} is not traversable",
            hint=f"choose a directory under /tmp or /srv, or 'chmod o+x {blocking}'",
        )


def _create(h: Host, directory: Path, *, sync: bool, auto: bool = False) -> LabInfo:
    os_user = _os_user()
    h.make_dirs(str(directory), mode=0o711 if os.geteuid() == 0 else 0o700)
    _check_traversable(h, directory, os_user)
    bin_dir = detect_bin_dir(h)
    run_dir = str(directory / "run")
    h.make_dirs(run_dir, owner=os_user, mode=0o755)
    h.make_dirs(str(directory / "secrets"), mode=0o700)
    h.make_dirs(str(directory / "state"), mode=0o700)
    for which in pg.SECRETS:
        h.write_text(pg.secret_path(directory, which), secrets.token_urlsafe(24) + "\n")

    ports = pick_ports(7)
    avoid = set(ports)
    sites = {
        name: LabSite(
            pgdata=str(directory / name / "pgdata"),
            port=port,
            os_user=os_user,
            log_file=str(directory / name / "pgdata" / "failback-postmaster.log"),
        )
        for name, port in zip(SITES, ports[:2], strict=True)
    }
    router = lab_router.router_paths(directory, ports[2])
    info = LabInfo(
        dir=str(directory),
        config=str(directory / "failback.yaml"),
        service=SERVICE,
        dsn="",
        router=router,
        sites=sites,
        sync=sync,
        bin_dir=bin_dir,
        extra={_STATE_KEY: "creating"},
    )
    save_info(h, info)  # early, so 'lab down' can clean up an interrupted 'lab up'

    # dc1: the primary
    h.make_dirs(str(directory / "dc1"), owner=os_user, mode=0o700)
    primary = pg.lab_node(h, info, "dc1")
    pg.init_primary(h, primary, run_dir)
    primary = pg.start_on_free_port(h, primary, avoid, check_connect=False)
    pg.create_roles(h, primary, run_dir, pg.read_secret(h, directory, "app"))

    # dc2: a streaming standby cloned from it
    standby = pg.lab_node(h, info, "dc2")
    pg.clone_standby(h, primary, standby)
    standby = pg.start_on_free_port(h, standby, avoid)
    wait_streaming(standby, upstream=primary, timeout=30)
    if sync and not auto:  # with --auto the monitor manages synchronous mode
        pg.enable_sync(h, [primary, standby])
    sites = {
        "dc1": _site_with_port(sites["dc1"], primary.port),
        "dc2": _site_with_port(sites["dc2"], standby.port),
    }

    # the router: write endpoint -> dc1
    app_password = pg.read_secret(h, directory, "app")
    # the pool: PgBouncer -> dc1, the endpoint clients see a stall through, not errors
    pool = _start_pool_on_free_port(h, directory, ports[3], avoid, os_user, sites["dc1"].port)
    pool_dsn = (
        f"host=127.0.0.1 port={pool.port} dbname={pg.DBNAME} user={pg.APP_USER} "
        f"password={app_password} connect_timeout=2"
    )
    # the web tier: one app per site, writing through the pool
    web = _start_web(h, directory, ports[4:7], pool_dsn)
    # the router: write endpoint -> dc1, and the web tier's HTTP frontend
    router = _start_router_on_free_port(h, router, sites, avoid, web)
    router_dsn = (
        f"host=127.0.0.1 port={router.port} dbname={pg.DBNAME} user={pg.APP_USER} "
        f"password={app_password} connect_timeout=2"
    )
    info = LabInfo(
        dir=info.dir,
        config=info.config,
        service=SERVICE,
        dsn=pool_dsn,
        router=router,
        sites=sites,
        sync=sync,
        bin_dir=bin_dir,
        extra={_STATE_KEY: "ready", **({"auto": True} if auto else {})},
        pool=pool,
        router_dsn=router_dsn,
        web=web,
    )
    h.write_text(info.config, render_topology(info), mode=0o644)
    save_info(h, info)
    _validate_topology(info)
    return info


def _start_pool_on_free_port(
    h: Host, directory: Path, port: int, avoid: set[int], os_user: str, target_port: int
) -> LabPool:
    users = {
        pg.APP_USER: pg.read_secret(h, directory, "app"),
        pg.ADMIN_USER: pg.read_secret(h, directory, "admin"),
    }
    for _attempt in range(5):
        pool = LabPool(port=port, dir=str(directory / "pgbouncer"), database=pg.DBNAME)
        lab_pool.write_files(h, pool, os_user=os_user, users=users, target_port=target_port)
        try:
            lab_pool.start_pool(h, pool, os_user=os_user)
            return pool
        except LabError:
            avoid.add(port)
            port = pick_ports(1, avoid=avoid)[0]
    raise LabError("could not start PgBouncer on a free port", hint="see pgbouncer.log")


def _site_with_port(site: LabSite, port: int) -> LabSite:
    return LabSite(pgdata=site.pgdata, port=port, os_user=site.os_user, log_file=site.log_file)


def _start_web(h: Host, directory: Path, ports: list[int], dsn: str) -> LabWeb:
    web_dir = directory / "web"
    h.make_dirs(str(web_dir), mode=0o700)
    h.write_text(str(web_dir / "dsn"), dsn + "\n", mode=0o600)
    web = LabWeb(port=ports[0], dir=str(web_dir), sites={"dc1": ports[1], "dc2": ports[2]})
    for site in web.sites:
        lab_web.start_app(h, web, site)
    return web


def _start_router_on_free_port(
    h: Host,
    router: lab_router.LabRouter,
    sites: dict[str, LabSite],
    avoid: set[int],
    web: LabWeb | None = None,
) -> lab_router.LabRouter:
    for attempt in range(5):
        h.write_text(
            router.config,
            lab_router.render_config(router, {n: s.port for n, s in sites.items()}, "dc1", web),
            mode=0o600,
        )
        try:
            lab_router.start_router(h, router)
            return router
        except LabError as exc:
            if "bind" not in exc.message.lower() or attempt == 4:
                raise
            (port,) = pick_ports(1, avoid=avoid)
            avoid.add(port)
            router = lab_router.router_paths(Path(router.config).parent, port)
    return router  # pragma: no cover


def _validate_topology(info: LabInfo) -> None:
    """The generated file must load: a lab that failback itself rejects is useless."""
    load_topology(info.config)


def _restart_existing(h: Host, directory: Path) -> LabInfo:
    info = load_info(h, directory)
    if info.extra.get(_STATE_KEY) == "creating":
        raise LabError(
            f"creating the lab in {directory} was interrupted",
            hint=f"remove it with 'failback lab down {directory} --purge' and run 'lab up' again",
        )
    status = lab_status(directory, host=h)
    if status["up"]:
        raise LabError(
            f"the lab in {directory} is already up (write endpoint 127.0.0.1:{info.router.port})",
            hint="use it as it is, or 'failback lab down' it first",
        )
    for site in info.sites:
        start(h, pg.lab_node(h, info, site), timeout=60)
    if lab_router.router_pid(h, info.router) is None:
        lab_router.start_router(h, info.router)
    if info.pool is not None and lab_pool.pool_pid(h, info.pool) is None:
        lab_pool.start_pool(h, info.pool, os_user=_os_user())
    if info.web is not None:
        for site in info.web.sites:
            if lab_web.app_pid(h, info.web, site) is None:
                lab_web.start_app(h, info.web, site)
    return info


def _cleanup_failed(h: Host, directory: Path, *, remove_dir: bool) -> None:
    """Undo a failed 'lab up': stop what started, remove what was written."""
    try:
        _stop_everything(h, directory)
    finally:
        if directory.exists():
            if remove_dir:
                h.remove(str(directory))
            else:
                for entry in directory.iterdir():
                    h.remove(str(entry))


# --------------------------------------------------------------------------- down


def lab_down(directory: Path, *, purge: bool = False, host: Host | None = None) -> dict[str, Any]:
    """Stop every process of the lab (idempotent); ``purge`` also deletes DIR.

    A directory that no longer exists counts as already down. One that exists but
    is not a lab is refused, so that ``--purge`` never deletes a stranger's files.
    """
    h = _host(host)
    directory = Path(os.path.abspath(directory))
    if not directory.exists():
        return {"dir": str(directory), "stopped": [], "purged": False}
    load_info(h, directory)  # refuses a directory that is not a lab
    stopped = _stop_everything(h, directory)
    if purge:
        h.remove(str(directory))
    return {"dir": str(directory), "stopped": stopped, "purged": purge}


def _stop_everything(h: Host, directory: Path) -> list[str]:
    stopped: list[str] = []
    try:
        info: LabInfo | None = load_info(h, directory)
    except LabError:
        info = None
    if info is not None:
        if lab_router.stop_router(h, info.router):
            stopped.append("router")
        if info.pool is not None and lab_pool.stop_pool(h, info.pool):
            stopped.append("pool")
        if info.web is not None:
            stopped += lab_web.stop_apps(h, info.web)
        for site in info.sites:
            try:
                node = pg.lab_node(h, info, site)
            except OSError:
                continue
            if running_postmaster(h, node) is None:
                continue
            try:
                stop(h, node, mode="fast", timeout=30)
            except PgError:
                kill_postmaster(h, node)
            stopped.append(f"db@{site}")
    stopped += _kill_leftovers(h, directory)
    return stopped


def lab_processes(h: Host, directory: Path) -> list[int]:
    """PIDs of live PostgreSQL/HAProxy processes that belong to DIR.

    A safety net for ``down``: a PID file can be missing after a crash or a
    re-clone. Only postgres, pg_* and haproxy programs are considered, so a
    person's shell whose working directory is inside DIR is never touched.
    """
    prefix = str(directory).rstrip("/") + "/"
    found: list[int] = []
    for entry in h.list_dir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        try:
            argv = h.read_text(f"/proc/{pid}/cmdline").split("\0")
        except OSError:
            continue
        program = os.path.basename(argv[0].split(" ")[0]) if argv and argv[0] else ""
        webapp = program.startswith("python") and "failback.lab.webapp" in argv
        if not (
            program.startswith(("postgres", "pg_")) or program in ("haproxy", "pgbouncer") or webapp
        ):
            continue
        cwd = h.process_cwd(pid) or ""
        mine = any(prefix in arg for arg in argv) or (cwd + "/").startswith(prefix)
        if mine and h.pid_alive(pid):
            found.append(pid)
    return found


def _kill_leftovers(h: Host, directory: Path) -> list[str]:
    pids = lab_processes(h, directory)
    for pid in pids:
        h.kill(pid, signal.SIGKILL)
    for pid in pids:
        lab_router.wait_pid_gone(h, pid, timeout=5)
    return [f"pid {pid}" for pid in pids]


# --------------------------------------------------------------------------- status


def lab_status(directory: Path, *, host: Host | None = None) -> dict[str, Any]:
    """Each process up or not, each PostgreSQL's role, the router's write target."""
    h = _host(host)
    directory = Path(os.path.abspath(directory))
    info = load_info(h, directory)
    sites: dict[str, Any] = {}
    for site in info.sites:
        node = pg.lab_node(h, info, site)
        obs = observe(h, node)
        sites[site] = {
            "port": node.port,
            "pid": running_postmaster(h, node),
            "up": obs.reachable,
            "role": obs.role,
            "timeline": obs.timeline,
            "error": obs.error,
        }
    router: dict[str, Any] = {
        "port": info.router.port,
        "socket": info.router.socket,
        "pid": lab_router.router_pid(h, info.router),
        "up": False,
        "write_target": None,
        "servers": {},
        "error": None,
    }
    try:
        hx = HaproxyRouter(info.router.socket, 2.0)
        router["servers"] = {
            n: s.admin_state for n, s in hx.server_states(info.router.backend).items()
        }
        router["up"] = True
        router["write_target"] = hx.write_target(info.router.backend)
    except HaproxyError as exc:
        router["error"] = exc.message
    doc: dict[str, Any] = {"dir": info.dir, "config": info.config, "sites": sites, "router": router}
    up = router["up"] and all(s["up"] for s in sites.values())
    if info.pool is not None:
        pool_pid = lab_pool.pool_pid(h, info.pool)
        doc["pool"] = {"port": info.pool.port, "pid": pool_pid, "up": pool_pid is not None}
        up = up and pool_pid is not None
    if info.web is not None:
        apps = {
            site: {
                "port": port,
                "pid": lab_web.app_pid(h, info.web, site),
                "broken": info.web.flag(site).exists(),
            }
            for site, port in info.web.sites.items()
        }
        doc["web"] = {"url": info.web.url, "apps": apps}
        up = up and all(a["pid"] is not None for a in apps.values())
    doc["up"] = up
    return doc


# --------------------------------------------------------------------------- break / repair


def lab_break(
    directory: Path, site: str, what: str = "db", *, host: Host | None = None
) -> dict[str, Any]:
    """Make a component of a site fail the hard way (SIGKILL), as a crash would.

    ``db``: SIGKILL the site's postmaster and wait until it no longer accepts
    connections. ``router``: the lab has one HAProxy for both sites; it is killed
    (its servers' states are saved first so a repair restores them).
    """
    h = _host(host)
    directory = Path(os.path.abspath(directory))
    info = load_info(h, directory)
    info.site(site)
    check_component(what)
    if what == "web":
        return _web_flag(h, info, site, broken=True)
    if what == "router":
        lab_router.save_router_state(h, info.router)
        pid = lab_router.router_pid(h, info.router)
        if pid is not None:
            h.kill(pid, signal.SIGKILL)
            lab_router.wait_pid_gone(h, pid, timeout=10)
        return {"site": site, "component": what, "killed_pid": pid}
    node = pg.lab_node(h, info, site)
    pid = kill_postmaster(h, node)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            connect(node, timeout=1).close()
        except PgError:
            break
        time.sleep(0.01)
    else:
        raise LabError(
            f"{site}: PostgreSQL still accepts connections after SIGKILL of pid {pid}",
            hint="check for another server on the same port",
        )
    return {"site": site, "component": what, "killed_pid": pid}


def _web_flag(h: Host, info: LabInfo, site: str, *, broken: bool) -> dict[str, Any]:
    """``web``: that site's app answers 500 to every request (break) or heals (repair)."""
    if info.web is None:
        raise LabError("this lab has no web tier", hint="create a new lab with 'lab up'")
    lab_web.set_broken(h, info.web, site, broken)
    return {"site": site, "component": "web", "broken": broken}


def lab_repair(
    directory: Path, site: str, what: str = "db", *, host: Host | None = None
) -> dict[str, Any]:
    """Start a broken component again exactly as it was (idempotent).

    A former primary comes back believing it is primary: no standby.signal is
    added, nothing is resynced. That is the stale primary failback must fence.
    """
    h = _host(host)
    directory = Path(os.path.abspath(directory))
    info = load_info(h, directory)
    info.site(site)
    check_component(what)
    if what == "web":
        return _web_flag(h, info, site, broken=False)
    if what == "router":
        pid = lab_router.router_pid(h, info.router)
        if pid is None:
            pid = lab_router.start_router(h, info.router)
        return {"site": site, "component": what, "pid": pid}
    node = pg.lab_node(h, info, site)
    stale = postmaster_pid_file(h, node)
    if stale is not None and running_postmaster(h, node) is None:
        wait_pid_gone(h, stale[0], timeout=30)  # the zombie window (note 10)
    start(h, node, timeout=60)
    return {"site": site, "component": what, "pid": running_postmaster(h, node)}
