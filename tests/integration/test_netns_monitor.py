"""The monitor across machines: each site is a network namespace reached over SSH.

A whole machine dies under a steady writer (every process SIGKILLed, its link down),
then a site is cut off the network while it keeps running. Each time the monitor
fails over by itself, fences the returning dc1 on sight (it believes it is still the
primary), resyncs it and fails back after the stability window: no client write is
acknowledged by the stale primary, and none acknowledged after the failure is lost.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from failback.lab import lab_break, lab_repair, lab_status, lab_up
from failback.lab.core import lab_heal, lab_partition
from failback.lab.netns import netns_available
from failback.lab.probe import WriteProbe
from tests.integration.labfixtures import Lab, lab_base
from tests.integration.test_monitor import (
    MonitorProcess,
    fence_run,
    monitor,
    on_site,
    runs_of,
    wait_for,
)

AVAILABLE, WHY_NOT = netns_available()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not AVAILABLE, reason=f"netns lab unavailable: {WHY_NOT}"),
]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with lab_base("fb-nsmon-") as root:
        lab = Lab(info=lab_up(Path(root) / "lab", auto=True, hosts="netns"), base=root)
        # the second scenario starts soon after the first one's failback: a short
        # hold-down, so that it is not taken for a flapping primary (test_monitor has that)
        doc = yaml.safe_load(lab.config.read_text())
        doc["services"]["app"]["policy"]["hold_down"] = "5s"
        lab.config.write_text(yaml.safe_dump(doc, sort_keys=False))
        yield lab


def _round_trip(lab: Lab, mon: MonitorProcess, fail: str, restore: str) -> None:
    """``fail`` dc1 under a writer; the monitor fails over; ``restore`` it; the monitor
    fences it on sight, then fails back; nothing acknowledged after the failure is lost."""
    failovers = len(runs_of(lab, "failover"))
    failbacks = len(runs_of(lab, "failback"))
    probe = WriteProbe(lab.info.dsn, interval=0.01).start()
    try:
        wait_for("first writes", lambda: len(probe.stats.acknowledged) > 20)
        mark = mon.last_id()
        if fail == "host":
            lab_break(lab.dir, "dc1", "host")
        else:
            lab_partition(lab.dir, "dc1")
        # from here dc1 can acknowledge nothing: every write acknowledged later went to
        # dc2 (one acknowledged just before the cut may be lost: replication is async)
        failed_at = time.time()
        detected = mon.wait_event("failure.detected", after=mark)
        assert detected["data"]["probe"].endswith("@dc1"), detected
        finished = mon.wait_event("failover.finished", after=mark)
        assert finished["data"]["status"] == "succeeded", finished
        run = runs_of(lab, "failover")[failovers]
        assert run["status"] == "succeeded"
        events = lab.run_show(int(run["id"]))["events"]
        assert any(e["kind"] == "fence.unreachable" for e in events), events
        wait_for("writes after the failure", lambda: probe.stats.acked_ids(since=failed_at))
        after = probe.stats.acked_ids(since=failed_at)
        assert on_site(lab, "dc2", after) == set(after)
        assert lab_status(lab.dir)["router"]["write_target"] == "dc2"

        mark = mon.last_id()
        if restore == "repair":
            lab_repair(lab.dir, "dc1", "host")
        else:
            lab_heal(lab.dir, "dc1")
        back_at = time.time()
        fenced = mon.wait_event("stale_primary.fenced", after=mark)
        assert fenced["data"]["site"] == "dc1"
        fence_run(lab, fenced)
        done = mon.wait_event("failback.finished", after=mark, timeout=180)
        assert done["data"]["status"] == "succeeded", done
        lab.wait_home_end_state()
        time.sleep(0.3)  # the client keeps writing after the failback
    finally:
        stats = probe.stop()
    assert stats.acked_ids(since=back_at)
    assert probe.missing(stats.acked_ids(since=failed_at)) == [], "lost across the round trip"
    # home once; an attempt before it may have been rolled back cleanly (a step failed
    # while the healed site settled: the monitor tries again after the hold-down), and
    # says why in the warnings summary
    new = runs_of(lab, "failback")[: len(runs_of(lab, "failback")) - failbacks]
    assert [r["status"] for r in new].count("succeeded") == 1, [_story(lab, r) for r in new]
    assert new[0]["status"] == "succeeded", [_story(lab, r) for r in new]
    retried = [_story(lab, r) for r in new if r["status"] != "succeeded"]
    assert all(r["status"] == "rolled-back" for r in retried), retried
    for story in retried:
        warnings.warn(f"a failback was rolled back, then retried: {story}", stacklevel=1)


def _story(lab: Lab, run: dict) -> dict:
    """A run as the failure message needs it: how each step and event went."""
    shown = lab.run_show(int(run["id"]))
    return {
        "id": run["id"],
        "status": run["status"],
        "steps": [(s["id"], s["status"], s.get("error")) for s in shown["run"]["steps"]],
        "events": [(e["kind"], e.get("message")) for e in shown["events"]],
    }


def test_monitor_survives_a_dead_machine_and_brings_the_service_home(lab: Lab) -> None:
    with monitor(lab) as mon:
        _round_trip(lab, mon, fail="host", restore="repair")
        assert mon.stop() == 0


def test_monitor_survives_a_partition_and_brings_the_service_home(lab: Lab) -> None:
    time.sleep(6)  # past the hold-down after the previous scenario's failback
    with monitor(lab) as mon:
        _round_trip(lab, mon, fail="partition", restore="heal")
        assert mon.stop() == 0
