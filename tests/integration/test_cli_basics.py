"""The CLI as a user meets it: exit codes, --json, clear one-line errors, never a traceback.

Needs no server (no ``integration`` marker): only the CLI and shell commands run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import REPO, run_cli

BAD = sorted((REPO / "tests/data/topologies/bad").glob("*.yaml"))
PROBLEM_LINE = re.compile(r"^(?P<file>[^:]+\.yaml)(:(?P<line>\d+))?: .+")


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert re.fullmatch(r"failback \d+\.\d+\.\d+\n", result.stdout)


def test_examples_validate() -> None:
    result = run_cli("validate", *map(str, sorted((REPO / "examples").glob("*.yaml"))))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": valid") == 2


def test_every_bad_file_gets_file_line_messages_and_exit_2() -> None:
    assert len(BAD) >= 20
    result = run_cli("validate", *map(str, BAD))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    problem_lines = [ln for ln in result.stderr.splitlines() if PROBLEM_LINE.match(ln)]
    for path in BAD:
        mine = [ln for ln in problem_lines if ln.startswith(str(path))]
        assert mine, f"no problem reported for {path.name}"


def test_validate_json_is_one_document() -> None:
    result = run_cli("validate", str(BAD[0]), "--json")
    assert result.returncode == 2
    doc = json.loads(result.stdout)
    assert doc["valid"] is False
    problem = doc["files"][0]["problems"][0]
    assert set(problem) >= {"file", "line", "key", "message", "hint"}


def test_schema_is_json_schema() -> None:
    result = run_cli("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert "$schema" in schema and "services" in schema["properties"]


def test_missing_config_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("status", "-c", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "no such file" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_json(tmp_path: Path) -> None:
    result = run_cli("status", "-c", str(tmp_path / "nope.yaml"), "--json")
    assert result.returncode == 2
    assert json.loads(result.stdout)["error"]


def test_unknown_command_and_bad_option_are_usage_errors() -> None:
    assert run_cli("frobnicate").returncode == 2
    result = run_cli("runs", "--limit", "many")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_unknown_service_suggests(tmp_path: Path) -> None:
    config = REPO / "examples/command-only.yaml"
    doc = run_cli("validate", str(config), "--json").json()
    service = doc["files"][0]["services"][0]
    result = run_cli(
        "plan", "failback", service[:-1] + "x", "-c", str(config), "--state-dir", str(tmp_path)
    )
    assert result.returncode == 2
    assert "did you mean" in result.stderr
    assert "Traceback" not in result.stderr


def test_destructive_command_needs_yes_without_a_terminal(tmp_path: Path) -> None:
    """Without --yes and without a terminal to ask on, nothing starts."""
    from tests.integration.test_engine_crash import effects, write_topology

    config = write_topology(tmp_path, slow=0)
    result = run_cli("failover", "app", "--planned", "-c", str(config))
    assert result.returncode == 2
    assert "--yes" in result.stderr
    assert effects(tmp_path) == []
    assert run_cli("runs", "-c", str(config), "--json").json()["runs"] == []


def test_unplanned_failover_of_a_healthy_site_is_refused(tmp_path: Path) -> None:
    from tests.integration.test_engine_crash import effects, write_topology

    config = write_topology(tmp_path, slow=0)
    result = run_cli("failover", "app", "-c", str(config), "--yes")
    assert result.returncode == 1
    assert "--planned" in result.stderr
    assert effects(tmp_path) == []
    (tmp_path / "dc1.up").unlink()  # dc1's observe now fails: a real failure
    result = run_cli("failover", "app", "-c", str(config), "--yes", "--json")
    assert result.returncode == 0, result.stderr
    assert effects(tmp_path) == ["fence@dc1", "promote@dc2", "unfence@dc2", "verify@dc2"]
