"""The last line of defence for promise "secrets never appear in responses".

Responses are built from observations, reports and step outputs; none should hold a
secret, but a command's output is whatever the command printed. Every JSON document
and event the API sends passes through ``Redactor.text`` first, which masks the API
token and every secret the topology refers to (resolved once, at start-up).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from failback.config.secrets import SecretRef

MASK = "****"
_MIN_LEN = 4  # shorter "secrets" would mask ordinary words


def _secret_refs(value: Any, seen: set[int] | None = None) -> list[SecretRef]:
    seen = set() if seen is None else seen
    if id(value) in seen:
        return []
    seen.add(id(value))
    if isinstance(value, SecretRef):
        return [value]
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        return [r for name in fields for r in _secret_refs(getattr(value, name), seen)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in _secret_refs(v, seen)]
    if isinstance(value, list | tuple):
        return [r for v in value for r in _secret_refs(v, seen)]
    return []


class Redactor:
    """Masks known secret values in text."""

    def __init__(self, secrets: list[str]) -> None:
        unique = {s for s in secrets if s and len(s) >= _MIN_LEN}
        unique |= {json.dumps(s)[1:-1] for s in unique}  # as it appears inside JSON
        self._secrets = sorted(unique, key=len, reverse=True)

    @classmethod
    def for_topology(cls, topology: Any, token: str | None) -> Redactor:
        values = [token or ""]
        for ref in _secret_refs(topology):
            try:
                values.append(ref.resolve())
            except Exception:  # an unreadable secret cannot leak either
                continue
        return cls(values)

    def text(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


class RedactMiddleware:
    """Masks secrets in every JSON response body (event streams redact each event)."""

    def __init__(self, app: ASGIApp, redactor: Redactor) -> None:
        self.app = app
        self.redactor = redactor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def guarded(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                if headers.get(b"content-type", b"").startswith(b"application/json"):
                    start = message
                    return
            elif message["type"] == "http.response.body" and start is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                body = self.redactor.text(b"".join(chunks).decode()).encode()
                headers = [(k, v) for k, v in start["headers"] if k != b"content-length"]
                headers.append((b"content-length", str(len(body)).encode()))
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, guarded)
