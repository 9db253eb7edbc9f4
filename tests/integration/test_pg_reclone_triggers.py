"""Every reason ``resync`` re-clones, on real PostgreSQL (issue 11, item 5).

"Rewind impossible" is tested elsewhere (test_postgres_driver, test_pg_failover_failback).
Here the three other triggers, each on the same primary + standby pair (pgcluster,
one per module: every case ends with dc2 a streaming standby of dc1 again):

* no data directory at pgdata (a lost disk);
* split brain on one timeline: dc2 started as a primary without a promotion (its
  standby.signal removed), so both wrote on timeline 1 and pg_rewind would see
  nothing to do;
* pg_rewind failing part-way: a file pg_rewind must overwrite is not writable by the
  OS user PostgreSQL runs as, so pg_rewind starts changing the directory and stops.

Each must end with dc2 streaming from dc1, holding dc1's rows and none of its own
diverged ones, the report saying why it re-cloned, and (where there was one) the old
data directory kept aside.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from failback.drivers.postgres.conn import connect
from failback.drivers.postgres.divergence import check_divergence
from failback.drivers.postgres.node import PgNode
from failback.drivers.postgres.node_facts import observe
from failback.drivers.postgres.process import promote, start, stop
from failback.drivers.postgres.replication import wait_for_catchup, wait_streaming
from failback.drivers.postgres.resync import resync
from tests.integration.pgcluster import PgPair, pg_pair

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pair() -> Iterator[PgPair]:
    with pg_pair() as made:
        wait_streaming(made.standby, timeout=30, upstream=made.primary)
        with connect(made.primary) as conn:
            conn.execute("CREATE TABLE t (v text PRIMARY KEY)")
        yield made


def write(node: PgNode, *values: str) -> None:
    with connect(node) as conn:
        for value in values:
            conn.execute("INSERT INTO t VALUES (%s)", (value,))


def values(node: PgNode) -> set[str]:
    with connect(node) as conn:
        return {str(r[0]) for r in conn.execute("SELECT v FROM t").fetchall()}


def assert_standby_of_primary(pair: PgPair, diverged: set[str]) -> None:
    """dc2 streams from dc1 on its timeline and holds exactly dc1's rows (a row written
    now included), none of the diverged ones."""
    standby, primary = pair.standby, pair.primary
    wait_streaming(standby, timeout=60, upstream=primary)
    write(primary, f"after-{len(values(primary))}")
    wait_for_catchup(standby, primary, timeout=60)
    seen = observe(pair.host, standby)
    assert seen.role == "standby" and seen.timeline == observe(pair.host, primary).timeline
    assert values(standby) == values(primary)
    assert not diverged & values(standby), "diverged rows survived the re-clone"


def test_missing_data_directory_is_recloned(pair: PgPair) -> None:
    host, node, source = pair.host, pair.standby, pair.primary
    write(source, "m1", "m2")
    wait_for_catchup(node, source, timeout=30)
    stop(host, node, mode="fast")
    gone = node.pgdata + ".lost-disk"
    os.rename(node.pgdata, gone)  # the disk is gone (kept here to clean up)
    try:
        result = resync(host, node, source)
    finally:
        shutil.rmtree(gone, ignore_errors=True)
    assert result.method == "reclone", result.to_dict()
    assert "no data directory" in result.reason
    assert result.details["moved_to"] is None  # nothing was there to move aside
    assert_standby_of_primary(pair, set())


def test_split_brain_on_one_timeline_is_recloned(pair: PgPair) -> None:
    host, node, source = pair.host, pair.standby, pair.primary
    timeline = observe(host, source).timeline
    stop(host, node, mode="fast")
    os.remove(os.path.join(node.pgdata, "standby.signal"))
    start(host, node, timeout=60)  # a primary without a promotion: still timeline 1
    seen = observe(host, node)
    assert seen.role == "primary" and seen.timeline == timeline
    write(node, "only-on-dc2")
    write(source, "only-on-dc1")
    stop(host, node, mode="fast")

    div = check_divergence(host, node, source)
    assert div.split_brain and div.needs_rewind, div.reason
    result = resync(host, node, source)
    assert result.method == "reclone", result.to_dict()
    assert "split brain" in result.reason
    moved = result.details["moved_to"]
    assert moved and moved.startswith(node.pgdata + ".failback-old-")
    assert os.path.isfile(os.path.join(moved, "PG_VERSION"))  # its writes are kept aside
    assert_standby_of_primary(pair, {"only-on-dc2"})
    shutil.rmtree(moved)


def test_pg_rewind_failing_part_way_falls_back_to_reclone(pair: PgPair) -> None:
    host, node, source = pair.host, pair.standby, pair.primary
    # a real divergence pg_rewind can resolve: dc2 promoted, both write, dc2 stopped
    promote(node, timeout=60)
    write(node, "diverged-on-dc2")
    write(source, "kept-on-dc1")
    stop(host, node, mode="fast")
    div = check_divergence(host, node, source)
    assert div.needs_rewind and not div.split_brain, div.reason
    # pg_rewind copies pg_hba.conf from the source: make it unwritable for the OS user
    # PostgreSQL runs as (root owns it), so pg_rewind fails after it began
    hba = os.path.join(node.pgdata, "pg_hba.conf")
    os.chown(hba, 0, 0)
    os.chmod(hba, 0o444)

    result = resync(host, node, source)
    print("re-cloned:", result.reason)
    assert result.method == "reclone", result.to_dict()
    assert "rewind failed" in result.reason and "pg_rewind" in result.reason, result.reason
    assert "Permission denied" in result.reason or "permission denied" in result.reason
    moved = result.details["moved_to"]
    assert moved and os.path.isfile(os.path.join(moved, "pg_hba.conf"))
    assert_standby_of_primary(pair, {"diverged-on-dc2"})
    shutil.rmtree(moved)
