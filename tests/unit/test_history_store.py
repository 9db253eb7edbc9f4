"""The health and lag history (store HistoryStore, SQLite): downsampled, worst-of-bucket,
bounded to 24 hours, read from a time on; and the samples an observation gives."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from failback.model.observed import ComponentObservation
from failback.observe.history import history_samples
from failback.store import SqliteStore
from failback.store.base import HISTORY_BUCKET_S, HISTORY_KEEP_S
from failback.store.sqlite.history import HISTORY_FILE

T0 = 1_700_000_000.0  # a bucket boundary (divisible by 10)


def sample(healthy: bool, lag: int | None = None, role: str = "standby") -> dict[str, object]:
    return {"component": "db", "site": "dc1", "healthy": healthy, "role": role,
            "lag_bytes": lag, "lag_seconds": None if lag is None else lag / 1000}  # fmt: skip


def test_one_row_per_bucket_keeps_the_worst(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    store.record_history("app", [sample(True, 10)], at=T0 + 1)
    store.record_history("app", [sample(False, None, role="down")], at=T0 + 2)
    store.record_history("app", [sample(True, 5000)], at=T0 + 3)
    store.record_history("app", [sample(True, 7)], at=T0 + HISTORY_BUCKET_S)
    rows = store.history("app", T0)
    assert [(r["at"], r["healthy"], r["lag_bytes"], r["samples"]) for r in rows] == [
        (T0, False, 5000, 3),
        (T0 + HISTORY_BUCKET_S, True, 7, 1),
    ]
    assert rows[0]["role"] == "down"  # the role seen when it was unhealthy
    assert rows[0]["lag_seconds"] == 5.0
    assert store.history("app", T0 + HISTORY_BUCKET_S) == rows[1:]
    assert store.history("other", 0) == []


def test_older_than_a_day_is_forgotten(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    store.record_history("app", [sample(True, 1)], at=T0)
    store.record_history("app", [sample(True, 2)], at=T0 + HISTORY_KEEP_S / 2)
    assert len(store.history("app", 0)) == 2
    store.record_history("app", [sample(True, 3)], at=T0 + HISTORY_KEEP_S + HISTORY_BUCKET_S)
    assert [r["lag_bytes"] for r in store.history("app", 0)] == [2, 3]


def test_samples_of_an_observation_and_of_its_json() -> None:
    obs = ComponentObservation(
        component="db", site="dc2", driver="postgres", healthy=True, role="standby",
        data={"lag_bytes": 42, "lag_seconds": 0.5},
    )  # fmt: skip
    want = [{"component": "db", "site": "dc2", "healthy": True, "role": "standby",
             "lag_bytes": 42, "lag_seconds": 0.5}]  # fmt: skip
    assert history_samples([obs]) == want
    assert history_samples([obs.model_dump(mode="json")]) == want
    router = {"component": "router", "site": "dc1", "healthy": False, "role": "down"}
    assert history_samples([router])[0]["lag_bytes"] is None


def test_kept_beside_the_journal_never_in_it(tmp_path: Path) -> None:
    """Looking never writes the journal: the API records what it observes here."""
    store = SqliteStore(tmp_path)
    assert store.history("app") == []
    assert not (tmp_path / HISTORY_FILE).exists(), "a read creates nothing"
    store.record_history("app", [sample(True, 1)], at=T0)
    store.close()
    assert (tmp_path / HISTORY_FILE).stat().st_mode & 0o077 == 0
    journal = sqlite3.connect(tmp_path / "journal.sqlite3")
    tables = {r[0] for r in journal.execute("SELECT name FROM sqlite_master")}
    journal.close()
    assert not any("history" in t for t in tables), tables
    again = SqliteStore(tmp_path)
    assert [r["lag_bytes"] for r in again.history("app")] == [1]
    again.close()
