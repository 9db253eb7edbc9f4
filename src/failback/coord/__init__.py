"""Coordination of failback's monitors across machines, through etcd.

Sits low in the layers: it knows etcd and ``failback.errors``, nothing of
services, plans or drivers, so that the store, the engine and the monitor can
all build on it (leadership, fencing tokens, state shared between nodes).
"""

from failback.coord.election import LeaderElection
from failback.coord.etcd import (
    EtcdClient,
    EtcdError,
    EtcdRequestFailed,
    EtcdUnavailable,
)
from failback.coord.etcd_types import (
    Compare,
    Delete,
    EndpointStatus,
    Get,
    KeyValue,
    Lease,
    LeaseStatus,
    Member,
    Put,
    TxnResult,
)

__all__ = [
    "Compare",
    "Delete",
    "EndpointStatus",
    "EtcdClient",
    "EtcdError",
    "EtcdRequestFailed",
    "EtcdUnavailable",
    "Get",
    "KeyValue",
    "LeaderElection",
    "Lease",
    "LeaseStatus",
    "Member",
    "Put",
    "TxnResult",
]
