"""Gradual traffic return of the web tier, gated on HAProxy's real statistics.

Real HAProxy (HTTP frontend, health checks, weights through the runtime API), the
lab's real web application at each site writing through PgBouncer to the real
PostgreSQL pair, and a real HTTP load from the test while the failback runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from failback.lab import lab_break
from failback.lab.probe import WriteProbe
from tests.conftest import failback_argv
from tests.integration.labfixtures import Lab, lab_base, measurement, new_lab, with_policy
from tests.integration.pgholds import newest_run, steps_in_journal, wait_step, wait_until

pytestmark = pytest.mark.integration


class HttpLoad:
    """GETs the web frontend as fast as a handful of threads can, counting answers."""

    def __init__(self, url: str, threads: int = 4) -> None:
        self.url = url
        self.answers: Counter[str] = Counter()
        self.by_site: Counter[str] = Counter()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]

    def __enter__(self) -> HttpLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    status, site = response.status, response.headers.get("X-Site", "?")
            except urllib.error.HTTPError as exc:
                status, site = exc.code, exc.headers.get("X-Site", "?")
                with self._lock:
                    self.errors.append(f"{exc.code} from {site}: {exc.read()[:300]!r}")
            except OSError:
                status, site = 0, "?"
            with self._lock:
                self.answers[str(status)] += 1
                self.by_site[site] += 1
            time.sleep(0.005)


@pytest.fixture
def lab() -> Iterator[Lab]:
    with lab_base("fb-web-") as root:
        yield new_lab(root)


def with_steps(lab: Lab, steps: str, bake: str = "1s") -> Path:
    text = lab.config.read_text()
    text = text.replace("traffic_steps:\n      - 50\n      - 100", f"traffic_steps: {steps}")
    text = with_policy(text, bake_time=bake)
    assert f"traffic_steps: {steps}" in text, "the lab's topology changed shape"
    path = lab.dir / "steps.yaml"
    path.write_text(text)
    return path


def web_share(lab: Lab, site: str, config: Path | None = None) -> float:
    return float(lab.status(config=config).component("web", site)["data"]["traffic_percent"])


def test_healthy_tier_returns_step_by_step_with_numbers(lab: Lab) -> None:
    config = with_steps(lab, "[10, 25, 50, 100]")
    moved = lab.cli_json("failover", "app", "--planned", "--yes", config=config)
    assert moved["status"] == "succeeded", moved
    assert web_share(lab, "dc2", config) == 100.0
    with HttpLoad(lab.info.web.url) as load:
        wait_until(lambda: sum(load.answers.values()) > 20)  # the load runs first
        doc = lab.cli_json("failback", "app", "--yes", config=config)
    assert doc["status"] == "succeeded", doc
    report = doc["report"]
    step_ids = [s["id"] for s in report["steps"]]
    for percent in (10, 25, 50, 100):
        assert f"traffic-web-dc1-{percent}" in step_ids
        assert f"gate-web-dc1-{percent}" in step_ids
        responses = measurement(report, f"traffic.dc1.{percent}pct.responses")["value"]
        assert responses is not None and responses > 0, f"no traffic judged at {percent}%"
        ratio = measurement(report, f"traffic.dc1.{percent}pct.error_ratio")["value"]
        assert ratio == 0.0
    # the tier moved before the database, and its last step followed the database
    assert step_ids.index("gate-web-dc1-50") < step_ids.index("promote-dc1")
    assert step_ids.index("promote-dc1") < step_ids.index("traffic-web-dc1-100")
    assert web_share(lab, "dc1", config) == 100.0
    assert load.answers["200"] > 0
    assert load.by_site["dc1"] > 0 and load.by_site["dc2"] > 0
    events = lab.cli_json("run", "show", str(doc["run_id"]), config=config)["events"]
    assert any(e["kind"] == "run.committed" for e in events)
    bad = {k: v for k, v in load.answers.items() if k not in ("200",)}
    assert not bad, f"clients saw errors through a healthy failback: {bad} {load.errors[:3]}"


def test_broken_tier_at_the_primary_rolls_back_at_the_first_gate(lab: Lab) -> None:
    config = with_steps(lab, "[10, 25, 50, 100]", bake="2s")
    lab.cli_json("failover", "app", "--planned", "--yes", config=config)
    lab_break(lab.dir, "dc1", "web")
    with HttpLoad(lab.info.web.url):
        result = lab.cli("failback", "app", "--yes", "--json", config=config)
    doc = result.json()
    assert result.returncode == 1
    assert doc["status"] == "rolled-back", doc
    assert "traffic gate at 10% to dc1 failed" in doc["error"]
    report = doc["report"]
    steps = {s["id"]: s for s in report["steps"]}
    assert steps["gate-web-dc1-10"]["status"] == "failed"
    assert steps["traffic-web-dc1-10"]["undo"] == "undone"
    assert steps["promote-dc1"]["status"] == "pending"
    ratio = measurement(report, "traffic.dc1.10pct.error_ratio")
    assert ratio["value"] is not None and ratio["value"] > 0.01, ratio
    # traffic is back at dc2, and the database did not move
    status = lab.status(config=config)
    assert status.active_site == "dc2"
    assert status.db("dc2")["role"] == "primary"
    assert web_share(lab, "dc2", config) == 100.0


def with_observation(lab: Lab, window: str) -> Path:
    text = with_policy(lab.config.read_text(), observation_window=window)
    path = lab.dir / "observe.yaml"
    path.write_text(text)
    return path


def start_failback(lab: Lab, config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        failback_argv("failback", "app", "--yes", "--json", "-c", str(config)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_observing(lab: Lab, config: Path, proc: subprocess.Popen[str]) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = lab.cli_json("runs", config=config)["runs"]
        if runs and runs[0]["kind"] == "failback" and runs[0]["status"] == "observing":
            return int(runs[0]["id"])
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError("the failback never reached its observation window")


def assert_back_at_dc2(lab: Lab, config: Path) -> None:
    status = lab.status(config=config)
    assert status.active_site == "dc2"
    assert status.db("dc2")["role"] == "primary"
    dc1 = status.db("dc1")
    assert dc1["role"] == "standby" and dc1["data"]["streaming"], dc1
    assert web_share(lab, "dc2", config) == 100.0
    assert status.current_run is None


def test_abort_in_the_observation_window_switches_back_without_loss(lab: Lab) -> None:
    config = with_observation(lab, "60s")
    lab.cli_json("failover", "app", "--planned", "--yes", config=config)
    probe = WriteProbe(lab.info.dsn, interval=0.01).start()
    try:
        proc = start_failback(lab, config)
        run_id = wait_observing(lab, config, proc)
        status = lab.status(config=config)
        assert status.active_site == "dc1"
        assert status.current_run["undo_until"] > time.time()
        aborted = lab.cli_json("abort", str(run_id), "--yes", config=config)
        _out, err = proc.communicate(timeout=120)
        mark = time.time()
        wait_until(lambda: probe.stats.acked_ids(since=mark))  # the client writes on
    finally:
        stats = probe.stop()
    assert aborted["status"] == "rolled-back", aborted
    assert "aborted by request during the observation window" in aborted["error"]
    assert proc.returncode == 1, err
    assert probe.missing(stats.acked_ids()) == []
    assert stats.failures == [], stats.failures[:3]
    steps = {s["id"]: s["status"] for s in aborted["report"]["steps"]}
    assert steps["observe"] == "reverted"
    assert steps["back-promote-dc2"] == "done"
    assert_back_at_dc2(lab, config)


def test_a_gate_failing_in_the_observation_window_switches_back(lab: Lab) -> None:
    config = with_observation(lab, "60s")
    lab.cli_json("failover", "app", "--planned", "--yes", config=config)
    with HttpLoad(lab.info.web.url):
        proc = start_failback(lab, config)
        wait_observing(lab, config, proc)
        lab_break(lab.dir, "dc1", "web")
        out, err = proc.communicate(timeout=120)
    doc = json.loads(out)
    assert proc.returncode == 1, err
    assert doc["status"] == "rolled-back", doc
    assert "failed during the observation window" in doc["error"]
    assert "5xx ratio" in doc["error"]
    assert_back_at_dc2(lab, config)


def test_abort_after_the_promotion_is_refused_until_the_window(lab: Lab) -> None:
    """Between the promotion and the observation window nothing may be undone: an abort
    then would leave clients split between two sites (found by review, reproduced).

    The runner is caught inside the gate after the promotion (the journal polled
    directly) and stopped there (SIGSTOP: it still holds the run) while the abort is
    tried, so the abort lands in that gate whatever the machine's load."""
    config = with_steps(lab, "[50, 100]", bake="2s")
    lab.cli_json("failover", "app", "--planned", "--yes", config=config)
    probe = WriteProbe(lab.info.dsn, interval=0.01).start()
    try:
        after = newest_run(lab)
        proc = start_failback(lab, config)
        try:
            run_id = wait_step(
                lab, proc, after=after, step="gate-web-dc1-100", want=lambda s: s[0] == "applying"
            )
            os.kill(proc.pid, signal.SIGSTOP)
            at_abort = steps_in_journal(lab, run_id)
            refused = lab.cli("abort", str(run_id), "--yes", config=config)
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=120)
        mark = time.time()
        wait_until(lambda: probe.stats.acked_ids(since=mark))
    finally:
        stats = probe.stop()
    # where the abort landed: past the promotion, inside the last gate, before the window
    assert at_abort["promote-dc1"][0] == "done", at_abort
    assert at_abort["gate-web-dc1-100"][0] == "applying", at_abort
    assert at_abort["observe"][0] == "pending", at_abort
    assert refused.returncode != 0
    assert "point of no return" in refused.stderr
    assert proc.returncode == 0, err
    assert json.loads(out)["status"] == "succeeded"
    assert probe.missing(stats.acked_ids()) == []
    status = lab.status(config=config)
    assert status.active_site == "dc1" and status.db("dc1")["role"] == "primary"
    assert web_share(lab, "dc1", config) == 100.0
