"""Hash declared files and command outputs on one machine, through its ``Host``.

One shell command hashes every file of a machine (one round trip over SSH, however many
files), globs expanded by the machine's own shell so that a file added under
``/usr/lib/postgresql/15/bin/*`` shows up. Each declared command runs on its own, with
its own timeout. Nothing here writes anything on the machine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from failback.errors import FailbackError
from failback.hosts import Host

__all__ = ["HASH_FILES", "MeasureFailed", "hash_text", "measure_host"]

HASH_FILES = r"""IFS=''
for p do
  for f in $p; do
    h=
    if [ ! -e "$f" ]; then k=missing
    elif [ -d "$f" ]; then k=directory
    elif [ ! -f "$f" ]; then k=special
    elif h=$(sha256sum < "$f" 2>/dev/null); then k=file; h=${h%% *}
    else k=unreadable; h=
    fi
    printf '%s\0%s\0%s\0' "$f" "$k" "$h"
  done
done
"""
"""``sh -c HASH_FILES sh PATTERN...``: for each path (a glob is expanded by the shell,
IFS='' keeps spaces in names), ``path NUL state NUL sha256 NUL``. The file is read on
standard input so that its name never has to be parsed out of sha256sum's output."""


class MeasureFailed(FailbackError):
    """A machine could not be measured at all (unreachable, the shell failed)."""


def hash_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def measure_host(
    host: Host,
    files: Sequence[str],
    commands: Mapping[str, str],
    *,
    timeout: float,
    max_output: int,
) -> dict[str, Any]:
    """``{"files": {path: {state, sha256}}, "commands": {name: {command, exit, sha256,
    output, truncated}}}`` for one machine. Raises MeasureFailed (one line, a hint) when
    the machine cannot be reached or its shell fails; a missing file or a failing command
    is a fact, recorded as such."""
    return {
        "files": _hash_files(host, files, timeout) if files else {},
        "commands": {
            name: _run_command(host, command, timeout, max_output)
            for name, command in commands.items()
        },
    }


def _hash_files(host: Host, patterns: Sequence[str], timeout: float) -> dict[str, Any]:
    try:
        result = host.run(["/bin/sh", "-c", HASH_FILES, "sh", *patterns], timeout=timeout)
    except FailbackError as exc:
        raise MeasureFailed(f"{host.name}: {exc.message}", exc.hint) from None
    if not result.ok:
        why = f"timed out after {timeout:g}s" if result.timed_out else result.tail()
        raise MeasureFailed(
            f"{host.name}: hashing the declared files failed: {why}",
            "the machine needs /bin/sh and sha256sum (coreutils); raise baseline.timeout "
            "for many large files",
        )
    fields = result.stdout.split("\0")
    found: dict[str, Any] = {}
    for i in range(0, len(fields) - 2, 3):
        path, state, digest = fields[i : i + 3]
        found[path] = {"state": state, "sha256": digest or None}
    return found


def _run_command(host: Host, command: str, timeout: float, max_output: int) -> dict[str, Any]:
    try:
        result = host.run_shell(command, timeout=timeout)
    except FailbackError as exc:
        raise MeasureFailed(f"{host.name}: {exc.message}", exc.hint) from None
    output = result.stdout
    kept = output.encode("utf-8", "surrogateescape")[:max_output].decode("utf-8", "replace")
    return {
        "command": command,
        "exit": None if result.timed_out else result.returncode,
        "timed_out": result.timed_out,
        "sha256": hash_text(output),
        "output": kept if max_output else None,
        "truncated": len(output.encode("utf-8", "surrogateescape")) > max_output,
        "stderr_tail": "" if result.ok else result.tail(200),
    }
