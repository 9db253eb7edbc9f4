"""Long-running lab processes started on a machine, detached, found again by PID file.

The control plane's processes (etcd members, monitors) must live on their machine: they
are started through that machine's Host (its sshd, in the netns lab), so they run in
its network namespace. Each one is started in a session of its own (``setsid``), stdin
from /dev/null, stdout and stderr appended to a log file, and outlives the command that
started it. Its PID is written to a file in the lab directory.

A PID file outlives a SIGKILLed process and its PID may be reused, so a PID counts
only when that process is alive (not a zombie), lives in the expected namespace and
carries the expected argument: ``find`` checks all three, and falls back to scanning
the namespace's processes when the file is stale.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from failback.hosts import Host
from failback.lab.errors import LabError
from failback.lab.nsproc import identify, pids


def launch(
    h: Host, argv: Sequence[str], *, log_file: str, pid_file: str, cwd: str, what: str
) -> int:
    """Start ``argv`` on ``h``'s machine, detached; write and return its PID.

    ``setsid`` execs in place (the background child of a non-interactive shell does not
    lead a process group), so ``$!`` is the PID of ``argv`` itself.
    """
    command = (
        f"cd {shlex.quote(cwd)} && "
        f"setsid {shlex.join(argv)} </dev/null >>{shlex.quote(log_file)} 2>&1 & echo $!"
    )
    result = h.run_shell(command, timeout=15)
    try:
        pid = int(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise LabError(
            f"{what} did not start: {result.tail() or 'no PID'}", hint=f"see {log_file}"
        ) from None
    if not result.ok:
        raise LabError(f"{what} did not start: {result.tail()}", hint=f"see {log_file}")
    tmp = f"{pid_file}.tmp"
    Path(tmp).write_text(f"{pid}\n")
    os.replace(tmp, pid_file)
    return pid


def _state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (a zombie runs nothing, holds no port)."""
    return _state(pid) not in (None, "Z", "X")


def argv_of(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().rstrip("\0").split("\0")
    except OSError:
        return []


def matches(pid: int, *, netns: str, needle: str) -> bool:
    """``pid`` is alive, in ``netns``, and ``needle`` is one of its arguments."""
    return alive(pid) and needle in argv_of(pid) and identify(pid) == netns


def read_pid(pid_file: str) -> int | None:
    try:
        return int(Path(pid_file).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def find(pid_file: str, *, netns: str, needle: str) -> int | None:
    """The PID of the process that ``pid_file`` names, checked; else one found in
    ``netns`` carrying ``needle`` (the file was lost or is stale); else None."""
    pid = read_pid(pid_file)
    if pid is not None and matches(pid, netns=netns, needle=needle):
        return pid
    for candidate in pids(netns):
        if needle in argv_of(candidate) and alive(candidate):
            return candidate
    return None


def terminate(pid: int, *, netns: str, needle: str, timeout: float) -> str:
    """SIGTERM ``pid``, SIGKILL it if it is still there after ``timeout`` s; wait until
    it is gone. Returns how it ended: ``"terminated"``, ``"killed"``, or ``"gone"`` (it
    was no longer that process). Only a PID that still ``matches`` is ever signalled."""
    return terminate_all([(pid, netns, needle)], timeout=timeout)[pid]


def terminate_all(targets: Sequence[tuple[int, str, str]], *, timeout: float) -> dict[int, str]:
    """``terminate`` several processes (``(pid, netns, needle)``) at once: all get SIGTERM,
    then one shared wait, then SIGKILL for those still there."""
    how: dict[int, str] = {}
    pending: list[int] = []
    whose = {pid: (netns, needle) for pid, netns, needle in targets}
    for pid, netns, needle in targets:
        if matches(pid, netns=netns, needle=needle):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            pending.append(pid)
        else:
            how[pid] = "gone"
    for sig, wait, word in ((None, timeout, "terminated"), (signal.SIGKILL, 5.0, "killed")):
        if sig is not None:
            for pid in pending:
                netns, needle = whose[pid]
                if matches(pid, netns=netns, needle=needle):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while True:
            for pid in [p for p in pending if not alive(p)]:
                how[pid] = word
                pending.remove(pid)
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        if not pending:
            return how
    raise LabError(f"processes {pending} survived SIGKILL", hint="see ps -o pid,stat,cmd")


def kill(pid: int, *, netns: str, needle: str, timeout: float = 10.0) -> None:
    """SIGKILL ``pid`` (a crash: no chance to clean up) if it still ``matches``, and wait
    until it is gone."""
    if not matches(pid, netns=netns, needle=needle):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            raise LabError(f"process {pid} survived SIGKILL", hint="see ps -o pid,stat,cmd")
        time.sleep(0.01)


def tail(path: str, lines: int = 3) -> str:
    """The last lines of a log, joined: what a process that died said last."""
    try:
        text = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])
