"""Network paths through the real CLI: the ``--network`` lab and the ``route`` driver.

One lab for the module: a client and a server namespace joined by two routed paths
(dc1 primary, dc2 backup). A steady UDP flow (a datagram every 10 ms, numbered,
echoed by the lab's server) runs while the dc1 path is cut, the service fails over,
the path is repaired, flaps during the failback's stability window, and the service
fails back. It must lose datagrams only between the cut and the end of the failover,
and none while the failback moves the route home.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyroute2 import netns as pyroute2_netns

from tests.conftest import failback_argv, run_cli

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None,
        reason="the network lab needs root and iproute2 (ip netns)",
    ),
]

INTERVAL_S = 0.01
IN_FLIGHT_S = 0.3
"""Datagrams sent this close to the flow's end may still be on their way back."""


@dataclass
class Flow:
    """A numbered UDP datagram every 10 ms from the client namespace, echoed back."""

    netns: str
    address: str
    port: int
    sent: dict[int, float] = field(default_factory=dict)
    echoed: set[int] = field(default_factory=set)
    stop_at: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        sock = pyroute2_netns.create_socket(
            self.netns, socket.AF_INET, socket.SOCK_DGRAM, 0, flags=0
        )
        sock.setblocking(False)
        self._thread = threading.Thread(target=self._run, args=(sock,), daemon=True)
        self._thread.start()

    def _run(self, sock: socket.socket) -> None:
        seq = 0
        next_at = time.monotonic()
        with sock:
            while not self._stop.is_set():
                seq += 1
                self.sent[seq] = time.time()
                # unconnected: the source address follows the route of the moment
                with contextlib.suppress(OSError):
                    sock.sendto(struct.pack("!I", seq), (self.address, self.port))
                next_at += INTERVAL_S
                while True:
                    try:
                        data, _peer = sock.recvfrom(64)
                    except (BlockingIOError, OSError):
                        break
                    self.echoed.add(struct.unpack("!I", data[:4])[0])
                time.sleep(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        time.sleep(IN_FLIGHT_S)
        self.stop_at = time.time()
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=5)

    def lost(self) -> list[float]:
        """When each datagram that never came back was sent (the last ones excluded)."""
        assert self.stop_at is not None
        return sorted(
            at
            for seq, at in self.sent.items()
            if seq not in self.echoed and at < self.stop_at - IN_FLIGHT_S
        )


@dataclass
class NetLab:
    dir: Path
    doc: dict[str, Any]

    @property
    def config(self) -> str:
        return str(self.doc["config"])

    def cli(self, *args: str, timeout: float = 120) -> Any:
        return run_cli(*args, "--config", self.config, timeout=timeout)

    def lab(self, *args: str) -> Any:
        result = run_cli("lab", *args, "--dir", str(self.dir), "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def route(self) -> list[dict[str, Any]]:
        return list(self.lab("status")["route"])


@pytest.fixture(scope="module")
def net() -> Iterator[NetLab]:
    root = Path(tempfile.mkdtemp(prefix="fb-rt-", dir="/tmp"))
    directory = root / "lab"
    try:
        result = run_cli("lab", "up", "--dir", str(directory), "--network", "--json")
        assert result.returncode == 0, result.stderr
        yield NetLab(directory, json.loads(result.stdout))
    finally:
        run_cli("lab", "down", "--dir", str(directory), "--purge")
        shutil.rmtree(root, ignore_errors=True)


def test_the_network_lab_describes_itself(net: NetLab) -> None:
    network = net.doc["network"]
    assert network["client_netns"] and network["server_address"] == "10.9.0.1"
    assert set(network["paths"]) == {"dc1", "dc2"}
    assert network["paths"]["dc1"]["gateway"] != network["paths"]["dc2"]["gateway"]
    assert net.route() == [{"gateway": "10.0.1.1", "dev": "dc1"}]
    assert run_cli("validate", "--config", net.config).returncode == 0
    bad = run_cli("lab", "break", "dc3", "link", "--dir", str(net.dir))
    assert bad.returncode != 0 and "dc3" in bad.stderr and "Traceback" not in bad.stderr


def test_a_flow_loses_packets_only_between_the_cut_and_the_failover(net: NetLab) -> None:
    network = net.doc["network"]
    flow = Flow(network["client_netns"], network["server_address"], network["echo_port"])
    flow.start()
    time.sleep(0.5)

    cut_at = time.time()
    net.lab("break", "dc1", "link")
    failover = net.cli("failover", "net", "--yes", "--json")
    failed_over_at = time.time()
    assert failover.returncode == 0, failover.stdout + failover.stderr
    assert net.route() == [{"gateway": "10.0.2.1", "dev": "dc2"}]

    # home is broken: the failback is refused, with the reason, and nothing changes
    refused = net.cli("failback", "net", "--yes")
    assert refused.returncode != 0
    assert "primary path dc1 is unhealthy" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert net.route() == [{"gateway": "10.0.2.1", "dev": "dc2"}]

    # repaired, the path flaps during the stability window: the window starts again
    net.lab("repair", "dc1", "link")
    started_at = time.time()
    failback = subprocess.Popen(
        failback_argv("failback", "net", "--yes", "--json", "--config", net.config),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(1.0)
    net.lab("break", "dc1", "link")
    time.sleep(1.5)
    assert net.route() == [{"gateway": "10.0.2.1", "dev": "dc2"}], "moved onto a broken path"
    net.lab("repair", "dc1", "link")
    out, err = failback.communicate(timeout=120)
    failed_back_at = time.time()
    assert failback.returncode == 0, out + err
    flow.stop()

    assert net.route() == [{"gateway": "10.0.1.1", "dev": "dc1"}]
    lost = flow.lost()
    assert lost, "the cut lost nothing: the flow did not take the dc1 path"
    outside = [at for at in lost if not cut_at <= at <= failed_over_at]
    assert not outside, (
        f"{len(outside)} datagrams lost outside the cut..failover window "
        f"({cut_at:.2f}..{failed_over_at:.2f}): {outside[:5]}"
    )
    during = [at for at in lost if started_at <= at <= failed_back_at]
    assert not during
    assert len(flow.sent) > 200
    print(  # the figures, for a person reading the log (-s)
        f"sent {len(flow.sent)}, lost {len(lost)} ({len(lost) * INTERVAL_S:.2f}s of flow), "
        f"cut..failover {failed_over_at - cut_at:.2f}s, failback {failed_back_at - started_at:.2f}s"
    )

    run_id = json.loads(out)["run_id"]
    shown = json.loads(net.cli("run", "show", str(run_id), "--json").stdout)
    steps = {s["id"]: s for s in shown["run"]["steps"]}
    assert steps["stability"]["output"]["window_restarts"] >= 1
    verify = steps["verify-path-dc1"]["output"]
    assert verify["dev"] == "dc1" and verify["dev_tx_packets"] >= 5


def test_a_failback_is_refused_until_the_monitor_saw_the_path_stable(net: NetLab) -> None:
    """With a monitor's history, "not yet stable" is a refusal with the time left, not a
    wait: the path came back a moment ago (a 6 s window, so that the refusal is sure)."""
    doc = yaml.safe_load(Path(net.config).read_text())
    doc["services"]["net"]["policy"]["stability_window"] = "6s"
    config = net.dir / "stable.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    net.lab("break", "dc1", "link")
    failover = run_cli("failover", "net", "--yes", "--json", "--config", str(config))
    assert failover.returncode == 0, failover.stdout + failover.stderr
    monitor = subprocess.Popen(
        failback_argv("monitor", "--config", str(config)),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        net.lab("repair", "dc1", "link")

        def passing_since() -> float | None:
            assert monitor.poll() is None, monitor.communicate()
            status = json.loads(run_cli("status", "net", "--json", "--config", str(config)).stdout)
            health = status["services"][0]["monitor"]["health"]
            path = next(h for key, h in health.items() if key.endswith("@dc1"))
            return path["passing_since"] if path["status"] == "passing" else None

        deadline = time.monotonic() + 30
        while (since := passing_since()) is None:
            assert time.monotonic() < deadline, "the monitor never saw dc1's path pass"
            time.sleep(0.2)
        assert time.time() - since < 5, "the monitor took too long to see the path pass"
        refused = run_cli("failback", "net", "--yes", "--config", str(config))
        assert refused.returncode != 0, refused.stdout
        assert "not stable yet: healthy for" in refused.stderr, refused.stderr
        assert "of its 6s stability window" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
        assert net.route() == [{"gateway": "10.0.2.1", "dev": "dc2"}]

        time.sleep(max(0.0, since + 6.5 - time.time()))
        done = run_cli("failback", "net", "--yes", "--json", "--config", str(config))
        assert done.returncode == 0, done.stdout + done.stderr
        assert net.route() == [{"gateway": "10.0.1.1", "dev": "dc1"}]
    finally:
        monitor.terminate()
        monitor.wait(timeout=60)
