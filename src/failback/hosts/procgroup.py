"""Process groups of local commands: killed as a whole, and waited for until gone.

A command is a tree of processes: ``(sleep 2; echo fenced >> f) | cat`` is a shell,
a subshell, ``sleep`` and ``cat``. Killing the shell alone (what
``subprocess.run(timeout=...)`` does) leaves the subshell to write ``fenced`` after
the step was recorded failed and its undo wrote ``unfenced``. So every command runs
in a session of its own (its PID is its process group ID) and this module ends the
whole group, on a timeout, an interruption, or the death of failback itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time

from failback.hosts.agent import live_process_stats

GONE_WAIT_S = 10.0
"""How long to wait for a SIGKILLed group to disappear. Only a process stuck in the
kernel (uninterruptible I/O, e.g. a dead NFS server) takes longer; it is named in the
command's stderr rather than waited for forever."""

DRAIN_S = 1.0
"""How long to read a killed command's remaining output. Only a daemon that left the
group (setsid) while keeping our pipe open makes this expire."""


def kill_group(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes, str]:
    """SIGKILL the group led by ``proc``, reap it, wait until no member is alive.

    Returns the output read so far and a note for stderr ("" when all went well).

    SIGKILL rather than SIGTERM-then-SIGKILL: the command has already been judged
    (timed out, or its run interrupted) and its undo comes next. A SIGTERM handler
    would be more of the command's code running after that judgement, racing the undo
    for as long as the grace lasts; SIGKILL cannot be caught, so the group is gone at
    a moment we know. A command must be idempotent and undoable anyway, which covers
    the clean-up a handler would have done.
    """
    pgid = proc.pid
    signal_group(pgid)
    try:
        out, err = proc.communicate(timeout=DRAIN_S)
    except subprocess.TimeoutExpired:
        # something outside the group holds our pipes: stop reading, keep what we have
        for stream in (proc.stdout, proc.stderr, proc.stdin):
            if stream is not None:
                stream.close()
        proc.wait()
        out, err = b"", b""
    survivors = wait_group_gone(pgid, GONE_WAIT_S)
    note = ""
    if survivors:
        note = (
            f"\n(processes {', '.join(map(str, survivors))} of the command survived SIGKILL"
            f" for {GONE_WAIT_S:g}s)"
        )
    return out or b"", err or b"", note


def signal_group(pgid: int) -> None:
    """SIGKILL every member of group ``pgid`` (gone already: nothing)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def live_members(pgid: int) -> list[int]:
    """PIDs in process group ``pgid`` that are not zombies (a zombie runs no code).

    Zombies count as members for ``kill(-pgid, 0)`` until their parent reaps them,
    and an orphan's parent (PID 1 of a container) may never do so.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []
    except PermissionError:
        pass
    return [pid for pid, fields in live_process_stats() if int(fields[2]) == pgid]


def wait_group_gone(pgid: int, timeout: float) -> list[int]:
    """Wait until group ``pgid`` has no live member; return the survivors (if any).

    The signal is repeated on each poll: a member forked while the first one was being
    delivered is killed too.
    """
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        members = live_members(pgid)
        if not members or time.monotonic() >= deadline:
            return members
        signal_group(pgid)
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


class GroupReaper:
    """Kills the groups of the commands in flight when failback dies, however it dies.

    ``setpriv --pdeathsig KILL`` makes the kernel kill a command's *first* process when
    its parent dies, but not the rest of its group. This is a small shell, started once
    per failback process in a session of its own, which reads "+PGID" / "-PGID" lines
    from a pipe that only failback holds. When failback dies, even by SIGKILL, the pipe
    ends and the shell SIGKILLs every group still registered. A command that finished
    is unregistered first, so the daemons it started are left alone.
    """

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
        if proc is not None and proc.poll() is None:
            assert proc.stdin is not None
            try:
                proc.stdin.write(line.encode())
                proc.stdin.flush()
                return
            except OSError:  # the reaper was killed: start another one
                pass
        self._start()  # a new reaper is told every group still registered

    def _start(self) -> None:
        self._proc = None
        try:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", _REAPER_SCRIPT],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # no Ctrl-C from a terminal reaches it
                env={"PATH": "/usr/bin:/bin"},
                cwd="/",
            )
        except OSError:
            return  # no /bin/sh: commands still die on timeout, just not with us
        assert proc.stdin is not None
        try:
            proc.stdin.write("".join(f"+ {pgid}\n" for pgid in self._groups).encode())
            proc.stdin.flush()
        except OSError:
            return
        self._proc = proc


REAPER = GroupReaper()
"""One per failback process: every LocalHost registers its commands here."""
