"""Pure parts of the PostgreSQL driver (no server): LSNs, history files, labels, config bridge.

They live next to the integration tests because that is the directory the driver's
owner writes to; they need no server and are not marked ``integration``.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from failback.drivers.postgres.conn import classify_connect_error
from failback.drivers.postgres.divergence import parse_history
from failback.drivers.postgres.errors import PgAuthFailed, PgNotReady, PgUnreachable, PgWrongCluster
from failback.drivers.postgres.lsn import compare_lsn, format_lsn, lsn_diff, parse_lsn
from failback.drivers.postgres.node import PgNode, node_from_component
from failback.drivers.postgres.node_facts import PgObservation, classify, ensure_same_cluster
from failback.drivers.postgres.replication import _setting_name


def test_lsn_round_trip_and_compare() -> None:
    assert parse_lsn("0/3000060") == 0x3000060
    assert parse_lsn("1A/FF") == (0x1A << 32) | 0xFF
    for text in ("0/0", "0/3000060", "FFFFFFFF/FFFFFFFF", "16/B374D848"):
        assert format_lsn(parse_lsn(text)) == text
    assert compare_lsn("0/3000060", "0/3000061") == -1
    assert compare_lsn("1/0", "0/FFFFFFFF") == 1
    assert compare_lsn(5, "0/5") == 0
    assert lsn_diff("1/0", "0/FFFFFFFF") == 1
    for bad in ("", "0/", "x/1", "0/123456789", "0-1"):
        with pytest.raises(ValueError):
            parse_lsn(bad)


def test_parse_history() -> None:
    text = "1\t0/A18258\tno recovery target specified\n\n2\t0/B000A0\tno recovery target\n"
    assert parse_history(text) == [(1, 0xA18258), (2, 0xB000A0)]
    assert parse_history("") == []


def _obs(site: str, role: str, sysid: int | None) -> PgObservation:
    return PgObservation(
        site=site, address="x", observed_at=0.0, role=role, system_identifier=sysid
    )


def test_classify_labels_stale_primary() -> None:
    obs = [_obs("dc1", "primary", 1), _obs("dc2", "primary", 1), _obs("dc3", "down", None)]
    assert classify(obs, "dc2") == {"dc1": "stale-primary", "dc2": "primary", "dc3": "down"}
    assert classify(obs, None) == {"dc1": "primary", "dc2": "primary", "dc3": "down"}


def test_ensure_same_cluster() -> None:
    assert ensure_same_cluster([_obs("a", "primary", 7), _obs("b", "down", None)]) == 7
    assert ensure_same_cluster({"a": 7, "b": 7}) == 7
    with pytest.raises(PgWrongCluster) as err:
        ensure_same_cluster([_obs("a", "primary", 7), _obs("b", "standby", 8)])
    assert "7" in err.value.message and "8" in err.value.message


def test_node_from_component_duck_typed() -> None:
    secret = SimpleNamespace(resolve=lambda: "s3cret")
    comp = SimpleNamespace(
        options=SimpleNamespace(
            user="fbadmin",
            password=secret,
            dbname="postgres",
            replication_user="rep",
            replication_password=None,
            bin_dir="/opt/pg/bin",
            connect_timeout=3.0,
            max_lag_bytes=0,
            catchup_timeout=60,
            switchover_timeout=30,
        ),
        sites={
            "dc1": SimpleNamespace(
                host="10.0.0.1", port=5433, pgdata="/data", os_user="postgres", conf_dir=None
            )
        },
    )
    node = node_from_component(comp, "dc1")
    assert node == PgNode(
        site="dc1",
        host="10.0.0.1",
        port=5433,
        pgdata="/data",
        bin_dir="/opt/pg/bin",
        user="fbadmin",
        password="s3cret",
        replication_user="rep",
        connect_timeout=3.0,
    )
    assert "s3cret" not in repr(node)
    assert "s3cret" not in node.dsn()
    assert "password=s3cret" in node.dsn(with_password=True)
    assert "user=rep" in node.replication_conninfo(application_name="dc2")
    comp.options.bin_dir = None
    assert node_from_component(comp, "dc1").bin_dir.endswith("/bin")  # auto-detected


def test_connect_error_classification() -> None:
    node = PgNode(site="dc1", host="127.0.0.1", port=5433, pgdata="/d", bin_dir="/b")
    refused = Exception(
        'connection failed: connection to server at "127.0.0.1", port 5433 failed: '
        "Connection refused\n\tIs the server running on that host and accepting TCP/IP?"
    )
    err = classify_connect_error(node, refused)
    assert isinstance(err, PgUnreachable)
    assert err.message == "dc1: PostgreSQL at 127.0.0.1:5433 is unreachable (connection refused)"
    auth = Exception(
        'connection to server at "127.0.0.1", port 5433 failed: FATAL:  '
        'password authentication failed for user "x"'
    )
    assert isinstance(classify_connect_error(node, auth), PgAuthFailed)
    starting = Exception("failed: FATAL:  the database system is starting up")
    assert isinstance(classify_connect_error(node, starting), PgNotReady)


def test_auto_conf_setting_names() -> None:
    assert _setting_name("primary_conninfo = 'host=x'") == "primary_conninfo"
    assert _setting_name("Primary_Conninfo='x'") == "primary_conninfo"
    assert _setting_name("# primary_conninfo = 'x'") is None
    assert _setting_name("   ") is None
