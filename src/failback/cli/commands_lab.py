"""lab and demo commands (wired once the lab exists)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    return None
