"""The traffic gate's optional Prometheus signal, against a real Prometheus server.

Prometheus (Debian's package) is started by the test on 127.0.0.1 with no scrape
target: PromQL constants such as ``vector(1)`` give the gate a real instant-query
answer to judge.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from failback.drivers.haproxy.traffic import prometheus_value
from tests.integration.labfixtures import Lab, lab_base, new_lab

pytestmark = pytest.mark.integration

PROMETHEUS = "/usr/bin/prometheus"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("prometheus")
    config = root / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\nscrape_configs: []\n")
    port = free_port()
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={root / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "Prometheus did not become ready"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def lab() -> Iterator[Lab]:
    with lab_base("fb-prom-") as root:
        yield new_lab(root)


def test_instant_query_values(prometheus: str) -> None:
    assert prometheus_value(prometheus, "vector(0.25)", 5) == 0.25
    assert prometheus_value(prometheus, "scalar(vector(3))", 5) == 3.0
    with pytest.raises(ValueError, match="no sample"):
        prometheus_value(prometheus, "absent(vector(1))", 5)


def with_prometheus_gate(lab: Lab, url: str, query: str) -> Path:
    text = lab.config.read_text()
    marker = "    policy:\n"
    assert marker in text, "the lab's topology changed shape"
    gate = (
        "      traffic_gate:\n"
        "        prometheus:\n"
        f"          url: {url}\n"
        f"          query: '{query}'\n"
        "          max: 0.5\n"
    )
    path = lab.dir / "prometheus.yaml"
    path.write_text(text.replace(marker, marker + gate, 1))
    return path


def test_a_prometheus_signal_above_its_threshold_rolls_the_failback_back(
    lab: Lab, prometheus: str
) -> None:
    config = with_prometheus_gate(lab, prometheus, "vector(0.9)")
    lab.cli_json("failover", "app", "--planned", "--yes", config=config)
    result = lab.cli("failback", "app", "--yes", "--json", config=config)
    doc = result.json()
    assert result.returncode == 1
    assert doc["status"] == "rolled-back", doc
    assert "Prometheus vector(0.9) = 0.9 > 0.5" in doc["error"]
    status = lab.status(config=config)
    assert status.active_site == "dc2" and status.db("dc2")["role"] == "primary"
