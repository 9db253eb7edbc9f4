"""A real etcd for the tests: one single-member server (Debian's ``etcd-server``, 3.4)
on 127.0.0.1, on free ports, in a temporary data directory.

A test module makes it a module-scoped fixture in three lines::

    @pytest.fixture(scope="module")
    def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
        with etcd_server(tmp_path_factory.mktemp("etcd")) as server:
            yield server

and each test works under a key prefix of its own, so the tests of a module share
the server and stay independent. Nothing here is a mock: it is etcd itself.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from failback.lab.ports import pick_ports

ETCD = shutil.which("etcd") or next(
    (p for p in ("/usr/bin/etcd", "/usr/local/bin/etcd") if Path(p).exists()), None
)


@dataclass
class Etcd:
    """A running etcd: its client URL, its process, and the log to read when it fails."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """Stop the server now (a test of what happens when etcd is gone)."""
        stop_etcd(self.process)


def start_etcd(directory: Path) -> Etcd:
    """Start etcd on two free ports; retried on a port clash (another server won the race)."""
    assert ETCD is not None
    directory.mkdir(parents=True, exist_ok=True)
    last_log = ""
    for attempt in range(3):
        client_port, peer_port = pick_ports(2)
        url = f"http://127.0.0.1:{client_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        data_dir = directory / f"data{attempt}"
        log = directory / f"etcd{attempt}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    ETCD,
                    "--name=test",
                    f"--data-dir={data_dir}",
                    f"--listen-client-urls={url}",
                    f"--advertise-client-urls={url}",
                    f"--listen-peer-urls={peer}",
                    f"--initial-advertise-peer-urls={peer}",
                    f"--initial-cluster=test={peer}",
                    "--initial-cluster-state=new",
                    "--logger=zap",
                    "--log-outputs=stderr",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{url}/health", timeout=0.5).json().get("health") == "true":
                    return Etcd(url, process, log)
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.1)
        stop_etcd(process)
        last_log = log.read_text(errors="replace")[-2000:]
    pytest.fail(f"etcd did not become healthy; its log ends with:\n{last_log}")


def stop_etcd(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextmanager
def etcd_server(directory: Path) -> Iterator[Etcd]:
    """A running etcd in ``directory`` for the duration of the block (skips the test
    when the machine has no etcd binary)."""
    if ETCD is None:
        pytest.skip("no etcd binary on PATH: run scripts/setup.sh (Debian package etcd-server)")
    server = start_etcd(directory)
    try:
        yield server
    finally:
        stop_etcd(server.process)
