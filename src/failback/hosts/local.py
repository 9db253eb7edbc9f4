"""The local machine as a Host."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from failback.hosts.agent import kill_tree
from failback.hosts.base import CommandResult, inherited_environment
from failback.hosts.procgroup import GONE_WAIT_S, REAPER, kill_group, signal_group, wait_group_gone
from failback.hosts.ssh_errors import CommandCancelled

_SETPRIV = shutil.which("setpriv")


def _dying_with_parent(argv: tuple[str, ...]) -> tuple[str, ...]:
    """Run ``argv`` under ``setpriv --pdeathsig KILL``: the kernel kills it if we die.

    A step's command must not outlive the run that started it: if failback is killed
    while a command is half-way, resume decides (through the step's check) whether to
    run it again, and an orphan finishing later would apply the effect twice. Daemons
    the command starts (pg_ctl start, haproxy -D) fork, which clears the setting.
    setpriv (util-linux, on every Debian) does what a preexec_fn would, without running
    Python between fork and exec, which is unsafe in a threaded process (the API server).
    It composes with the new session: Popen calls setsid() (and switches user) in the
    child, then execs setpriv, which sets the signal and execs the command in place;
    the command's first process is still the group leader. The signal covers only that
    first process; the rest of its group is killed by ``procgroup.REAPER``.
    """
    if _SETPRIV is None:
        return argv
    return (_SETPRIV, "--pdeathsig", "KILL", "--", *argv)


class RunningCommands:
    """The local commands in flight, by the thread that started each: an abort noticed
    by another thread cancels a step's command without touching anyone else's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owners: dict[subprocess.Popen[bytes], int] = {}
        self._cancelled: set[subprocess.Popen[bytes]] = set()

    def start(
        self, spawn: Callable[[], subprocess.Popen[bytes]], owner: int
    ) -> subprocess.Popen[bytes]:
        """Start a command and record it in one step: a cancel from another thread waits
        for both, so it never misses a command that already runs (between the two, a
        child could start, be seen, and be left running by an abort)."""
        with self._lock:
            proc = spawn()
            self._owners[proc] = owner
        return proc

    def remove(self, proc: subprocess.Popen[bytes]) -> None:
        """Once its output is read (after this, it is never signalled by a cancel)."""
        with self._lock:
            self._owners.pop(proc, None)
            self._cancelled.discard(proc)

    def was_cancelled(self, proc: subprocess.Popen[bytes]) -> bool:
        """Cancelled, and killed by it (one that finished first keeps its result)."""
        with self._lock:
            cancelled = proc in self._cancelled
        return cancelled and proc.returncode == -signal.SIGKILL

    def cancel(self, owner: int | None) -> int:
        with self._lock:  # under the lock: never a group whose command was removed
            chosen = [
                p for p, o in self._owners.items()
                if (owner is None or o == owner) and p.returncode is None
            ]  # fmt: skip
            for proc in chosen:
                self._cancelled.add(proc)
                signal_group(proc.pid)  # its communicate() returns once the pipes close
        return len(chosen)


RUNNING = RunningCommands()


class LocalHost:
    """Runs everything on this machine, switching OS user when asked (needs root).

    PostgreSQL refuses to run as root, so when failback runs as root, commands for a
    cluster run as its OS user (``as_user``). When failback already runs as that
    user, or ``as_user`` is None, no switch happens.
    """

    name = "local"

    def _user_kwargs(self, as_user: str | None) -> dict[str, object]:
        if as_user is None:
            return {}
        entry = pwd.getpwnam(as_user)
        if os.geteuid() == entry.pw_uid:
            return {}
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _env(self, as_user: str | None, env: Mapping[str, str] | None) -> dict[str, str]:
        merged = inherited_environment(os.environ)
        if as_user is not None:
            entry = pwd.getpwnam(as_user)
            merged["HOME"] = entry.pw_dir
            merged["USER"] = as_user
            merged["LOGNAME"] = as_user
        if env:
            merged.update(env)
        return merged

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
        started = time.monotonic()
        args = tuple(str(a) for a in argv)
        environment = self._env(as_user, env)
        user_kwargs = self._user_kwargs(as_user)

        def spawn() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                _dying_with_parent(args),
                stdin=subprocess.DEVNULL if input_text is None else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=environment,
                cwd=cwd or "/",
                start_new_session=True,  # its own process group, killed as a whole
                **user_kwargs,  # type: ignore[arg-type]
            )

        try:
            proc = RUNNING.start(spawn, threading.get_ident())
        except FileNotFoundError as exc:
            return CommandResult(args, 127, "", str(exc), time.monotonic() - started)
        stdin = None if input_text is None else input_text.encode()
        try:
            REAPER.register(proc.pid)
            out, err = proc.communicate(stdin, timeout=timeout)
            if RUNNING.was_cancelled(proc):
                wait_group_gone(proc.pid, GONE_WAIT_S)
                raise CommandCancelled(
                    f"{args[0] if args else 'command'} was cancelled after "
                    f"{time.monotonic() - started:.1f}s",
                    "its whole process group was killed before this was reported",
                )
        except subprocess.TimeoutExpired:
            out, err, note = kill_group(proc)
            if RUNNING.was_cancelled(proc):  # a daemon outside the group held our pipes
                raise CommandCancelled(
                    f"{args[0] if args else 'command'} was cancelled",
                    "its whole process group was killed before this was reported",
                ) from None
            return CommandResult(
                args,
                -1,
                _text(out),
                _text(err) + f"\n(timed out after {timeout:g}s)" + note,
                time.monotonic() - started,
                timed_out=True,
            )
        except BaseException:  # Ctrl-C, a signal turned exception: no orphan either
            kill_group(proc)
            raise
        finally:
            RUNNING.remove(proc)
            REAPER.unregister(proc.pid)
        return CommandResult(
            args, proc.returncode, _text(out), _text(err), time.monotonic() - started
        )

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

    def read_text(self, path: str) -> str:
        with open(path, encoding="utf-8") as handle:
            return handle.read()

    def write_text(
        self, path: str, text: str, *, owner: str | None = None, mode: int = 0o600
    ) -> None:
        """Write atomically (temp file + rename) so a crash never leaves half a file."""
        tmp = f"{path}.failback-tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if owner is not None and os.geteuid() == 0:
            entry = pwd.getpwnam(owner)
            os.chown(tmp, entry.pw_uid, entry.pw_gid)
        os.replace(tmp, path)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def remove(self, path: str) -> None:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)

    def make_dirs(self, path: str, *, owner: str | None = None, mode: int = 0o700) -> None:
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

    def pid_alive(self, pid: int) -> bool:
        """True while the process exists and is not a zombie waiting to be reaped."""
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return False
        return state not in ("Z", "X")

    def kill(self, pid: int, sig: signal.Signals = signal.SIGTERM) -> bool:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return False
        return True

    def cancel_running(self, owner: int | None = None) -> int:
        """Stop the commands running here now (an abort, from another thread): every
        one, or those the thread ``owner`` started. Each waiting ``run`` raises
        ``CommandCancelled`` once its whole process group is gone."""
        return RUNNING.cancel(owner)

    def kill_tree(
        self, pid: int, sig: signal.Signals = signal.SIGKILL, *, expect_cwd: str | None = None
    ) -> list[int]:
        return kill_tree(pid, int(sig), expect_cwd)

    def pid_exists(self, pid: int) -> bool:
        return os.path.exists(f"/proc/{pid}")

    def process_cwd(self, pid: int) -> str | None:
        try:
            return os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            return None

    def realpath(self, path: str) -> str:
        return os.path.realpath(path)

    def rename(self, src: str, dst: str) -> None:
        os.rename(src, dst)

    def list_dir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except FileNotFoundError:
            return []

    def reachable(self, within: float) -> bool:
        """The machine failback runs on always answers."""
        return True


def _text(value: bytes | None) -> str:
    """Output as text; bytes that are not UTF-8 never make a command "fail"."""
    return value.decode("utf-8", "replace") if value else ""
