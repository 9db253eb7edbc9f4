"""Unplanned failovers done by the monitor: time from the kill to the first accepted write.

    python bench/failover_rto.py [--rounds N] [--async] [--dir DIR]

A lab is started with ``lab up --auto`` (synchronous unless ``--async``), and
``failback monitor`` runs as its own process with the default detection settings
(500 ms interval, 1 s timeout, 3 failures). A client inserts an increasing id every
10 ms through the router for the whole benchmark. Each round: wait until the service
is home (and in zero-loss mode when synchronous), SIGKILL dc1's postmaster, let the
monitor fail over, repair dc1, let the monitor fail back. The RTO of a round is from
the kill to the client's first acknowledged write after it. At the end every
acknowledged id is looked up: lost acknowledged writes (must be 0 in synchronous mode).

The lab's hold-down is shortened to 1 s here so that back-to-back rounds are not taken
for a flapping primary. Figures only; the target (median <= 5 s) is printed beside the
result, not asserted (machines are shared and noisy). Exit status 1 when a round
failed or a write was lost in synchronous mode.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from failback.lab import lab_break, lab_down, lab_repair, lab_up
from failback.lab.probe import WriteProbe

TARGET_MEDIAN_S = 5.0


class Events:
    """The monitor's JSON-lines log, read incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def all(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def last_id(self) -> int:
        return max((int(e.get("id") or 0) for e in self.all()), default=0)

    def wait(self, kind: str, after: int, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.all():
                if event["kind"] == kind and int(event.get("id") or 0) > after:
                    return event
            time.sleep(0.05)
        raise TimeoutError(f"no {kind} event within {timeout:g}s")


def _status(config: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "failback.cli.main", "status", "app", "--json", "-c", config],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return dict(json.loads(out.stdout)["services"][0])


def _wait_ready(config: str, synchronous: bool, timeout: float = 120.0) -> None:
    """Home, nothing to resync, no run, and zero-loss mode when synchronous."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = _status(config)
        home = doc["active_site"] == "dc1" and not doc["needs_resync"] and not doc["current_run"]
        if home and (not synchronous or doc["monitor"]["zero_loss"]["on"]):
            return
        time.sleep(0.2)
    raise TimeoutError("the service did not come home (and zero-loss) in time")


def _round(lab_dir: Path, events: Events, probe: WriteProbe) -> dict[str, Any]:
    mark = events.last_id()
    killed_at = time.time()
    lab_break(lab_dir, "dc1", "db")
    detected = events.wait("failure.detected", mark)
    finished = events.wait("failover.finished", mark)
    deadline = time.monotonic() + 60
    while not probe.stats.acked_ids(since=killed_at) and time.monotonic() < deadline:
        time.sleep(0.01)
    first = min((t for _, t in probe.stats.acknowledged if t > killed_at), default=None)
    lab_repair(lab_dir, "dc1", "db")
    failback = events.wait("failback.finished", mark, timeout=180)
    return {
        "rto_s": None if first is None else round(first - killed_at, 4),
        "detected_after_s": round(float(detected["ts"]) - killed_at, 4),
        "failover_done_after_s": round(float(finished["ts"]) - killed_at, 4),
        "failover_status": finished["data"]["status"],
        "failback_status": failback["data"]["status"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--async", dest="asynchronous", action="store_true")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    synchronous = not args.asynchronous
    base = args.dir or Path(tempfile.mkdtemp(prefix="fb-rto-", dir="/tmp"))
    os.chmod(base, 0o755)
    lab_dir = base / "lab"
    started = time.time()
    info = lab_up(lab_dir, sync=synchronous, auto=True)
    doc = yaml.safe_load(Path(info.config).read_text())
    doc["services"]["app"]["policy"].update({"hold_down": "1s", "max_failbacks_per_day": 1000})
    Path(info.config).write_text(yaml.safe_dump(doc, sort_keys=False))
    log = lab_dir / "monitor-events.jsonl"
    monitor = subprocess.Popen(
        [sys.executable, "-m", "failback.cli.main", "monitor", "-c", info.config,
         "--log-file", str(log)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    events = Events(log)
    rounds: list[dict[str, Any]] = []
    probe = WriteProbe(info.dsn, interval=0.01)
    lost: list[int] = []
    try:
        events.wait("monitor.started", 0, timeout=60)
        _wait_ready(info.config, synchronous)
        probe.start()
        for _ in range(args.rounds):
            _wait_ready(info.config, synchronous)
            time.sleep(1.0)  # the client writes before the crash
            rounds.append(_round(lab_dir, events, probe))
        _wait_ready(info.config, synchronous)
    finally:
        stats = probe.stop() if probe._thread.is_alive() else probe.stats
        if stats.acknowledged:
            lost = probe.missing(stats.acked_ids())
        monitor.send_signal(signal.SIGTERM)
        monitor.wait(timeout=60)
        lab_down(lab_dir, purge=True)
        if args.dir is None:
            base.rmdir()
    rtos = [r["rto_s"] for r in rounds if r["rto_s"] is not None]
    ok = all(r["failover_status"] == r["failback_status"] == "succeeded" for r in rounds)
    median = round(statistics.median(rtos), 4) if rtos else None
    result = {
        "benchmark": "failover_rto",
        "mode": "synchronous" if synchronous else "asynchronous",
        "rounds": len(rounds),
        "rto_s": {"median": median, "max": round(max(rtos), 4) if rtos else None},
        "target_median_s": TARGET_MEDIAN_S,
        "meets_target": median is not None and median <= TARGET_MEDIAN_S,
        "acknowledged_writes": len(stats.acknowledged),
        "lost_acknowledged_writes": len(lost),
        "all_runs_succeeded": ok,
        "per_round": rounds,
        "detection": {"interval_s": 0.5, "timeout_s": 1.0, "failure_threshold": 3},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "duration_s": round(time.time() - started, 1),
    }
    print(json.dumps(result, indent=2))
    return 0 if ok and (not synchronous or not lost) else 1


if __name__ == "__main__":
    sys.exit(main())
