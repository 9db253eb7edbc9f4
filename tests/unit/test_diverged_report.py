"""``failback diverged``'s renderings: SQL a person can review (quoting that holds for
any value a row can carry), JSON one entry per row, and the one-line summary."""

from __future__ import annotations

from typing import Any

from failback.report.diverged import (
    changes_json,
    diverged_line,
    literal,
    qualified,
    sql_script,
    statement,
)

CAPTURE: dict[str, Any] = {
    "site": "dc1",
    "captured": True,
    "reason": "2 transaction(s)",
    "since_lsn": "0/3000060",
    "transactions": 2,
    "rows": 3,
    "unkeyed": [{"database": "app", "table": "public.audit", "op": "update"}],
    "without_rows": [{"database": "app", "xid": 9, "commit_time": "t", "commit_lsn": "0/5"}],
    "changes": [
        {"database": "app", "xid": 7, "commit_time": "2026-12-06 10:00:00+00",
         "commit_lsn": "0/3000100", "table": "public.items", "op": "insert",
         "key": {"id": 1}, "old": None, "new": {"id": 1, "name": "O'Brien", "ok": True}},
        {"database": "app", "xid": 7, "commit_time": "2026-12-06 10:00:00+00",
         "commit_lsn": "0/3000100", "table": "public.items", "op": "delete",
         "key": {"id": 2}, "old": {"id": 2}, "new": None},
        {"database": "postgres", "xid": 8, "commit_time": "2026-12-06 10:00:01+00",
         "commit_lsn": "0/3000200", "table": 'odd"schema.we.ird', "op": "update",
         "key": {"id": 3}, "old": {"id": 3}, "new": {"id": 3, "note": None}},
    ],
}  # fmt: skip


def test_literals_quote_what_a_row_can_carry() -> None:
    assert literal(None) == "NULL"
    assert literal(True) == "true" and literal(False) == "false"
    assert literal(42) == "42" and literal(1.5) == "1.5"
    assert literal("O'Brien") == "'O''Brien'"
    assert literal("a\nb; DROP TABLE x; --") == "'a\nb; DROP TABLE x; --'"
    assert literal({"k": [1, 2]}) == "'{\"k\": [1, 2]}'"


def test_names_are_quoted_whatever_they_hold() -> None:
    assert qualified("public.items") == '"public"."items"'
    assert qualified('odd"schema.we.ird') == '"odd""schema"."we.ird"'


def test_each_change_becomes_the_statement_that_re_applies_it() -> None:
    insert, delete, update = CAPTURE["changes"]
    assert statement(insert) == (
        'INSERT INTO "public"."items" ("id", "name", "ok") VALUES (1, \'O\'\'Brien\', true);'
    )
    assert statement(delete) == 'DELETE FROM "public"."items" WHERE "id" = 2;'
    assert statement(update) == (
        'UPDATE "odd""schema"."we.ird" SET "id" = 3, "note" = NULL WHERE "id" = 3;'
    )
    keyless = {**update, "key": None}
    assert "WHERE false" in statement(keyless)  # never an UPDATE of every row


def test_the_script_changes_nothing_until_a_person_commits() -> None:
    script = sql_script(12, CAPTURE)
    assert script.count("BEGIN;") == 2 and script.count("ROLLBACK;") == 2
    assert "COMMIT;" not in script
    assert "\\connect -reuse-previous=on \"dbname='app'\"" in script
    assert "\\connect -reuse-previous=on \"dbname='postgres'\"" in script
    assert "-- transaction 7, committed 2026-12-06 10:00:00+00" in script
    assert "NOT CAPTURED: an UPDATE in app.public.audit" in script
    assert "NOT SHOWN: transaction 9" in script
    body = [line for line in script.splitlines() if line and not line.startswith(("--", "\\"))]
    assert body[0] == "BEGIN;" and body[-1].startswith("ROLLBACK;")


def test_json_has_one_entry_per_row_with_the_documented_fields() -> None:
    rows = changes_json(CAPTURE)
    assert len(rows) == 3
    assert set(rows[0]) == {
        "xid", "commit_time", "table", "op", "key", "old", "new", "database", "commit_lsn",
    }  # fmt: skip


def test_the_summary_line_says_what_was_and_was_not_captured() -> None:
    line = diverged_line(12, CAPTURE)
    assert line.startswith("diverged: 2 transaction(s), 3 row(s) committed on dc1")
    assert "1 change(s) of tables without a key" in line and "`failback diverged 12`" in line
    failed = {"captured": False, "reason": "no slot", "loss_accepted": True}
    assert diverged_line(12, failed) == ("diverged: not captured (resynced with approval): no slot")
    nothing = {"captured": True, "rows": 0, "reason": "nothing diverged: same timeline"}
    assert diverged_line(3, nothing) == "diverged: nothing (nothing diverged: same timeline)"


def test_names_and_values_never_end_a_comment_or_reach_the_server_elsewhere() -> None:
    evil = "x\nDROP TABLE important; --"
    capture = {
        **CAPTURE,
        "unkeyed": [{"database": "app", "table": f"public.{evil}", "op": "delete"}],
        "changes": [{**CAPTURE["changes"][0], "database": "db host=evil.example 'q\"x"}],
    }
    script = sql_script(1, capture)
    assert not any(line.startswith("DROP") for line in script.splitlines()), script
    assert '\\connect -reuse-previous=on "dbname=\'db host=evil.example \\\'q""x\'"' in script, (
        script
    )
    newline_db = {**CAPTURE, "unkeyed": [], "without_rows": [],
                  "changes": [{**CAPTURE["changes"][0], "database": "a\nb"}]}  # fmt: skip
    body = [line for line in sql_script(1, newline_db).splitlines() if line.strip()]
    assert all(line.startswith("--") for line in body), body  # nothing runs
