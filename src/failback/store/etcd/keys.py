"""Where the etcd store keeps what, and the one way it writes.

The layout (every key under ``<prefix>/store/``) is described in the package's
docstring; ``Keys`` spells it, so no other module builds a key by hand. Numbers in keys
are zero-padded so that key order is number order: a range read of ``runs/`` or
``events/`` is a range of ids.

Writing is ``optimistic``: read the keys a write depends on (one transaction, so one
revision), decide, then commit in one transaction that holds only if none of those
keys changed since (``mod_revision`` compared); otherwise read and decide again. That is
what an IMMEDIATE transaction gives the SQLite backend, said the way etcd says it.

A commit that got no answer (``EtcdUnavailable``: the request may or may not have been
applied) is the hard case, because trying again must not apply it twice. Each write
names a proof: a key it puts whose JSON document carries a fresh token. The next round
reads that key first: the token there means the write happened; the key unchanged since
the read means it did not (and, in flight, it still cannot: its comparison would fail
once the retry commits); a key changed by someone else is followed back through etcd's
history to the first write after the read, which is the only one the lost commit could
be. A write whose repetition is harmless (release a lock, put the same report) needs
no proof: deciding again from a fresh read is already right.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from failback.coord.etcd import EtcdClient, EtcdRequestFailed, EtcdUnavailable
from failback.coord.etcd_types import Compare, Delete, Get, KeyValue, Put, prefix_range_end
from failback.errors import LeadershipLost, StateError

T = TypeVar("T")

MAX_TRIES = 50
"""Rounds of read-decide-commit before a write gives up (each lost to another writer)."""

MAX_LOST_ANSWERS = 3
"""Commits without an answer tolerated in one write before its ``EtcdUnavailable`` is
raised: each costs a request timeout, and the caller should hear that etcd is ailing."""

MAX_WRITE_BYTES = 1024 * 1024
"""Keys and values of one write, at most. etcd refuses a request over 1.5 MiB (its
``--max-request-bytes``) with a gRPC error that names neither the run nor the cause;
refusing at 1 MiB says which write was too big while the request overhead (base64,
JSON, comparisons) still fits."""

MAX_TXN_OPS = 128
"""etcd's default ``--max-txn-ops``: the operations of one transaction, at most."""

_UNKNOWN = object()

KNOWN_KEYS = 1024
"""Keys a writer remembers from its own commits, at most (then it starts afresh)."""

RUN_DIGITS = 12
EVENT_DIGITS = 16
STEP_DIGITS = 4


class Keys:
    """The key layout of one store, under ``<prefix>/store/``."""

    def __init__(self, prefix: str) -> None:
        base = prefix.rstrip("/")
        if not base.strip("/"):
            raise StateError(
                "the etcd key prefix is empty",
                hint="give the store a prefix of its own, e.g. /failback/app",
            )
        self.root = f"{base}/store"

    # runs and what each owns
    @property
    def run_seq(self) -> str:
        return f"{self.root}/seq/runs"

    @property
    def runs(self) -> str:
        return f"{self.root}/runs/"

    def run(self, run_id: int) -> str:
        return f"{self.root}/runs/{run_id:0{RUN_DIGITS}d}"

    def plan(self, run_id: int) -> str:
        return f"{self.root}/plans/{run_id:0{RUN_DIGITS}d}"

    def topology(self, run_id: int) -> str:
        return f"{self.root}/topologies/{run_id:0{RUN_DIGITS}d}"

    def values(self, run_id: int) -> str:
        return f"{self.root}/values/{run_id:0{RUN_DIGITS}d}"

    def diverged(self, run_id: int) -> str:
        return f"{self.root}/diverged/{run_id:0{RUN_DIGITS}d}"

    def report(self, run_id: int) -> str:
        return f"{self.root}/reports/{run_id:0{RUN_DIGITS}d}"

    def steps(self, run_id: int) -> str:
        return f"{self.root}/steps/{run_id:0{RUN_DIGITS}d}/"

    def step(self, run_id: int, idx: int) -> str:
        return f"{self.steps(run_id)}{idx:0{STEP_DIGITS}d}"

    def measurements(self, run_id: int) -> str:
        return f"{self.root}/measurements/{run_id:0{RUN_DIGITS}d}/"

    def approval(self, run_id: int, step_id: str) -> str:
        return f"{self.root}/approvals/{run_id:0{RUN_DIGITS}d}/{step_id}"

    def lock(self, service: str) -> str:
        return f"{self.root}/locks/{service}"

    @property
    def run_owned(self) -> tuple[str, ...]:
        """The prefixes of the keys one run owns: written by the process executing it
        (and a person's abort, approval), worth remembering between its writes
        (``Writer.remember``). Shared keys (sequences, locks, service state) are not: other
        processes write them all the time."""
        return tuple(
            f"{self.root}/{kind}/"
            for kind in ("runs", "steps", "values", "plans", "topologies", "reports")
        )

    # events
    @property
    def event_seq(self) -> str:
        return f"{self.root}/seq/events"

    @property
    def events(self) -> str:
        return f"{self.root}/events/"

    def event(self, event_id: int) -> str:
        return f"{self.root}/events/{event_id:0{EVENT_DIGITS}d}"

    # service state
    def service(self, service: str) -> str:
        return f"{self.root}/services/{service}"


def prefix_end(prefix: str) -> str:
    """The first key after every key under ``prefix`` (the end of its range)."""
    return prefix_range_end(prefix).decode()


def number(text: str | None) -> int:
    """A sequence counter's value (absent: nothing was numbered yet)."""
    return int(text) if text else 0


def dump(document: Any) -> str:
    """A document as stored: compact JSON (a value's size counts against etcd's limit)."""
    return json.dumps(document, separators=(",", ":"))


def load(kv: KeyValue) -> Any:
    """A stored document; a key holding something else is named, not a JSON traceback."""
    try:
        return json.loads(kv.value)
    except ValueError:
        raise StateError(
            f"the etcd key {kv.key} does not hold a failback document",
            hint="is another program writing under this prefix? Give failback a prefix of its own",
        ) from None


def token() -> str:
    """A value no other write will ever carry (what a proof looks for)."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Snapshot:
    """Keys read together at one ``revision`` (None: the key does not exist)."""

    revision: int
    kvs: dict[str, KeyValue | None]

    def doc(self, key: str) -> Any:
        kv = self.kvs[key]
        return None if kv is None else load(kv)

    def text(self, key: str) -> str | None:
        kv = self.kvs[key]
        return None if kv is None else kv.text

    def mod_revision(self, key: str) -> int:
        kv = self.kvs.get(key)
        return 0 if kv is None else kv.mod_revision


@dataclass(frozen=True)
class Proof:
    """How to recognise a write after its commit got no answer: ``key`` (put by the
    write) holds a JSON document whose ``field`` is ``token``. ``created`` says the key
    is created by this write and its field never changes afterwards (a run's creation
    token, an event's): no history to follow."""

    key: str
    token: str
    field: str = "write"
    created: bool = False


@dataclass(frozen=True)
class Change(Generic[T]):
    """What a decision writes (``ops``; none: nothing to write) and what the method
    returns once it is written."""

    result: T
    ops: Sequence[Put | Delete] = ()
    proof: Proof | None = None


@dataclass
class _Unanswered(Generic[T]):
    proof: Proof
    based_on: int
    """The proof key's mod_revision when the write read it (0: absent)."""
    result: T


@dataclass
class Writer:
    """Reads and optimistic writes on one client (the part every concern shares)."""

    client: EtcdClient
    fence: tuple[Compare, ...] = ()
    """Comparisons every commit must also pass (a leader's key and lease): set by
    ``EtcdStore.fence_writes`` so that a deposed leader's writes fail in etcd itself."""
    remember: tuple[str, ...] = ()
    """Prefixes of the keys worth remembering (``Keys.run_owned``); none: no memory. A key
    other processes write often would be stale when used: its commit fails (a raft round
    for nothing), and after a commit without an answer the history walk back to a stale
    revision could outrun etcd's compaction."""
    known: dict[str, KeyValue | None] = field(default_factory=dict, repr=False)
    """Keys as this writer last read them or as its own commits left them:
    ``optimistic``'s first round decides from them instead of reading."""

    def read(self, keys: Iterable[str]) -> Snapshot:
        """Every key of ``keys`` at one revision (one transaction, no comparison)."""
        names = list(dict.fromkeys(keys))
        answer = self.client.txn([], [Get(key) for key in names], idempotent=True)
        kvs: dict[str, KeyValue | None] = {}
        for name, result in zip(names, answer.responses, strict=True):
            kvs[name] = result.kvs[0] if result.kvs else None
        self._learn(kvs)
        return Snapshot(answer.revision, kvs)

    def read_range(
        self, start: str, end: str, *, limit: int = 0, remember: bool = False
    ) -> tuple[list[KeyValue], bool]:
        """The keys from ``start`` up to ``end`` (excluded) in key order, at most
        ``limit`` of them (0: all); and whether a limit left some out. ``remember``: keep
        them for the next write of one of them (a run's steps; never the event log)."""
        answer = self.client.txn([], [Get(start, range_end=end, limit=limit)], idempotent=True)
        result = answer.responses[0]
        if remember:
            self._learn({kv.key: kv for kv in result.kvs})
        return list(result.kvs), result.more

    def optimistic(
        self, keys: Sequence[str], decide: Callable[[Snapshot], Change[T]], *, what: str
    ) -> T:
        """Read ``keys``, ``decide``, commit if none of them changed meanwhile; again
        until a commit holds (see the module docstring for a commit without an answer).

        ``decide`` may raise (a StateError for an illegal transition, a KeyError for a
        malformed plan): nothing is written then. After ``MAX_TRIES`` rounds overtaken
        by other writers, StateError.

        When this writer knows every key of ``keys`` (it read them, or its own commit
        left them), the first round decides from that instead of reading: a run's steps
        are written one after another by one process, and each write then costs one
        round trip instead of two. Only a commit is trusted to such a memory, since its
        comparisons fail if any key changed since: a decision to write nothing, or a
        refusal, is made again from a fresh read, and so is a commit that found the
        memory stale.
        """
        unanswered: list[_Unanswered[T]] = []
        lost = 0
        remembered = self._recall(keys)
        for attempt in range(MAX_TRIES):
            from_memory = remembered is not None
            if remembered is not None:
                snapshot, remembered = remembered, None
            else:
                snapshot = self.read(keys)
                for earlier in unanswered:
                    if self._was_applied(earlier, what):
                        return earlier.result
            try:
                change = decide(snapshot)
            except Exception:
                if from_memory:
                    self._forget(keys)
                    continue  # decided on what may be stale: decide again on a read
                raise
            if not change.ops:
                if not from_memory:
                    return change.result
                self._forget(keys)
                continue
            check_size(change.ops, what)
            compares = [Compare.mod_revision(k, snapshot.mod_revision(k)) for k in snapshot.kvs]
            compares += self.fence
            try:
                answer = self.client.txn(compares, change.ops)
            except EtcdUnavailable:
                self._forget(keys)
                lost += 1
                pending = None
                if change.proof is not None:
                    pending = _Unanswered(
                        change.proof, snapshot.mod_revision(change.proof.key), change.result
                    )
                    unanswered.append(pending)
                if lost >= MAX_LOST_ANSWERS:
                    if pending is not None and self._was_applied(pending, what):
                        return pending.result
                    raise
                continue
            if answer.succeeded:
                self._remember(snapshot, change.ops, answer.revision)
                return change.result
            self._forget(keys)
            if from_memory:
                continue  # another writer wrote one of the keys: read them
            if self.fence and not self.client.txn(self.fence, idempotent=True).succeeded:
                raise LeadershipLost(
                    f"{what} not written: this node no longer holds the leader's lease",
                    hint="the leader elected next continues the run",
                )
            time.sleep(random.uniform(0, 0.001 * 2 ** min(attempt, 6)))
        raise StateError(
            f"{what}: {MAX_TRIES} tries, each overtaken by another writer of the same keys",
            hint="something writes these keys in a loop; check the other failback processes",
        )

    def _recall(self, keys: Sequence[str]) -> Snapshot | None:
        """``keys`` as this writer's commits left them, if it knows every one."""
        kvs: dict[str, KeyValue | None] = {}
        for name in dict.fromkeys(keys):
            kv = self.known.get(name, _UNKNOWN)
            if kv is _UNKNOWN:
                return None
            kvs[name] = kv  # type: ignore[assignment]
        revision = max((kv.mod_revision for kv in kvs.values() if kv is not None), default=0)
        return Snapshot(revision, kvs)

    def _learn(self, kvs: dict[str, KeyValue | None]) -> None:
        if not self.remember:
            return
        if len(self.known) > KNOWN_KEYS:
            self.known.clear()
        self.known.update((k, kv) for k, kv in kvs.items() if k.startswith(self.remember))

    def _forget(self, keys: Sequence[str]) -> None:
        for name in keys:
            self.known.pop(name, None)

    def _remember(self, snapshot: Snapshot, ops: Sequence[Put | Delete], revision: int) -> None:
        """The compared keys as the commit at ``revision`` left them (a key it put has
        that ``mod_revision``; one it deleted is absent)."""
        after = dict(snapshot.kvs)
        for op in ops:
            if isinstance(op, Delete):
                if op.prefix or op.range_end is not None:
                    after = {}  # a range: which compared keys it took is not worth working out
                    break
                if op.key in after:
                    after[op.key] = None
            elif op.key in after:
                before = after[op.key]
                value = op.value.encode() if isinstance(op.value, str) else op.value
                after[op.key] = KeyValue(
                    key=op.key,
                    value=value,
                    create_revision=revision if before is None else before.create_revision,
                    mod_revision=revision,
                    version=1 if before is None else before.version + 1,
                    lease=op.lease,
                )
        self._forget(list(snapshot.kvs))
        self._learn(after)

    def _was_applied(self, write: _Unanswered[Any], what: str) -> bool:
        """Whether the write that got no answer happened (module docstring)."""
        proof = write.proof
        [kv] = self.read([proof.key]).kvs.values()
        if kv is None:
            return False
        if _token_of(kv, proof.field) == proof.token:
            return True
        if proof.created or kv.mod_revision == write.based_on:
            return False
        # Someone wrote the key after us, or instead of us: the first write after our
        # read is the only one our commit (which compared that read) can have been.
        current = kv
        while current.mod_revision > write.based_on:
            try:
                answer = self.client.txn(
                    [], [Get(proof.key, revision=current.mod_revision - 1)], idempotent=True
                )
            except EtcdRequestFailed as exc:
                raise StateError(
                    f"{what}: etcd gave no answer, and has compacted the history that would"
                    " tell whether it was applied",
                    hint="read the state back (failback run show) before trying again",
                ) from exc
            before = answer.responses[0].kvs[0] if answer.responses[0].kvs else None
            if before is None or before.mod_revision <= write.based_on:
                return _token_of(current, proof.field) == proof.token
            current = before
        return False


def _token_of(kv: KeyValue, name: str) -> object:
    document = load(kv)
    return document.get(name) if isinstance(document, dict) else None


def check_size(ops: Sequence[Put | Delete], what: str) -> None:
    """Refuse a write etcd would refuse, saying which and why (see MAX_WRITE_BYTES)."""
    if len(ops) > MAX_TXN_OPS:
        raise StateError(
            f"{what}: {len(ops)} keys in one write, more than etcd takes in one"
            f" transaction ({MAX_TXN_OPS})",
            hint="a plan this long needs etcd's --max-txn-ops raised, or the SQLite store",
        )
    size = 0
    for op in ops:
        size += len(op.key.encode())
        if isinstance(op, Put):
            size += len(op.value.encode() if isinstance(op.value, str) else op.value)
    if size > MAX_WRITE_BYTES:
        raise StateError(
            f"{what}: {size:,} bytes in one write; the etcd store takes at most"
            f" {MAX_WRITE_BYTES:,} (1 MiB)",
            hint="etcd refuses requests over 1.5 MiB (--max-request-bytes): keep the topology"
            " file and the plan small (no embedded data), or use the SQLite store",
        )
