"""The way back from an observation window (issue 10), as pure plans.

A failback whose new primary dies during its observation window switches back by the
unplanned failover path (fence, promote, route, verify, record the dead site as needing
a resync), never by the zero-loss switchover, which needs the dead primary to stop
cleanly and hand over its final position.
"""

from __future__ import annotations

import pytest

from failback.plan.revert import revert_steps
from tests.unit.test_planner import topology

PARAMS = {"home": "dc1", "away": "dc2", "db": "db"}


def test_dead_new_primary_is_left_by_the_failover_path() -> None:
    steps = revert_steps(topology().service("app"), {**PARAMS, "switch_back": "failover"})
    ids = [s.id for s in steps]
    assert all(i.startswith("back-") for i in ids) and len(set(ids)) == len(ids)
    actions = [s.action for s in steps]
    # nothing waits for the dead primary: no clean stop, no replay of its final position
    assert "postgres.stop" not in actions and "postgres.wait_replay" not in actions
    assert "postgres.checkpoint" not in actions
    fence_router = actions.index("haproxy.fence")
    fence_db = actions.index("postgres.fence")
    promote = actions.index("postgres.promote")
    route = actions.index("haproxy.route")
    verify = actions.index("postgres.verify_write")
    record = actions.index("state.record")
    assert fence_router < fence_db < promote < route < verify < record
    assert steps[fence_router].site == steps[fence_db].site == "dc1"
    assert steps[promote].site == "dc2"
    # what may be lost is measured; a synchronous setting it inherited is relaxed
    assert steps[promote].params == {"measure_loss": True, "relax_sync": True}
    assert steps[route].params["measure_as"] == "switch_back_write_unavailability_s"
    assert steps[record].params == {"active_site": "dc2", "needs_resync": ["dc1"]}
    assert steps[verify].params["endpoint"] == "127.0.0.1:6432"


def test_live_new_primary_is_left_by_the_zero_loss_switchover() -> None:
    service = topology().service("app")
    default = revert_steps(service, PARAMS)
    assert [s.id for s in default] == [
        s.id for s in revert_steps(service, {**PARAMS, "switch_back": "switchover"})
    ]
    actions = [s.action for s in default]
    assert actions.index("postgres.stop") < actions.index("postgres.wait_replay")
    assert actions.index("postgres.wait_replay") < actions.index("postgres.promote")
    record = default[actions.index("state.record")]
    assert record.params == {"active_site": "dc2", "needs_resync": []}
    with pytest.raises(ValueError, match="unknown way to switch back"):
        revert_steps(service, {**PARAMS, "switch_back": "teleport"})
