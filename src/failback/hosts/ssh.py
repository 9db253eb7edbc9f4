"""A machine reached over SSH as a Host: the same promises as LocalHost, remotely.

One long-lived OpenSSH client per machine carries a persistent agent
(hosts/agent.py); every ``run`` and every file or process operation is a request to
that agent, a few milliseconds instead of the ~0.1 s of an exec over a multiplexed
master (docs/hosts.md has the figures). The connection is opened on first use and
reused by every later call, from any thread; when it is lost, the requests in flight
fail with ``HostUnreachable`` and the next call reconnects (one attempt per call:
the caller's step decides whether to retry, and its ``check`` makes that safe).
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from failback.hosts.agent import DRAIN_S, GONE_WAIT_S
from failback.hosts.base import CommandResult
from failback.hosts.ssh_channel import AgentChannel
from failback.hosts.ssh_command import (
    SshFiles,
    agent_payload,
    check_target,
    hops,
    ssh_argv,
    ssh_environment,
)
from failback.hosts.ssh_errors import (
    CommandCancelled,
    ConnectFailure,
    HostError,
    HostUnreachable,
    classify,
)

__all__ = ["CommandCancelled", "HostError", "HostUnreachable", "SshHost", "SshTarget"]

RUN_MARGIN_S = GONE_WAIT_S + DRAIN_S + 5.0
"""A command's reply may come this long after its timeout: the agent kills the group,
reads what is left of its output and waits for every member to be gone first. After
``timeout + RUN_MARGIN_S`` without a reply the connection is declared lost."""

OP_TIMEOUT_S = 30.0
"""File and process operations have no timeout of their own; a reply that takes longer
than this (a hung NFS mount, a dead path) fails the request with ``HostUnreachable``."""

AGENT_START_S = 10.0
"""On top of ssh's connect timeout: starting python (and sudo) and sending the agent."""


@dataclass(frozen=True, kw_only=True)
class SshTarget:
    """How to reach one machine. The config layer builds it from the topology's
    ``hosts:`` entry (it resolves the key's secret reference to a file)."""

    name: str
    address: str
    port: int = 22
    user: str
    key_file: str
    known_hosts_file: str | None = None
    host_key: str | None = None
    jump: SshTarget | None = None
    become: str | None = None
    connect_timeout: float = 5.0
    python: str = "python3"


class SshHost:
    """Runs commands and touches files on ``target`` through its agent; thread-safe.

    ``connections`` counts the SSH handshakes made so far (one, normally, however many
    calls); ``identity`` is who the agent runs as, where.
    """

    def __init__(self, target: SshTarget) -> None:
        check_target(target)
        self.name = target.name
        self.target = target
        self.connections = 0
        self.connect_s: float | None = None
        self._files = SshFiles()
        self._lock = threading.Lock()
        self._channel: AgentChannel | None = None
        self._attempts = 0
        self._failure: HostUnreachable | None = None
        self._generation = 0
        """Bumped by ``close``: a background connect asked for before it is dropped."""
        self._opening: AgentChannel | None = None
        """The connection being opened (under ``_lock``): ``close`` abandons it."""
        self._connecting: threading.Thread | None = None
        self._connecting_lock = threading.Lock()

    # connection -----------------------------------------------------------------

    def connect(self) -> AgentChannel:
        """The open connection, opened now if there is none (one attempt).

        Threads that were waiting while another thread's attempt failed get that
        failure rather than making an attempt each: ten steps on a dead machine cost
        one connect timeout, not ten.
        """
        seen = self._attempts
        with self._lock:
            channel = self._channel
            if channel is not None and channel.alive:
                return channel
            if self._attempts != seen and self._failure is not None:
                raise self._failure.again()
            self._attempts += 1
            self._channel = None
            argv = ssh_argv(self.target, self._files)
            self._files.clear_logs()
            channel = AgentChannel(self.name, argv, ssh_environment(), self._classify)
            started = time.monotonic()
            self._opening = channel
            try:
                channel.open(agent_payload(), self._open_timeout())
            except HostUnreachable as exc:
                self._failure = exc
                raise
            finally:
                self._opening = None
            self._failure = None
            self._channel = channel
            self.connections += 1
            self.connect_s = time.monotonic() - started
            return channel

    def reachable(self, within: float) -> bool:
        """Does the machine answer within ``within`` seconds (never longer)?

        Not connected: a connect attempt starts in the background (or the one under way,
        a run's warm-up, is joined) and is given ``within`` seconds. Connected: a no-op
        request must come back in the time left; one that does not drops the connection
        (a machine that stopped answering mid-connection: a crash or a partition the
        keep-alives have not noticed yet).
        """
        deadline = time.monotonic() + max(0.0, within)
        channel = self._channel
        if channel is None or not channel.alive:
            self._connect_in_background().join(max(0.0, within))
            channel = self._channel
            return channel is not None and channel.alive  # the hello proved it answers
        try:
            channel.call("exists", {"path": "/"}, max(0.05, deadline - time.monotonic()))
        except HostUnreachable:
            return False
        return True

    def _connect_in_background(self) -> threading.Thread:
        with self._connecting_lock:
            if self._connecting is None or not self._connecting.is_alive():
                self._connecting = threading.Thread(
                    target=self._connect_quietly,
                    args=(self._generation,),
                    name=f"connect-{self.name}",
                    daemon=True,
                )
                self._connecting.start()
            return self._connecting

    def _connect_quietly(self, generation: int) -> None:
        if generation != self._generation:
            return  # closed since this was asked for: nobody would close it
        # the failure is kept in self._failure; the next caller of connect() meets it
        with contextlib.suppress(Exception):
            self.connect()

    def _open_timeout(self) -> float:
        return sum(hop.connect_timeout for hop in hops(self.target)) + AGENT_START_S

    def _classify(self, returncode: int | None, stderr: str) -> ConnectFailure:
        """What went wrong, and on which machine of the chain.

        A jump host's ssh logs to its own file: the deepest hop with a recognisable
        failure is the one that failed (the hops after it fail as a consequence). A
        jump host that was reached but could not open the next hop ("open failed:
        connect failed: ...") names a failure of that next hop.
        """
        chain = hops(self.target)
        for depth in range(len(chain) - 1, 0, -1):
            log = self._files.read_log(chain[depth])
            onward = _ONWARD_FAILED.search(log)
            if onward is not None:
                return _about(chain, depth - 1, 255, onward.group(1), self.target)
            found = _about(chain, depth, 255, log, self.target)
            if found.kind != "other":
                return found
        return _about(chain, 0, returncode, stderr, self.target)

    @property
    def identity(self) -> dict[str, Any]:
        """``hello`` of the agent: uid, user, hostname, python, agent_version, pid."""
        return dict(self.connect().hello)

    @property
    def ssh_pid(self) -> int | None:
        """The local ssh process of the open connection (None when not connected)."""
        channel = self._channel
        return None if channel is None else channel.pid

    def close(self) -> None:
        """Close the connection: commands still running there are killed; daemons that
        finished commands started keep running. A later call reconnects.

        A connection still being opened (a dead machine's connect timeout) is given up
        at once rather than waited for: closing never takes a connect timeout."""
        self._generation += 1
        opening = self._opening
        if opening is not None:
            opening.abandon(None)
        with self._lock:
            channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()
        self._files.cleanup()

    def __enter__(self) -> SshHost:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def cancel_running(self, owner: int | None = None) -> int:
        """Stop the commands running on this host now (an abort, from another thread):
        every one, or those the thread ``owner`` started (a run's step, not a monitor's
        probe sharing the connection).

        Each waiting ``run`` raises ``CommandCancelled`` once the agent has killed its
        command's whole process group. Returns how many commands were asked to stop.
        """
        channel = self._channel
        if channel is None:
            return 0
        commands = channel.commands_in_flight(owner)
        for rid in commands:
            channel.cancel(rid)
        return len(commands)

    # Host -----------------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 60.0,
        as_user: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        input_text: str | None = None,
    ) -> CommandResult:
        """As ``Host.run``; the agent enforces ``timeout`` and kills the group.

        ``HostUnreachable`` when the connection is lost before the reply (the command
        may have run: the step's check decides), ``CommandCancelled`` after
        ``cancel_running``. An interruption here (Ctrl-C) cancels the command and waits
        for the agent to report its group gone before re-raising.
        """
        args = tuple(str(a) for a in argv)
        request = {
            "argv": list(args),
            "timeout": float(timeout),
            "as_user": as_user,
            "env": {str(k): str(v) for k, v in env.items()} if env else None,
            "cwd": cwd,
            "input": input_text,
        }
        channel = self.connect()
        rid = channel.submit("run", request, command=True, owner=threading.get_ident())
        value = channel.wait(rid, float(timeout) + RUN_MARGIN_S)
        result = CommandResult(
            args,
            int(value["returncode"]),
            str(value["stdout"]),
            str(value["stderr"]),
            float(value["duration_s"]),
            timed_out=bool(value["timed_out"]),
        )
        if value.get("cancelled"):
            raise CommandCancelled(
                f"host {self.name}: {args[0] if args else 'command'} was cancelled "
                f"after {result.duration_s:.1f}s",
                "its whole process group was killed before this was reported",
            )
        return result

    def run_shell(
        self,
        command: str,
        *,
        timeout: float = 60.0,
        as_user: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> CommandResult:
        return self.run(
            ["/bin/sh", "-c", command], timeout=timeout, as_user=as_user, env=env, cwd=cwd
        )

    def _call(self, op: str, **args: Any) -> Any:
        return self.connect().call(op, args, OP_TIMEOUT_S)

    def read_text(self, path: str) -> str:
        return str(self._call("read_text", path=path))

    def write_text(
        self, path: str, text: str, *, owner: str | None = None, mode: int = 0o600
    ) -> None:
        """Written atomically there (temp file, fsync, chmod/chown, rename)."""
        self._call("write_text", path=path, text=text, owner=owner, mode=mode)

    def exists(self, path: str) -> bool:
        return bool(self._call("exists", path=path))

    def remove(self, path: str) -> None:
        self._call("remove", path=path)

    def make_dirs(self, path: str, *, owner: str | None = None, mode: int = 0o700) -> None:
        self._call("make_dirs", path=path, owner=owner, mode=mode)

    def pid_alive(self, pid: int) -> bool:
        return bool(self._call("pid_alive", pid=int(pid)))

    def kill(self, pid: int, sig: signal.Signals = signal.SIGTERM) -> bool:
        return bool(self._call("kill", pid=int(pid), sig=int(sig)))

    def kill_tree(
        self, pid: int, sig: signal.Signals = signal.SIGKILL, *, expect_cwd: str | None = None
    ) -> list[int]:
        found = self._call("kill_tree", pid=int(pid), sig=int(sig), expect_cwd=expect_cwd)
        return [int(p) for p in found]

    def pid_exists(self, pid: int) -> bool:
        return bool(self._call("pid_exists", pid=int(pid)))

    def process_cwd(self, pid: int) -> str | None:
        found = self._call("process_cwd", pid=int(pid))
        return None if found is None else str(found)

    def realpath(self, path: str) -> str:
        return str(self._call("realpath", path=path))

    def rename(self, src: str, dst: str) -> None:
        self._call("rename", src=src, dst=dst)

    def list_dir(self, path: str) -> list[str]:
        return [str(name) for name in self._call("list_dir", path=path)]


_ONWARD_FAILED = re.compile(r"open failed: connect failed: (.*)")


def _about(
    chain: list[SshTarget], depth: int, returncode: int | None, text: str, target: SshTarget
) -> ConnectFailure:
    """Classify ``text`` as a failure of ``chain[depth]`` (named when it is a jump)."""
    hop = chain[depth]
    found = classify(
        returncode,
        text,
        address=hop.address,
        port=hop.port,
        user=hop.user,
        python=target.python,
        become=target.become,
    )
    if depth == 0:
        return found
    return ConnectFailure(found.kind, f"jump host {hop.name}: {found.message}", found.hint)
