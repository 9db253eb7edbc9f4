"""Run one of the machine's administration tools (ip, ssh-keygen, sshd) for the netns lab.

Building namespaces, links and sshd daemons is the orchestrator administering its own
lab, not a step of a run, so it does not go through a Host. It is still done the safe
way: argument lists (never a shell), stdin closed, a timeout, and a failure turned into
a ``LabError`` that quotes the tool's own last line of complaint.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Sequence
from typing import Any

from failback.lab.errors import LabError


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 30.0,
    hint: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv``; with ``check``, a non-zero exit is a ``LabError`` (stderr's last line)."""
    args = [str(a) for a in argv]
    shown = shlex.join(args[:4]) + (" ..." if len(args) > 4 else "")
    try:
        proc = subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise LabError(
            f"{args[0]} is not installed", hint=hint or "run scripts/setup.sh (as root)"
        ) from None
    except subprocess.TimeoutExpired:
        raise LabError(f"{shown} did not finish within {timeout:g} s", hint=hint) from None
    if check and proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        why = lines[-1] if lines else f"exit status {proc.returncode}"
        raise LabError(f"{shown} failed: {why}", hint=hint)
    return proc


def run_json(argv: Sequence[str], *, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Run an ``ip -j ...`` reading and decode it (``ip`` prints nothing for "none")."""
    out = run(argv, timeout=timeout).stdout.strip()
    if not out:
        return []
    data = json.loads(out)
    return [entry for entry in data if isinstance(entry, dict)]
