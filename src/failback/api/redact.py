"""The last line of defence for promise "secrets never appear in responses".

Responses are built from observations, reports and step outputs; none should hold a
secret, but a command's output is whatever the command printed. Every JSON document
and event the API sends passes through ``Redactor.text`` first, which masks the API
token and every secret the topology refers to (resolved once, at start-up). The
``Redactor`` itself lives in ``config.secrets``: the command driver masks the secrets
it hands to a command in that command's output before it is journaled.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from failback.model.secrets import MASK, Redactor

__all__ = ["MASK", "RedactMiddleware", "Redactor"]


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
