"""Servers failback runs never ask DNS who they are.

The standard library's HTTPServer looks its own address up in reverse DNS when it
binds; where the resolver does not answer (the netns lab's machines, a cut-off site)
that blocked each monitor's failsafe server, and each lab web app, for 10 s. Here
``socket.getfqdn`` raises: a server that still asks fails to start.
"""

from __future__ import annotations

import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from failback.http_server import LocalHTTPServer
from failback.lab.ports import pick_ports
from failback.monitor.failsafe import Answer, FailsafeServer, ask_peers


@pytest.fixture
def no_reverse_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(name: str = "") -> str:
        raise AssertionError(f"reverse DNS lookup of {name!r}")

    monkeypatch.setattr(socket, "getfqdn", refuse)


def test_the_standard_server_asks_dns_and_ours_does_not(no_reverse_dns: None) -> None:
    with pytest.raises(AssertionError, match="reverse DNS"):
        ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server = LocalHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    try:
        assert server.server_name == "127.0.0.1"
        assert server.server_port == server.server_address[1] > 0
    finally:
        server.server_close()


def test_the_failsafe_server_starts_and_answers_without_dns(no_reverse_dns: None) -> None:
    (port,) = pick_ports(1)
    token = "a-peer-token-of-24-chars!"
    server = FailsafeServer(f"127.0.0.1:{port}", token, lambda asker: Answer("dc2", True, "ok"))
    server.start()
    try:
        [answer] = ask_peers("dc1", {"dc2": f"127.0.0.1:{port}"}, token)
        assert answer.confirmed and answer.node == "dc2"
    finally:
        server.close()
