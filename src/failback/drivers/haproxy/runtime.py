"""A small client for HAProxy's runtime API (the admin-level stats socket).

One connection per command: HAProxy's CLI answers a single command and closes the
connection when it is not in interactive mode, so there is no session state to
lose and nothing to reconnect. This module is the one place in the driver that
opens a socket itself (a unix socket to a server, not a process or a file).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Mapping

from failback.drivers.haproxy.errors import (
    HaproxyError,
    HaproxyUnreachable,
    UnknownBackend,
    UnknownServer,
)
from failback.drivers.haproxy.names import NAME_RULE, name_problem
from failback.drivers.haproxy.server_state import (
    AdminState,
    ServerState,
    ServerStats,
    parse_servers_state,
    parse_stat_csv,
    server_state_from_rows,
    server_stats_from_row,
)

_STATES: tuple[AdminState, ...] = ("ready", "drain", "maint")
_SOCKET_HINT = "check the 'stats socket ... level admin' line of haproxy.cfg and that haproxy runs"


def _check_name(kind: str, name: str) -> None:
    # the topology loader checks the same rule; checked again here because a name
    # that reached the socket unchecked could smuggle a second command
    problem = name_problem(kind, name)
    if problem is not None:
        raise HaproxyError(problem, hint=NAME_RULE)


def tcp_address(socket_setting: str) -> tuple[str, int] | None:
    """(host, port) of a TCP stats socket (``10.0.0.5:9999``, ``[::1]:9999``); None for
    a unix socket path."""
    if socket_setting.startswith("/"):
        return None
    host, _, port = socket_setting.rpartition(":")
    return host.strip("[]"), int(port)


class HaproxyRuntime:
    """Typed access to one HAProxy process through its runtime API socket."""

    def __init__(self, socket_path: str, timeout: float = 5.0) -> None:
        self.socket_path = str(socket_path)
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.socket_path!r})"

    # -- transport -----------------------------------------------------------

    def command(self, cmd: str) -> str:
        """Send one command, return HAProxy's whole answer (text, stripped of the end).

        Raises ``HaproxyUnreachable`` when the socket cannot be used and
        ``HaproxyError`` when HAProxy refuses the command for lack of privilege.
        """
        if "\n" in cmd or ";" in cmd:
            raise HaproxyError(
                f"refusing to send a multi-command line to HAProxy: {cmd!r}",
                hint="send one runtime API command per call",
            )
        where = f"HAProxy runtime API socket {self.socket_path}"
        tcp = tcp_address(self.socket_path)
        sock = socket.socket(
            socket.AF_UNIX if tcp is None else socket.AF_INET6 if ":" in tcp[0] else socket.AF_INET,
            socket.SOCK_STREAM,
        )
        try:
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.socket_path if tcp is None else tcp)
            except FileNotFoundError:
                raise HaproxyUnreachable(
                    f"{where} does not exist", hint=f"is haproxy running? {_SOCKET_HINT}"
                ) from None
            except PermissionError:
                raise HaproxyUnreachable(
                    f"permission denied on {where}",
                    hint="run failback as a user that may open the socket "
                    "(see 'mode'/'user'/'group' of the stats socket line)",
                ) from None
            except ConnectionRefusedError:
                raise HaproxyUnreachable(
                    f"{where} refused the connection (stale socket file?)",
                    hint=f"haproxy is probably not running; {_SOCKET_HINT}",
                ) from None
            except TimeoutError:
                raise HaproxyUnreachable(
                    f"{where} did not accept a connection within {self.timeout:g}s",
                    hint="haproxy may be overloaded or stopped",
                ) from None
            except OSError as exc:
                if exc.errno in (errno.ENOTSOCK, errno.ENAMETOOLONG) or "too long" in str(exc):
                    raise HaproxyUnreachable(
                        f"cannot use {where}: {exc.strerror or exc}",
                        hint="the path must be a unix socket of at most 107 bytes",
                    ) from None
                raise HaproxyUnreachable(
                    f"cannot connect to {where}: {exc}", hint=_SOCKET_HINT
                ) from None
            answer = self._exchange(sock, cmd, where)
        finally:
            sock.close()
        if answer.strip() == "Permission denied":
            raise HaproxyError(
                f"HAProxy refused {cmd.split(' ')[0]!r}...: permission denied "
                f"(the socket is not at admin level)",
                hint=f"declare 'stats socket {self.socket_path} level admin' in haproxy.cfg",
            )
        return answer.rstrip("\n")

    def _exchange(self, sock: socket.socket, cmd: str, where: str) -> str:
        chunks: list[bytes] = []
        try:
            sock.sendall(cmd.encode("utf-8") + b"\n")
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except TimeoutError:
            raise HaproxyUnreachable(
                f"{where} did not answer {cmd!r} within {self.timeout:g}s",
                hint="haproxy may be overloaded; retry or raise the timeout",
            ) from None
        except OSError as exc:
            raise HaproxyUnreachable(
                f"{where} dropped the connection during {cmd!r}: {exc}", hint=_SOCKET_HINT
            ) from None
        return b"".join(chunks).decode("utf-8", "replace")

    def _action(self, cmd: str, backend: str, server: str | None = None) -> None:
        """Run a command that answers nothing on success; map any answer to an error."""
        answer = self.command(cmd).strip()
        if not answer:
            return
        if answer.startswith("No such") or answer.startswith("Can't find"):
            self._raise_unknown(backend, server)
        raise HaproxyError(
            f"HAProxy refused {cmd!r}: {answer.splitlines()[0]}",
            hint="see HAProxy's management guide for this command",
        )

    # -- names ---------------------------------------------------------------

    def backends(self) -> list[str]:
        """Names of every backend of the running configuration."""
        answer = self.command("show backend")
        return [line.strip() for line in answer.splitlines() if line and not line.startswith("#")]

    def _raise_unknown(self, backend: str, server: str | None) -> None:
        existing = self.backends()
        if backend not in existing:
            raise UnknownBackend(
                f"HAProxy has no backend {backend!r} (backends: {', '.join(existing) or 'none'})",
                hint="fix the router's 'backend' option in the topology or haproxy.cfg",
            )
        servers = [row.get("srv_name", "") for row in self._state_rows(backend)]
        raise UnknownServer(
            f"backend {backend!r} has no server {server!r} "
            f"(servers: {', '.join(servers) or 'none'})",
            hint="fix the router's per-site 'server' names in the topology or haproxy.cfg",
        )

    # -- actions -------------------------------------------------------------

    def set_state(self, backend: str, server: str, state: AdminState) -> None:
        """Set a server's admin state: ``ready`` takes traffic, ``drain`` keeps only
        existing sessions, ``maint`` takes nothing new (existing sessions survive
        unless ``shutdown_sessions`` follows)."""
        _check_name("backend", backend)
        _check_name("server", server)
        if state not in _STATES:
            raise HaproxyError(
                f"unknown server state {state!r}", hint=f"use one of {', '.join(_STATES)}"
            )
        self._action(f"set server {backend}/{server} state {state}", backend, server)

    def shutdown_sessions(self, backend: str, server: str) -> None:
        """Close every client session currently attached to the server, at once."""
        _check_name("backend", backend)
        _check_name("server", server)
        self._action(f"shutdown sessions server {backend}/{server}", backend, server)

    def set_weight(self, backend: str, server: str, weight: int) -> None:
        """Set a server's absolute weight (0-256); 0 sends it no new sessions."""
        _check_name("backend", backend)
        _check_name("server", server)
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 256:
            raise HaproxyError(
                f"invalid weight {weight!r} for {backend}/{server}",
                hint="HAProxy weights are integers from 0 to 256",
            )
        self._action(f"set weight {backend}/{server} {weight}", backend, server)

    # -- observation ---------------------------------------------------------

    def _state_rows(self, backend: str) -> list[dict[str, str]]:
        _check_name("backend", backend)
        answer = self.command(f"show servers state {backend}")
        if answer.strip().startswith(("Can't find", "No such")):
            existing = self.backends()
            raise UnknownBackend(
                f"HAProxy has no backend {backend!r} (backends: {', '.join(existing) or 'none'})",
                hint="fix the router's 'backend' option in the topology or haproxy.cfg",
            )
        return parse_servers_state(answer)

    def stats(self, backend: str) -> list[ServerStats]:
        """Counters of every server of the backend (``show stat``), in config order."""
        _check_name("backend", backend)
        answer = self.command(f"show stat {backend} 4 -1")
        if not answer.lstrip().startswith("#"):
            existing = self.backends()
            raise UnknownBackend(
                f"HAProxy has no backend {backend!r} (backends: {', '.join(existing) or 'none'})",
                hint="fix the router's 'backend' option in the topology or haproxy.cfg",
            )
        return [
            server_stats_from_row(row)
            for row in parse_stat_csv(answer)
            if row.get("pxname") == backend and row.get("svname") not in ("BACKEND", "FRONTEND")
        ]

    def server_states(self, backend: str) -> dict[str, ServerState]:
        """Each server's admin and operational state, weight, check status and sessions."""
        rows = self._state_rows(backend)
        by_name = {s.server: s for s in self.stats(backend)}
        states: dict[str, ServerState] = {}
        for row in rows:
            name = row.get("srv_name", "")
            states[name] = server_state_from_rows(row, by_name.get(name))
        return states

    def server_state(self, backend: str, server: str) -> ServerState:
        """One server's state; ``UnknownServer`` names the servers that do exist."""
        return server_of(backend, server, self.server_states(backend))


def server_of(backend: str, server: str, states: Mapping[str, ServerState]) -> ServerState:
    """``server``'s state among a backend's ``states``; ``UnknownServer`` names the
    servers that do exist."""
    if server not in states:
        raise UnknownServer(
            f"backend {backend!r} has no server {server!r} "
            f"(servers: {', '.join(states) or 'none'})",
            hint="fix the router's per-site 'server' names in the topology or haproxy.cfg",
        )
    return states[server]
