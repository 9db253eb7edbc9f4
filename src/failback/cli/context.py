"""Resolving the topology file and the state directory the way every command does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from failback.errors import UsageError
from failback.store import Journal, open_journal

DEFAULT_CONFIG = "failback.yaml"


def config_path(option: Path | None) -> Path:
    """-c/--config, else $FAILBACK_CONFIG, else ./failback.yaml."""
    if option is not None:
        return option
    env = os.environ.get("FAILBACK_CONFIG")
    if env:
        return Path(env)
    return Path(DEFAULT_CONFIG)


def load(option: Path | None) -> Any:
    from failback.config import load_topology

    return load_topology(config_path(option))


def journal_from_options(config: Path | None, state_dir: Path | None) -> Journal:
    """The journal named by --state-dir, else by the topology file's state_dir."""
    if state_dir is not None:
        return open_journal(state_dir)
    path = config_path(config)
    if not path.exists() and config is None and not os.environ.get("FAILBACK_CONFIG"):
        raise UsageError(
            f"no topology file {path} here, and no --state-dir",
            hint="pass -c/--config FILE (or set FAILBACK_CONFIG), or --state-dir DIR",
        )
    from failback.config.journal import journal_for

    return journal_for(load(config))
