"""Turning wal2json's output into diverged changes (issue 15).

The input is what a real PostgreSQL 15 with wal2json 2.5 printed in the experiment of
scratch/diverged_capture_experiment.py (fork at 0/E35750): an insert, an update and a
delete in ``t1`` (primary key), an insert, update and delete in ``t2`` (no key: the
update and delete are not decoded, the server warns), and one transaction of two rows.
"""

from __future__ import annotations

import pytest

from failback.drivers.postgres.diverged import UnknownChange, decode

FORK = "0/E35750"
TS = "2026-12-06 16:12:27.98591+00"
OUTPUT = [
    '{"action":"B","xid":731,"lsn":"0/E35700","nextlsn":"0/E35730"}',
    '{"action":"I","xid":731,"lsn":"0/E356C0","schema":"public","table":"t1","columns":'
    '[{"name":"id","type":"integer","value":3}],"pk":[{"name":"id","type":"integer"}]}',
    '{"action":"C","xid":731,"timestamp":"' + TS + '","lsn":"0/E35700","nextlsn":"0/E35730"}',
    '{"action":"B","xid":732,"timestamp":"' + TS + '","lsn":"0/E357D0","nextlsn":"0/E35800"}',
    '{"action":"I","xid":732,"lsn":"0/E35750","schema":"public","table":"t1","columns":'
    '[{"name":"id","type":"integer","value":10},{"name":"v","type":"text","value":"new"}],'
    '"pk":[{"name":"id","type":"integer"}]}',
    '{"action":"C","xid":732,"timestamp":"' + TS + '","lsn":"0/E357D0","nextlsn":"0/E35800"}',
    '{"action":"B","xid":733,"lsn":"0/E35850","nextlsn":"0/E35880"}',
    '{"action":"U","xid":733,"lsn":"0/E35800","schema":"public","table":"t1","columns":'
    '[{"name":"id","type":"integer","value":1},{"name":"v","type":"text","value":"changed"}],'
    '"identity":[{"name":"id","type":"integer","value":1}],"pk":[{"name":"id","type":"integer"}]}',
    '{"action":"C","xid":733,"timestamp":"' + TS + '","lsn":"0/E35850","nextlsn":"0/E35880"}',
    '{"action":"B","xid":734,"lsn":"0/E358C0","nextlsn":"0/E358F0"}',
    '{"action":"D","xid":734,"lsn":"0/E35880","schema":"public","table":"t1","identity":'
    '[{"name":"id","type":"integer","value":2}],"pk":[{"name":"id","type":"integer"}]}',
    '{"action":"C","xid":734,"timestamp":"' + TS + '","lsn":"0/E358C0","nextlsn":"0/E358F0"}',
    '{"action":"B","xid":735,"lsn":"0/E35930","nextlsn":"0/E35960"}',
    '{"action":"I","xid":735,"lsn":"0/E358F0","schema":"public","table":"t2","columns":'
    '[{"name":"a","type":"integer","value":3},{"name":"b","type":"text","value":"z"}],"pk":[]}',
    '{"action":"C","xid":735,"timestamp":"' + TS + '","lsn":"0/E35930","nextlsn":"0/E35960"}',
    '{"action":"B","xid":736,"lsn":"0/E359A8","nextlsn":"0/E359D8"}',
    '{"action":"C","xid":736,"timestamp":"' + TS + '","lsn":"0/E359A8","nextlsn":"0/E359D8"}',
    '{"action":"B","xid":738,"lsn":"0/E35B40","nextlsn":"0/E35B70"}',
    '{"action":"I","xid":738,"lsn":"0/E35A40","schema":"public","table":"t1","columns":'
    '[{"name":"id","type":"integer","value":11}],"pk":[{"name":"id","type":"integer"}]}',
    '{"action":"I","xid":738,"lsn":"0/E35AC0","schema":"public","table":"t1","columns":'
    '[{"name":"id","type":"integer","value":12}],"pk":[{"name":"id","type":"integer"}]}',
    '{"action":"C","xid":738,"timestamp":"' + TS + '","lsn":"0/E35B40","nextlsn":"0/E35B70"}',
]
NOTICES = ['WARNING:  no tuple identifier for UPDATE in table "public"."t2"']


def test_only_transactions_committed_after_the_fork_are_diverged() -> None:
    found = decode(OUTPUT, FORK, NOTICES)
    assert found.transactions == [732, 733, 734, 735, 738], "731 committed before the fork"
    assert [t["xid"] for t in found.without_rows] == [736]  # only unkeyed rows: named
    assert found.rows == 6
    by_op = [(c.xid, c.table, c.op, c.key) for c in found.changes]
    assert by_op == [
        (732, "public.t1", "insert", {"id": 10}),
        (733, "public.t1", "update", {"id": 1}),
        (734, "public.t1", "delete", {"id": 2}),
        (735, "public.t2", "insert", None),
        (738, "public.t1", "insert", {"id": 11}),
        (738, "public.t1", "insert", {"id": 12}),
    ]


def test_values_old_and_new_and_the_commit() -> None:
    update, delete = decode(OUTPUT, FORK).changes[1:3]
    assert update.new == {"id": 1, "v": "changed"} and update.old == {"id": 1}
    assert delete.new is None and delete.old == {"id": 2}
    assert update.commit_time == TS and update.commit_lsn == "0/E35850"
    assert set(update.to_dict()) == {
        "xid", "commit_time", "commit_lsn", "table", "op", "key", "old", "new",
    }  # fmt: skip


def test_rows_the_wal_cannot_key_are_reported_not_dropped() -> None:
    found = decode(
        OUTPUT, FORK, [*NOTICES, 'WARNING:  no tuple identifier for DELETE in table "public"."t2"']
    )
    assert found.unkeyed == [
        {"table": "public.t2", "op": "update"},
        {"table": "public.t2", "op": "delete"},
    ]
    (nothing_shown,) = found.without_rows  # its transaction is named, with its commit
    assert nothing_shown["xid"] == 736 and nothing_shown["commit_time"], nothing_shown


def test_numbers_keep_every_digit_and_truncate_is_a_change() -> None:
    lines = [
        '{"action":"B","xid":900}',
        '{"action":"T","schema":"public","table":"ledger"}',
        '{"action":"I","schema":"public","table":"ledger","columns":[{"name":"id","type":"integer",'
        '"value":1},{"name":"amount","type":"numeric","value":12345678901234567.89},'
        '{"name":"rate","type":"numeric","value":1.10}],"pk":[{"name":"id","type":"integer"}]}',
        '{"action":"M","transactional":false,"prefix":"heartbeat","content":"x"}',
        '{"action":"C","xid":900,"lsn":"0/F00000","timestamp":"2026-12-06 10:00:00+00"}',
    ]
    found = decode(lines, "0/E00000")
    truncate, insert = found.changes
    assert (truncate.op, truncate.table, truncate.key) == ("truncate", "public.ledger", None)
    assert insert.new == {"id": 1, "amount": "12345678901234567.89", "rate": "1.10"}


def test_an_action_it_does_not_know_makes_the_capture_fail_not_shrink() -> None:
    lines = ['{"action":"B","xid":901}', '{"action":"X","schema":"public","table":"t"}']
    with pytest.raises(UnknownChange, match="does not know"):
        decode(lines, "0/E00000")
