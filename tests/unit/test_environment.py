"""What a command inherits, how its env: secrets are read, where the journal is kept.

Issue 9 items 2 and 7, at the level of the host and the config: real processes, run
by a real LocalHost.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from failback.drivers.command.settings import CommandOptions
from failback.hosts import LocalHost
from failback.model.secrets import SecretRef
from failback.store import SqliteStore, open_journal
from tests.integration.test_command_processes import live_processes_with


def child_env(**kwargs: object) -> dict[str, str]:
    result = LocalHost().run(["env"], **kwargs)  # type: ignore[arg-type]
    assert result.ok, result
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


def test_a_command_inherits_only_the_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAILBACK_API_TOKEN", "some-secret-token-123456")
    monkeypatch.setenv("SECRET_X", "x")
    monkeypatch.setenv("PGPASSWORD", "not-for-every-command")
    monkeypatch.setenv("LC_ALL", "C")
    monkeypatch.setenv("TZ", "UTC")
    env = child_env(env={"GIVEN": "yes"})
    assert "FAILBACK_API_TOKEN" not in env
    assert "SECRET_X" not in env
    assert "PGPASSWORD" not in env
    assert env["PATH"] == os.environ["PATH"]
    assert env["LC_ALL"] == "C" and env["TZ"] == "UTC"
    assert env["GIVEN"] == "yes"


@pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs root")
def test_a_command_as_another_user_gets_that_users_home() -> None:
    user = pwd.getpwnam("nobody")
    env = child_env(as_user="nobody")
    assert (env["HOME"], env["USER"], env["LOGNAME"]) == (user.pw_dir, "nobody", "nobody")


def test_interrupting_the_wait_kills_the_whole_command(tmp_path: Path) -> None:
    """Ctrl-C while a command runs: the command's subshell does not live on.

    In a process of its own with Python's own Ctrl-C handler: a long-lived test worker
    was once seen to take SIGINT without a KeyboardInterrupt (twice in full-suite runs,
    never alone), which tested the worker, not ``LocalHost``."""
    nap = f"5.{uuid.uuid4().int % 10**6:06d}"
    marker = tmp_path / "written"
    script = f"""
import os, signal, sys, threading
from failback.hosts import LocalHost
signal.signal(signal.SIGINT, signal.default_int_handler)
threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
try:
    LocalHost().run_shell("(sleep {nap}; touch {marker}) | cat", timeout=30)
except KeyboardInterrupt:
    sys.exit(42)
sys.exit(1)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 42, (result.returncode, result.stderr)
    assert live_processes_with(f"sleep {nap}") == []
    time.sleep(0.2)
    assert not marker.exists()


def test_a_timed_out_command_returns_its_output_so_far() -> None:
    result = LocalHost().run_shell("echo before; sleep 5 | cat", timeout=0.5)
    assert result.timed_out and not result.ok
    assert result.stdout == "before\n"
    assert "timed out after 0.5s" in result.stderr


def test_command_env_values_are_text_or_secret_references(tmp_path: Path) -> None:
    options = CommandOptions.model_validate(
        {
            "env": {
                "PLAIN": "eth0",
                "PORT": 5432,
                "A_PATH": "/usr/local/bin",
                "FROM_ENV": "env:MY_PASS",
                "FROM_FILE": "file:pass.txt",
            }
        },
        context={"config_dir": str(tmp_path)},
    )
    assert options.env["PLAIN"] == "eth0"
    assert options.env["PORT"] == "5432"
    assert options.env["A_PATH"] == "/usr/local/bin"  # text, unlike a bare path password
    assert options.env["FROM_ENV"] == SecretRef("env", "MY_PASS")
    assert options.env["FROM_FILE"] == SecretRef("file", str(tmp_path / "pass.txt"))
    shown = options.model_dump(mode="json")["env"]
    assert shown["FROM_ENV"] == "env:MY_PASS"


@pytest.mark.parametrize("value", ["env:", "env:1BAD", "file:", True, ["x"]])
def test_bad_command_env_values_are_refused(value: object) -> None:
    with pytest.raises(ValueError):
        CommandOptions.model_validate({"env": {"X": value}})


def test_state_dir_is_private_and_journal_files_are_0600(tmp_path: Path) -> None:
    old = os.umask(0)  # the most permissive umask: the modes must not depend on it
    try:
        journal = open_journal(tmp_path / "deep" / "state")
        journal.add_event("test.event", "a write creates the -wal and -shm files")
    finally:
        os.umask(old)
    state = tmp_path / "deep" / "state"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    files = sorted(state.glob("journal.sqlite3*"))
    assert [f.name for f in files] == [
        "journal.sqlite3",
        "journal.sqlite3-shm",
        "journal.sqlite3-wal",
    ]
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    journal.close()


def test_an_older_readable_journal_is_tightened_in_a_directory_left_as_it_was(
    tmp_path: Path,
) -> None:
    tmp_path.chmod(0o755)  # a place a person chose (it could be shared): not ours to change
    open_journal(tmp_path).close()
    path = tmp_path / SqliteStore.FILE_NAME
    path.chmod(0o644)
    open_journal(tmp_path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755
