"""What every component's settings have, whatever its driver.

Each driver declares its own ``Settings`` (a subclass with ``driver: Literal[name]``,
``options`` and ``sites``); the config package assembles the union of all of them from
the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import Field, PrivateAttr

from failback.errors import FailbackError
from failback.model.fields import ConfigModel

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class SettingsProblem:
    """A problem with a component's settings, at a key path relative to the component
    (``("sites", "dc1", "port")``), reported by ``failback validate`` with its line."""

    path: KeyPath
    message: str
    hint: str | None = None
    about: dict[str, str] = field(default_factory=dict)


class ComponentSettings(ConfigModel):
    """What every component has, whatever its driver."""

    pair_only: ClassVar[bool] = False
    """True when the component exists at exactly two sites: the primary and the secondary
    (a replicated database, a router that points at one of two backends)."""

    driver: str = Field(description="Which driver observes and acts on this component.")
    description: str = Field("", description="Free text for people reading the topology.")
    runs_on: str | dict[str, str] | None = Field(
        None,
        description="The machine (a key of hosts:) this component runs on: one name for "
        "every site (a router on the edge machine), or site -> name. Default: the "
        "site's runs_on, else local.",
    )
    _name: str = PrivateAttr(default="")

    @property
    def name(self) -> str:
        """The component's key in its service's ``components`` mapping."""
        return self._name

    @property
    def site_names(self) -> list[str]:
        """The sites this component exists at, in file order."""
        sites: dict[str, Any] = getattr(self, "sites", {})
        return list(sites)

    def site(self, name: str) -> Any:
        """The per-site settings of ``name``; ``FailbackError`` if the component is not there."""
        sites: dict[str, Any] = getattr(self, "sites", {})
        if name not in sites:
            where = ", ".join(sites) or "no site"
            raise FailbackError(
                f"component {self._name or '?'} has no site {name!r}",
                f"it exists at: {where}",
            )
        return sites[name]

    def problems(self) -> list[SettingsProblem]:
        """What is wrong with these settings beyond their types (two sites pointing at the
        same server...). ``config validate`` reports them with FILE:LINE."""
        return []

    def warnings(self) -> list[SettingsProblem]:
        """What works but cannot be made safe after a crash (reported, not refused)."""
        return []
