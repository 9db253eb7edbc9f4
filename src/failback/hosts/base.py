"""The Host interface: the only way a driver touches processes and files.

Keeping every side effect behind this small interface means a remote agent is
one new Host implementation, not a rewrite of the drivers.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

INHERITED_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR")
"""The only variables a command inherits from the process that runs failback.

failback's own environment holds what a command has no business seeing: the API
token, the secrets behind ``env:`` references, whatever the shell that started it
exported. A command gets these names (plus every ``LC_*`` locale variable) and what
its caller passes explicitly in ``env=``; nothing else. A driver that needs more
says so: the command driver exports its ``FAILBACK_*`` context and the component's
declared ``env:``, the PostgreSQL driver its locale and ``PGPASSWORD``.
"""


def inherited_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The allow-listed part of ``environ`` (see ``INHERITED_ENV``)."""
    return {
        name: value
        for name, value in environ.items()
        if name in INHERITED_ENV or name.startswith("LC_")
    }


@dataclass(frozen=True)
class CommandResult:
    """What a finished (or timed-out) command produced."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def tail(self, limit: int = 400) -> str:
        """The last part of the output, for one-line error messages."""
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        joined = " | ".join(line.strip() for line in text[-3:])
        return joined[-limit:]


class Host(Protocol):
    """Runs commands and reads/writes files on one machine."""

    name: str

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
        """Run ``argv`` to completion; a timed-out command leaves no process behind.

        Every command is the leader of its own process group (a new session). When
        it times out, or the wait is interrupted (Ctrl-C, any exception), the whole
        group is killed and this returns (or re-raises) only once no process of the
        group is left: a step is recorded failed, and its undo runs, after the
        command's last subprocess is dead, never while an orphan (``(sleep 2;
        echo fenced >> f) | cat``) can still apply the effect. If failback itself
        dies mid-command, the group is killed too. A command that *finishes* keeps
        whatever it left running in the background: daemons it starts (``pg_ctl
        start``, ``haproxy -D``, ``nohup app &``) are meant to outlive it.

        The command's environment is ``INHERITED_ENV`` (PATH, locale, HOME/USER/
        LOGNAME of ``as_user``...) plus ``env``, never failback's whole environment:
        pass in ``env`` everything else the command needs. stdin is empty unless
        ``input_text`` is given.
        """
        ...

    def run_shell(
        self,
        command: str,
        *,
        timeout: float = 60.0,
        as_user: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> CommandResult:
        """``/bin/sh -c command``, with everything :meth:`run` promises."""
        ...

    def read_text(self, path: str) -> str: ...

    def write_text(
        self, path: str, text: str, *, owner: str | None = None, mode: int = 0o600
    ) -> None: ...

    def exists(self, path: str) -> bool: ...

    def remove(self, path: str) -> None: ...

    def make_dirs(self, path: str, *, owner: str | None = None, mode: int = 0o700) -> None: ...

    def pid_alive(self, pid: int) -> bool: ...

    def kill(self, pid: int, sig: signal.Signals = signal.SIGTERM) -> bool: ...

    def cancel_running(self, owner: int | None = None) -> int:
        """Stop the commands running on this machine now (an abort noticed by another
        thread): every one, or those thread ``owner`` started. Each waiting ``run``
        raises ``CommandCancelled`` once its whole process group is gone; returns how
        many were asked to stop."""
        ...

    def kill_tree(
        self, pid: int, sig: signal.Signals = signal.SIGKILL, *, expect_cwd: str | None = None
    ) -> list[int]:
        """Signal ``pid`` and each of its children (stopped first, so it forks no more
        meanwhile; signalled last, never left stopped); the PIDs signalled, [] when
        ``pid`` is gone — or, with ``expect_cwd``, no longer works in that directory (a
        reused PID). For a server whose children lead process groups of their own
        (PostgreSQL)."""
        ...

    def pid_exists(self, pid: int) -> bool:
        """True while the PID exists at all, zombies included.

        A SIGKILLed postmaster stays a zombie for a while and PostgreSQL's lock-file
        check (kill(pid, 0)) still sees it: restarting must wait for this to be False.
        """
        ...

    def process_cwd(self, pid: int) -> str | None:
        """The working directory of a live process (None if gone or unreadable).

        A postmaster chdirs to its data directory: comparing the two proves a PID
        from postmaster.pid is really that postmaster before we signal it as root.
        """
        ...

    def realpath(self, path: str) -> str: ...

    def rename(self, src: str, dst: str) -> None:
        """Rename atomically on one filesystem (moving a data directory aside)."""
        ...

    def list_dir(self, path: str) -> list[str]:
        """Names in a directory, sorted; [] when it does not exist."""
        ...

    def reachable(self, within: float) -> bool:
        """Does the machine answer within ``within`` seconds? Never waits longer: a
        fence that may proceed without the machine asks this instead of waiting out a
        connect timeout inside the write-unavailability window."""
        ...
