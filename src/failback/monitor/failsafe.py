"""Nodes asking each other directly, when etcd cannot be asked: Patroni's failsafe idea.

A site's node that can no longer renew its etcd lease cannot tell, from etcd alone,
"I am cut off" (the others go on and will promote elsewhere: fence my primary now) from
"etcd is down" (nobody can act: my primary should keep serving). It asks the other
nodes on their ``peer`` address: *can you reach etcd?*

- A node answers **confirm** only if it cannot reach etcd either (its own member lease is
  past its deadline by its own clock) and does not lead. Confirming is a promise: for one
  lease TTL after it the node neither campaigns nor acts, even if etcd comes back, so the
  asker's primary is never promoted over while it keeps serving on that answer.
- The asker keeps its primary serving only when *every* other node confirmed within a
  short timeout. One that does not answer, refuses the token, or reaches etcd means the
  asker is the one cut off: it fences its site. Only "I reach etcd" is worth asking
  again, for as long as a silent node could have kept the asker waiting
  (``ASK_AGAIN_S``): when etcd loses its quorum, the nodes lose it a renewal or two
  apart (a raft leader answers renewals until it notices that it lost its followers).

The exact rule (also in docs/control-plane.md): a primary's site keeps serving without
etcd only while every other control-plane node, asked directly, says it cannot reach
etcd and does not lead; otherwise it fences itself before its lease could be granted
elsewhere.

Requests carry the control plane's ``peer_token`` (compared in constant time); anything
else is answered 401 and changes nothing, so a stranger on the network cannot hold a
node back from acting.
"""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx

from failback.config.api import parse_listen
from failback.http_server import LocalHTTPServer

PATH = "/failsafe"
ASK_TIMEOUT_S = 0.5
"""How long the asker waits for each node (in parallel): nodes answer from memory, so a
node that needs longer is as good as cut off, and the asker's fence must still finish
inside its lease (the safety margin, a third of the TTL by default, leaves room). A
quarter of a second proved too short on a loaded machine: a healthy peer that answered
late made its asker fence a primary while etcd had lost its quorum everywhere."""
MAX_BODY = 4096
ASK_AGAIN_S = ASK_TIMEOUT_S
"""How long a cut-off node keeps asking again nodes that answered "I reach etcd", before
it fences. The same as the longest a node that does not answer holds it up: the fence
starts no later than it always could. Enough for the others to miss their next renewal
when etcd's quorum went for everyone at once, which they then confirm."""


@dataclass(frozen=True)
class Answer:
    """One node's answer to "can you reach etcd?"."""

    node: str
    confirmed: bool
    reason: str
    reaches_etcd: bool = False
    """The node answered, and etcd answers it: the asker is the one cut off, unless the
    node loses etcd within ``ASK_AGAIN_S`` too."""


def failsafe_decision(answers: list[Answer], denied_for: float | None) -> str:
    """What a cut-off node does with its peers' answers: ``hold`` (every node confirmed:
    nobody can act anywhere, the primary keeps serving), ``ask-again`` (the only ones
    that did not confirm reach etcd, and they have said so for less than
    ``ASK_AGAIN_S``: ``denied_for``, None the first time), or ``fence``."""
    if answers and all(a.confirmed for a in answers):
        return "hold"
    refusing = [a for a in answers if not a.confirmed]
    only_reaching = bool(refusing) and all(a.reaches_etcd for a in refusing)
    if only_reaching and (denied_for is None or denied_for < ASK_AGAIN_S):
        return "ask-again"
    return "fence"


class FailsafeServer:
    """Answers the other nodes on this node's peer address (a thread of its own)."""

    def __init__(self, listen: str, token: str, answer: Callable[[str], Answer]) -> None:
        host, port = parse_listen(listen)
        expected = f"Bearer {token}".encode()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                given = (self.headers.get("Authorization") or "").encode()
                if self.path != PATH or not hmac.compare_digest(given, expected):
                    self._reply(401, {"error": "not a failback node of this control plane"})
                    return
                length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
                try:
                    asker = str(json.loads(self.rfile.read(length) or b"{}").get("node", "?"))
                except (ValueError, AttributeError):
                    self._reply(400, {"error": "expected a JSON object"})
                    return
                given_answer = answer(asker)
                self._reply(
                    200,
                    {
                        "node": given_answer.node,
                        "confirm": given_answer.confirmed,
                        "reason": given_answer.reason,
                        "reaches_etcd": given_answer.reaches_etcd,
                    },
                )

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return  # the monitor logs what matters (its own failsafe decisions)

        self._server = LocalHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="failsafe", daemon=True
        )

    def start(self) -> FailsafeServer:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop answering (idempotent; also when it was never started)."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


def ask_peers(
    asker: str, peers: Mapping[str, str | None], token: str, *, timeout: float = ASK_TIMEOUT_S
) -> list[Answer]:
    """Ask every other node (name -> its peer HOST:PORT, None: it has none) at once."""
    if not peers:
        return []

    def ask(item: tuple[str, str | None]) -> Answer:
        node, address = item
        if address is None:
            return Answer(node, False, "has no peer address to ask")
        try:
            response = httpx.post(
                f"http://{address}{PATH}",
                json={"node": asker},
                headers={"Authorization": f"Bearer {token}"},
                timeout=timeout,
                trust_env=False,
            )
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            return Answer(node, False, f"no answer ({type(exc).__name__})")
        if response.status_code != 200 or not isinstance(body, dict):
            return Answer(node, False, f"refused (HTTP {response.status_code})")
        confirmed = bool(body.get("confirm"))
        return Answer(
            node,
            confirmed,
            str(body.get("reason") or ""),
            reaches_etcd=not confirmed and body.get("reaches_etcd") is True,
        )

    with ThreadPoolExecutor(max_workers=len(peers), thread_name_prefix="failsafe-ask") as pool:
        return list(pool.map(ask, peers.items()))
