"""SshFiles: the private directory of pinned known_hosts files and jump-host logs.

Real files in a real temp directory (``tempfile.tempdir`` pointed at the test's own).
"""

from __future__ import annotations

import dataclasses
import os
import stat
import tempfile
from pathlib import Path

import pytest

from failback.hosts.ssh import SshTarget
from failback.hosts.ssh_command import SshFiles

BASTION = SshTarget(
    name="bastion",
    address="192.0.2.7",
    port=2222,
    user="failback",
    key_file="/etc/failback/id",
    host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJrACZZ1i1pCbxYHsaWYGOug8EAspAm7RSII1ejelg2Z",
)


@pytest.fixture
def temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def made(temp: Path) -> list[Path]:
    return sorted(temp.glob("failback-ssh-*"))


def test_reading_a_jump_log_never_makes_the_directory(temp: Path) -> None:
    files = SshFiles()
    assert files.read_log(BASTION) == ""
    assert made(temp) == []
    log = Path(files.jump_log(BASTION))  # what ssh -E is given: the directory exists now
    (directory,) = made(temp)
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    log.write_text("Permission denied (publickey).\n")
    assert files.read_log(BASTION) == "Permission denied (publickey).\n"
    files.cleanup()
    assert made(temp) == []
    assert files.read_log(BASTION) == "", "read after cleanup (the reader thread does)"
    assert made(temp) == [], "an empty directory came back after cleanup"


def test_known_hosts_names_the_machine_as_ssh_looks_it_up(temp: Path) -> None:
    files = SshFiles()
    on_22 = Path(files.known_hosts(dataclasses.replace(BASTION, port=22)))
    other = Path(files.known_hosts(BASTION))
    assert on_22.read_text().startswith("192.0.2.7 ssh-ed25519 ")
    assert other.read_text().startswith("[192.0.2.7]:2222 ssh-ed25519 ")
    assert stat.S_IMODE(os.stat(other).st_mode) == 0o600
    files.cleanup()
    assert made(temp) == []
