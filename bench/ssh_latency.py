"""What one remote action costs over SSH, five ways, as one JSON document.

    python bench/ssh_latency.py [--rounds N]

A throwaway OpenSSH server is started on 127.0.0.1 (as tests/integration/sshd.py
does: its own directory, host key, client key and free port; ``-f /dev/null`` keeps
/etc/ssh/sshd_config out of it). Then, ``--rounds`` times each:

* ``fresh_exec``: ``ssh HOST true`` on a new connection (handshake, auth, session);
* ``controlmaster_exec``: ``ssh HOST true`` through an OpenSSH ControlMaster that stays
  open (ControlPath socket): one new session per command, no handshake;
* ``agent_run``: ``SshHost.run(["true"])``: a request to failback's persistent agent,
  which spawns ``true`` there;
* ``agent_read_text``: ``SshHost.read_text`` of a 59-byte file: a request served by
  the agent itself, nothing spawned;
* ``agent_connect``: a new ``SshHost`` and its ``connect()`` (handshake, python
  start, the agent sent and its ``hello`` answered), closed after each round.

Both ``ssh`` ways use failback's own client options (``ssh_command.ssh_options``:
``-F /dev/null``, key only, pinned host key, keep-alives), with only the ControlMaster
/ ControlPath options placed before them (ssh keeps the first value it is given). The
ControlMaster and agent ways get one unmeasured warm-up call; the sshd log's
"Accepted publickey" lines count the handshakes each way made.

Times are wall-clock milliseconds on the caller's side (``time.perf_counter``); p95 is
the nearest-rank 95th percentile. Needs root (sshd) and openssh-server. Everything it
starts (sshd and its sessions, the master, the temp directory) is removed at the end,
also on Ctrl-C or SIGTERM. Figures only; nothing is asserted (machines are shared).
Exit status 1 when a measured call fails, 2 when sshd cannot run here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from failback.hosts.ssh import SshHost, SshTarget
from failback.hosts.ssh_command import SshFiles, ssh_binary, ssh_environment, ssh_options

SSHD = "/usr/sbin/sshd"
REMOTE_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3"
CALL_TIMEOUT_S = 30.0
SMALL_TEXT = "failback ssh latency benchmark: a small file for read_text\n"


class Failed(Exception):
    """A measured call did not succeed."""


# --- the throwaway sshd -------------------------------------------------------------


def _keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children() -> dict[int, list[int]]:
    """ppid -> pids, from /proc."""
    found: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            found.setdefault(int(fields[1]), []).append(int(entry))
    return found


def _descendants(pid: int) -> list[int]:
    tree = _children()
    found, todo = [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _stop_process(proc: subprocess.Popen[bytes], *, with_descendants: bool = False) -> None:
    """Stop ``proc`` (and, for sshd, every session it forked: they outlive the listener).

    Descendants are looked for only while ``proc`` is alive, so its pid is still ours."""
    if with_descendants and proc.poll() is None:
        for pid in _descendants(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Sshd:
    """sshd on 127.0.0.1:<free port>, in ``directory``, accepting one client key."""

    def __init__(self, directory: Path, stack: contextlib.ExitStack) -> None:
        self.directory = directory
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege-separation dir
        self.host_key = _keygen(directory / "host_key")
        self.client_key = directory / "client_key"
        (directory / "authorized_keys").write_text(_keygen(self.client_key) + "\n")
        self.log_path = directory / "sshd.log"
        for _attempt in range(5):
            self.port = _free_port()
            with open(self.log_path, "wb") as log:
                proc = subprocess.Popen(
                    self._argv(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # no Ctrl-C of ours reaches it: we stop it
                )
            stack.callback(_stop_process, proc, with_descendants=True)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and proc.poll() is None:
                if "Server listening" in self.log:
                    self.proc = proc
                    return
                time.sleep(0.02)
            _stop_process(proc, with_descendants=True)  # a port taken meanwhile: retry
        raise Failed(f"sshd did not start: {self.log[-500:]}")

    def _argv(self) -> list[str]:
        d = self.directory
        options = [
            "ListenAddress=127.0.0.1",
            f"Port={self.port}",
            f"HostKey={d / 'host_key'}",
            f"AuthorizedKeysFile={d / 'authorized_keys'}",
            f"PidFile={d / 'sshd.pid'}",
            "UsePAM=no",
            "PermitRootLogin=prohibit-password",
            "StrictModes=no",
            "MaxStartups=100",
            "MaxSessions=100",
        ]
        return [SSHD, "-D", "-e", "-f", "/dev/null", *[a for o in options for a in ("-o", o)]]

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def handshakes(self) -> int:
        return self.log.count("Accepted publickey")

    def target(self) -> SshTarget:
        return SshTarget(
            name="bench",
            address="127.0.0.1",
            port=self.port,
            user="root",
            key_file=str(self.client_key),
            host_key=self.host_key,
            connect_timeout=3.0,
            python=REMOTE_PYTHON,
        )


# --- the measurements ---------------------------------------------------------------


def _timed(rounds: int, call: Callable[[], None], *, warm_up: bool = False) -> list[float]:
    if warm_up:
        call()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def _ssh_true(argv: list[str], env: dict[str, str]) -> Callable[[], None]:
    def call() -> None:
        done = subprocess.run(
            argv, env=env, capture_output=True, stdin=subprocess.DEVNULL, timeout=CALL_TIMEOUT_S
        )
        if done.returncode != 0:
            err = done.stderr.decode(errors="replace").strip()[-300:]
            raise Failed(f"ssh ... true exited {done.returncode}: {err}")

    return call


def _master(
    ssh: str, options: list[str], socket_path: Path, address: str, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """An OpenSSH ControlMaster in the foreground (``-N``, no ControlPersist): we own it."""
    argv = [
        ssh,
        *("-o", "ControlMaster=yes"),
        *("-o", f"ControlPath={socket_path}"),
        *("-o", "ControlPersist=no"),
        *options,
        "-N",
        "--",
        address,
    ]
    return subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _wait_master(
    ssh: str, socket_path: Path, address: str, env: dict[str, str], proc: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise Failed(f"the ControlMaster exited {proc.returncode}: {err.strip()[-300:]}")
        checked = subprocess.run(
            [ssh, "-F", "/dev/null", "-o", f"ControlPath={socket_path}", "-O", "check", address],
            env=env,
            capture_output=True,
            timeout=CALL_TIMEOUT_S,
        )
        if checked.returncode == 0:
            return
        time.sleep(0.05)
    raise Failed("the ControlMaster did not come up within 10 s")


def _stop_master(
    ssh: str, socket_path: Path, address: str, env: dict[str, str], proc: subprocess.Popen[bytes]
) -> None:
    if proc.poll() is None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(
                [ssh, "-F", "/dev/null", "-o", f"ControlPath={socket_path}", "-O", "exit", address],
                env=env,
                capture_output=True,
                timeout=5,
            )
    _stop_process(proc)


def _summary(times: list[float], handshakes: int, what: str) -> dict[str, Any]:
    ordered = sorted(times)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return {
        "what": what,
        "median_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(p95, 2),
        "min_ms": round(ordered[0], 2),
        "max_ms": round(ordered[-1], 2),
        "handshakes": handshakes,
    }


def _measure_all(rounds: int, sshd: Sshd, directory: Path, stack: contextlib.ExitStack) -> Any:
    target = sshd.target()
    files = SshFiles()
    stack.callback(files.cleanup)
    ssh = ssh_binary()
    env = ssh_environment()
    options = ssh_options(target, files, ssh)
    address = target.address
    results: dict[str, Any] = {}

    def record(name: str, what: str, times: list[float], since: int) -> None:
        results[name] = _summary(times, sshd.handshakes() - since, what)

    # (a) one connection per command
    since = sshd.handshakes()
    fresh = [ssh, "-o", "ControlMaster=no", "-o", "ControlPath=none", *options]
    times = _timed(rounds, _ssh_true([*fresh, "--", address, "true"], env))
    record("fresh_exec", "ssh HOST true, a new connection each time", times, since)

    # (b) one session per command over one multiplexed connection
    since = sshd.handshakes()
    socket_path = directory / "cm.sock"
    master = _master(ssh, options, socket_path, address, env)
    stack.callback(_stop_master, ssh, socket_path, address, env, master)
    _wait_master(ssh, socket_path, address, env, master)
    muxed = [ssh, "-o", "ControlMaster=no", "-o", f"ControlPath={socket_path}", *options]
    times = _timed(rounds, _ssh_true([*muxed, "--", address, "true"], env), warm_up=True)
    what = "ssh HOST true through an open ControlMaster (the master's handshake counted)"
    record("controlmaster_exec", what, times, since)
    _stop_master(ssh, socket_path, address, env, master)

    # (c), (d) requests to the persistent agent; the warm-up call makes the connection
    small = directory / "small.txt"
    small.write_text(SMALL_TEXT)
    host = SshHost(target)
    stack.callback(host.close)

    def agent_run() -> None:
        result = host.run(["true"], timeout=CALL_TIMEOUT_S)
        if not result.ok:
            raise Failed(f"SshHost.run(['true']) failed: {result.tail() or result.returncode}")

    def agent_read() -> None:
        if host.read_text(str(small)) != SMALL_TEXT:
            raise Failed("SshHost.read_text returned something else")

    since = sshd.handshakes()
    times = _timed(rounds, agent_run, warm_up=True)
    what = "SshHost.run(['true']) over the persistent agent (the warm-up connected)"
    record("agent_run", what, times, since)
    since = sshd.handshakes()
    times = _timed(rounds, agent_read, warm_up=True)
    what = f"SshHost.read_text of a {len(SMALL_TEXT)}-byte file, same agent"
    record("agent_read_text", what, times, since)
    host.close()

    # (e) a new connection and agent each round; close() is not timed
    since = sshd.handshakes()
    times = []
    for _ in range(rounds):
        fresh_host = SshHost(target)
        try:
            started = time.perf_counter()
            fresh_host.connect()
            times.append((time.perf_counter() - started) * 1000)
        finally:
            fresh_host.close()
    what = "SshHost.connect(): handshake, python start, agent sent, hello answered"
    record("agent_connect", what, times, since)
    return results


def _ssh_version() -> str:
    done = subprocess.run(["ssh", "-V"], capture_output=True, text=True)
    return (done.stderr or done.stdout).strip()


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def run(rounds: int) -> tuple[dict[str, Any], int]:
    started = time.monotonic()
    error: str | None = None
    results: dict[str, Any] = {}
    previous_int = signal.getsignal(signal.SIGINT)
    previous_term = signal.signal(signal.SIGTERM, _raise_exit)
    directory = Path(tempfile.mkdtemp(prefix="failback-bench-ssh-"))  # 0700
    try:
        with contextlib.ExitStack() as stack:
            try:
                sshd = Sshd(directory, stack)
                results = _measure_all(rounds, sshd, directory, stack)
            except Failed as exc:
                error = str(exc)
            finally:
                # the cleanup (the stack unwinding) is not interrupted by a second Ctrl-C
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)
    doc = {
        "benchmark": "ssh_latency",
        "rounds": rounds,
        "unit": "ms",
        "results": results,
        "error": error,
        "ssh": _ssh_version(),
        "total_s": round(time.monotonic() - started, 2),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        },
    }
    return doc, 1 if error else 0


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "this benchmark starts a private sshd, which needs root"
    if not os.access(SSHD, os.X_OK) or shutil.which("ssh-keygen") is None:
        return "openssh-server is not installed (scripts/setup.sh installs it)"
    if shutil.which("ssh") is None:
        return "the OpenSSH client (ssh) is not installed"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="calls per way (default 20)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    missing = _missing()
    if missing is not None:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    try:
        doc, code = run(args.rounds)
    except KeyboardInterrupt:
        print(
            "interrupted: sshd, its sessions and the temp directory were removed", file=sys.stderr
        )
        return 130
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
