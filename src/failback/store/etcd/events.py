"""The event log in etcd: ``EventStore`` (store/base.py).

Ids come from a counter (``seq/events``) taken in the transaction that writes the event,
compared on its revision: the event with id n is committed after the one with id n-1,
so a reader keeping the last id it saw (``events_since``) misses none and sees none
twice, as with SQLite's AUTOINCREMENT.

The log is bounded: every ``trim_every`` events, the transaction that adds one also
deletes those older than the newest ``events_kept`` (20,000, so between 20,000 and
21,000 are kept). etcd keeps its whole keyspace in memory and every revision until
compaction, so an unbounded log would grow a control plane meant to stay small; the
log is for people and for the monitor's forwarding, which reads far fewer than that.
"""

from __future__ import annotations

import time
from typing import Any

from failback.coord.etcd_types import Delete, KeyValue, Put
from failback.store.etcd.backend import EtcdBackend
from failback.store.etcd.keys import (
    EVENT_DIGITS,
    Change,
    Proof,
    Snapshot,
    dump,
    load,
    number,
    prefix_end,
    token,
)

EVENT_PAGE = 1000
"""Events read per range while looking for one run's events, newest first."""


class EtcdEvents(EtcdBackend):
    """``EventStore`` on the shared client."""

    events_kept = 20_000
    """The newest events kept; older ones are deleted (module docstring)."""

    trim_every = 1_000
    """Every this many events, the older ones are deleted in the same transaction."""

    def add_event(
        self,
        kind: str,
        message: str,
        *,
        run_id: int | None = None,
        service: str | None = None,
        step_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """The next id and the event in one transaction (based on the counter read); the
        event carries a token, so a commit whose answer was lost is recognised, never
        added twice."""
        mark = token()
        fields = {
            "run_id": run_id,
            "service": service,
            "ts": time.time(),
            "kind": kind,
            "step": step_id,
            "message": message,
            "data": data or None,
            "token": mark,
        }
        keys = self.keys

        def decide(snapshot: Snapshot) -> Change[None]:
            event_id = number(snapshot.text(keys.event_seq)) + 1
            event_key = keys.event(event_id)
            ops: list[Put | Delete] = [
                Put(keys.event_seq, str(event_id)),
                Put(event_key, dump({"id": event_id, **fields})),
            ]
            if event_id % self.trim_every == 0 and event_id > self.events_kept:
                oldest_kept = keys.event(event_id - self.events_kept + 1)
                ops.append(Delete(keys.events, range_end=oldest_kept))
            return Change(None, ops, Proof(event_key, mark, field="token", created=True))

        self._etcd.optimistic([keys.event_seq], decide, what=f"adding a {kind} event")

    def events(self, *, run_id: int | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Ids are dense below the counter, so the newest ``limit`` are one range. One
        run's are read backward a page at a time, from the counter down to the last id
        given out before the run was created (none of its events can be older)."""
        if limit == 0:
            return []
        last = self._last_event_id()
        if run_id is None:
            first = 1 if limit < 0 else max(1, last - limit + 1)
            kvs, _ = self._etcd.read_range(self.keys.event(first), self.keys.event(last + 1))
            return [_event(kv) for kv in kvs]
        record_key = self.keys.run(run_id) if run_id > 0 else None
        record = None if record_key is None else self._etcd.read([record_key]).doc(record_key)
        floor = int(record.get("events_after") or 0) if record else 0
        oldest, _ = self._etcd.read_range(self.keys.events, prefix_end(self.keys.events), limit=1)
        if oldest:  # older ids were trimmed: no need to read their empty pages
            floor = max(floor, int(load(oldest[0])["id"]) - 1)
        found: list[dict[str, Any]] = []
        high = last
        while high > floor and (limit < 0 or len(found) < limit):
            low = max(floor + 1, high - EVENT_PAGE + 1)
            kvs, _ = self._etcd.read_range(self.keys.event(low), self.keys.event(high + 1))
            for kv in reversed(kvs):
                event = _event(kv)
                if event["run_id"] == run_id:
                    found.append(event)
                    if len(found) == limit:
                        break
            high = low - 1
        return found[::-1]

    def events_since(self, after_id: int, limit: int = 500) -> list[dict[str, Any]]:
        """One range in key order (= id order) from ``after_id + 1``, cut at ``limit``
        by etcd itself. A negative limit is no limit (as SQLite's)."""
        first = max(after_id + 1, 1)
        if limit == 0 or first >= 10**EVENT_DIGITS:
            return []
        kvs, _ = self._etcd.read_range(
            self.keys.event(first), prefix_end(self.keys.events), limit=max(limit, 0)
        )
        return [_event(kv) for kv in kvs]

    def last_event_id(self) -> int:
        return self._last_event_id()


def _event(kv: KeyValue) -> dict[str, Any]:
    """An event as the store gives it (the token is the store's business)."""
    document = load(kv)
    return {
        "id": document["id"],
        "run_id": document["run_id"],
        "service": document["service"],
        "ts": document["ts"],
        "kind": document["kind"],
        "step": document["step"],
        "message": document["message"],
        "data": document["data"],
    }
