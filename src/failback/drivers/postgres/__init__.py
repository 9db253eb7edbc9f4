"""The PostgreSQL driver's primitives: observe, start/stop/promote, standby config,
divergence, rewind / re-clone, and the waits of a switchover.

Everything a node's machine does goes through its ``Host``; everything SQL goes
through ``connect``. Modules:

* node        PgNode, node_from_component, detect_bin_dir
* errors      PgError and its subclasses (FailbackError: message + hint)
* lsn         parse_lsn, format_lsn, compare_lsn, lsn_diff
* conn        connect, classify_connect_error
* observe     PgObservation, observe, classify, ensure_same_cluster
* process     initdb, start, stop, kill_postmaster, wait_pid_gone, controldata,
              promote, checkpoint, reload
* replication configure_standby, final_position, wait_for_replay,
              wait_for_catchup, wait_streaming
* divergence  Divergence, check_divergence, parse_history
* resync      ensure_clean_shutdown, rewind, reclone, resync
"""

from failback.drivers.postgres.conn import classify_connect_error, connect
from failback.drivers.postgres.divergence import Divergence, check_divergence, parse_history
from failback.drivers.postgres.errors import (
    PgAuthFailed,
    PgCommandFailed,
    PgError,
    PgNotReady,
    PgRewindFailed,
    PgStateError,
    PgTimeout,
    PgUnreachable,
    PgWrongCluster,
    PgWrongDatabase,
)
from failback.drivers.postgres.lsn import compare_lsn, format_lsn, lsn_diff, parse_lsn
from failback.drivers.postgres.node import PgNode, detect_bin_dir, node_from_component
from failback.drivers.postgres.node_facts import (
    PgObservation,
    ReplicaInfo,
    classify,
    ensure_same_cluster,
    observe,
)
from failback.drivers.postgres.process import (
    checkpoint,
    controldata,
    initdb,
    kill_postmaster,
    pgdata_ok,
    promote,
    reload,
    running_postmaster,
    start,
    stop,
    wait_pid_gone,
)
from failback.drivers.postgres.replication import (
    configure_standby,
    final_position,
    wait_for_catchup,
    wait_for_replay,
    wait_streaming,
)
from failback.drivers.postgres.resync import (
    RecloneResult,
    ResyncResult,
    RewindResult,
    ensure_clean_shutdown,
    reclone,
    resync,
    rewind,
)

__all__ = [
    "Divergence",
    "PgAuthFailed",
    "PgCommandFailed",
    "PgError",
    "PgNode",
    "PgNotReady",
    "PgObservation",
    "PgRewindFailed",
    "PgStateError",
    "PgTimeout",
    "PgUnreachable",
    "PgWrongCluster",
    "PgWrongDatabase",
    "RecloneResult",
    "ReplicaInfo",
    "ResyncResult",
    "RewindResult",
    "check_divergence",
    "checkpoint",
    "classify",
    "classify_connect_error",
    "compare_lsn",
    "configure_standby",
    "connect",
    "controldata",
    "detect_bin_dir",
    "ensure_clean_shutdown",
    "ensure_same_cluster",
    "final_position",
    "format_lsn",
    "initdb",
    "kill_postmaster",
    "lsn_diff",
    "node_from_component",
    "observe",
    "parse_history",
    "parse_lsn",
    "pgdata_ok",
    "promote",
    "reclone",
    "reload",
    "resync",
    "rewind",
    "running_postmaster",
    "start",
    "stop",
    "wait_for_catchup",
    "wait_for_replay",
    "wait_pid_gone",
    "wait_streaming",
]
