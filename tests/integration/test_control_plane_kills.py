"""SIGKILL of the leader monitor inside each step of a failback (issue 14, "Must hold 3").

The promise: when the leader monitor dies at any step of a failback, or at any undo step
of a failback being rolled back, another monitor finishes the run in its direction
(forward, or the undo), no effect is applied twice, and one site is primary at the end.

How: a real single-member etcd (module-scoped) and two ``failback monitor --node a|b``
processes, each with a state directory of its own, as on two machines. The service is
one ``command`` component whose actions change small state files, one per site and
concern: ``dc1.role`` (``primary``, ``replica`` once resynced, ``standby``) and
``dc1.traffic`` (``open``, ``fenced``). Every mutating action and every undo appends its
marker (``fence@dc2``, ``undo-fence@dc2``) to ``effects.log``, so the test counts how
many times each effect happened; every action has an honest ``check:`` that tests the
state file (is this effect in place *now*), which is how the next leader tells whether
the step it found interrupted took effect.

``kill`` holding ``MARKER SIGNAL`` makes the action or undo with that marker send the
signal to the process that runs it (the leader monitor) right after its effect, before
the journal can say the step ended: the leader dies inside the step whatever the
machine's load. ``fail-MARKER`` makes that action exit 7 once, after its effect.

Each case: node ``a`` leads; dc1 fails (automatic failover to dc2), comes back, and
after a one-second stability window ``a`` starts the automatic failback, dying inside
the chosen step. Forward: ``b`` takes over, the failback ends ``succeeded``, each of its
effects is in the log exactly once, in plan order, and only dc1 is primary. Undo: the
fence of dc2 fails (its effect in place), the run turns backward, ``a`` dies inside one
of the undos; ``b`` takes over and finishes the undo: ``rolled-back``, each undo effect
once, dc2 primary and open again, only dc2 primary.
"""

from __future__ import annotations

import signal
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.integration.etcdserver import Etcd, etcd_server
from tests.integration.test_control_plane_monitors import (
    TTL,
    Monitors,
    leader,
    runs,
    wait_for,
)

pytestmark = pytest.mark.integration

SITES = ("dc1", "dc2")

# action: (the state file it writes, the value it writes, the value its undo writes
# back); its check tests that the file holds its value now
ACTIONS = {
    "sync": ("role", "replica", "standby"),  # resynced: follows the primary again
    "fence": ("traffic", "fenced", "open"),
    "promote": ("role", "primary", "standby"),
    "unfence": ("traffic", "open", "fenced"),
    "demote": ("role", "standby", "primary"),
}

# the failback's mutating steps, in plan order (gates and the record step do nothing
# a state file could show)
FAILBACK = ["sync@dc1", "fence@dc2", "promote@dc1", "unfence@dc1", "demote@dc2"]
FAILOVER = ["fence@dc1", "promote@dc2", "unfence@dc2", "demote@dc1"]
# the undo of a failback whose fence of dc2 failed (after its effect): newest first
UNDO = ["undo-fence@dc2", "undo-sync@dc1"]

ACT = """\
#!/bin/sh
# act.sh MARKER FILE VALUE LEADER: one effect (FILE := VALUE), recorded as MARKER
cd "$(dirname "$0")"
marker=$1 file=$2 value=$3 leader=$4
echo "$value" > "$file"
echo "$marker" >> effects.log
if [ -e "fail-$marker" ]; then rm -f "fail-$marker"; exit 7; fi
if [ "$(cut -d' ' -f1 kill 2>/dev/null)" = "$marker" ]; then
    s=$(cut -d' ' -f2 kill); rm -f kill; kill -"$s" "$leader"
fi
"""


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    with etcd_server(tmp_path_factory.mktemp("etcd")) as server:
        yield server


def write_topology(tmp: Path, etcd: Etcd, *, undo_checks: bool = True) -> Path:
    """Service ``app`` at home in dc1, serving there; dc2 a fenced standby. Fails over
    and back automatically (one-second stability window, no approval), once a day (with
    the default 30-minute hold-down, counted from a failback that ended home or turned
    back): one failback per case."""
    act = tmp / "act.sh"
    act.write_text(ACT)
    (tmp / "effects.log").touch()
    for site, role, traffic in (("dc1", "primary", "open"), ("dc2", "standby", "fenced")):
        (tmp / f"{site}.up").touch()
        (tmp / f"{site}.role").write_text(f"{role}\n")
        (tmp / f"{site}.traffic").write_text(f"{traffic}\n")

    def site_block(site: str) -> str:
        lines = [f'observe: "test -f {tmp}/{site}.up"']
        for action, (kind, value, previous) in ACTIONS.items():
            state = f"{site}.{kind}"
            run = f"sh {act} {action}@{site} {state} {value} $PPID"
            undo = f"sh {act} undo-{action}@{site} {state} {previous} $PPID"
            check = f"grep -qx {value} {tmp}/{state}"
            proof = f', undo_check: "grep -qx {previous} {tmp}/{state}"' if undo_checks else ""
            lines.append(f'{action}: {{run: "{run}", check: "{check}", undo: "{undo}"{proof}}}')
        return textwrap.indent("\n".join(lines), " " * 12)

    text = f"""\
sites: {{dc1: {{}}, dc2: {{}}}}
control_plane:
  etcd: {{endpoints: [{etcd.url}]}}
  prefix: /failback-test/{uuid.uuid4().hex}
  lease_ttl: {TTL}
  nodes: {{a: {{site: dc1}}, b: {{site: dc2}}}}
services:
  app:
    primary_site: dc1
    components:
      vip:
        driver: command
        options: {{timeout: 20s}}
        sites:
          dc1:
{site_block("dc1")}
          dc2:
{site_block("dc2")}
    policy:
      failover: automatic
      failback: automatic
      approval: none
      stability_window: 1s
      max_failbacks_per_day: 1
      detection: {{interval: 200ms, timeout: 1s, failure_threshold: 2}}
"""
    path = tmp / "failback.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def group(tmp_path: Path, etcd: Etcd) -> Iterator[Monitors]:
    monitors = Monitors(tmp_path, write_topology(tmp_path, etcd))
    yield monitors
    monitors.stop()


def effects(tmp: Path) -> list[str]:
    return (tmp / "effects.log").read_text().split()


def state(tmp: Path) -> dict[str, tuple[str, str]]:
    """Each site's (role, traffic) as its state files hold them now."""
    return {
        site: (
            (tmp / f"{site}.role").read_text().strip(),
            (tmp / f"{site}.traffic").read_text().strip(),
        )
        for site in SITES
    }


def primaries(tmp: Path) -> list[str]:
    return [site for site, (role, _) in state(tmp).items() if role == "primary"]


def logged(group: Monitors, node: str, *kinds: str) -> list[dict[str, Any]]:
    """The events of these kinds in ``node``'s monitor log (JSON lines), oldest first.
    Waiting on the log rather than on the CLI keeps a 2-core machine free for the
    monitors."""
    return [e for e in group.log(node) if e.get("kind") in kinds]


def run_show(config: Path, run_id: int) -> dict[str, Any]:
    state_dir = config.parent / "state-b"
    result = run_cli("run", "show", str(run_id), "--state-dir", str(state_dir), "--json")
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = result.json()["run"]
    return document


def step_id(marker: str) -> str:
    """``undo-fence@dc2`` -> ``fence-vip-dc2``: the plan step a marker belongs to."""
    action, site = marker.removeprefix("undo-").split("@")
    return f"{action}-vip-{site}"


def fail_over_then_fail_back(group: Monitors, kill_at: str, *flags: str) -> list[str]:
    """``a`` leads, ``b`` follows; dc1 fails (``a`` fails over to dc2) and comes back;
    ``a`` starts the failback and dies inside ``kill_at`` (SIGKILL, after the effect).
    Returns the effects log as it was when ``a`` died."""
    tmp = group.tmp
    group.start("a")
    wait_for(lambda: logged(group, "a", "leader.elected"), 15, "a leads")
    group.start("b")
    wait_for(lambda: logged(group, "b", "leader.following"), 15, "b follows a")
    (tmp / "kill").write_text(f"{kill_at} KILL\n")
    for flag in flags:
        (tmp / flag).touch()
    (tmp / "dc1.up").unlink()
    wait_for(lambda: logged(group, "a", "failover.finished"), 20, "a fails over to dc2")
    assert effects(tmp) == FAILOVER, "the failover ran once, untouched by the kill flag"
    assert state(tmp) == {"dc1": ("standby", "fenced"), "dc2": ("primary", "open")}
    (tmp / "dc1.up").touch()
    wait_for(lambda: group.procs["a"].poll() is not None, 30, f"a killed inside {kill_at}")
    assert group.procs["a"].returncode == -signal.SIGKILL
    assert not (tmp / "kill").exists()
    return effects(tmp)


ENDINGS = ("failback.finished", "failback.rolled_back", "failback.failed",
           "failback.waiting_approval")  # fmt: skip
"""The monitor's events for a failback run that stopped, whichever way."""


def takes_over(group: Monitors, ending: str) -> dict[str, Any]:
    """``b`` becomes the leader, continues the failback and ends it ``ending``: the
    failback's ``run show``."""
    config = group.config
    wait_for(lambda: logged(group, "b", *ENDINGS), 3 * TTL + 25, "b takes over and ends it")
    assert leader(config) == "b"
    found = runs(config, "b")  # newest first
    assert [(r["kind"], r["status"]) for r in found] == [
        ("failback", ending),
        ("failover", "succeeded"),
    ], found
    run_id = int(found[0]["id"])
    document = run_show(config, run_id)
    resumed = logged(group, "b", "run.resumed_by_monitor")
    assert [e.get("run_id") for e in resumed] == [run_id], resumed
    return document


def steps(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in document["steps"]}


@pytest.mark.parametrize("killed_in", FAILBACK)
def test_leader_killed_in_a_failback_step_the_other_node_finishes_it_once(
    group: Monitors, killed_in: str
) -> None:
    tmp = group.tmp
    at_death = fail_over_then_fail_back(group, killed_in)
    # a died inside that step, right after its effect: nothing of the next step yet
    assert at_death == FAILOVER + FAILBACK[: FAILBACK.index(killed_in) + 1]

    document = takes_over(group, "succeeded")
    assert effects(tmp) == FAILOVER + FAILBACK  # each effect once, in plan order
    killed = steps(document)[step_id(killed_in)]
    # b asked the step's check, found the effect in place, and did not apply it again
    assert killed["status"] == "done" and killed["attempts"] == 1, killed
    assert killed["output"] == {"note": "took effect before the interruption"}, killed
    assert all(s["status"] in ("done", "skipped") for s in document["steps"]), document
    assert state(tmp) == {"dc1": ("primary", "open"), "dc2": ("standby", "fenced")}
    assert primaries(tmp) == ["dc1"]


@pytest.mark.parametrize("killed_in", UNDO)
def test_leader_killed_in_an_undo_step_the_other_node_finishes_the_undo_once(
    group: Monitors, killed_in: str
) -> None:
    tmp = group.tmp
    at_death = fail_over_then_fail_back(group, killed_in, "fail-fence@dc2")
    undo_path = ["sync@dc1", "fence@dc2", *UNDO]  # the fence failed after its effect
    assert at_death == FAILOVER + undo_path[: undo_path.index(killed_in) + 1]

    document = takes_over(group, "rolled-back")
    assert effects(tmp) == FAILOVER + undo_path  # each undo once, never forward again
    assert document["rollback"] is not None, document
    by_id = steps(document)
    assert by_id[step_id(killed_in)]["undo"] == "undone", by_id[step_id(killed_in)]
    assert {by_id[step_id(m)]["undo"] for m in UNDO} == {"undone"}
    # b asked the step's undo_check: the undo's effect in place, b did not run it again
    undone = [e for e in logged(group, "b", "step.undone") if e.get("step") == step_id(killed_in)]
    assert [e["message"] for e in undone] == [
        f"{by_id[step_id(killed_in)]['title']} (undone before the interruption)"
    ], undone
    assert by_id["promote-vip-dc1"]["attempts"] == 0  # never reached: nothing to undo
    assert state(tmp) == {"dc1": ("standby", "fenced"), "dc2": ("primary", "open")}
    assert primaries(tmp) == ["dc2"]


def test_without_an_undo_check_an_interrupted_undo_runs_again(tmp_path: Path, etcd: Etcd) -> None:
    """No ``undo_check``: nothing proves the undo took effect (a failing forward check
    could mean a machine that does not answer), so the next leader runs it again; undos
    are idempotent, and the end state is the same."""
    group = Monitors(tmp_path, write_topology(tmp_path, etcd, undo_checks=False))
    try:
        killed_in = "undo-fence@dc2"
        at_death = fail_over_then_fail_back(group, killed_in, "fail-fence@dc2")
        assert at_death == [*FAILOVER, "sync@dc1", "fence@dc2", killed_in]
        document = takes_over(group, "rolled-back")
        assert effects(tmp_path) == [*FAILOVER, "sync@dc1", "fence@dc2", *UNDO[:1], *UNDO]
        assert {steps(document)[step_id(m)]["undo"] for m in UNDO} == {"undone"}
        assert state(tmp_path) == {"dc1": ("standby", "fenced"), "dc2": ("primary", "open")}
        assert primaries(tmp_path) == ["dc2"]
    finally:
        group.stop()
