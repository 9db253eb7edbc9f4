"""SshHost against a real sshd on 127.0.0.1: LocalHost's promises, kept over SSH.

Every test talks to a private OpenSSH server (tests/integration/sshd.py) through the
real OpenSSH client and the real agent. The remote machine is this machine, which
lets a test check from here what happened there (a PID gone, a file's owner).
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from failback.drivers.base import observing_within
from failback.drivers.postgres.node_facts import observe
from failback.hosts import CommandCancelled, HostUnreachable, LocalHost, SshHost
from failback.hosts.check import check
from tests.integration.pgcluster import pg_single
from tests.integration.sshd import Sshd, running_sshd

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    with running_sshd() as server:
        yield server


@pytest.fixture(scope="module")
def host(sshd: Sshd) -> Iterator[SshHost]:
    """One connection shared by the tests that do not break it."""
    with SshHost(sshd.target()) as shared:
        yield shared


@pytest.fixture
def fresh(sshd: Sshd) -> Iterator[SshHost]:
    """A connection of its own, for tests that kill or close it."""
    with SshHost(sshd.target("fresh")) as own:
        yield own


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    tmp_path.chmod(0o755)  # postgres (as_user tests) must traverse it
    return tmp_path


def alive(pid: int) -> bool:
    return LocalHost().pid_alive(pid)


def wait_for(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def read_pid(path: Path, timeout: float = 10.0) -> int:
    assert wait_for(lambda: path.exists() and path.read_text().strip() != "", timeout)
    return int(path.read_text().split()[0])


def group_script(pidfile: Path) -> list[str]:
    """A command whose child (not the group leader) writes its PID, then both wait."""
    return ["/bin/sh", "-c", f'sleep 300 & echo $! > "{pidfile}"; wait']


# --- commands --------------------------------------------------------------------------


def test_output_exit_code_stdin_env_cwd(host: SshHost, workdir: Path) -> None:
    result = host.run(
        ["/bin/sh", "-c", 'echo "out:$PWD:$GREETING"; cat; echo err >&2; exit 7'],
        env={"GREETING": "hello there"},
        cwd=str(workdir),
        input_text="from stdin\n",
    )
    assert result.returncode == 7
    assert not result.ok and not result.timed_out
    assert result.stdout == f"out:{workdir}:hello there\nfrom stdin\n"
    assert result.stderr == "err\n"
    assert result.argv == ("/bin/sh", "-c", 'echo "out:$PWD:$GREETING"; cat; echo err >&2; exit 7')
    ok = host.run(["true"])
    assert ok.ok and ok.returncode == 0 and ok.stdout == ""
    assert host.run(["/bin/sh", "-c", "cat"]).stdout == "", "stdin is empty unless given"
    assert host.run(["pwd"]).stdout.strip() == "/", "cwd defaults to / as on LocalHost"
    missing = host.run(["/nonexistent/command"])
    assert missing.returncode == 127 and "nonexistent" in missing.stderr


def test_stdin_reaches_a_command_slower_than_one_poll(host: SshHost) -> None:
    """The agent polls its command every POLL_S; the input must still arrive whole (and
    the poll must not hand it over twice: psql reading SQL from stdin while it works)."""
    text = "".join(f"line {i}\n" for i in range(20000))
    result = host.run(["/bin/sh", "-c", "sleep 0.7; cat; sleep 0.3"], input_text=text)
    assert result.ok, result.stderr
    assert result.stdout == text
    assert host.run_shell("echo $((6 * 7))").stdout == "42\n"


def test_output_that_is_not_utf8_is_replaced(host: SshHost) -> None:
    result = host.run(["printf", "a\\377b"])
    assert result.ok and result.stdout == "a\ufffdb"


def test_environment_is_the_allow_list_of_the_agents(
    host: SshHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAILBACK_API_TOKEN", "local-secret-token")
    monkeypatch.setenv("LANGUAGE", "xx_LOCAL")
    agent_env = Path(f"/proc/{host.identity['pid']}/environ").read_bytes().split(b"\0")
    assert any(v.startswith(b"SSH_CONNECTION=") for v in agent_env), "sshd sets it"
    result = host.run(["env", "-0"], env={"EXTRA": "given"})
    names = dict(v.split("=", 1) for v in result.stdout.split("\0") if "=" in v)
    assert names["EXTRA"] == "given"
    assert "SSH_CONNECTION" not in names and "SSH_CLIENT" not in names and "MAIL" not in names
    assert "FAILBACK_API_TOKEN" not in names
    assert "local-secret-token" not in result.stdout
    assert names.get("LANGUAGE") != "xx_LOCAL", "failback's environment never leaks"
    assert names["USER"] == "root" and names["HOME"] == "/root" and "PATH" in names
    assert set(names) <= {"EXTRA", "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ",
                          "TMPDIR"} | {n for n in names if n.startswith("LC_")}  # fmt: skip


HOSTILE = [
    "$(touch /tmp/pwned-{tag})",
    "`touch /tmp/pwned-{tag}`",
    "; touch /tmp/pwned-{tag}",
    "&& rm -rf /tmp/pwned-{tag}",
    "| touch /tmp/pwned-{tag}",
    "'single' \"double\" \\back\\slash",
    "new\nline\r\n",
    "unicodé ☃ 漢字 \u202e",
    "*",
    "~",
    "-n",
    "",
    " leading and trailing ",
    "%h %p %% %d",
    "a=b",
]


def test_hostile_arguments_are_passed_verbatim(host: SshHost) -> None:
    tag = uuid.uuid4().hex
    args = [arg.replace("{tag}", tag) for arg in HOSTILE]
    script = "import json, sys; print(json.dumps(sys.argv[1:]))"
    result = host.run(["python3", "-c", script, *args], env={"V": args[0]}, input_text=args[2])
    assert result.ok, result.stderr
    assert json.loads(result.stdout) == args
    echoed = host.run(["/bin/sh", "-c", 'printf %s "$V"; cat'], env={"V": args[0]},
                      input_text=args[2])  # fmt: skip
    assert echoed.stdout == args[0] + args[2]
    assert not any(Path("/tmp").glob(f"pwned-{tag}*")), "a hostile string was executed"


def test_timeout_kills_the_whole_group(host: SshHost, workdir: Path) -> None:
    pidfile = workdir / "child.pid"
    started = time.monotonic()
    result = host.run(group_script(pidfile), timeout=1.0)
    assert result.timed_out and result.returncode == -1 and not result.ok
    assert "timed out after 1s" in result.stderr
    assert time.monotonic() - started < 10
    child = read_pid(pidfile)
    assert not alive(child), "the child of a timed-out command outlived it"
    assert not host.pid_alive(child)


def test_cancel_from_another_thread(host: SshHost, workdir: Path) -> None:
    pidfile = workdir / "child.pid"
    outcome: list[BaseException | object] = []

    def runner() -> None:
        try:
            outcome.append(host.run(group_script(pidfile), timeout=120))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=runner)
    thread.start()
    child = read_pid(pidfile)
    assert alive(child)
    assert host.cancel_running() == 1
    thread.join(20)
    assert not thread.is_alive()
    assert isinstance(outcome[0], CommandCancelled), outcome
    assert not alive(child), "cancel returned before the group was gone"
    assert host.run(["true"]).ok, "the connection survives a cancel"


@pytest.mark.parametrize("kind", ["ssh", "local"])
def test_cancel_stops_only_the_commands_of_one_thread(
    kind: str, host: SshHost, workdir: Path
) -> None:
    """A run's abort cancels the commands its own thread started on a machine, not
    those of another thread sharing the connection (the monitor's probes)."""
    target: Any = host if kind == "ssh" else LocalHost()
    outcomes: dict[str, BaseException | object] = {}
    idents: dict[str, int] = {}

    def runner(name: str) -> None:
        idents[name] = threading.get_ident()
        try:
            outcomes[name] = target.run(group_script(workdir / f"{name}.pid"), timeout=120)
        except BaseException as exc:
            outcomes[name] = exc

    threads = {n: threading.Thread(target=runner, args=(n,)) for n in ("step", "probe")}
    for thread in threads.values():
        thread.start()
    step_child, probe_child = (read_pid(workdir / f"{n}.pid") for n in ("step", "probe"))
    assert target.cancel_running(idents["step"]) == 1
    threads["step"].join(20)
    assert isinstance(outcomes["step"], CommandCancelled), outcomes
    assert not alive(step_child), "cancel returned before the group was gone"
    assert alive(probe_child) and threads["probe"].is_alive(), "another thread's command died"
    assert target.cancel_running() == 1  # everyone's (closing down)
    threads["probe"].join(20)
    assert isinstance(outcomes["probe"], CommandCancelled), outcomes


def test_a_serving_database_behind_a_hung_agent_is_observed_within_the_budget(
    fresh: SshHost,
) -> None:
    """The monitor's probe of a database whose machine stopped answering over SSH (its
    agent hangs) while PostgreSQL serves: the observation says "primary, machine does
    not answer" within the probe's budget, instead of waiting for the machine (which
    would time the probe out and make a serving primary look dead)."""
    with pg_single("dc7") as (_, node):
        agent = int(fresh.identity["pid"])
        os.kill(agent, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with observing_within(0.5):
                seen = observe(fresh, node)
            took = time.monotonic() - started
        finally:
            os.kill(agent, signal.SIGCONT)
    assert seen.role == "primary" and seen.reachable, seen
    assert seen.host_reachable is False
    assert took < 5.0, f"waited {took:.1f}s for a machine that does not answer"


def test_daemon_of_a_finished_command_survives_it_and_close(sshd: Sshd, workdir: Path) -> None:
    own = SshHost(sshd.target("daemons"))
    try:
        result = own.run(
            ["/bin/sh", "-c", "sleep 300 >/dev/null 2>&1 </dev/null & echo $!"], timeout=10
        )
        daemon = int(result.stdout)
        assert result.ok and alive(daemon)
        agent = own.identity["pid"]
        own.close()
        assert wait_for(lambda: not alive(agent)), "the agent exits when its connection closes"
        time.sleep(0.2)
        assert alive(daemon), "a daemon started by a finished command was killed"
    finally:
        own.close()
        LocalHost().kill(daemon, signal.SIGKILL)


def test_close_kills_a_running_command(sshd: Sshd, workdir: Path) -> None:
    own = SshHost(sshd.target("closing"))
    pidfile = workdir / "child.pid"
    outcome: list[BaseException] = []

    def runner() -> None:
        try:
            own.run(group_script(pidfile), timeout=120)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=runner)
    thread.start()
    child = read_pid(pidfile)
    own.close()
    thread.join(20)
    assert outcome and isinstance(outcome[0], CommandCancelled | HostUnreachable), outcome
    assert wait_for(lambda: not alive(child)), "a running command outlived close()"


# --- lost connections -----------------------------------------------------------------


def _run_in_thread(host: SshHost, argv: list[str]) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def runner() -> None:
        try:
            outcome.append(host.run(argv, timeout=120))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=runner)
    thread.start()
    return thread, outcome


def test_killing_the_ssh_client_kills_the_remote_group(fresh: SshHost, workdir: Path) -> None:
    """The orchestrator's side dies (SIGKILL of ssh): the agent sees its stdin end and
    kills the group of the command it was running; the caller gets HostUnreachable."""
    pidfile = workdir / "child.pid"
    thread, outcome = _run_in_thread(fresh, group_script(pidfile))
    child = read_pid(pidfile)
    assert fresh.ssh_pid is not None
    os.kill(fresh.ssh_pid, signal.SIGKILL)
    thread.join(20)
    assert isinstance(outcome[0], HostUnreachable), outcome
    assert outcome[0].kind == "lost"
    assert "host fresh:" in str(outcome[0]) and outcome[0].hint
    assert wait_for(lambda: not alive(child)), "the remote command outlived its connection"
    assert fresh.run(["true"]).ok, "the next call reconnects"
    assert fresh.connections == 2


def test_lost_connection_mid_request_raises_then_reconnects(
    sshd: Sshd, fresh: SshHost, workdir: Path
) -> None:
    """sshd's side of the connection dies while a command runs."""
    pidfile = workdir / "child.pid"
    thread, outcome = _run_in_thread(fresh, group_script(pidfile))
    child = read_pid(pidfile)
    agent = fresh.identity["pid"]
    sessions = sshd.session_pids()
    assert sessions
    for pid in sessions:
        os.kill(pid, signal.SIGKILL)
    thread.join(20)
    assert isinstance(outcome[0], HostUnreachable), outcome
    assert not isinstance(outcome[0], OSError), "callers catching OSError must not swallow it"
    assert wait_for(lambda: not alive(agent) and not alive(child))
    assert fresh.read_text("/etc/hostname") == Path("/etc/hostname").read_text()
    assert fresh.connections == 2


def test_agent_killed_takes_its_commands_with_it(fresh: SshHost, workdir: Path) -> None:
    """SIGKILL of the agent itself: no EOF handling runs, the reaper shell kills the group."""
    pidfile = workdir / "child.pid"
    thread, outcome = _run_in_thread(fresh, group_script(pidfile))
    child = read_pid(pidfile)
    os.kill(fresh.identity["pid"], signal.SIGKILL)
    thread.join(20)
    assert isinstance(outcome[0], HostUnreachable), outcome
    assert wait_for(lambda: not alive(child)), "a command outlived its agent"


# --- users and files --------------------------------------------------------------------


def test_as_user_switches_uid_and_home(host: SshHost, workdir: Path) -> None:
    result = host.run(["/bin/sh", "-c", "id -un; id -Gn; echo $HOME $USER $LOGNAME"],
                      as_user="postgres")  # fmt: skip
    user, groups, env_line = result.stdout.splitlines()
    assert user == "postgres"
    assert groups == "postgres", "supplementary groups are cleared, as on LocalHost"
    assert env_line == "/var/lib/postgresql postgres postgres"
    assert host.run(["id", "-un"], as_user="root").stdout.strip() == "root"
    assert host.run(["id", "-un"]).stdout.strip() == "root"
    with pytest.raises(KeyError):
        host.run(["true"], as_user="no-such-user-here")


def test_write_text_is_atomic_with_owner_and_mode(host: SshHost, workdir: Path) -> None:
    path = workdir / "conf" / "postgresql.auto.conf"
    host.make_dirs(str(path.parent), owner="postgres", mode=0o750)
    postgres = pwd.getpwnam("postgres")
    info = path.parent.stat()
    assert stat.S_IMODE(info.st_mode) == 0o750
    assert (info.st_uid, info.st_gid) == (postgres.pw_uid, postgres.pw_gid)
    host.write_text(str(path), "primary_conninfo = 'x'\nunicodé ☃\n", owner="postgres", mode=0o640)
    info = path.stat()
    assert stat.S_IMODE(info.st_mode) == 0o640
    assert (info.st_uid, info.st_gid) == (postgres.pw_uid, postgres.pw_gid)
    assert path.read_text() == "primary_conninfo = 'x'\nunicodé ☃\n"
    assert host.read_text(str(path)) == "primary_conninfo = 'x'\nunicodé ☃\n"
    inode = info.st_ino
    host.write_text(str(path), "second\n")
    assert path.read_text() == "second\n" and path.stat().st_ino != inode, "replaced by rename"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.stat().st_uid == 0
    assert sorted(os.listdir(path.parent)) == ["postgresql.auto.conf"], "no temp file left"


def test_file_operations(host: SshHost, workdir: Path) -> None:
    base = workdir / "files"
    assert not host.exists(str(base)) and host.list_dir(str(base)) == []
    host.make_dirs(str(base / "a" / "b"))
    assert host.exists(str(base / "a" / "b"))
    assert stat.S_IMODE((base / "a" / "b").stat().st_mode) == 0o700
    (base / "a" / "z.txt").write_text("z")
    (base / "a" / "m.txt").write_text("m")
    assert host.list_dir(str(base / "a")) == ["b", "m.txt", "z.txt"]
    os.symlink(base / "a", base / "link")
    assert host.realpath(str(base / "link" / "m.txt")) == str(base / "a" / "m.txt")
    host.rename(str(base / "a"), str(base / "moved"))
    assert host.list_dir(str(base)) == ["link", "moved"]
    host.remove(str(base / "link"))
    assert (base / "moved").is_dir() and not (base / "link").exists()
    host.remove(str(base / "moved"))
    assert not (base / "moved").exists()
    host.remove(str(base / "never-there"))
    with pytest.raises(FileNotFoundError) as missing:
        host.read_text(str(base / "never-there"))
    assert missing.value.filename == str(base / "never-there")
    with pytest.raises(FileNotFoundError):
        host.rename(str(base / "never-there"), str(base / "x"))
    (base / "bad.bin").write_bytes(b"\xff\xfe")
    with pytest.raises(UnicodeDecodeError):
        host.read_text(str(base / "bad.bin"))
    with pytest.raises(IsADirectoryError):
        host.read_text(str(base))


def test_process_operations(host: SshHost, workdir: Path) -> None:
    proc = subprocess.Popen(["sleep", "60"], cwd=workdir)
    try:
        assert host.pid_alive(proc.pid) and host.pid_exists(proc.pid)
        assert host.process_cwd(proc.pid) == str(workdir)
        assert host.kill(proc.pid, signal.SIGKILL)
        assert wait_for(lambda: not host.pid_alive(proc.pid))
        assert host.pid_exists(proc.pid), "a zombie still exists until it is reaped"
    finally:
        proc.kill()
        proc.wait()
    assert not host.pid_exists(proc.pid)
    assert not host.kill(proc.pid)
    assert host.process_cwd(proc.pid) is None


def test_kill_tree_takes_children_that_lead_their_own_groups(host: SshHost) -> None:
    """A parent whose children called setsid (PostgreSQL's backends do): killing the
    parent alone leaves them; ``kill_tree`` signals every one of them, parent last."""
    script = "setsid sleep 60 & setsid sleep 61 & echo ready; exec sleep 62"
    parent = subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "ready"
        children: list[int] = []
        for _ in range(100):  # both setsid children show up in /proc
            pids = [int(e) for e in os.listdir("/proc") if e.isdigit()]
            children = [p for p in pids if _parent_of(p) == parent.pid]
            if len(children) == 2:
                break
            time.sleep(0.02)
        assert len(children) == 2, children
        # a PID that no longer works where expected (reused) is let go, not even stopped
        assert host.kill_tree(parent.pid, signal.SIGKILL, expect_cwd="/nonexistent") == []
        with open(f"/proc/{parent.pid}/stat", encoding="ascii") as handle:
            assert handle.read().rsplit(")", 1)[1].split()[0] != "T", "left stopped"
        assert all(alive(p) for p in [parent.pid, *children])
        signalled = host.kill_tree(parent.pid, signal.SIGKILL, expect_cwd=os.getcwd())
        assert signalled[0] == parent.pid and sorted(signalled[1:]) == sorted(children)
        assert wait_for(lambda: not any(alive(p) for p in [parent.pid, *children]))
    finally:
        parent.kill()
        parent.wait()
    assert host.kill_tree(parent.pid, signal.SIGKILL) == []  # gone: nothing signalled


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]) if fields[0] not in ("Z", "X") else None


# --- concurrency and reuse --------------------------------------------------------------


def test_parallel_requests_get_their_own_replies(sshd: Sshd, workdir: Path) -> None:
    """Ten threads, one connection: each command waits (remotely) until all ten have
    started, so requests served one after the other would never finish; each reply
    must reach the thread that asked."""
    own = SshHost(sshd.target("parallel"))
    before = sshd.handshakes()
    rendezvous = workdir / "started"
    rendezvous.mkdir()
    wait_all = (
        'touch "$D/$I"; n=0; '
        'while [ "$(ls "$D" | wc -l)" -lt 10 ] && [ $n -lt 400 ]; do sleep 0.05; n=$((n+1)); done; '
        'echo "$I $(ls "$D" | wc -l)"'
    )
    results: dict[int, object] = {}
    barrier = threading.Barrier(10)

    def worker(i: int) -> None:
        barrier.wait()
        try:
            both = own.run(["/bin/sh", "-c", wait_all], env={"D": str(rendezvous), "I": str(i)})
            (workdir / f"f{i}").write_text(str(i))
            results[i] = (both.stdout.split(), own.read_text(str(workdir / f"f{i}")))
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    own.close()
    assert results == {i: ([str(i), "10"], str(i)) for i in range(10)}
    assert own.connections == 1 and sshd.handshakes() == before + 1


def test_one_connection_serves_many_calls(sshd: Sshd) -> None:
    before = sshd.handshakes()
    with SshHost(sshd.target("reuse")) as own:
        for _ in range(20):
            assert own.run(["true"]).ok
            assert own.exists("/etc")
        assert own.connections == 1
    assert wait_for(lambda: sshd.handshakes() == before + 1, 2)


def test_check_reports_identity_and_latency(host: SshHost) -> None:
    found = check(host)
    assert found.reachable and found.kind is None
    assert found.identity == {"user": "root", "uid": 0, "hostname": os.uname().nodename}
    assert found.latency_ms is not None and found.latency_ms > 0
    assert found.connect_ms is not None and found.connect_ms > 0
    local = check(LocalHost())
    assert local.reachable and local.identity["uid"] == os.geteuid()
