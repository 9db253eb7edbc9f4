"""What the control plane looks like right now, as etcd tells it: ``failback cluster status``.

Read-only and usable from any machine that reaches etcd (a monitor's API, a person's
terminal): it never needs the leader to answer. Every part is read separately so that
a sick etcd still gives a useful picture: endpoints that do not answer are listed as
such, and without quorum the members and the leader are reported as unknown, with why.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from failback.coord.etcd import EtcdClient, EtcdError
from failback.coord.membership import members_prefix


def leader_key(prefix: str) -> str:
    """The key the elected monitor holds (see coord/election.py)."""
    return prefix.rstrip("/") + "/leader"


def endpoint_health(client: EtcdClient) -> list[dict[str, Any]]:
    """Each configured endpoint: does it answer, its version, is it etcd's raft leader."""
    found: list[dict[str, Any]] = []
    for endpoint in client.endpoints:
        try:
            status = client.status(endpoint)
        except EtcdError as exc:
            found.append({"endpoint": endpoint, "healthy": False, "error": exc.message})
            continue
        found.append(
            {
                "endpoint": endpoint,
                "healthy": not status.errors and status.leader_id != 0,
                "version": status.version,
                "raft_leader": status.is_leader,
                "raft_term": status.raft_term,
                "db_size": status.db_size,
                "errors": list(status.errors),
            }
        )
    return found


def read_cluster(client: EtcdClient, prefix: str, nodes: Iterable[str]) -> dict[str, Any]:
    """Members, leader and etcd's health; ``nodes``: the node names the topology declares
    (a declared node etcd has no key of is listed as absent)."""
    declared = list(nodes)
    endpoints = endpoint_health(client)
    healthy = sum(1 for e in endpoints if e["healthy"])
    document: dict[str, Any] = {
        "prefix": prefix,
        "etcd": {"endpoints": endpoints, "healthy": healthy, "total": len(endpoints)},
        "leader": None,
        "members": [],
        "error": None,
    }
    try:
        leader_kv = client.get(leader_key(prefix))
        member_kvs = client.get_prefix(members_prefix(prefix))
        present = {kv.key.rsplit("/", 1)[-1]: kv for kv in member_kvs}
        leader_ttl = (
            client.lease_time_to_live(leader_kv.lease).ttl
            if leader_kv is not None and leader_kv.lease
            else None
        )
        leases = {name: client.lease_time_to_live(kv.lease).ttl for name, kv in present.items()}
    except EtcdError as exc:
        document["error"] = exc.message
        document["hint"] = exc.hint
        document["members"] = [{"node": n, "present": None} for n in declared]
        return document
    leader = leader_kv.text if leader_kv is not None else None
    if leader is not None:
        document["leader"] = {"node": leader, "lease_ttl_left": leader_ttl}
    for name in [*declared, *sorted(n for n in present if n not in declared)]:
        kv = present.get(name)
        entry: dict[str, Any] = {"node": name, "present": kv is not None, "leader": name == leader}
        if kv is not None:
            entry.update(_info(kv.text))
            entry["node"] = name
            entry["lease_ttl_left"] = leases.get(name)
        document["members"].append(entry)
    return document


def _info(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {"info_error": "member key is not JSON"}
    return value if isinstance(value, dict) else {"info_error": "member key is not an object"}
