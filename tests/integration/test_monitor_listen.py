"""`failback monitor --listen`: the API and dashboard served by the monitor process."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from tests.conftest import failback_argv
from tests.integration.labfixtures import lab_base, new_lab

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_monitor_serves_the_api_while_it_watches() -> None:
    with lab_base("fb-mon-api-") as root:
        lab = new_lab(root)
        port = free_port()
        proc = subprocess.Popen(
            failback_argv("monitor", "-c", str(lab.config), "--listen", f"127.0.0.1:{port}"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            doc = None
            while time.monotonic() < deadline and doc is None:
                try:
                    url = f"http://127.0.0.1:{port}/api/v1/status"
                    with urllib.request.urlopen(url, timeout=2) as response:
                        doc = json.load(response)
                except OSError:
                    assert proc.poll() is None, proc.communicate()
                    time.sleep(0.2)
            assert doc is not None, "the monitor never served its API"
            (service,) = doc["services"]
            assert service["service"] == "app" and service["active_site"] == "dc1"
        finally:
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
