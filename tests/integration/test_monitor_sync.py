"""Synchronous mode kept by the monitor (GitHub issue 4, part 6), on a real lab.

``lab up --auto --sync``: the topology says ``synchronous: true`` and the monitor, a
real ``failback monitor`` process, manages ``synchronous_standby_names`` itself. A
real client writes through the router the whole time. No assertion about time.
"""

from __future__ import annotations

import time

import pytest

from failback.lab import lab_break, lab_repair
from failback.lab.probe import WriteProbe
from tests.integration.labfixtures import lab_base
from tests.integration.test_monitor import auto_lab, monitor, monitor_doc, runs_of, wait_for

pytestmark = pytest.mark.integration


def test_synchronous_mode_relaxes_restores_and_fails_over_without_loss() -> None:
    with lab_base("fb-sync-") as root:
        lab = auto_lab(root, sync=True)
        with monitor(lab) as mon:
            zero = mon.wait_event("sync.zero_loss")
            assert zero["data"]["standby"] == "dc2"
            wait_for("zero-loss shown by status", lambda: monitor_doc(lab)["zero_loss"]["on"])
            probe = WriteProbe(lab.info.dsn, interval=0.01).start()
            try:
                wait_for("first writes", lambda: len(probe.stats.acknowledged) > 20)

                # standby down: the primary stops waiting for it, writes keep flowing
                mark = mon.last_id()
                lab_break(lab.dir, "dc2", "db")
                relaxed = mon.wait_event("sync.relaxed", after=mark)
                assert "dc2" in relaxed["message"]
                since = time.time()
                wait_for("writes in relaxed mode", lambda: len(probe.stats.acked_ids(since)) > 20)
                doc = monitor_doc(lab)
                assert doc["zero_loss"]["on"] is False and doc["sync_mode"]["mode"] == "relaxed"

                # standby back: zero-loss mode restored once it streams and caught up
                mark = mon.last_id()
                lab_repair(lab.dir, "dc2", "db")
                mon.wait_event("sync.zero_loss", after=mark)
                wait_for("zero-loss again", lambda: monitor_doc(lab)["zero_loss"]["on"])
                assert monitor_doc(lab)["sync_mode"]["mode"] == "sync"

                # the primary dies under the writer: failover, and not one acked write lost
                mark = mon.last_id()
                killed_at = time.time()
                lab_break(lab.dir, "dc1", "db")
                done = mon.wait_event("failover.finished", after=mark)
                assert done["data"]["status"] == "succeeded", done
                wait_for("writes on dc2", lambda: probe.stats.acked_ids(since=killed_at))
            finally:
                stats = probe.stop()
            acked = stats.acked_ids()
            assert len(acked) > 100
            assert probe.missing(acked) == [], "acknowledged writes lost in synchronous mode"
            (failover,) = runs_of(lab, "failover")
            assert failover["status"] == "succeeded"
            assert mon.stop() == 0
