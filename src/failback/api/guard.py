"""Refuse before reading: the token of a mutating request, then the size of any body.

FastAPI reads and parses a request's body *before* it runs the route's dependencies,
so ``require_token`` alone let an anonymous client make the server hold a body of
any size (a 300 MB POST took the process from 62 MB to 984 MB, and ``failback
monitor --listen`` runs the API inside the monitor). This pure ASGI middleware sits
in front of the app and decides from the headers alone:

* a mutating request (anything but GET/HEAD/OPTIONS) without the right
  ``Authorization: Bearer TOKEN`` gets 401/403 and its body is never read;
* a request that presents a wrong bearer token gets 403, whatever its method (so a
  mistyped token is visible rather than silently giving the anonymous view);
* a body declared larger than ``MAX_BODY`` (Content-Length) gets 413 unread; a body
  of unknown length (chunked) is read up to the limit and refused once it passes it,
  so at most ``MAX_BODY`` bytes are ever held.

It records whether the caller presented the right token (``authenticated``): read
endpoints show command lines and outputs only to such callers.
"""

from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from failback.api.errors import ApiError, error_body

MAX_BODY = 64 * 1024
"""Largest request body accepted, in bytes (every body the API takes is a few hundred)."""

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
AUTHENTICATED = "failback_authenticated"
"""Key in the ASGI scope's ``state``: did the caller present the right token?"""


def token_refusal(authorization: str | None, expected: str | None) -> ApiError | None:
    """Why ``Authorization: <authorization>`` does not allow a change; None when it does.

    401 without bearer credentials, 403 with wrong ones or when the server has no
    token (read-only). Constant-time comparison: the timing says nothing about how
    much of a guess was right.
    """
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        return ApiError(
            401,
            "this endpoint changes things and needs Authorization: Bearer TOKEN",
            hint="send the token of $FAILBACK_API_TOKEN (or of api.token_file)",
            headers={"WWW-Authenticate": 'Bearer realm="failback"'},
        )
    if expected is None:
        return ApiError(
            403,
            "this server has no API token configured, so it is read-only",
            hint="start failback serve with $FAILBACK_API_TOKEN set, or api.token_file",
        )
    if not hmac.compare_digest(credentials.encode(), expected.encode()):
        return ApiError(403, "wrong API token", hint="check the token you send")
    return None


def is_authenticated(scope: Scope) -> bool:
    """Whether the request presented the right token (set by ``GuardMiddleware``)."""
    return bool((scope.get("state") or {}).get(AUTHENTICATED, False))


class BodyTooLarge(Exception):
    pass


class GuardMiddleware:
    """See the module docstring."""

    def __init__(self, app: ASGIApp, token: str | None, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.token = token
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        method = scope["method"].upper()
        authorization = headers.get("authorization")
        refusal = token_refusal(authorization, self.token)
        wrong_token = refusal is not None and refusal.status == 403 and self.token is not None
        if refusal is not None and (method not in READ_METHODS or wrong_token):
            await _respond(send, refusal)
            return
        scope.setdefault("state", {})[AUTHENTICATED] = refusal is None
        length = headers.get("content-length")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if length is not None and length.strip().isdigit() and int(length) > self.max_body:
            await _respond(send, self._too_large())
            return
        if not chunked and (length is None or length.strip() in ("", "0")):
            await self.app(scope, receive, send)
            return
        try:
            body = await self._read(receive)
        except BodyTooLarge:
            await _respond(send, self._too_large())
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> Message:
        """The whole body, read up to the limit; the first message past it is refused."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return message  # the client went away: let the app see it
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

    def _too_large(self) -> ApiError:
        return ApiError(
            413,
            f"request body too large: at most {self.max_body // 1024} KiB",
            hint="the API's request bodies are small JSON documents; see /openapi.json",
        )


def _headers(scope: Scope) -> dict[str, str]:
    """Header names (lower case) -> value; repeated headers joined with ', '."""
    found: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        found[name] = f"{found[name]}, {value}" if name in found else value
    return found


def _replay(first: Message, receive: Receive) -> Receive:
    """A ``receive`` that gives the body read already, then the real messages
    (``http.disconnect``, which event streams wait for)."""
    pending: list[Message] = [first]

    async def replayed() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replayed


async def _respond(send: Send, error: ApiError) -> None:
    body = json.dumps(error_body(error.error, error.hint, "ApiError")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
