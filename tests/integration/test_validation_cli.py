"""Validation's last gaps, through the real CLI: limits and warnings.

A duration past what the engine can wait for is ``FILE:LINE: key: message`` and exit 2
from every command that loads the topology (before: ``validate`` said "valid" and
``plan``/``status`` died with an ``OverflowError`` traceback from ``subprocess``). A
mutating command step without ``check:`` is a warning: exit 0, ``FILE:LINE: key:
warning: ...`` on stderr, a ``warnings`` list in ``--json``.

Needs no server (no ``integration`` marker): only the CLI and shell commands run.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli

TOPOLOGY = """\
sites:
  dc1: {{}}
  dc2: {{}}
services:
  edge:
    primary_site: dc1
    components:
      vip:
        driver: command
        options: {{timeout: {timeout}}}
        sites:
          dc1:
            observe: "true"
            promote: {{run: "true", check: "true"}}
            fence: "true"
          dc2:
            observe: "true"
            promote: {{run: "true", check: "true"}}
            fence: {{run: "true", undo: "true"}}
"""
TIMEOUT_LINE = 10
FENCE_DC1_LINE = 15
FENCE_DC2_LINE = 19


def write(tmp_path: Path, timeout: str = "30s") -> Path:
    path = tmp_path / "failback.yaml"
    path.write_text(TOPOLOGY.format(timeout=timeout))
    return path


def test_a_timeout_too_long_for_the_engine_is_refused_by_every_command(tmp_path: Path) -> None:
    config = write(tmp_path, timeout="30d")
    state = str(tmp_path / "state")
    expected = (
        f"{config}:{TIMEOUT_LINE}: services.edge.components.vip.options.timeout: "
        "must be at most 7d (got '30d')"
    )
    for args in (
        ("validate", str(config)),
        ("plan", "failover", "edge", "--force", "-c", str(config), "--state-dir", state),
        ("plan", "failback", "edge", "-c", str(config), "--state-dir", state),
        ("status", "-c", str(config), "--state-dir", state),
        ("failover", "edge", "--planned", "--yes", "-c", str(config), "--state-dir", state),
    ):
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr and "OverflowError" not in result.stderr
        assert expected in result.stderr, (args, result.stderr)


def test_validate_warns_about_a_mutating_command_without_check(tmp_path: Path) -> None:
    config = write(tmp_path)
    result = run_cli("validate", str(config))
    assert result.returncode == 0, result.stderr
    assert f"{config}: valid" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if ": warning: " in line]
    key = "services.edge.components.vip.sites"
    unchecked = [w for w in warnings if " has no check" in w]
    assert [w.split(" has no check")[0] for w in unchecked] == [
        f"{config}:{FENCE_DC1_LINE}: {key}.dc1.fence: warning: fence",
        f"{config}:{FENCE_DC2_LINE}: {key}.dc2.fence: warning: fence",
    ]
    assert "(hint: add check:" in unchecked[0]
    # dc2's fence has an undo but no undo_check: after a crash inside it, it runs again
    [undo] = [w for w in warnings if w not in unchecked]
    assert undo.startswith(
        f"{config}:{FENCE_DC2_LINE}: {key}.dc2.fence.undo: warning: fence's undo has no "
        "undo_check: if failback dies while the undo runs, the undo is run again"
    ), undo
    assert "(hint: make the undo safe to run twice, or add undo_check:" in undo
    doc = run_cli("validate", str(config), "--json").json()
    assert doc["valid"] is True
    listed = doc["files"][0]["warnings"]
    assert sorted((w["line"], w["key"]) for w in listed) == [
        (FENCE_DC1_LINE, f"{key}.dc1.fence"),
        (FENCE_DC2_LINE, f"{key}.dc2.fence"),
        (FENCE_DC2_LINE, f"{key}.dc2.fence.undo"),
    ]
    assert all(w["severity"] == "warning" and "check" in w["message"] for w in listed)


def test_plan_warns_only_about_its_own_steps(tmp_path: Path) -> None:
    """A failover from dc1 fences dc1: the warning about dc2's fence is not this plan's."""
    config = write(tmp_path)
    state = str(tmp_path / "state")
    args = ("plan", "failover", "edge", "--force", "-c", str(config), "--state-dir", state)
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if ": warning: " in line]
    assert len(warnings) == 1, result.stderr
    assert warnings[0].startswith(
        f"{config}:{FENCE_DC1_LINE}: services.edge.components.vip.sites.dc1.fence: warning:"
    )
    assert "fence vip at dc1" in result.stdout
    doc = run_cli(*args, "--json").json()
    assert [w["line"] for w in doc["warnings"]] == [FENCE_DC1_LINE]
    assert doc["plan"]["steps"][0]["id"] == "fence-vip-dc1"


def test_a_file_with_every_check_has_no_warning(tmp_path: Path) -> None:
    config = tmp_path / "failback.yaml"
    config.write_text(
        TOPOLOGY.format(timeout="30s")
        .replace('fence: "true"', 'fence: {run: "true", check: "true"}')
        .replace(
            'fence: {run: "true", undo: "true"}',
            'fence: {run: "true", check: "true", undo: "true", undo_check: "true"}',
        )
    )
    result = run_cli("validate", str(config))
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr
    assert run_cli("validate", str(config), "--json").json()["files"][0]["warnings"] == []
