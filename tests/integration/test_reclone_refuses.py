"""A re-clone moves aside only a data directory of this cluster (or its own partial copy).

Before, ``resync`` re-cloned any node whose pgdata had no PG_VERSION, and the re-clone
renamed whatever was there: a topology whose pgdata named ``/var/lib/important`` got
that directory moved to ``/var/lib/important.failback-old-...`` and a base backup put
in its place. Now anything that is not provably this cluster's data is refused with
a message and left exactly as it was. Real directories on disk, and a real PostgreSQL
pair (pgcluster.pg_pair) for the cases that need a cluster.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from failback.drivers.postgres.node import PgNode
from failback.drivers.postgres.node_facts import observe
from failback.drivers.postgres.process import start, stop
from failback.drivers.postgres.replication import wait_streaming
from failback.drivers.postgres.resync import (
    PgdataNotOurs,
    clone_marker,
    pgdata_contents,
    reclone,
    resync,
)
from failback.errors import SafetyRefusal
from failback.hosts import LocalHost
from tests.integration.pgcluster import OS_USER, PgPair, pg_pair, pg_single

pytestmark = pytest.mark.integration


def node_at(pgdata: Path, site: str = "dc2") -> PgNode:
    """A node whose server is never contacted in these cases (nothing listens there)."""
    return PgNode(site=site, host="127.0.0.1", port=1, pgdata=str(pgdata), bin_dir="/nonexistent")


def important(path: Path) -> dict[str, bytes]:
    """Someone's directory: files, a sub-directory, nothing of PostgreSQL."""
    (path / "reports").mkdir(parents=True)
    (path / "customers.csv").write_bytes(b"id,name\n1,Ada\n")
    (path / "reports" / "2026.txt").write_bytes(b"do not lose me\n")
    return snapshot(path)


def snapshot(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name + "."))


# --- the decision, on real directories --------------------------------------------------


def test_what_is_at_pgdata(tmp_path: Path) -> None:
    host = LocalHost()
    source = node_at(tmp_path / "source", site="dc1")
    pgdata = tmp_path / "data"
    assert pgdata_contents(host, node_at(pgdata), source) == "absent"
    pgdata.mkdir()
    assert pgdata_contents(host, node_at(pgdata), source) == "empty"
    important(pgdata)
    with pytest.raises(PgdataNotOurs) as info:
        pgdata_contents(host, node_at(pgdata), source)
    assert isinstance(info.value, SafetyRefusal)
    assert "not a PostgreSQL data directory (no PG_VERSION)" in info.value.message
    assert "customers.csv" in info.value.message and info.value.hint
    Path(clone_marker(node_at(pgdata))).write_text("copy in progress\n")
    assert pgdata_contents(host, node_at(pgdata), source) == "partial-clone"


def test_a_file_at_pgdata_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_text("not a directory\n")
    with pytest.raises(PgdataNotOurs, match="is a file"):
        pgdata_contents(LocalHost(), node_at(path), node_at(tmp_path / "s", "dc1"))


def test_reclone_leaves_a_foreign_directory_exactly_as_it_was(tmp_path: Path) -> None:
    pgdata = tmp_path / "important"
    before = important(pgdata)
    inode = pgdata.stat().st_ino
    with pytest.raises(PgdataNotOurs, match="a re-clone will not move it aside"):
        reclone(LocalHost(), node_at(pgdata), node_at(tmp_path / "s", "dc1"), timeout=30)
    assert pgdata.stat().st_ino == inode and snapshot(pgdata) == before
    assert siblings(pgdata) == []  # nothing moved aside, no clone marker left


# --- with a real cluster ----------------------------------------------------------------


@pytest.fixture
def pair() -> Iterator[PgPair]:
    with pg_pair() as fresh:
        wait_streaming(fresh.standby, timeout=20, upstream=fresh.primary)
        yield fresh


def test_resync_refuses_a_pgdata_that_is_someone_elses_directory(pair: PgPair) -> None:
    """The topology's pgdata for dc2 names a directory of other files: resync (which
    re-clones a node without PG_VERSION) refuses and changes nothing."""
    host, primary, standby = pair.host, pair.primary, pair.standby
    stop(host, standby, mode="fast")
    elsewhere = Path(pair.base) / "dc2" / "important"
    before = important(elsewhere)
    node = dataclasses.replace(standby, pgdata=str(elsewhere))
    with pytest.raises(PgdataNotOurs) as info:
        resync(host, node, primary, timeout=60)
    assert "no PG_VERSION" in info.value.message
    assert snapshot(elsewhere) == before and siblings(elsewhere) == []


def test_reclone_refuses_another_clusters_data_directory(pair: PgPair) -> None:
    host, primary, standby = pair.host, pair.primary, pair.standby
    with pg_single("dc9") as (_, other):
        stop(host, other, mode="fast")
        node = dataclasses.replace(standby, pgdata=other.pgdata)
        with pytest.raises(PgdataNotOurs, match="holds another cluster"):
            reclone(host, node, primary, timeout=60)
        assert os.path.exists(os.path.join(other.pgdata, "PG_VERSION"))
        assert siblings(Path(other.pgdata)) == []


def test_an_interrupted_copy_is_moved_aside_and_the_clone_completes(pair: PgPair) -> None:
    """The runner died during pg_basebackup: pgdata holds part of a copy (no PG_VERSION
    yet) and the clone marker. The next re-clone recognises it as its own."""
    host, primary, standby = pair.host, pair.primary, pair.standby
    stop(host, standby, mode="fast")
    pgdata = Path(standby.pgdata)
    assert pgdata_contents(host, standby, primary) == "this-cluster"
    kept = pgdata.parent / "kept"
    os.rename(pgdata, kept)
    host.make_dirs(str(pgdata / "base" / "1"), owner=OS_USER)
    (pgdata / "backup_label").write_text("START WAL LOCATION: 0/2000028\n")
    (pgdata / "base" / "1" / "1259").write_bytes(b"\0" * 8192)
    Path(clone_marker(standby)).write_text("pg_basebackup from dc1, started earlier\n")
    result = reclone(host, standby, primary, timeout=120)
    assert result.moved_to is None  # a partial copy is not the old data
    partial = [name for name in siblings(pgdata) if ".failback-partial-" in name]
    assert len(partial) == 1 and (pgdata.parent / partial[0] / "backup_label").exists()
    assert not os.path.exists(clone_marker(standby))
    start(host, standby, timeout=60)
    wait_streaming(standby, timeout=30, upstream=primary)
    assert observe(host, standby).role == "standby"
