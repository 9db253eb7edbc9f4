"""Events out: JSON lines (or text lines, ``--log-format text``) to the log, JSON POSTs
to webhooks.

Every event the journal records (the monitor's own and the engine's: runs created,
gates waiting, runs finished) is forwarded, in order. Each webhook has its own queue
and delivery task with a timeout and retries, so a dead webhook delays only its own
deliveries, never a failover or another webhook. A full queue drops the oldest event
(and says so in the log) rather than grow without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

import httpx

QUEUE_LIMIT = 1000
LOGGER = "failback.monitor"
"""The ``logger`` field of the monitor's event lines (log pipelines group by it)."""
_ERRORS = ("failed", "error")
_WARNINGS = ("rolled-back", "rolled_back", "aborted", "aborting", "interrupted", "dropped",
             "waiting", "refused", "suspended", "deposed", "lost", "fenced", "detected",
             "needed", "unhealthy", "down")  # fmt: skip


def event_level(kind: str) -> str:
    """The log level of an event, from its kind's last word (``failback.failed``: error)."""
    last = kind.rsplit(".", 1)[-1]
    if any(word in last for word in _ERRORS):
        return "error"
    if any(word in last for word in _WARNINGS):
        return "warning"
    return "info"


def log_line(document: dict[str, Any], *, text: bool = False) -> str:
    """One log line for an event document: JSON with level and logger, or a text line."""
    kind = str(document.get("kind") or "")
    level = event_level(kind)
    if not text:
        return json.dumps({**document, "level": level, "logger": LOGGER}, default=str)
    about = " ".join(
        part
        for part in (
            document.get("service") or "",
            f"run={document['run_id']}" if document.get("run_id") is not None else "",
            f"step={document['step']}" if document.get("step") else "",
        )
        if part
    )
    return f"{document.get('time')} {level.upper():<7} {kind} {about}: {document.get('message')}"


def event_document(event: dict[str, Any]) -> dict[str, Any]:
    """The JSON form of one event, the same in the log and in a webhook's body."""
    ts = float(event.get("ts") or time.time())
    return {
        "id": event.get("id"),
        "ts": ts,
        "time": datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds"),
        "service": event.get("service"),
        "kind": event.get("kind"),
        "message": event.get("message"),
        "run_id": event.get("run_id"),
        "step": event.get("step"),
        "data": event.get("data"),
        "source": "failback",
    }


class Notifier:
    """Writes each event as a JSON line and hands it to every subscribed webhook."""

    def __init__(
        self,
        webhooks: list[Any],
        log: TextIO | None = None,
        *,
        text: bool = False,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        self.webhooks = list(webhooks)
        self.log = log or sys.stdout
        self.text = text
        """``--log-format text``: lines for people rather than JSON lines."""
        self.redact = redact or (lambda line: line)
        """Masks the topology's secrets in each line (a command's output is anything)."""
        self.queues: list[asyncio.Queue[dict[str, Any]]] = [
            asyncio.Queue(QUEUE_LIMIT) for _ in self.webhooks
        ]
        self.tasks: list[asyncio.Task[None]] = []
        self.client: httpx.AsyncClient | None = None

    def start(self) -> None:
        self.client = httpx.AsyncClient()
        self.tasks = [
            asyncio.create_task(self._deliver(hook, queue), name=f"webhook-{i}")
            for i, (hook, queue) in enumerate(zip(self.webhooks, self.queues, strict=True))
        ]

    def line(self, document: dict[str, Any]) -> None:
        self.log.write(self.redact(log_line(document, text=self.text)) + "\n")
        self.log.flush()

    def emit(self, event: dict[str, Any]) -> None:
        document = event_document(event)
        self.line(document)
        for hook, queue in zip(self.webhooks, self.queues, strict=True):
            if not hook.wants(str(document["kind"])):
                continue
            if queue.full():
                dropped = queue.get_nowait()
                self.line(_local("webhook.dropped", f"{hook.url}: queue full", dropped))
            queue.put_nowait(document)

    async def _deliver(self, hook: Any, queue: asyncio.Queue[dict[str, Any]]) -> None:
        assert self.client is not None
        while True:
            document = await queue.get()
            await self._post(hook, document)
            queue.task_done()

    async def _post(self, hook: Any, document: dict[str, Any]) -> None:
        assert self.client is not None
        last = ""
        for attempt in range(int(hook.retries) + 1):
            if attempt:
                await asyncio.sleep(min(2 ** (attempt - 1), 30))
            try:
                headers = {name: ref.resolve() for name, ref in hook.headers.items()}
                response = await self.client.post(
                    hook.url, json=document, headers=headers, timeout=float(hook.timeout)
                )
                if response.status_code < 300:
                    return
                last = f"HTTP {response.status_code}"
            except Exception as exc:  # any failure is retried, then reported, never raised
                last = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        self.line(_local("webhook.failed", f"{hook.url}: {last}", document))

    async def close(self, drain_s: float = 2.0) -> None:
        """Give queued deliveries a moment, then stop (a dead webhook cannot hold us)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(q.join() for q in self.queues)), timeout=drain_s
            )
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.client is not None:
            await self.client.aclose()


def _local(kind: str, message: str, about: dict[str, Any]) -> dict[str, Any]:
    """A log-only line about delivery itself (never sent to webhooks, never journaled)."""
    return event_document(
        {
            "kind": kind,
            "message": message,
            "service": about.get("service"),
            "data": {"event_id": about.get("id"), "event_kind": about.get("kind")},
        }
    )
