"""What a plan learns from a running monitor's health records: since when each component
has passed, from fresh records only (a stopped monitor's records are no history)."""

from __future__ import annotations

from failback.observe.service import monitored_passing_since

NOW = 1_000_000.0


def record(site: str, status: str, since: float | None, last_at: float) -> dict[str, object]:
    return {"kind": "component", "component": "path", "site": site, "interval_s": 1.0,
            "status": status, "passing_since": since, "last_at": last_at}  # fmt: skip


def test_fresh_records_say_since_when_and_failing_is_none() -> None:
    found = monitored_passing_since(
        {
            "path@dc1": record("dc1", "passing", NOW - 2, NOW - 0.5),
            "path@dc2": record("dc2", "failing", None, NOW - 0.5),
        },
        NOW,
    )
    assert found == {"path@dc1": NOW - 2, "path@dc2": None}


def test_a_stopped_monitors_records_and_declared_checks_are_left_out() -> None:
    check = {**record("dc1", "passing", NOW - 9, NOW), "kind": "check"}
    found = monitored_passing_since(
        {"path@dc1": record("dc1", "passing", NOW - 60, NOW - 30), "web": check}, NOW
    )
    assert found == {}
