"""A small client for etcd's v3 API through its JSON gateway (``POST /v3/...``).

Why the gateway rather than gRPC: httpx is already a dependency, the gateway is
served by every etcd >= 3.4 on its client URLs (3.3 used ``/v3beta``; not
supported here), and Patroni has run on it for years. Only the calls failback
needs are here: key ranges, put, delete, transactions, leases, status, members.

Why several endpoints: a monitor must keep talking to etcd when one member (or
its site) is gone. Endpoints are tried in turn, starting with the last one that
answered (in this process: every client shares what was learned), endpoints that
could not be connected to lately last, and the first answer wins. Timeouts are
short and explicit because a leader that waits longer than its lease for an answer
has already lost.

Retrying elsewhere is only done when it cannot apply a write twice. A request
that never reached a server (connection refused, connect timeout) is always
retried on the next endpoint. A request that reached one but got no answer (read
timeout, connection cut, etcd's "no leader") is retried only if it is a read;
a write raises ``EtcdUnavailable`` saying it may or may not have been applied,
and the caller reads the state back (the election does).

Every failure is a ``FailbackError`` with one line and a hint: no httpx exception
escapes this module.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import httpx

from failback.coord.etcd_types import (
    Compare,
    Delete,
    EndpointStatus,
    Get,
    KeyValue,
    Lease,
    LeaseStatus,
    Member,
    Op,
    Put,
    TxnResult,
    as_int,
    kvs_from_json,
    txn_body,
    unb64,
)
from failback.errors import FailbackError
from failback.model.secrets import SecretRef

DEFAULT_CONNECT_TIMEOUT = 1.0
"""Seconds to open a TCP connection to one endpoint before trying the next."""

DEFAULT_REQUEST_TIMEOUT = 2.0
"""Seconds to wait for an answer once connected; keep it well below the lease TTL."""

API_PREFIX = "/v3"

GRPC_NOT_FOUND = 5
GRPC_INVALID_ARGUMENT = 3
"""etcd's answer to a wrong user name or password (``authentication failed``)."""
GRPC_UNAUTHENTICATED = 16
"""etcd's "invalid auth token": a token it no longer knows."""
GRPC_UNAVAILABLE = 14
"""etcd's "no leader", "request timed out", "leader changed": this member cannot serve now."""

_HINT_UNREACHABLE = (
    "check that etcd runs and that these are its client URLs "
    "(try: etcdctl --endpoints=URL endpoint health)"
)


class EtcdError(FailbackError):
    """Something went wrong talking to etcd."""


class EtcdUnavailable(EtcdError):
    """No endpoint gave an answer (or a write got none and may or may not have been applied)."""


class EtcdRequestFailed(EtcdError):
    """etcd answered, and refused the request (unknown lease, bad argument, permission...)."""

    def __init__(
        self, message: str, hint: str | None = None, *, grpc_code: int, endpoint: str
    ) -> None:
        super().__init__(message, hint)
        self.grpc_code = grpc_code
        self.endpoint = endpoint


def normalize_endpoint(endpoint: str) -> str:
    """``host:port`` or ``http(s)://host:port[/]`` -> ``scheme://host:port``."""
    text = endpoint.strip().rstrip("/")
    if "://" not in text:
        text = f"http://{text}"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EtcdError(
            f"etcd endpoint {endpoint!r} is not an http(s) URL",
            hint="write each endpoint as http://HOST:PORT (etcd's client URL, usually port 2379)",
        )
    if parts.path or parts.query:
        raise EtcdError(
            f"etcd endpoint {endpoint!r} has a path; give only scheme://host:port",
            hint=f"the v3 JSON gateway is found at {API_PREFIX}/ under the client URL itself",
        )
    return text


UNREACHABLE_FOR_S = 60.0
"""After an endpoint refused or timed out a connection, every client of this process
tries it last for this long (or until it answers): a monitor opens journals and clients
often (one per run thread), and each would otherwise spend the connect timeout on a dead
site's member before reaching a live one. Long, because the failover that follows a
site's death may start seconds later (etcd extends every lease when its raft leader died
with the site): with 5 s, the failover's first journal write waited a second on the dead
member. Trying it last costs nothing while another member answers."""


class _EndpointMemory:
    """What this process learned about endpoints, shared by all its clients: which one
    answered last for a set of endpoints, and which ones could not be connected to."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answered: dict[tuple[str, ...], str] = {}
        self._unreachable_until: dict[str, float] = {}

    def order(self, endpoints: tuple[str, ...]) -> list[str]:
        """The last endpoint that answered first, then the others in turn; endpoints that
        recently could not be connected to at the end (still tried: they may be back)."""
        with self._lock:
            answered = self._answered.get(endpoints)
            start = endpoints.index(answered) if answered in endpoints else 0
            now = time.monotonic()
            dead = {e for e in endpoints if self._unreachable_until.get(e, 0.0) > now}
        turn = [*endpoints[start:], *endpoints[:start]]
        return [e for e in turn if e not in dead] + [e for e in turn if e in dead]

    def answered(self, endpoints: tuple[str, ...], endpoint: str) -> None:
        with self._lock:
            self._answered[endpoints] = endpoint
            self._unreachable_until.pop(endpoint, None)

    def unreachable(self, endpoint: str) -> None:
        with self._lock:
            self._unreachable_until[endpoint] = time.monotonic() + UNREACHABLE_FOR_S


_MEMORY = _EndpointMemory()


@dataclass(frozen=True)
class _Attempt:
    """Why one endpoint gave no usable answer; ``maybe_applied`` when the request reached it."""

    endpoint: str
    reason: str
    maybe_applied: bool
    unreachable: bool = False
    """No connection could be made (refused, or timed out): tried last for a while."""


class _NoAnswer(Exception):
    def __init__(self, attempt: _Attempt) -> None:
        super().__init__(attempt.reason)
        self.attempt = attempt


class EtcdClient:
    """etcd's v3 API over HTTP/JSON, with endpoint failover and errors for people.

    Thread-safe as far as httpx's ``Client`` is: one instance may serve a monitor's
    loop and its API threads.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key: SecretRef | None = None,
        username: str | None = None,
        password: SecretRef | None = None,
    ) -> None:
        if isinstance(endpoints, str) or not endpoints:
            raise EtcdError(
                "no etcd endpoint given",
                hint="list etcd's client URLs, e.g. [http://10.0.0.1:2379, http://10.0.0.2:2379]",
            )
        self.endpoints: tuple[str, ...] = tuple(dict.fromkeys(map(normalize_endpoint, endpoints)))
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        cert: tuple[str, str] | None = None
        if cert_file is not None and key is not None:
            if key.kind != "file" or key.reference is None:
                raise EtcdError(
                    f"etcd client key {key.describe()}: TLS keys are read from a file",
                    hint="write key_file: file:/path/to/client.key",
                )
            cert = (str(cert_file), key.reference)
        self._credentials = (username, password) if username and password else None
        self._token: str | None = None
        import httpx  # here: a command that opens no etcd client does not load it

        try:
            self._http = httpx.Client(
                timeout=httpx.Timeout(
                    request_timeout, connect=connect_timeout, pool=connect_timeout
                ),
                headers={"Content-Type": "application/json"},
                trust_env=False,
                verify=str(ca_file) if ca_file is not None else True,
                cert=cert,
            )
        except (OSError, ValueError) as exc:  # ssl: unreadable CA, certificate or key
            raise EtcdError(
                f"etcd TLS settings cannot be used: {exc}",
                hint="check ca_file, cert_file and key_file: readable PEM files that match",
            ) from None

    # -- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EtcdClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- keys --------------------------------------------------------------------

    def get(self, key: str, *, timeout: float | None = None) -> KeyValue | None:
        """The key, or None when it does not exist (a linearizable read: the member
        confirms with a quorum that it still leads, or forwards to the one that does)."""
        data = self._call("/kv/range", Get(key).to_json(), idempotent=True, timeout=timeout)
        kvs = kvs_from_json(data)
        return kvs[0] if kvs else None

    def get_prefix(self, prefix: str) -> list[KeyValue]:
        """Every key that starts with ``prefix``, in key order."""
        body = Get(prefix, prefix=True).to_json()
        return list(kvs_from_json(self._call("/kv/range", body, idempotent=True)))

    def put(self, key: str, value: str | bytes, *, lease: int = 0) -> int:
        """Write ``key``; returns the store's revision after the write."""
        body = Put(key, value, lease).to_json()
        data = self._call("/kv/put", body, idempotent=False)
        return as_int((data.get("header") or {}).get("revision"))

    def delete(self, key: str, *, prefix: bool = False) -> int:
        """Delete ``key`` (or every key under it); returns how many keys were deleted."""
        body = Delete(key, prefix).to_json()
        return as_int(self._call("/kv/deleterange", body, idempotent=False).get("deleted"))

    def txn(
        self,
        compare: Sequence[Compare],
        success: Sequence[Op] = (),
        failure: Sequence[Op] = (),
        *,
        idempotent: bool = False,
    ) -> TxnResult:
        """If every comparison holds run ``success``, else ``failure``: atomically.

        ``idempotent=True`` lets a transaction that got no answer be sent again to
        another endpoint: say so only when running it twice is harmless (no
        operations, or operations guarded by the comparisons).
        """
        data = self._call("/kv/txn", txn_body(compare, success, failure), idempotent=idempotent)
        return TxnResult.from_json(data)

    # -- leases ------------------------------------------------------------------

    def lease_grant(self, ttl: int) -> Lease:
        """A new lease of at least ``ttl`` seconds (etcd may grant more: it has a minimum)."""
        data = self._call("/lease/grant", {"TTL": str(ttl)}, idempotent=False)
        return Lease(id=as_int(data.get("ID")), ttl=as_int(data.get("TTL")))

    def lease_keepalive(self, lease_id: int, *, timeout: float | None = None) -> int:
        """Renew the lease once; returns its TTL from now, 0 when the lease is gone.

        ``timeout``: wait at most this long for each member's answer (default: the
        client's request timeout). A renewal is retried soon by its caller, so a member
        that holds it (etcd electing a raft leader) must not hold the next one back.

        The gateway serves this stream call as one JSON object per line, each
        wrapped in ``{"result": ...}``; one request gives one line.
        """
        data = self._call(
            "/lease/keepalive", {"ID": str(lease_id)}, idempotent=True, timeout=timeout
        )
        return max(as_int(data.get("TTL")), 0)

    def lease_revoke(self, lease_id: int) -> bool:
        """End the lease now (its keys are deleted); False when it was already gone."""
        try:
            self._call("/lease/revoke", {"ID": str(lease_id)}, idempotent=False)
        except EtcdRequestFailed as exc:
            if exc.grpc_code == GRPC_NOT_FOUND:
                return False
            raise
        return True

    def lease_time_to_live(self, lease_id: int, *, keys: bool = False) -> LeaseStatus:
        """Seconds left on the lease (-1 when gone), its granted TTL and, if asked, its keys."""
        body: dict[str, Any] = {"ID": str(lease_id)}
        if keys:
            body["keys"] = True
        data = self._call("/lease/timetolive", body, idempotent=True)
        ttl = data.get("TTL")
        return LeaseStatus(
            id=lease_id,
            ttl=-1 if ttl is None else as_int(ttl),
            granted_ttl=as_int(data.get("grantedTTL")),
            keys=tuple(
                unb64(k).decode("utf-8", "backslashreplace") for k in data.get("keys") or ()
            ),
        )

    # -- cluster -----------------------------------------------------------------

    def status(self, endpoint: str | None = None) -> EndpointStatus:
        """The status of the first member that answers (or of ``endpoint`` only)."""
        only = None if endpoint is None else (normalize_endpoint(endpoint),)
        data, answered = self._call_with_endpoint(
            "/maintenance/status", {}, idempotent=True, endpoints=only
        )
        return EndpointStatus(
            endpoint=answered,
            version=str(data.get("version", "")),
            member_id=as_int((data.get("header") or {}).get("member_id")),
            leader_id=as_int(data.get("leader")),
            raft_term=as_int(data.get("raftTerm")),
            raft_index=as_int(data.get("raftIndex")),
            db_size=as_int(data.get("dbSize")),
            errors=tuple(str(e) for e in data.get("errors") or ()),
        )

    def members(self) -> list[Member]:
        """The members of the etcd cluster, as the answering member knows them."""
        data = self._call("/cluster/member/list", {}, idempotent=True)
        return [
            Member(
                id=as_int(item.get("ID")),
                name=str(item.get("name", "")),
                peer_urls=tuple(item.get("peerURLs") or ()),
                client_urls=tuple(item.get("clientURLs") or ()),
                is_learner=bool(item.get("isLearner", False)),
            )
            for item in data.get("members") or ()
        ]

    # -- transport ---------------------------------------------------------------

    def _call(
        self,
        path: str,
        body: dict[str, Any],
        *,
        idempotent: bool,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        return self._call_with_endpoint(path, body, idempotent=idempotent, timeout=timeout)[0]

    def _call_with_endpoint(
        self,
        path: str,
        body: dict[str, Any],
        *,
        idempotent: bool,
        endpoints: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> tuple[dict[str, Any], str]:
        """POST ``body`` to the first endpoint that answers; (answer, that endpoint)."""
        order = _MEMORY.order(self.endpoints) if endpoints is None else list(endpoints)
        attempts: list[_Attempt] = []
        for endpoint in order:
            try:
                data = self._post(endpoint, path, body, timeout)
            except _NoAnswer as no_answer:
                attempts.append(no_answer.attempt)
                if no_answer.attempt.unreachable:
                    _MEMORY.unreachable(endpoint)
                if no_answer.attempt.maybe_applied and not idempotent:
                    raise EtcdUnavailable(
                        f"etcd at {endpoint}: {no_answer.attempt.reason} to {API_PREFIX}{path}; "
                        "it may or may not have been applied",
                        hint="read the state back before retrying; "
                        "if this repeats, check etcd's health (etcdctl endpoint health)",
                    ) from None
                continue
            if endpoint in self.endpoints:
                _MEMORY.answered(self.endpoints, endpoint)
            return data, endpoint
        raise _unavailable(attempts)

    def _post(
        self, endpoint: str, path: str, body: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        """One request to one endpoint, authenticated when etcd wants a user: a token
        etcd no longer knows (it expires, or the member restarted) is renewed once."""
        if self._credentials is None:
            return self._post_once(endpoint, path, body, None, timeout)
        if self._token is None:
            self._token = self._authenticate(endpoint)
        try:
            return self._post_once(endpoint, path, body, self._token, timeout)
        except EtcdRequestFailed as exc:
            if exc.grpc_code != GRPC_UNAUTHENTICATED:
                raise
        self._token = self._authenticate(endpoint)
        return self._post_once(endpoint, path, body, self._token, timeout)

    def _authenticate(self, endpoint: str) -> str:
        assert self._credentials is not None
        username, password = self._credentials
        try:
            answer = self._post_once(
                endpoint,
                "/auth/authenticate",
                {"name": username, "password": password.resolve()},
                None,
            )
        except EtcdRequestFailed as exc:
            if exc.grpc_code != GRPC_INVALID_ARGUMENT:
                raise
            raise EtcdRequestFailed(
                f"etcd at {endpoint} refused user {username}: wrong user name or password",
                hint=f"check control_plane.etcd.username and the password ({password.describe()})",
                grpc_code=exc.grpc_code,
                endpoint=endpoint,
            ) from None
        token = answer.get("token")
        if not isinstance(token, str) or not token:
            raise EtcdRequestFailed(
                f"etcd at {endpoint} gave user {username} no token",
                hint="is authentication enabled on this etcd? (etcdctl auth status)",
                grpc_code=GRPC_UNAUTHENTICATED,
                endpoint=endpoint,
            )
        return token

    def _post_once(
        self,
        endpoint: str,
        path: str,
        body: dict[str, Any],
        token: str | None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """One request to one endpoint: its answer, ``_NoAnswer``, or ``EtcdRequestFailed``."""
        import httpx  # loaded by __init__: a lookup in sys.modules

        url = f"{endpoint}{API_PREFIX}{path}"
        headers = {"Authorization": token} if token else None
        limits = (
            httpx.USE_CLIENT_DEFAULT
            if timeout is None
            else httpx.Timeout(
                min(timeout, self.request_timeout),
                connect=min(timeout, self.connect_timeout),
                pool=min(timeout, self.connect_timeout),
            )
        )
        try:
            response = self._http.post(
                url, content=json.dumps(body), headers=headers, timeout=limits
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise _NoAnswer(
                _Attempt(
                    endpoint, self._describe(exc, timeout), maybe_applied=False, unreachable=True
                )
            ) from None
        except httpx.HTTPError as exc:
            raise _NoAnswer(
                _Attempt(endpoint, self._describe(exc, timeout), maybe_applied=True)
            ) from None
        data = _first_json_object(response.text)
        if data is None:
            raise _NoAnswer(
                _Attempt(
                    endpoint,
                    f"answered HTTP {response.status_code} without JSON "
                    f"(not an etcd >= 3.4 client URL?)",
                    maybe_applied=False,
                )
            )
        if isinstance(data.get("result"), dict):  # one line of a streamed answer
            data = data["result"]
        error = data.get("error")
        if response.status_code >= 400 or error:
            if isinstance(error, dict):  # the error line of a streamed answer
                code = as_int(error.get("grpc_code"))
                message = str(error.get("message") or error)
            else:
                code = as_int(data.get("code"))
                message = str(data.get("message") or error or f"HTTP {response.status_code}")
            if code == GRPC_UNAVAILABLE:
                raise _NoAnswer(_Attempt(endpoint, message, maybe_applied=True))
            raise EtcdRequestFailed(
                f"etcd at {endpoint} refused {API_PREFIX}{path}: {message}",
                hint=_hint_for(code),
                grpc_code=code,
                endpoint=endpoint,
            )
        return data

    def _describe(self, exc: httpx.HTTPError, timeout: float | None = None) -> str:
        import httpx

        if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
            return f"no connection within {min(timeout or 1e9, self.connect_timeout):g} s"
        if isinstance(exc, httpx.TimeoutException):
            return f"no answer within {min(timeout or 1e9, self.request_timeout):g} s"
        text = str(exc) or type(exc).__name__
        if "refused" in text.lower():
            return "connection refused"
        if isinstance(exc, httpx.RemoteProtocolError):
            return f"connection closed without an answer ({text})"
        return text


def _first_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object of an answer (a streamed answer has one per line)."""
    try:
        value, _ = json.JSONDecoder().raw_decode(text.lstrip())
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _unavailable(attempts: Sequence[_Attempt]) -> EtcdUnavailable:
    if len(attempts) == 1:
        return EtcdUnavailable(
            f"etcd at {attempts[0].endpoint}: {attempts[0].reason}", hint=_HINT_UNREACHABLE
        )
    reasons = "; ".join(f"{a.endpoint}: {a.reason}" for a in attempts)
    return EtcdUnavailable(f"no etcd endpoint answered: {reasons}", hint=_HINT_UNREACHABLE)


def _hint_for(code: int) -> str:
    if code == GRPC_NOT_FOUND:
        return "the lease or key no longer exists (a lease ends when its TTL runs out)"
    if code in (7, 16):  # PermissionDenied, Unauthenticated
        return "etcd has authentication enabled: give failback a user allowed on its prefix"
    return "this is etcd's own message; check the etcd version (>= 3.4) and its logs"
