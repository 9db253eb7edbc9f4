"""Settings of a ``kv`` component: where each site's directory is, and its limits."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from failback.model.component import ComponentSettings, SettingsProblem
from failback.model.durations import PositiveDuration, parse_duration
from failback.model.fields import AbsPath, ConfigModel, StrictInt

FAILABLE_STEPS = ("preflight", "fence", "stop", "catchup", "replay", "promote", "resync")
"""Steps ``fail_at`` can make fail (the test suite's way to exercise undo)."""


class KvOptions(ConfigModel):
    """How the driver treats the store at every site."""

    max_lag: StrictInt = Field(
        0, ge=0, description="Writes a replica may be behind when a switch starts."
    )
    replay_timeout: PositiveDuration = Field(
        parse_duration("10s"),
        description="How long a replica may take to reach the stopped primary's position.",
    )
    fail_at: Literal[FAILABLE_STEPS] | None = Field(  # type: ignore[valid-type]
        None,
        description="Test only: this step fails before it acts (to exercise rollback).",
    )


class KvSite(ConfigModel):
    """One site's store."""

    path: AbsPath = Field(description="The site's directory (data.json, role, position...).")


class KvComponent(ComponentSettings):
    """A file-backed key-value store replicated between two sites."""

    pair_only: ClassVar[bool] = True

    driver: Literal["kv"]
    options: KvOptions = Field(default_factory=KvOptions)  # type: ignore[arg-type]
    sites: dict[str, KvSite] = Field(description="Per-site store: site -> its directory.")

    def problems(self) -> list[SettingsProblem]:
        """Two sites in one directory would be one store replicating to itself."""
        seen: dict[str, str] = {}
        found = []
        for site, settings in self.sites.items():
            if settings.path in seen:
                found.append(
                    SettingsProblem(
                        ("sites", site, "path"),
                        f"{site} uses the directory of {seen[settings.path]}",
                        "give each site a directory of its own",
                    )
                )
            seen.setdefault(settings.path, site)
        return found
