"""Every difference between a site's baseline and the site now.

A difference is one line a person can act on: which machine, which file or command,
what changed (a file changed, missing, new under a glob; a command's output or exit code
changed; a machine that could not be measured), the hashes before and after, and for a
command the changed lines of its output when they were kept. Nothing is summarised
away: the clean room shows all of them.
"""

from __future__ import annotations

import difflib
import time
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Difference", "compare", "short", "when"]

DIFF_LINES = 20
"""Changed lines of a command's output shown per difference."""


@dataclass(frozen=True)
class Difference:
    host: str
    kind: str
    """``file`` | ``command`` | ``host``"""
    item: str
    """The file's path, the command's name, or the machine's name."""
    change: str
    """``changed`` | ``missing`` | ``new`` | ``unreachable``"""
    before: str | None = None
    after: str | None = None
    lines: list[str] = field(default_factory=list)
    """A command's changed output lines (unified diff, ``-`` before, ``+`` now)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """One line for a person: ``local: file /etc/x changed (sha256 1a2b3c4d -> 5e6f...)``."""
        what = f"{self.host}: {self.kind} {self.item}" if self.kind != "host" else self.host
        text = f"{what} {self.change}"
        if self.before is not None or self.after is not None:
            text += f" ({self.before or '-'} -> {self.after or '-'})"
        return text


def when(ts: Any) -> str:
    """A recording time for people: local ``YYYY-MM-DD HH:MM:SS``."""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(ts)))
    except (TypeError, ValueError):
        return "an unknown time"


def short(digest: str | None) -> str | None:
    return None if digest is None else f"sha256 {digest[:12]}"


def compare(baseline: dict[str, Any], now: dict[str, Any]) -> list[Difference]:
    """The differences between ``baseline["hosts"]`` and ``now`` (``measure_declared``'s
    result for the baseline's own declaration), machine by machine, in file order."""
    found: list[Difference] = []
    for host, then in baseline.get("hosts", {}).items():
        current = now.get(host)
        if current is None or "error" in current:
            why = current["error"] if current else "not measured"
            found.append(Difference(host, "host", host, "unreachable", after=why))
            continue
        found += _files(host, then.get("files", {}), current.get("files", {}))
        found += _commands(host, then.get("commands", {}), current.get("commands", {}))
    return found


def _present(files: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A missing file is an absence: a glob that matched nothing, a file not there yet."""
    return {path: f for path, f in files.items() if f.get("state") != "missing"}


def _describe(entry: dict[str, Any]) -> str:
    if entry.get("state") == "file":
        return str(short(entry.get("sha256")))
    return str(entry.get("state"))


def _files(host: str, then: dict[str, Any], now: dict[str, Any]) -> list[Difference]:
    before, after = _present(then), _present(now)
    found: list[Difference] = []
    for path, entry in before.items():
        seen = after.get(path)
        if seen is None:
            found.append(Difference(host, "file", path, "missing", before=_describe(entry)))
        elif (seen.get("state"), seen.get("sha256")) != (entry.get("state"), entry.get("sha256")):
            found.append(
                Difference(
                    host, "file", path, "changed", before=_describe(entry), after=_describe(seen)
                )
            )
    for path, entry in after.items():
        if path not in before:
            found.append(Difference(host, "file", path, "new", after=_describe(entry)))
    return found


def _commands(host: str, then: dict[str, Any], now: dict[str, Any]) -> list[Difference]:
    found: list[Difference] = []
    for name, entry in then.items():
        seen = now.get(name)
        if seen is None:
            found.append(Difference(host, "command", name, "missing"))
            continue
        if (seen.get("exit"), seen.get("sha256")) == (entry.get("exit"), entry.get("sha256")):
            continue
        found.append(
            Difference(
                host, "command", name, "changed", before=_outcome(entry), after=_outcome(seen),
                lines=_changed_lines(entry, seen),
            )
        )  # fmt: skip
    return found


def _outcome(entry: dict[str, Any]) -> str:
    if entry.get("timed_out"):
        return "timed out"
    return f"exit {entry.get('exit')}, {short(entry.get('sha256'))}"


def _changed_lines(then: dict[str, Any], now: dict[str, Any]) -> list[str]:
    if then.get("output") is None or now.get("output") is None:
        return []
    diff = difflib.unified_diff(
        str(then["output"]).splitlines(), str(now["output"]).splitlines(), lineterm="", n=0
    )
    changed = [line for line in diff if line[:1] in "+-" and line[:3] not in ("---", "+++")]
    if len(changed) > DIFF_LINES:
        more = len(changed) - DIFF_LINES
        changed = [*changed[:DIFF_LINES], f"... {more} more changed lines"]
    return changed
