"""The Host interface: the only way a driver touches processes and files.

Keeping every side effect behind this small interface means a remote agent is
one new Host implementation, not a rewrite of the drivers.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


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
    ) -> CommandResult: ...

    def run_shell(
        self,
        command: str,
        *,
        timeout: float = 60.0,
        as_user: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> CommandResult: ...

    def read_text(self, path: str) -> str: ...

    def write_text(
        self, path: str, text: str, *, owner: str | None = None, mode: int = 0o600
    ) -> None: ...

    def exists(self, path: str) -> bool: ...

    def remove(self, path: str) -> None: ...

    def make_dirs(self, path: str, *, owner: str | None = None, mode: int = 0o700) -> None: ...

    def pid_alive(self, pid: int) -> bool: ...

    def kill(self, pid: int, sig: signal.Signals = signal.SIGTERM) -> bool: ...

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
