"""Issue 9 item 7: secrets stay where they belong, through the real CLI.

A command sees an allow-listed environment (never failback's API token or any other
variable of the process that runs failback), the ``FAILBACK_*`` context, and the
component's declared ``env:``, whose ``env:``/``file:`` references reach the command
as values and are masked in everything failback stores or shows.

Needs no server (no ``integration`` marker): only the CLI and shell commands run.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.conftest import run_cli

TOKEN = "some-secret-token-123456"
SECRET_X = "unrelated-secret-x-value"
DB_PASS = "db-pass-value-987"
FILE_PASS = "file-pass-value-654"
ENV = {"FAILBACK_API_TOKEN": TOKEN, "SECRET_X": SECRET_X, "MY_PASS": DB_PASS}


def write_topology(tmp: Path, fence: str, *, db_pass: str = "env:MY_PASS") -> Path:
    (tmp / "pass.txt").write_text(FILE_PASS + "\n")
    (tmp / "dc1.up").touch()
    (tmp / "dc2.up").touch()
    text = textwrap.dedent(f"""\
        sites:
          dc1: {{}}
          dc2: {{}}
        services:
          app:
            primary_site: dc1
            components:
              vip:
                driver: command
                options:
                  timeout: 10s
                  env:
                    OUT: "{tmp}"
                    DB_PASS: "{db_pass}"
                    FILE_PASS: file:pass.txt
                sites:
                  dc1:
                    observe: "test -f {tmp}/dc1.up"
                    fence:
                      run: '{fence}'
                      undo: "true"
                    unfence: "true"
                  dc2:
                    observe: "test -f {tmp}/dc2.up"
                    promote: "true"
                    unfence: "true"
            policy:
              approval: none
              stability_window: 200ms
        """)
    path = tmp / "failback.yaml"
    path.write_text(text)
    return path


def failover(config: Path) -> tuple[dict, str]:
    """Fail over, then return the run's report and ``run show ID --json`` as text."""
    result = run_cli("failover", "app", "--planned", "-c", str(config), "--yes", "--json", env=ENV)
    assert "Traceback" not in result.stderr, result.stderr
    outcome = result.json()
    shown = run_cli("run", "show", str(outcome["run_id"]), "-c", str(config), "--json", env=ENV)
    assert shown.returncode == 0, shown.stderr
    return outcome, result.stdout + shown.stdout + shown.stderr


def journal_bytes(config: Path) -> bytes:
    state = config.parent / ".failback"
    return b"".join(p.read_bytes() for p in state.glob("journal.sqlite3*"))


def test_a_command_sees_the_allow_list_its_context_and_its_declared_env(tmp_path: Path) -> None:
    config = write_topology(
        tmp_path,
        'env; echo "pass=$DB_PASS file=$FILE_PASS"; '
        'printf %s "$DB_PASS" > $OUT/db; printf %s "$FILE_PASS" > $OUT/file',
    )
    outcome, shown = failover(config)
    assert outcome["status"] == "succeeded", outcome
    # the declared secrets reached the command as values
    assert (tmp_path / "db").read_text() == DB_PASS
    assert (tmp_path / "file").read_text() == FILE_PASS
    # ...and failback's own environment did not
    for leaked in (TOKEN, SECRET_X, "FAILBACK_API_TOKEN", "SECRET_X=", "MY_PASS="):
        assert leaked not in shown, leaked
    # the echoed secret values are masked, wherever the output is shown or stored
    assert DB_PASS not in shown and FILE_PASS not in shown
    assert "pass=**** file=****" in shown
    stored = journal_bytes(config)
    for secret in (DB_PASS, FILE_PASS, TOKEN, SECRET_X):
        assert secret.encode() not in stored, secret
    run_id = outcome["run_id"]
    for context in ("FAILBACK_SERVICE=app", "FAILBACK_COMPONENT=vip", "FAILBACK_SITE=dc1",
                    "FAILBACK_ACTION=fence", f"FAILBACK_RUN_ID={run_id}",
                    "FAILBACK_FROM_SITE=dc1", "FAILBACK_TO_SITE=dc2", "PATH="):  # fmt: skip
        assert context in shown, context


def test_a_secret_in_a_failing_commands_error_is_masked(tmp_path: Path) -> None:
    config = write_topology(tmp_path, 'echo "login failed for $DB_PASS" >&2; exit 3')
    outcome, shown = failover(config)
    assert outcome["status"] == "rolled-back", outcome
    assert "login failed for ****" in outcome["error"]
    assert DB_PASS not in shown
    assert DB_PASS.encode() not in journal_bytes(config)


def test_a_missing_secret_fails_the_step_with_its_name(tmp_path: Path) -> None:
    config = write_topology(tmp_path, "true", db_pass="env:FAILBACK_TEST_UNSET_PASS")
    result = run_cli("failover", "app", "--planned", "-c", str(config), "--yes", "--json", env=ENV)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode != 0
    outcome = result.json()
    # its undo cannot run without the secret either: the run stops for a person
    assert outcome["status"] == "failed", outcome
    assert outcome["error"] == "secret env:FAILBACK_TEST_UNSET_PASS is not set"
    status = run_cli("status", "-c", str(config), "--json", env=ENV)
    assert "Traceback" not in status.stderr, status.stderr
    assert "FAILBACK_TEST_UNSET_PASS" in status.stdout  # the observation says why
