"""The remote agent: one Python process per SSH connection, serving Host requests.

This file is *sent*, never installed: ``SshHost`` starts ``python3 -c BOOTSTRAP`` over
ssh, writes this source (length-prefixed) to its stdin, and the bootstrap execs it.
Nothing is left on the remote disk, and the agent is always the version of the
failback that talks to it. Then newline-delimited JSON flows both ways, a request's
parameters under ``args`` (a ``cancel`` names its command in ``target``)::

    -> {"id": 7, "op": "run", "args": {"argv": ["pg_ctl", "promote"], "timeout": 60, ...}}
    <- {"id": 7, "ok": true, "value": {"returncode": 0, "stdout": "...", ...}}
    <- {"id": 8, "ok": false, "error": {"type": "OSError", "errno": 2, ...}}

Requests carry ids and each is served in its own thread, so several of failback's
threads can wait on one connection at once; replies come back in any order.

Why a persistent process rather than one ``ssh host cmd`` per action: an exec over
a multiplexed OpenSSH master still costs ~0.1 s here (docs/hosts.md), a request to a
running agent a few milliseconds. File and process operations (read a pid file,
kill(pid, 0), rename a data directory) run natively here, no command spawned.

The semantics are LocalHost's (hosts/local.py, hosts/procgroup.py), which this file
repeats because it must stand alone (stdlib only, no failback on the remote side):
a command's environment is an allow-list of the *agent's* environment plus what the
caller passes; each command leads its own process group; on timeout or cancel the
whole group is SIGKILLed and the reply comes only once no member is left; a command
that finishes keeps its daemons; commands die with the agent (``setpriv --pdeathsig``
for the first process, a reaper shell for the rest of the group); when stdin ends
(the connection is gone, failback died) the agent kills every running command's
group, then exits.

Compatible with Python 3.9+ (the bootstrap checks): no syntax newer than that.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

AGENT_VERSION = 1
"""Bumped when the protocol changes; ``hello`` reports it."""

INHERITED_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR")
"""Same list as hosts/base.py (a test keeps the two equal)."""

GONE_WAIT_S = 10.0
"""How long to wait for a SIGKILLed group to disappear (as in procgroup.py)."""

DRAIN_S = 1.0
"""How long to read a killed command's remaining output (as in procgroup.py)."""

POLL_S = 0.2
"""A waiting command re-checks its cancel flag this often. A cancel also SIGKILLs the
group at once, so this only matters when a process outside the group holds the
command's pipes open."""


class Refused(Exception):
    """A request the agent will not serve as asked; carries a hint for the person."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def inherited_environment(environ: dict[str, str]) -> dict[str, str]:
    return {
        name: value
        for name, value in environ.items()
        if name in INHERITED_ENV or name.startswith("LC_")
    }


# --- process groups (procgroup.py's logic, for this side) -------------------------


def _signal_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def live_members(pgid: int) -> list[int]:
    """PIDs of group ``pgid`` that are not zombies."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []
    except PermissionError:
        pass
    return [pid for pid, fields in live_process_stats() if int(fields[2]) == pgid]


def wait_group_gone(pgid: int, timeout: float) -> list[int]:
    """Wait until group ``pgid`` has no live member, re-signalling on each poll."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        members = live_members(pgid)
        if not members or time.monotonic() >= deadline:
            return members
        _signal_group(pgid)
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


_REAPER_SCRIPT = """\
groups=' '
while read -r op id; do
  case $op$groups in
    +*) groups="$groups$id " ;;
    -*" $id "*) groups="${groups%% $id *} ${groups#* $id }" ;;
  esac
done
for id in $groups; do kill -s KILL -- "-$id" 2>/dev/null; done
"""


class Reaper:
    """A shell that SIGKILLs the registered groups when the agent dies, however it dies
    (the same device as procgroup.GroupReaper: its stdin ends with the agent)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._groups: set[int] = set()

    def register(self, pgid: int) -> None:
        with self._lock:
            self._groups.add(pgid)
            self._send(f"+ {pgid}\n")

    def unregister(self, pgid: int) -> None:
        with self._lock:
            self._groups.discard(pgid)
            self._send(f"- {pgid}\n")

    def _send(self, line: str) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None and proc.stdin is not None:
            try:
                proc.stdin.write(line.encode())
                proc.stdin.flush()
                return
            except OSError:
                pass
        self._start()

    def _start(self) -> None:
        self._proc = None
        try:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", _REAPER_SCRIPT],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                env={"PATH": "/usr/bin:/bin"},
                cwd="/",
            )
        except OSError:
            return
        assert proc.stdin is not None
        try:
            proc.stdin.write("".join(f"+ {g}\n" for g in self._groups).encode())
            proc.stdin.flush()
        except OSError:
            return
        self._proc = proc


# --- commands ------------------------------------------------------------------------


class Command:
    """One running command: its process, and whether it was asked to stop."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.cancelled = False


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", "replace") if value else ""


def live_process_stats() -> Iterator[tuple[int, list[str]]]:
    """Every process that is not a zombie: its PID and the fields of ``/proc/PID/stat``
    after the command name (state, ppid, pgrp, ...). LocalHost's process groups use it."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[0] not in ("Z", "X"):
            yield int(entry), fields


def kill_tree(pid: int, sig: int, expect_cwd: str | None = None) -> list[int]:
    """Signal ``pid`` and every child it has, so that none outlives it.

    For a server whose children are process group leaders of their own (PostgreSQL's
    backends call setsid): killing the parent alone leaves them running until they
    notice. ``pid`` is stopped first (SIGSTOP) so that it starts no child while they
    are signalled, and always receives ``sig`` last (SIGCONT too unless that is
    SIGKILL), whatever fails in between. ``expect_cwd``: the process must still work
    in that directory once stopped (a PID read a moment ago may have been reused by
    another process since), else it is let go and nothing is signalled. Returns the
    PIDs signalled (``pid`` first); [] when ``pid`` is gone or not the one expected.
    LocalHost uses this very function.
    """
    try:
        os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:
        return []
    signalled = [pid]
    try:
        if expect_cwd is not None:
            try:
                cwd = os.readlink(f"/proc/{pid}/cwd")
            except OSError:
                cwd = None
            if cwd is None or os.path.realpath(cwd) != os.path.realpath(expect_cwd):
                signalled = []
                return []
        for child, fields in live_process_stats():
            if int(fields[1]) == pid:
                with contextlib.suppress(OSError):
                    os.kill(child, sig)
                    signalled.append(child)
        return signalled
    finally:
        if signalled:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        if not signalled or sig != signal.SIGKILL:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGCONT)  # never left stopped


def _kill_group(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes, str]:
    """SIGKILL the group led by ``proc``, reap it, wait until no member is alive."""
    pgid = proc.pid
    _signal_group(pgid)
    try:
        out, err = proc.communicate(timeout=DRAIN_S)
    except subprocess.TimeoutExpired:
        for stream in (proc.stdout, proc.stderr, proc.stdin):
            if stream is not None:
                stream.close()
        proc.wait()
        out, err = b"", b""
    survivors = wait_group_gone(pgid, GONE_WAIT_S)
    note = ""
    if survivors:
        note = "\n(processes {} of the command survived SIGKILL for {:g}s)".format(
            ", ".join(map(str, survivors)),
            GONE_WAIT_S,
        )
    return out or b"", err or b"", note


class Agent:
    """Reads requests from ``inp``, writes replies to ``out``; one thread per request."""

    def __init__(self, inp: IO[bytes], out: IO[bytes]) -> None:
        self._in = inp
        self._out = out
        self._write_lock = threading.Lock()
        self._lock = threading.Lock()
        self._commands: dict[int, Command] = {}
        self._cancelled_early: set[int] = set()
        self._closing = False
        self._setpriv = shutil.which("setpriv")
        self._reaper = Reaper()

    # the loop ---------------------------------------------------------------------

    def serve(self) -> None:
        """Serve until stdin ends (or a signal), then kill what still runs."""
        try:
            while True:
                line = self._in.readline()
                if not line:
                    break
                try:
                    request = json.loads(line)
                    rid = request["id"]
                    op = request["op"]
                except (ValueError, KeyError, TypeError):
                    self._reply({"id": None, "ok": False, "error": _bad_request(line)})
                    continue
                if op == "cancel":
                    self._cancel(int(request["target"]))
                    self._reply({"id": rid, "ok": True, "value": None})
                    continue
                threading.Thread(target=self._handle, args=(request,), daemon=True).start()
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        """Kill the group of every running command, wait for them to be gone."""
        with self._lock:
            self._closing = True
            commands = list(self._commands.values())
        for command in commands:
            command.cancelled = True
            _signal_group(command.proc.pid)
        deadline = time.monotonic() + GONE_WAIT_S
        for command in commands:
            wait_group_gone(command.proc.pid, max(0.0, deadline - time.monotonic()))

    def _reply(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        with self._write_lock:
            try:
                self._out.write(data)
                self._out.flush()
            except OSError:
                pass  # failback is gone; the loop sees the end of stdin

    def _handle(self, request: dict[str, Any]) -> None:
        rid = request["id"]
        handler = getattr(self, "op_" + str(request["op"]), None)
        try:
            if handler is None:
                raise Refused(
                    f"unknown request {request['op']!r}",
                    "failback and its agent disagree: this is a bug, please report it",
                )
            value = handler(rid, **request.get("args", {}))
        except Exception as exc:
            self._reply({"id": rid, "ok": False, "error": describe_error(exc)})
        else:
            self._reply({"id": rid, "ok": True, "value": value})

    def _cancel(self, rid: int) -> None:
        with self._lock:
            command = self._commands.get(rid)
            if command is None:
                self._cancelled_early.add(rid)
                return
            command.cancelled = True
        _signal_group(command.proc.pid)

    # identity -------------------------------------------------------------------

    def op_hello(self, rid: int) -> dict[str, Any]:
        uid = os.geteuid()
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = str(uid)
        return {
            "agent_version": AGENT_VERSION,
            "uid": uid,
            "user": user,
            "hostname": socket.gethostname(),
            "python": ".".join(map(str, sys.version_info[:3])),
            "pid": os.getpid(),
            "setpriv": self._setpriv is not None,
        }

    # commands -------------------------------------------------------------------

    def _user_kwargs(self, as_user: str | None) -> dict[str, Any]:
        if as_user is None:
            return {}
        entry = pwd.getpwnam(as_user)
        euid = os.geteuid()
        if euid == entry.pw_uid:
            return {}
        if euid != 0:
            me = pwd.getpwuid(euid).pw_name
            raise Refused(
                f"cannot run a command as {as_user}: the agent runs as {me}, not root",
                f"log in as root, or as {as_user} (or set become: {as_user} on this host)",
            )
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _env(self, as_user: str | None, env: dict[str, str] | None) -> dict[str, str]:
        merged = inherited_environment(dict(os.environ))
        if as_user is not None:
            entry = pwd.getpwnam(as_user)
            merged["HOME"] = entry.pw_dir
            merged["USER"] = as_user
            merged["LOGNAME"] = as_user
        if env:
            merged.update({str(k): str(v) for k, v in env.items()})
        return merged

    def _argv(self, args: list[str]) -> list[str]:
        if self._setpriv is None:
            return args
        return [self._setpriv, "--pdeathsig", "KILL", "--", *args]

    def op_run(
        self,
        rid: int,
        argv: list[str],
        timeout: float = 60.0,
        as_user: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        input: str | None = None,
    ) -> dict[str, Any]:
        started = time.monotonic()
        args = [str(a) for a in argv]
        user_kwargs = self._user_kwargs(as_user)
        environment = self._env(as_user, env)
        with self._lock:  # a shutdown or an early cancel cannot miss this command
            if self._closing or rid in self._cancelled_early:
                self._cancelled_early.discard(rid)
                return _result(1, "", "(cancelled before it started)", started, cancelled=True)
            # the input goes through an unlinked temporary file, not a pipe: the wait
            # below polls (for cancels), and communicate() cannot be polled while it
            # feeds a pipe (it refuses the input a second time)
            stdin: Any = subprocess.DEVNULL if not input else _input_file(input)
            try:
                proc = subprocess.Popen(
                    self._argv(args),
                    stdin=stdin,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=environment,
                    cwd=cwd or "/",
                    start_new_session=True,
                    **user_kwargs,
                )
            except FileNotFoundError as exc:
                return _result(127, "", str(exc), started)
            finally:
                if input:
                    stdin.close()  # the child has its own descriptor
            command = Command(proc)
            self._commands[rid] = command
            self._reaper.register(proc.pid)
        try:
            return self._wait(command, timeout, started)
        finally:
            with self._lock:
                self._commands.pop(rid, None)
            self._reaper.unregister(proc.pid)

    def _wait(self, command: Command, timeout: float, started: float) -> dict[str, Any]:
        proc = command.proc
        deadline = started + timeout
        while not command.cancelled:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                out, err, note = _kill_group(proc)
                return _result(
                    -1,
                    _text(out),
                    _text(err) + f"\n(timed out after {timeout:g}s)" + note,
                    started,
                    timed_out=True,
                )
            try:
                out, err = proc.communicate(timeout=min(remaining, POLL_S))
            except subprocess.TimeoutExpired:
                continue
            if command.cancelled:  # killed by the cancel: it did not finish on its own
                break
            return _result(proc.returncode, _text(out), _text(err), started)
        out, err, note = _kill_group(proc)
        return _result(-1, _text(out), _text(err) + "\n(cancelled)" + note, started, cancelled=True)

    # files and processes (as LocalHost does them) --------------------------------

    def op_read_text(self, rid: int, path: str) -> str:
        with open(path, encoding="utf-8") as handle:
            return handle.read()

    def op_write_text(self, rid: int, path: str, text: str, owner: str | None, mode: int) -> None:
        tmp = path + ".failback-tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if owner is not None and os.geteuid() == 0:
            entry = pwd.getpwnam(owner)
            os.chown(tmp, entry.pw_uid, entry.pw_gid)
        os.replace(tmp, path)

    def op_exists(self, rid: int, path: str) -> bool:
        return os.path.exists(path)

    def op_remove(self, rid: int, path: str) -> None:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)

    def op_make_dirs(self, rid: int, path: str, owner: str | None, mode: int) -> None:
        """Create ``path`` (and parents), then set its mode and owner on the directory
        itself, never through a symbolic link: a link planted at a predictable path (in
        /tmp, say) must not make root hand its target to ``owner``."""
        os.makedirs(path, mode=mode, exist_ok=True)
        uid = pwd.getpwnam(owner).pw_uid if owner is not None and os.geteuid() == 0 else None
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            found = os.fstat(fd).st_uid
            if found not in (0, os.geteuid(), uid):
                raise PermissionError(f"{path} exists and belongs to uid {found}: refused")
            os.fchmod(fd, mode)
            if uid is not None:
                os.fchown(fd, uid, pwd.getpwuid(uid).pw_gid)
        finally:
            os.close(fd)

    def op_pid_alive(self, rid: int, pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return False
        return state not in ("Z", "X")

    def op_kill(self, rid: int, pid: int, sig: int) -> bool:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return False
        return True

    def op_kill_tree(
        self, rid: int, pid: int, sig: int, expect_cwd: str | None = None
    ) -> list[int]:
        return kill_tree(pid, sig, expect_cwd)

    def op_pid_exists(self, rid: int, pid: int) -> bool:
        return os.path.exists(f"/proc/{pid}")

    def op_process_cwd(self, rid: int, pid: int) -> str | None:
        try:
            return os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            return None

    def op_realpath(self, rid: int, path: str) -> str:
        return os.path.realpath(path)

    def op_rename(self, rid: int, src: str, dst: str) -> None:
        os.rename(src, dst)

    def op_list_dir(self, rid: int, path: str) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except FileNotFoundError:
            return []


def _input_file(text: str) -> IO[bytes]:
    """``text`` in an anonymous file (already unlinked, mode 0600), rewound."""
    handle = tempfile.TemporaryFile()  # noqa: SIM115 - the caller closes it
    handle.write(text.encode())
    handle.seek(0)
    return handle


def _result(
    returncode: int,
    stdout: str,
    stderr: str,
    started: float,
    *,
    timed_out: bool = False,
    cancelled: bool = False,
) -> dict[str, Any]:
    return {
        "returncode": returncode,
        "stdout": stdout,
        "stderr": stderr,
        "duration_s": time.monotonic() - started,
        "timed_out": timed_out,
        "cancelled": cancelled,
    }


def describe_error(exc: BaseException) -> dict[str, Any]:
    """An exception as data, so that failback raises the same kind on its side."""
    if isinstance(exc, Refused):
        return {"type": "Refused", "message": str(exc), "hint": exc.hint}
    if isinstance(exc, OSError):
        return {
            "type": "OSError",
            "errno": exc.errno,
            "strerror": exc.strerror,
            "filename": exc.filename,
            "filename2": exc.filename2,
            "message": str(exc),
        }
    if isinstance(exc, UnicodeDecodeError):
        return {
            "type": "UnicodeDecodeError",
            "encoding": exc.encoding,
            "object": exc.object[exc.start : exc.end].hex(),
            "reason": exc.reason,
            "message": str(exc),
        }
    if isinstance(exc, KeyError):
        return {"type": "KeyError", "message": str(exc.args[0]) if exc.args else ""}
    if isinstance(exc, (ValueError, TypeError)):
        return {"type": type(exc).__name__, "message": str(exc)}
    return {"type": "Exception", "message": f"{type(exc).__name__}: {exc}"}


def _bad_request(line: bytes) -> dict[str, Any]:
    return {
        "type": "Refused",
        "message": f"unreadable request {line[:80]!r}",
        "hint": "failback and its agent disagree: this is a bug, please report it",
    }


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    """Take the protocol streams away from fd 0/1 users, then serve.

    The replies go to a duplicate of fd 1, and fd 1 becomes /dev/null: nothing else
    (a stray print, a library's warning) can corrupt the protocol. SIGTERM and SIGHUP
    end the loop like the end of stdin does, so the running commands are killed.
    """
    out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, _stop)
    agent = Agent(sys.stdin.buffer, out)
    try:
        agent.serve()
    finally:
        os._exit(0)


if __name__ == "__main__":
    main()
