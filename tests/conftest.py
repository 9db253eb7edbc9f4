"""Shared fixtures: running the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def failback_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "failback.cli.main", *args]


def run_cli(
    *args: str,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    input_text: str | None = None,
) -> CliResult:
    """Run ``failback ARGS`` as a user would, in its own process."""
    merged = dict(os.environ)
    merged.setdefault("COLUMNS", "200")
    if env:
        merged.update(env)
    proc = subprocess.run(
        failback_argv(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=merged,
        input=input_text,
        check=False,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli() -> Any:
    return run_cli
