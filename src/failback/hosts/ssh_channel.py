"""One ``ssh`` process running one agent, and the request/reply protocol over it.

Many threads may wait on one channel at once: each request gets an id, one reader
thread hands every reply to the thread waiting for that id. Whatever ends the ssh
process (a partition noticed by the keep-alives, sshd killed, the agent killed, our
own ``abandon``) wakes every waiter with ``HostUnreachable``: a lost connection is an
exception, never an empty result.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from failback.hosts.ssh_errors import (
    CommandCancelled,
    ConnectFailure,
    HostError,
    HostUnreachable,
)

__all__ = ["AgentChannel", "Classifier"]

Classifier = Callable[[int | None, str], ConnectFailure]
"""(ssh's exit status or None, its stderr) -> what went wrong."""

EXIT_WAIT_S = 5.0
"""How long a closing or broken ssh gets to exit before it is killed."""

CANCEL_WAIT_S = 15.0
"""How long an interrupted wait gives the agent to kill the command's group (the agent
itself waits up to 1 s for output and 10 s for the group to be gone)."""

_LOST = object()
_CLOSED = object()


class _Slot:
    """Where the reader puts the reply to one request."""

    __slots__ = ("event", "reply")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reply: Any = None


class AgentChannel:
    """An ssh process whose remote end runs the agent (hosts/agent.py).

    ``open`` starts it and waits for the agent's ``hello``; ``call``/``submit``+``wait``
    exchange requests; ``close`` ends stdin (the agent then kills any command still
    running and exits); ``abandon`` kills the local ssh (the agent sees the end of its
    stdin the same way, if the path to it still works).
    """

    def __init__(
        self,
        host: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        classify: Classifier,
    ) -> None:
        self.host = host
        self._argv = list(argv)
        self._env = dict(env)
        self._classify = classify
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._slots: dict[int, _Slot] = {}
        self._runs: dict[int, int | None] = {}
        """Commands in flight: request id -> the thread that submitted it."""
        self._stderr: collections.deque[str] = collections.deque(maxlen=60)
        self._junk: collections.deque[str] = collections.deque(maxlen=5)
        self._proc: subprocess.Popen[bytes] | None = None
        self._opened = False
        self._closing = False
        self._failure: HostUnreachable | None = None
        self._ended = threading.Event()
        self._stderr_done = threading.Event()
        self.hello: dict[str, Any] = {}

    # life cycle -----------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._opened and not self._ended.is_set() and not self._closing

    @property
    def pid(self) -> int | None:
        """The local ssh process (tests kill it to simulate a lost connection)."""
        return None if self._proc is None else self._proc.pid

    def open(self, payload: bytes, timeout: float) -> dict[str, Any]:
        """Start ssh, send the agent, wait for its hello (``HostUnreachable`` if none)."""
        try:
            self._proc = subprocess.Popen(
                self._argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._env,
                cwd="/",
                # no Ctrl-C from failback's terminal reaches ssh: an interrupted run
                # still needs the connection to kill its remote command and undo
                start_new_session=True,
            )
        except OSError as exc:
            raise HostError(f"host {self.host}: cannot start ssh: {exc}", None) from exc
        threading.Thread(target=self._read_stderr, daemon=True, name="ssh-stderr").start()
        threading.Thread(target=self._read_replies, daemon=True, name="ssh-reader").start()
        rid = self._new_request()
        try:
            self._write(payload + _encode(rid, "hello", {}))
            self.hello = self.wait(rid, timeout)
        except BaseException:  # refused, timed out, Ctrl-C: no half-open ssh is left
            self.abandon(None)
            raise
        self._opened = True
        return self.hello

    def close(self) -> None:
        """End stdin: the agent kills whatever command still runs, then exits.

        Daemons that finished commands started are left alone. Waiters still blocked
        get ``CommandCancelled``."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        proc = self._proc
        if proc is None:
            return
        with self._write_lock:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
        try:
            proc.wait(timeout=EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._wake_all(_CLOSED)

    def abandon(self, failure: HostUnreachable | None) -> None:
        """Give up on this connection now: kill the local ssh, fail every waiter."""
        with self._lock:
            if failure is not None and self._failure is None:
                self._failure = failure
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=EXIT_WAIT_S)
        self._ended.wait(EXIT_WAIT_S)
        self._wake_all(_LOST)

    # requests -------------------------------------------------------------------

    def submit(
        self, op: str, args: Mapping[str, Any], *, command: bool = False, owner: int | None = None
    ) -> int:
        """Send a request; ``wait`` for its reply. ``command`` requests can be cancelled
        (all of them, or those of one ``owner`` thread)."""
        rid = self._new_request()
        if command:
            with self._lock:
                self._runs[rid] = owner
        try:
            self._write(_encode(rid, op, args))
        except HostUnreachable:
            self._forget(rid)
            raise
        return rid

    def wait(self, rid: int, timeout: float) -> Any:
        """The reply's value, or the remote error raised here; ``HostUnreachable`` when
        the connection ends first or nothing comes back within ``timeout`` seconds."""
        with self._lock:
            slot = self._slots.get(rid)
        if slot is None:
            raise HostError(f"host {self.host}: no request {rid} in flight", None)
        try:
            try:
                answered = slot.event.wait(timeout)
            except BaseException:  # Ctrl-C: the command is stopped before this re-raises
                self._stop_command(rid, slot)
                raise
            if not answered:
                failure = HostUnreachable(
                    self.host,
                    "no-answer",
                    f"no answer within {timeout:g}s",
                    "the machine or its path may be overloaded or partitioned; failback "
                    "drops this connection and reconnects on the next request",
                )
                with self._lock:
                    others = any(r != rid for r in self._runs)
                if not others:
                    # dropping it would kill the commands others run over it (a run's
                    # re-clone sharing the monitor's connection): they keep their own
                    # deadlines, and the connection goes when none is left
                    self.abandon(failure)
                raise failure
        finally:
            self._forget(rid)
        reply = slot.reply
        if reply is _LOST:
            raise self._lost()
        if reply is _CLOSED:
            raise CommandCancelled(
                f"host {self.host}: the connection was closed while the request ran",
                "failback was shutting this host's connection down",
            )
        if reply.get("ok"):
            return reply.get("value")
        raise remote_exception(self.host, reply.get("error") or {})

    def _stop_command(self, rid: int, slot: _Slot) -> None:
        """Cancel command ``rid`` and wait for the agent's word that its group is gone."""
        with self._lock:
            is_command = rid in self._runs
        if is_command and self.alive:
            self.cancel(rid)
            slot.event.wait(CANCEL_WAIT_S)

    def call(self, op: str, args: Mapping[str, Any], timeout: float) -> Any:
        return self.wait(self.submit(op, args), timeout)

    def cancel(self, rid: int) -> None:
        """Ask the agent to kill command ``rid``'s group; its ``wait`` then returns."""
        # if the connection is gone, the agent kills its commands on its own
        with contextlib.suppress(HostUnreachable):
            self._write(_encode(self._new_request(discard=True), "cancel", {}, target=rid))

    def commands_in_flight(self, owner: int | None = None) -> list[int]:
        """Commands not answered yet: all of them, or those ``owner`` submitted."""
        with self._lock:
            return sorted(r for r, o in self._runs.items() if owner is None or o == owner)

    # internals ------------------------------------------------------------------

    def _new_request(self, *, discard: bool = False) -> int:
        rid = next(self._ids)
        if not discard:
            with self._lock:
                self._slots[rid] = _Slot()
        return rid

    def _forget(self, rid: int) -> None:
        with self._lock:
            self._slots.pop(rid, None)
            self._runs.pop(rid, None)

    def _write(self, data: bytes) -> None:
        proc = self._proc
        with self._write_lock:
            try:
                if proc is None or proc.stdin is None or self._closing:
                    raise BrokenPipeError
                proc.stdin.write(data)
                proc.stdin.flush()
            except (OSError, ValueError):
                pass
            else:
                return
        self._ended.wait(EXIT_WAIT_S)
        raise self._lost()

    def _read_replies(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        for line in proc.stdout:
            try:
                reply = json.loads(line)
                rid = reply["id"]
            except (ValueError, KeyError, TypeError):
                # not ours: a login script that prints on stdout, kept for the message
                self._junk.append(line[:200].decode("utf-8", "replace").strip())
                continue
            with self._lock:
                slot = self._slots.get(rid) if isinstance(rid, int) else None
            if slot is not None:
                slot.reply = reply
                slot.event.set()
        try:
            proc.wait(timeout=EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._stderr_done.wait(1.0)
        with self._lock:
            if self._failure is None:
                self._failure = self._describe_end(proc.returncode)
        self._ended.set()
        self._wake_all(_CLOSED if self._closing else _LOST)

    def _read_stderr(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stderr is not None
        try:
            for line in proc.stderr:
                self._stderr.append(line.decode("utf-8", "replace").rstrip())
        finally:
            self._stderr_done.set()

    def _describe_end(self, returncode: int | None) -> HostUnreachable:
        stderr = "\n".join(self._stderr)
        if not self._opened:
            found = self._classify(returncode, stderr)
            if found.kind == "lost":  # nothing was established, so nothing was lost
                found = ConnectFailure(
                    "other",
                    f"ssh ended before the agent answered: {_last_line(stderr)}",
                    "run the same ssh by hand (ssh -v) to see more",
                )
            message = found.message
            if found.kind == "other" and self._junk:
                message += f" (it printed on stdout: {self._junk[-1]!r})"
            return HostUnreachable(self.host, found.kind, message, found.hint)
        found = self._classify(returncode, stderr)
        if found.kind == "lost":
            detail = _last_line(stderr)
        elif found.kind != "other":
            detail = found.message
        else:
            detail = f"ssh exited {returncode}" + (f": {_last_line(stderr)}" if stderr else "")
        return HostUnreachable(
            self.host,
            "lost",
            f"connection lost: {detail}",
            "failback reconnects on the next request; a request that was in flight may "
            "or may not have taken effect there (the step's check decides)",
        )

    def _lost(self) -> HostUnreachable:
        self._ended.wait(EXIT_WAIT_S)
        with self._lock:
            failure = self._failure
        if failure is None:  # pragma: no cover - the reader always sets one
            failure = HostUnreachable(self.host, "lost", "connection lost", None)
        return failure

    def _wake_all(self, marker: object) -> None:
        with self._lock:
            slots = list(self._slots.values())
        for slot in slots:
            if not slot.event.is_set():
                slot.reply = marker
                slot.event.set()


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no message"


def _encode(rid: int, op: str, args: Mapping[str, Any], **extra: Any) -> bytes:
    message = {"id": rid, "op": op, "args": dict(args), **extra}
    return (json.dumps(message, separators=(",", ":")) + "\n").encode()


def remote_exception(host: str, error: Mapping[str, Any]) -> BaseException:
    """The agent's error as the exception LocalHost would have raised.

    Drivers catch ``FileNotFoundError``, ``PermissionError``, ``OSError``, ``KeyError``
    (an unknown OS user) the same on every host; the rest is a ``HostError``."""
    kind = error.get("type")
    message = str(error.get("message", ""))
    if kind == "OSError" and isinstance(error.get("errno"), int):
        args: list[Any] = [error["errno"], error.get("strerror") or message]
        if error.get("filename") is not None:
            args += [error["filename"], None]
            if error.get("filename2") is not None:
                args.append(error["filename2"])
        return OSError(*args)  # OSError(errno, ...) builds FileNotFoundError & co.
    if kind == "UnicodeDecodeError":
        bad = bytes.fromhex(str(error.get("object", "")))
        return UnicodeDecodeError(
            str(error.get("encoding", "utf-8")), bad, 0, max(1, len(bad)), str(error["reason"])
        )
    if kind == "KeyError":
        return KeyError(message)
    if kind == "ValueError":
        return ValueError(message)
    if kind == "TypeError":
        return TypeError(message)
    hint = error.get("hint")
    return HostError(f"host {host}: {message}", str(hint) if hint else None)
