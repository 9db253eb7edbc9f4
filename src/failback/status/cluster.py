"""The control plane as people see it (``failback cluster status``, ``/api/v1/cluster``):
members, leader, lease time left, etcd's health, read from etcd by whoever asks."""

from __future__ import annotations

from typing import Any

from failback.config import Topology
from failback.coord.cluster import read_cluster
from failback.errors import UsageError


def cluster_document(topology: Topology) -> dict[str, Any]:
    """The cluster as etcd tells it now, with each node's declared site.

    Raises UsageError when the topology has no control plane (one machine, nothing to
    show). An etcd that cannot be reached is not an exception: the document says so
    (``error``, ``hint``) next to whatever could still be read.
    """
    control_plane = topology.control_plane
    if control_plane is None:
        raise UsageError(
            f"{topology.path.name} has no control_plane section: one monitor, no cluster",
            hint="add control_plane: (etcd endpoints, prefix, nodes) to run monitors on "
            "several machines",
        )
    with control_plane.open_etcd() as client:
        document = read_cluster(client, control_plane.prefix, list(control_plane.nodes))
    for member in document["members"]:
        spec = control_plane.nodes.get(member["node"])
        member["declared_site"] = spec.site if spec is not None else None
        member["declared"] = spec is not None
    document["lease_ttl"] = control_plane.lease_ttl
    return document
