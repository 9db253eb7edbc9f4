"""``failback lab up|down|status|break|repair``: the whole lab as five functions.

The CLI only parses arguments and prints what these return. Everything runs on
127.0.0.1 (or, with ``--hosts netns``, on one network namespace per machine); when
failback runs as root, PostgreSQL runs as the OS user ``postgres`` (it refuses root),
HAProxy as root. ``--control-plane`` adds a witness machine and a three-member etcd
cluster (``lab.control_plane``, ``lab.etcd``); its monitors are ``lab.monitors``.
"""

from __future__ import annotations

import os
import pwd
import secrets
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from failback.config import load_topology
from failback.drivers.haproxy import HaproxyError, HaproxyRouter
from failback.drivers.postgres.capture_slots import keep_capture_slots
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
from failback.lab import dns as lab_dns
from failback.lab import etcd as lab_etcd
from failback.lab import haproxy as lab_router
from failback.lab import monitors as lab_monitors
from failback.lab import netns, pathlab, pg
from failback.lab import pool as lab_pool
from failback.lab import sshd as lab_sshd
from failback.lab import web as lab_web
from failback.lab.control_plane import WITNESS, LabControlPlane, plan_control_plane
from failback.lab.info import (
    LAB_FILE,
    SITES,
    WITNESS_COMPONENTS,
    LabError,
    LabInfo,
    LabSite,
    check_component,
    load_info,
    save_info,
)
from failback.lab.machines import EDGE, LabMachines
from failback.lab.netns_plan import HOSTS
from failback.lab.pool import LabPool
from failback.lab.ports import pick_ports
from failback.lab.topology import render_topology
from failback.lab.web import LabWeb

SERVICE = "app"
_SUN_PATH_MAX = 107  # bytes of a unix socket path, NUL excluded
_STATE_KEY = "state"


HOSTS_MODES = ("local", "netns")
"""``lab up --hosts``: everything on 127.0.0.1, or one network namespace per site."""


def _os_user() -> str:
    """Who runs PostgreSQL: ``postgres`` under root (it refuses root), else ourselves."""
    if os.geteuid() == 0:
        return "postgres"
    return pwd.getpwuid(os.geteuid()).pw_name


# --------------------------------------------------------------------------- up


def lab_up(
    directory: Path,
    *,
    sync: bool = False,
    auto: bool = False,
    hosts: str = "local",
    control_plane: bool = False,
    dns: bool = False,
) -> LabInfo:
    """Create and start a lab in ``directory`` (new or empty); return how to use it.

    An existing lab whose processes are all up is refused (it is already there);
    one that is stopped is started again as it was. Any other non-empty directory
    is refused: the lab never writes into a directory it did not create.

    ``auto``: the topology's policies are automatic with windows short enough for
    tests (see ``failback.lab.topology.AUTO_POLICY``); with ``sync`` too, the
    monitor (not postgresql.conf) keeps replication synchronous.

    ``hosts="netns"``: each site (and the edge: HAProxy, PgBouncer) is its own machine,
    a network namespace with its own address and sshd; failback reaches them by ssh.

    ``control_plane`` (netns only): a fourth machine, ``witness``, and an etcd member on
    dc1, dc2 and the witness, waited for until the cluster is healthy; the topology gets
    a ``control_plane:`` section naming one monitor node per machine.

    ``dns``: BIND's named, authoritative for the lab's zone (with a TSIG key made for the
    lab) and a caching resolver in front of it; the service gets a ``dns`` component whose
    name answers the active site's address (``lab.dns``).
    """
    check_up_options(hosts=hosts, control_plane=control_plane, dns=dns)
    h = LocalHost()
    directory = Path(os.path.abspath(directory))
    if pathlab.is_network_lab(directory):
        raise LabError(
            f"{directory} holds a network lab (lab up --network)",
            hint=f"use it as it is, or take it down first: failback lab down --dir {directory}",
        )
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
    if hosts == "netns":
        netns.require_available()
    if control_plane:
        lab_etcd.require_available()
    if dns:
        lab_dns.require_available()
    created = not directory.exists()
    try:
        return _create(
            h,
            directory,
            sync=sync,
            auto=auto,
            netns_lab=hosts == "netns",
            control_plane=control_plane,
            dns=dns,
        )
    except BaseException:
        _cleanup_failed(h, directory, remove_dir=created)
        raise


def check_up_options(
    *,
    hosts: str,
    control_plane: bool,
    network: bool = False,
    sync: bool = False,
    dns: bool = False,
) -> None:
    """``lab up``'s options fit together (checked before anything is created)."""
    if network and (hosts != "local" or control_plane or sync or dns):
        raise LabError(
            "--network is a lab of its own (two routed paths, no database): it takes no "
            "--hosts, --control-plane, --sync or --dns",
            hint="failback lab up --dir DIR --network [--auto]",
        )
    if dns:
        lab_dns.require_available()
    if hosts not in HOSTS_MODES:
        raise LabError(f"unknown --hosts {hosts!r}", hint=f"use one of: {', '.join(HOSTS_MODES)}")
    if control_plane and hosts != "netns":
        raise LabError(
            "--control-plane needs --hosts netns (etcd members live on the lab's machines)",
            hint="failback lab up --dir DIR --hosts netns --control-plane",
        )


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


def _create(
    h: Host,
    directory: Path,
    *,
    sync: bool,
    auto: bool = False,
    netns_lab: bool = False,
    control_plane: bool = False,
    dns: bool = False,
) -> LabInfo:
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

    ports = pick_ports(8)
    avoid = set(ports)
    network = _build_network(directory, witness=control_plane) if netns_lab else None
    cp = plan_control_plane(directory, network) if control_plane and network else None
    if cp is not None:
        h.write_text(cp.peer_token_file, secrets.token_urlsafe(24) + "\n")
    address = _addresses(network)
    sites = {
        name: LabSite(
            pgdata=str(directory / name / "pgdata"),
            port=port,
            os_user=os_user,
            log_file=str(directory / name / "pgdata" / "failback-postmaster.log"),
            address=address[name],
            netns=None if network is None else network["hosts"][name]["netns"],
        )
        for name, port in zip(SITES, ports[:2], strict=True)
    }
    router = _router_at(
        lab_router.router_paths(directory, ports[2]), address[EDGE], network, ports[7]
    )
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
        network=network,
        control_plane=cp,
        dns=_plan_dns(directory, avoid, address) if dns else None,
    )
    save_info(h, info)  # early, so 'lab down' can clean up an interrupted 'lab up'

    with LabMachines(network) as machines:
        if cp is not None:  # first, so the members elect a leader while PostgreSQL starts
            for name in cp.members:
                lab_etcd.start(machines.of(name), cp, name, wait=False)
        # dc1: the primary
        dc1, dc2, edge = machines.of("dc1"), machines.of("dc2"), machines.of(EDGE)
        h.make_dirs(str(directory / "dc1"), owner=os_user, mode=0o700)
        primary = pg.lab_node(h, info, "dc1")
        subnet = None if network is None else str(network["subnet"])
        pg.init_primary(dc1, primary, run_dir, subnet=subnet)
        primary = pg.start_on_free_port(dc1, primary, avoid, check_connect=False)
        pg.create_roles(dc1, primary, run_dir, pg.read_secret(h, directory, "app"))

        # dc2: a streaming standby cloned from it (pg_basebackup runs on dc2's machine)
        standby = pg.lab_node(h, info, "dc2")
        pg.clone_standby(dc2, primary, standby)
        standby = pg.start_on_free_port(dc2, standby, avoid)
        wait_streaming(standby, upstream=primary, timeout=30)
        # the first failover's lost commits can be captured even before a monitor runs
        kept = keep_capture_slots(primary, "dc2")
        if kept.problem:
            raise LabError(
                f"dc1 cannot keep capture slots: {kept.problem}",
                hint="`make setup` installs postgresql-15-wal2json",
            )
        if sync and not auto:  # with --auto the monitor manages synchronous mode
            pg.enable_sync(dc1, [primary])
            pg.enable_sync(dc2, [standby])
        sites = {
            "dc1": replace(sites["dc1"], port=primary.port),
            "dc2": replace(sites["dc2"], port=standby.port),
        }

        app_password = pg.read_secret(h, directory, "app")
        # the pool: PgBouncer -> dc1, the endpoint clients see a stall through, not errors
        pool = _start_pool_on_free_port(
            edge, directory, ports[3], avoid, os_user, sites["dc1"], address[EDGE]
        )
        pool_dsn = (
            f"host={pool.address} port={pool.port} dbname={pg.DBNAME} user={pg.APP_USER} "
            f"password={app_password} connect_timeout=2"
        )
        # the web tier: one app per site, writing through the pool
        web = _start_web(machines, directory, ports[4:7], pool_dsn, address)
        # the router: write endpoint -> dc1, and the web tier's HTTP frontend
        router = _start_router_on_free_port(edge, router, sites, avoid, web)
    if info.dns is not None:  # named runs beside failback, on this machine's 127.0.0.1
        lab_dns.write_files(h, info.dns, info.primary_site)
        info = replace(info, dns=lab_dns.start(h, info.dns, avoid))
    if cp is not None:
        lab_etcd.wait_healthy(cp)
    router_dsn = (
        f"host={router.address} port={router.port} dbname={pg.DBNAME} user={pg.APP_USER} "
        f"password={app_password} connect_timeout=2"
    )
    info = replace(
        info,
        dsn=pool_dsn,
        router=router,
        sites=sites,
        extra={_STATE_KEY: "ready", **({"auto": True} if auto else {})},
        pool=pool,
        router_dsn=router_dsn,
        web=web,
    )
    h.write_text(info.config, render_topology(info), mode=0o644)
    save_info(h, info)
    _validate_topology(info)
    return info


def _plan_dns(directory: Path, avoid: set[int], address: dict[str, str]) -> lab_dns.LabDns:
    """Where the lab's named processes listen, and what the name answers per site: the
    sites' own addresses in a netns lab, two loopback addresses standing for them on
    127.0.0.1 (where both sites' address is the same)."""
    distinct = len({address[site] for site in SITES}) == len(SITES)
    return lab_dns.LabDns(
        dir=str(directory / "dns"),
        port=lab_dns.pick_port(avoid),
        resolver_port=lab_dns.pick_port(avoid),
        addresses={s: address[s] for s in SITES} if distinct else dict(lab_dns.LOCAL_ADDRESSES),
    )


def _build_network(directory: Path, *, witness: bool = False) -> dict[str, Any]:
    """The netns lab's machines: namespaces on a bridge, each with its own sshd (and,
    for a control plane, the witness machine)."""
    plan = netns.plan_for(directory, (*HOSTS, WITNESS) if witness else HOSTS)
    netns.up(plan)
    files = lab_sshd.prepare(directory, plan)
    lab_sshd.start_all(directory, plan)
    return {**plan.to_dict(), "ssh": files.to_dict()}


def _addresses(network: dict[str, Any] | None) -> dict[str, str]:
    if network is None:
        return {part: "127.0.0.1" for part in (*SITES, EDGE)}
    return {part: str(machine["address"]) for part, machine in network["hosts"].items()}


def _router_at(
    router: lab_router.LabRouter, address: str, network: dict[str, Any] | None, admin_port: int
) -> lab_router.LabRouter:
    """On the edge machine, HAProxy's runtime API also listens on TCP: failback reaches it
    over the network, as it would an HAProxy on another machine."""
    if network is None:
        return router
    return replace(router, address=address, admin_port=admin_port)


def _start_pool_on_free_port(
    h: Host,
    directory: Path,
    port: int,
    avoid: set[int],
    os_user: str,
    target: LabSite,
    address: str,
) -> LabPool:
    users = {
        pg.APP_USER: pg.read_secret(h, directory, "app"),
        pg.ADMIN_USER: pg.read_secret(h, directory, "admin"),
    }
    for _attempt in range(5):
        pool = LabPool(
            port=port, dir=str(directory / "pgbouncer"), database=pg.DBNAME, address=address
        )
        lab_pool.write_files(
            h,
            pool,
            os_user=os_user,
            users=users,
            target_port=target.port,
            target_address=target.address,
        )
        try:
            lab_pool.start_pool(h, pool, os_user=os_user)
            return pool
        except LabError:
            avoid.add(port)
            port = pick_ports(1, avoid=avoid)[0]
    raise LabError("could not start PgBouncer on a free port", hint="see pgbouncer.log")


def _start_web(
    machines: LabMachines, directory: Path, ports: list[int], dsn: str, address: dict[str, str]
) -> LabWeb:
    web_dir = directory / "web"
    machines.local.make_dirs(str(web_dir), mode=0o700)
    machines.local.write_text(str(web_dir / "dsn"), dsn + "\n", mode=0o600)
    web = LabWeb(
        port=ports[0],
        dir=str(web_dir),
        sites={"dc1": ports[1], "dc2": ports[2]},
        address=address[EDGE],
        site_addresses={site: address[site] for site in SITES},
    )
    for site in web.sites:
        lab_web.start_app(machines.of(site), web, site)
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
            lab_router.render_config(
                router, {n: (s.address, s.port) for n, s in sites.items()}, "dc1", web
            ),
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
            moved = lab_router.router_paths(Path(router.config).parent, port)
            router = replace(router, port=moved.port)
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
    if info.network is not None:  # the machines come back first (namespaces, sshd)
        plan = netns.plan_from_dict(info.network)
        netns.up(plan)
        lab_sshd.start_all(directory, plan)
    status = lab_status(directory)
    if status["up"]:
        raise LabError(
            f"the lab in {directory} is already up (write endpoint "
            f"{info.router.address}:{info.router.port})",
            hint="use it as it is, or 'failback lab down' it first",
        )
    with LabMachines(info.network) as machines:
        for site in info.sites:
            start(machines.of(site), pg.lab_node(h, info, site), timeout=60)
        edge = machines.of(EDGE)
        if lab_router.router_pid(edge, info.router) is None:
            lab_router.start_router(edge, info.router)
        if info.pool is not None and lab_pool.pool_pid(edge, info.pool) is None:
            lab_pool.start_pool(edge, info.pool, os_user=_os_user())
        if info.web is not None:
            for site in info.web.sites:
                if lab_web.app_pid(h, info.web, site) is None:
                    lab_web.start_app(machines.of(site), info.web, site)
        if info.control_plane is not None:
            for name in info.control_plane.members:
                lab_etcd.start(machines.of(name), info.control_plane, name, wait=False)
    if info.dns is not None:  # its zone file and journal hold where the name points
        lab_dns.start(h, info.dns)
    if info.control_plane is not None:
        lab_etcd.wait_healthy(info.control_plane)
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


def lab_down(directory: Path, *, purge: bool = False) -> dict[str, Any]:
    """Stop every process of the lab (idempotent); ``purge`` also deletes DIR.

    A directory that no longer exists counts as already down. One that exists but
    is not a lab is refused, so that ``--purge`` never deletes a stranger's files.
    A netns lab's namespaces, bridge and interfaces are removed too.
    """
    h = LocalHost()
    directory = Path(os.path.abspath(directory))
    if not directory.exists():
        return {"dir": str(directory), "stopped": [], "purged": False}
    if pathlab.is_network_lab(directory):
        return pathlab.down(directory, purge=purge)
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
    if info is not None and info.control_plane is not None:
        # the monitors first (they would act on what stops next), then etcd
        cp = info.control_plane
        stopped += [f"monitor@{name}" for name in lab_monitors.stop_all(cp)]
        stopped += [f"etcd@{name}" for name in cp.members if lab_etcd.stop(cp, name)]
    if info is not None and info.dns is not None:
        stopped += lab_dns.stop(h, info.dns)
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
    if info is not None and info.network is not None:
        # processes share the PID namespace: those above were stopped from here; what is
        # left in the namespaces (sshd, sessions) dies with them
        netns.down(netns.plan_from_dict(info.network))
        stopped.append("network")
    return stopped


def lab_processes(h: Host, directory: Path) -> list[int]:
    """PIDs of live PostgreSQL/HAProxy processes that belong to DIR.

    A safety net for ``down``: a PID file can be missing after a crash or a
    re-clone. Only postgres, pg_*, haproxy, pgbouncer, etcd, named programs, the lab's web
    apps and the monitors ``lab monitors up`` started (their state directory is in
    DIR/monitors/) are considered, so a person's shell whose working directory is
    inside DIR is never touched.
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
        monitor = program.startswith("python") and any(
            arg.startswith(f"{prefix}monitors/") for arg in argv
        )
        if not (
            program.startswith(("postgres", "pg_"))
            or program in ("haproxy", "pgbouncer", "etcd", "named")
            or webapp
            or monitor
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


def lab_status(directory: Path) -> dict[str, Any]:
    """Each process up or not, each PostgreSQL's role, the router's write target.

    Read from this machine even in the netns lab: the namespaces share its process
    table and files, and their addresses are reachable through the bridge.
    """
    h = LocalHost()
    directory = Path(os.path.abspath(directory))
    if pathlab.is_network_lab(directory):
        return pathlab.status(directory)
    info = load_info(h, directory)
    sites: dict[str, Any] = {}
    for site in info.sites:
        node = pg.lab_node(h, info, site)
        obs = observe(h, node)
        sites[site] = {
            "address": node.host,
            **({"netns": info.sites[site].netns} if info.sites[site].netns else {}),
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
    if info.control_plane is not None:
        doc["control_plane"] = control_plane_doc(info.control_plane)
        up = up and all(m["healthy"] for m in doc["control_plane"]["members"].values())
    if info.dns is not None:
        doc["dns"] = lab_dns.describe(h, info.dns)
        up = up and doc["dns"]["up"]
    doc["up"] = up
    return doc


def control_plane_doc(cp: LabControlPlane) -> dict[str, Any]:
    """The control plane as ``lab up --json`` and ``lab status --json`` show it: where
    etcd answers, the witness, each member's PID and health (asked from this machine:
    a partitioned member is not healthy), each monitor's PID."""
    return {
        "endpoints": cp.endpoints,
        "prefix": cp.prefix,
        "lease_ttl": cp.lease_ttl,
        "witness": {"netns": cp.witness.netns, "address": cp.witness.address},
        "members": lab_etcd.describe(cp),
        "monitors": lab_monitors.describe(cp),
    }


def lab_document(info: LabInfo) -> dict[str, Any]:
    """``lab up --json``: lab.json's description, with the control plane's live state."""
    doc = info.to_dict()
    if info.control_plane is not None:
        doc["control_plane"] = control_plane_doc(info.control_plane)
    return doc


# --------------------------------------------------------------------------- break / repair


def lab_break(directory: Path, site: str, what: str = "db") -> dict[str, Any]:
    """Make a component of a site fail the hard way (SIGKILL), as a crash would.

    ``db``: SIGKILL the site's postmaster and wait until it no longer accepts
    connections. ``router``: the lab has one HAProxy for both sites; it is killed
    (its servers' states are saved first so a repair restores them). ``host`` (netns
    lab): the whole machine dies, every process of the site's namespace SIGKILLed and
    its link down — its etcd member and monitor too, when the lab has a control plane
    (the witness is such a machine). ``etcd``: only the machine's etcd member.
    """
    h = LocalHost()
    directory = Path(os.path.abspath(directory))
    if pathlab.is_network_lab(directory):
        return pathlab.break_link(directory, site, what)
    info = load_info(h, directory)
    _check_target(info, site, what)
    if what == "host":
        plan = _network_of(info, "break SITE host")
        on_it = _control_plane_pids(info, site)
        killed = netns.kill_all(plan.hosts[site].netns)
        netns.link_down(plan, site)
        return {"site": site, "component": what, "killed": len(killed), **on_it}
    if what == "etcd":
        cp = _control_plane_of(info, f"break {site} etcd")
        return {"site": site, "component": what, "killed_pid": lab_etcd.kill(cp, site)}
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


def _check_target(info: LabInfo, site: str, what: str) -> None:
    """``SITE WHAT`` names something this lab has; ``LabError`` with a hint otherwise."""
    info.machine(site)
    check_component(what)
    if site == WITNESS and what not in WITNESS_COMPONENTS:
        raise LabError(
            f"the witness runs only the control plane: it has no {what}",
            hint="break or repair the whole machine ('host') or its etcd member ('etcd')",
        )


def _control_plane_of(info: LabInfo, what: str) -> LabControlPlane:
    if info.control_plane is None:
        raise LabError(
            f"'lab {what}' needs a lab with a control plane (etcd members)",
            hint="create one with 'failback lab up --dir DIR --hosts netns --control-plane'",
        )
    return info.control_plane


def _control_plane_pids(info: LabInfo, machine: str) -> dict[str, Any]:
    """The PIDs of ``machine``'s etcd member and monitor (they die with the machine)."""
    cp = info.control_plane
    if cp is None or machine not in cp.members:
        return {}
    return {
        "etcd_pid": lab_etcd.member_pid(cp, machine),
        "monitor_pid": lab_monitors.monitor_pid(cp.monitor(machine)),
    }


def _web_flag(h: Host, info: LabInfo, site: str, *, broken: bool) -> dict[str, Any]:
    """``web``: that site's app answers 500 to every request (break) or heals (repair)."""
    if info.web is None:
        raise LabError("this lab has no web tier", hint="create a new lab with 'lab up'")
    lab_web.set_broken(h, info.web, site, broken)
    return {"site": site, "component": "web", "broken": broken}


def lab_repair(directory: Path, site: str, what: str = "db") -> dict[str, Any]:
    """Start a broken component again exactly as it was (idempotent).

    A former primary comes back believing it is primary: no standby.signal is
    added, nothing is resynced. That is the stale primary failback must fence.
    ``host`` (netns lab): the machine comes back: link up, sshd, PostgreSQL (as it was
    left), the site's web app, and its etcd member (which rejoins the cluster with its
    data directory) — not its monitor: ``lab monitors up`` starts what is missing.
    ``etcd``: only the machine's etcd member.
    """
    h = LocalHost()
    directory = Path(os.path.abspath(directory))
    if pathlab.is_network_lab(directory):
        return pathlab.repair_link(directory, site, what)
    info = load_info(h, directory)
    _check_target(info, site, what)
    if what == "web":
        return _web_flag(h, info, site, broken=False)
    with LabMachines(info.network) as machines:
        if what == "router":
            pid = lab_router.router_pid(h, info.router)
            if pid is None:
                pid = lab_router.start_router(machines.of(EDGE), info.router)
            return {"site": site, "component": what, "pid": pid}
        if what == "etcd":
            cp = _control_plane_of(info, f"repair {site} etcd")
            return {"site": site, "component": what, **_restart_member(machines, cp, site)}
        if what == "host":
            plan = _network_of(info, "repair SITE host")
            netns.link_up(plan, site)
            lab_sshd.start(directory, plan, site)
            if site == WITNESS:
                cp = _control_plane_of(info, "repair witness host")
                return {"site": site, "component": what, **_restart_member(machines, cp, site)}
        node = pg.lab_node(h, info, site)
        stale = postmaster_pid_file(h, node)
        if stale is not None and running_postmaster(h, node) is None:
            wait_pid_gone(h, stale[0], timeout=30)  # the zombie window (note 10)
        if running_postmaster(h, node) is None:
            start(machines.of(site), node, timeout=60)
        if what == "host" and info.web is not None and lab_web.app_pid(h, info.web, site) is None:
            lab_web.start_app(machines.of(site), info.web, site)
        member: dict[str, Any] = {}
        if what == "host" and info.control_plane is not None:
            member = _restart_member(machines, info.control_plane, site)
    return {"site": site, "component": what, "pid": running_postmaster(h, node), **member}


REJOIN_TIMEOUT_S = 15.0
"""How long ``repair`` waits for a restarted etcd member to be healthy (it is not an
error when it is not: the rest of the cluster may be cut off or down)."""


def _restart_member(machines: LabMachines, cp: LabControlPlane, name: str) -> dict[str, Any]:
    """Start ``name``'s etcd member unless it runs (its data directory makes it rejoin as
    the member it was); wait a bounded time for it to be healthy."""
    pid = lab_etcd.start(machines.of(name), cp, name)
    deadline = time.monotonic() + REJOIN_TIMEOUT_S
    while not (healthy := lab_etcd.healthy(cp.members[name])):
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return {"etcd": {"pid": pid, "healthy": healthy}}


def lab_partition(directory: Path, site: str) -> dict[str, Any]:
    """Cut ``site`` (or the witness) off the network (its link down); its processes keep
    running, so a primary there keeps believing it is primary, and its etcd member and
    monitor run on, cut off from the others (netns lab only)."""
    info = load_info(LocalHost(), Path(os.path.abspath(directory)))
    info.machine(site)
    plan = _network_of(info, "partition")
    netns.link_down(plan, site)
    return {"site": site, "partitioned": True}


def lab_heal(directory: Path, site: str) -> dict[str, Any]:
    """Bring ``site``'s (or the witness's) link back (netns lab only)."""
    info = load_info(LocalHost(), Path(os.path.abspath(directory)))
    info.machine(site)
    plan = _network_of(info, "heal")
    netns.link_up(plan, site)
    return {"site": site, "partitioned": False}


def _network_of(info: LabInfo, what: str) -> netns.NetPlan:
    if info.network is None:
        raise LabError(
            f"'lab {what}' needs a lab whose sites are machines of their own",
            hint="create one with 'failback lab up --dir DIR --hosts netns'",
        )
    return netns.plan_from_dict(info.network)
