"""DIR/failback.yaml: the lab described in the topology format (docs/topology.md).

Secrets are ``file:`` references to DIR/secrets/*.pass, so the file can be
printed, pasted and committed like a real one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from failback.lab.info import LabInfo
from failback.lab.pg import ADMIN_USER, DBNAME, REPLICATION_USER, secret_path


def topology_dict(info: LabInfo) -> dict[str, Any]:
    directory = Path(info.dir)
    sites = {
        name: {
            "host": site.address,
            "port": site.port,
            "pgdata": site.pgdata,
            "os_user": site.os_user,
        }
        for name, site in info.sites.items()
    }
    doc: dict[str, Any] = {
        "version": 1,
        "state_dir": str(directory / "state"),
        "sites": {
            name: {"description": f"lab site {n} ({site.address})"}
            for n, (name, site) in enumerate(info.sites.items(), start=1)
        },
        "services": {
            info.service: {
                "primary_site": info.primary_site,
                "description": f"failback lab in {directory}",
                "components": {
                    "db": {
                        "driver": "postgres",
                        "options": {
                            "user": ADMIN_USER,
                            "password": f"file:{secret_path(directory, 'admin')}",
                            "dbname": DBNAME,
                            "replication_user": REPLICATION_USER,
                            "replication_password": (
                                f"file:{secret_path(directory, 'replication')}"
                            ),
                            "bin_dir": info.bin_dir,
                        },
                        "sites": sites,
                    },
                    "router": {
                        "driver": "haproxy",
                        "options": {
                            "socket": info.router.admin,
                            "backend": info.router.backend,
                            "endpoint": f"{info.router.address}:{info.router.port}",
                        },
                        "sites": {name: {"server": name} for name in info.sites},
                    },
                },
                "checks": [
                    {
                        "name": "write-endpoint",
                        "type": "tcp",
                        "host": info.router.address,
                        "port": info.router.port,
                        "use": ["precheck"],
                    },
                    {
                        "name": "db-dc1",
                        "type": "tcp",
                        "site": "dc1",
                        "host": info.sites["dc1"].address,
                        "port": info.sites["dc1"].port,
                        "use": ["precheck"],
                    },
                ],
                "policy": _policy(info),
            }
        },
    }
    doc["baseline"] = _baseline(info)
    if info.pool is not None:
        doc["services"][info.service]["components"]["pool"] = _pool_component(info, directory)
    if info.web is not None:
        doc["services"][info.service]["components"]["web"] = {
            "driver": "haproxy",
            "description": "the web tier: HAProxy splits its traffic between the sites",
            "options": {
                "socket": info.router.admin,
                "backend": info.web.backend,
                "tier": "stateless",
            },
            "sites": {name: {"server": name} for name in info.web.sites},
        }
    if info.dns is not None:
        doc["services"][info.service]["components"]["dns"] = _dns_component(info.dns)
    if info.network is not None:
        doc = _place_on_machines(doc, info)
    if info.control_plane is not None:
        # three monitors (dc1, dc2, the witness) coordinated through the lab's etcd
        doc["control_plane"] = info.control_plane.topology_section(list(info.sites))
    return doc


def _baseline(info: LabInfo) -> dict[str, Any]:
    """What proves a lab site clean (docs/incident.md): the PostgreSQL binaries and their
    version, and each site's own pg_hba.conf and postgresql.conf (its data directory)."""
    binaries = [f"{info.bin_dir}/{name}" for name in ("postgres", "pg_ctl", "pg_rewind")]
    postgres = f"{info.bin_dir}/postgres" if info.bin_dir else "postgres"
    return {
        "files": binaries if info.bin_dir else [],
        "commands": {"postgres-version": f"{postgres} --version"},
        "sites": {
            name: {"files": [f"{site.pgdata}/pg_hba.conf", f"{site.pgdata}/postgresql.conf"]}
            for name, site in info.sites.items()
        },
    }


def _place_on_machines(doc: dict[str, Any], info: LabInfo) -> dict[str, Any]:
    """The netns lab: each site is a machine reached by ssh, HAProxy and PgBouncer run
    on the edge machine; the lab's own key logs in, its known_hosts pins every key."""
    assert info.network is not None
    ssh = info.network["ssh"]
    hosts: dict[str, Any] = {}
    for name, machine in info.network["hosts"].items():
        hosts[name] = {
            "via": "ssh",
            "description": f"lab machine: network namespace {machine['netns']}",
            "address": machine["address"],
            "user": "root",
            "key": f"file:{ssh['key']}",
            "known_hosts": ssh["known_hosts"],
        }
    for name in info.sites:
        doc["sites"][name]["runs_on"] = name
    components = doc["services"][info.service]["components"]
    for name in ("router", "pool", "web"):
        if name in components:
            components[name]["runs_on"] = "edge"
    first = {k: doc[k] for k in ("version", "state_dir")}
    return {**first, "hosts": hosts, **{k: v for k, v in doc.items() if k not in first}}


def _dns_component(dns: Any) -> dict[str, Any]:
    """The name clients find the service by: RFC 2136 updates to the lab's named, signed
    with the lab's TSIG key (its secret by reference), observed through its resolver."""
    return {
        "driver": "dns",
        "description": "the service's name: answers the active site's address",
        "options": {
            "server": dns.server,
            "port": dns.port,
            "zone": dns.zone,
            "name": dns.name,
            "type": "A",
            "ttl": f"{dns.ttl}s",
            "key": {
                "name": dns.key_name,
                "algorithm": dns.algorithm,
                "secret": f"file:{dns.secret_file}",
            },
            "resolver": f"{dns.server}:{dns.resolver_port}",
        },
        "sites": {site: {"addresses": [address]} for site, address in dns.addresses.items()},
    }


def _pool_component(info: LabInfo, directory: Path) -> dict[str, Any]:
    """PgBouncer in front of the database: clients stall through a switch, no errors."""
    return {
        "driver": "pgbouncer",
        "description": "PgBouncer: clients stall through a switch instead of failing",
        "options": {
            "host": info.pool.address,
            "port": info.pool.port,
            "admin_user": ADMIN_USER,
            "admin_password": f"file:{secret_path(directory, 'admin')}",
            "databases": [info.pool.database],
            "databases_file": info.pool.databases_file,
            "os_user": info.sites["dc1"].os_user,
        },
        "sites": {
            name: {"host": site.address, "port": site.port} for name, site in info.sites.items()
        },
    }


AUTO_POLICY: dict[str, Any] = {
    "failover": "automatic",
    "failback": "automatic",
    "stability_window": "3s",
    "hold_down": "30s",
    "max_failbacks_per_day": 20,
}
"""``lab up --auto``: the monitor acts by itself, on windows short enough for tests
(detection: the defaults, <= 0.9 s for a dead primary; stability 3 s; hold-down 30 s)."""


def _policy(info: LabInfo) -> dict[str, Any]:
    policy: dict[str, Any] = {
        "failover": "manual",
        "failback": "manual",
        "approval": "none",
        "stability_window": "3s",
        "traffic_steps": [50, 100],
        "bake_time": "1s",
        "observation_window": "3s",
    }
    if info.extra.get("auto"):
        policy.update(AUTO_POLICY)
        if info.sync:
            policy["synchronous"] = True
    return policy


def render_topology(info: LabInfo) -> str:
    where = "one network namespace per site" if info.network else "127.0.0.1"
    header = (
        f"# Written by 'failback lab up': a two-site lab on {where}.\n"
        "# dc1 holds the primary, dc2 a streaming standby; HAProxy on "
        f"{info.router.address}:{info.router.port} is the write endpoint.\n"
    )
    if info.control_plane is not None:
        header += (
            "# Control plane: an etcd member on dc1, dc2 and the witness; one monitor per\n"
            "# machine ('failback lab monitors up' starts them with --node).\n"
        )
    return header + yaml.safe_dump(topology_dict(info), sort_keys=False, width=100)
