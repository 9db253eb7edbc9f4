"""What etcd's v3 JSON gateway sends and receives, as typed values.

The gateway speaks proto3's JSON mapping, which has three traps this module
absorbs so that the client and its callers never see them:

- keys and values are base64 strings (they are ``bytes`` in the protobuf);
- 64-bit integers (revisions, lease IDs, member IDs) are JSON *strings*;
- fields equal to their zero value are left out (``"succeeded": false`` is
  simply absent, a missing ``"kvs"`` means no key, a keepalive for a lease that
  is gone answers without ``"TTL"``).

Everything here is pure: building request bodies and reading answers.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

CompareTarget = Literal["VERSION", "CREATE", "MOD", "VALUE", "LEASE"]
CompareResult = Literal["EQUAL", "GREATER", "LESS", "NOT_EQUAL"]


def b64(data: str | bytes) -> str:
    """``data`` (str as UTF-8) as the base64 text the gateway expects for bytes fields."""
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def prefix_range_end(prefix: str | bytes) -> bytes:
    """The ``range_end`` that makes a range request cover every key starting with ``prefix``.

    etcd's rule (``clientv3.GetPrefixRangeEnd``): drop trailing 0xff bytes, add one to
    the last remaining byte; a prefix made only of 0xff bytes (or empty) means "to
    the end of the keyspace", spelt ``\\x00``.
    """
    raw = bytearray(prefix.encode() if isinstance(prefix, str) else prefix)
    while raw and raw[-1] == 0xFF:
        raw.pop()
    if not raw:
        return b"\x00"
    raw[-1] += 1
    return bytes(raw)


def as_int(value: object) -> int:
    """A proto3 JSON integer: a string for 64-bit fields, absent (None) for zero."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | str):
        return int(value)
    raise ValueError(f"not an integer: {value!r}")


@dataclass(frozen=True)
class KeyValue:
    """One key as etcd stores it; ``lease`` is 0 when the key is not attached to a lease."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int

    @property
    def text(self) -> str:
        """The value as text (node names, JSON documents): invalid UTF-8 is replaced."""
        return self.value.decode("utf-8", errors="replace")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KeyValue:
        return cls(
            key=unb64(data.get("key", "")).decode("utf-8", errors="backslashreplace"),
            value=unb64(data.get("value", "")),
            create_revision=as_int(data.get("create_revision")),
            mod_revision=as_int(data.get("mod_revision")),
            version=as_int(data.get("version")),
            lease=as_int(data.get("lease")),
        )


def kvs_from_json(data: Mapping[str, Any]) -> tuple[KeyValue, ...]:
    return tuple(KeyValue.from_json(item) for item in data.get("kvs") or ())


@dataclass(frozen=True)
class Lease:
    """A granted lease. ``ttl`` is etcd's choice: at least what was asked (etcd has a minimum)."""

    id: int
    ttl: int


@dataclass(frozen=True)
class LeaseStatus:
    """``/v3/lease/timetolive``: ``ttl`` is the time left in seconds, -1 when the lease is gone."""

    id: int
    ttl: int
    granted_ttl: int
    keys: tuple[str, ...]

    @property
    def found(self) -> bool:
        return self.ttl >= 0


@dataclass(frozen=True)
class EndpointStatus:
    """``/v3/maintenance/status`` of the one member that answered."""

    endpoint: str
    version: str
    member_id: int
    leader_id: int
    raft_term: int
    raft_index: int
    db_size: int
    errors: tuple[str, ...]

    @property
    def is_leader(self) -> bool:
        """This member is etcd's raft leader (not failback's leader: that is a key)."""
        return self.member_id != 0 and self.member_id == self.leader_id


@dataclass(frozen=True)
class Member:
    """One member of the etcd cluster, from ``/v3/cluster/member/list``."""

    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool


@dataclass(frozen=True)
class Compare:
    """One condition of a transaction: ``target`` of ``key`` compared with ``operand``.

    A VALUE comparison on a missing key is always false (etcd has no "missing value"),
    while CREATE/MOD/VERSION/LEASE of a missing key are 0: ``create_revision(k, 0)``
    is how "k does not exist yet" is said.
    """

    key: str
    target: CompareTarget
    operand: int | bytes
    result: CompareResult = "EQUAL"

    @classmethod
    def value(cls, key: str, value: str | bytes, result: CompareResult = "EQUAL") -> Compare:
        return cls(key, "VALUE", value.encode() if isinstance(value, str) else value, result)

    @classmethod
    def create_revision(cls, key: str, revision: int, result: CompareResult = "EQUAL") -> Compare:
        return cls(key, "CREATE", revision, result)

    @classmethod
    def mod_revision(cls, key: str, revision: int, result: CompareResult = "EQUAL") -> Compare:
        return cls(key, "MOD", revision, result)

    @classmethod
    def version(cls, key: str, version: int, result: CompareResult = "EQUAL") -> Compare:
        return cls(key, "VERSION", version, result)

    @classmethod
    def lease(cls, key: str, lease_id: int, result: CompareResult = "EQUAL") -> Compare:
        return cls(key, "LEASE", lease_id, result)

    def to_json(self) -> dict[str, str]:
        body = {"key": b64(self.key), "target": self.target, "result": self.result}
        if self.target == "VALUE":
            if not isinstance(self.operand, bytes):
                raise TypeError("a VALUE comparison needs bytes")
            body["value"] = b64(self.operand)
            return body
        if isinstance(self.operand, bytes):
            raise TypeError(f"a {self.target} comparison needs an integer")
        field = {
            "VERSION": "version",
            "CREATE": "create_revision",
            "MOD": "mod_revision",
            "LEASE": "lease",
        }[self.target]
        body[field] = str(self.operand)
        return body


def key_range(key: str, prefix: bool, range_end: str | None = None) -> dict[str, str]:
    """The request body naming ``key``, every key under it when ``prefix``, or the keys
    from ``key`` up to (not including) ``range_end``."""
    body = {"key": b64(key)}
    if prefix:
        body["range_end"] = b64(prefix_range_end(key))
    elif range_end is not None:
        body["range_end"] = b64(range_end)
    return body


@dataclass(frozen=True)
class Get:
    """Read ``key`` (or every key under it when ``prefix``, or up to ``range_end``).

    ``limit`` keeps the first keys in key order (etcd stops reading there: a page of a
    long range costs only the page); ``more`` in the answer says whether keys were left.
    ``revision`` reads the keys as they were at that revision (until etcd compacts it):
    how a writer that got no answer finds out what happened to a key since it read it.
    """

    key: str
    prefix: bool = False
    range_end: str | None = None
    limit: int = 0
    revision: int = 0

    def to_json(self) -> dict[str, str]:
        body = key_range(self.key, self.prefix, self.range_end)
        if self.limit:
            body["limit"] = str(self.limit)
        if self.revision:
            body["revision"] = str(self.revision)
        return body


@dataclass(frozen=True)
class Put:
    """Write ``key``; with a ``lease``, the key disappears when the lease ends."""

    key: str
    value: str | bytes
    lease: int = 0

    def to_json(self) -> dict[str, str]:
        body = {"key": b64(self.key), "value": b64(self.value)}
        if self.lease:
            body["lease"] = str(self.lease)
        return body


@dataclass(frozen=True)
class Delete:
    """Delete ``key`` (or every key under it when ``prefix``, or up to ``range_end``)."""

    key: str
    prefix: bool = False
    range_end: str | None = None

    def to_json(self) -> dict[str, str]:
        return key_range(self.key, self.prefix, self.range_end)


Op = Get | Put | Delete


def op_to_json(op: Op) -> dict[str, dict[str, str]]:
    if isinstance(op, Get):
        return {"request_range": op.to_json()}
    if isinstance(op, Put):
        return {"request_put": op.to_json()}
    return {"request_delete_range": op.to_json()}


@dataclass(frozen=True)
class OpResult:
    """What one operation of a transaction returned: keys read (``more``: a ``limit``
    left some out), or the number deleted."""

    kvs: tuple[KeyValue, ...] = ()
    deleted: int = 0
    more: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OpResult:
        if "response_range" in data:
            answer = data["response_range"] or {}
            return cls(kvs=kvs_from_json(answer), more=bool(answer.get("more", False)))
        if "response_delete_range" in data:
            return cls(deleted=as_int((data["response_delete_range"] or {}).get("deleted")))
        return cls()


@dataclass(frozen=True)
class TxnResult:
    """Whether every comparison held (``succeeded``), and what the branch that ran returned."""

    succeeded: bool
    revision: int
    responses: tuple[OpResult, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TxnResult:
        return cls(
            succeeded=bool(data.get("succeeded", False)),
            revision=as_int((data.get("header") or {}).get("revision")),
            responses=tuple(OpResult.from_json(item) for item in data.get("responses") or ()),
        )


def txn_body(compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]) -> dict:
    return {
        "compare": [item.to_json() for item in compare],
        "success": [op_to_json(op) for op in success],
        "failure": [op_to_json(op) for op in failure],
    }
