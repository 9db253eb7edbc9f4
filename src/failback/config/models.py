"""The topology: sites, and services made of components that move between them.

These models are what the rest of failback reads. They are frozen: the planner is a
pure function of the topology and the observed state, so nothing may change it after
loading. Names (of services, components) come from mapping keys and are attached to
the objects after validation so that code holding a ``Service`` knows which one it is.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from failback.config.api import ApiConfig
from failback.config.baseline import Baseline
from failback.config.check_settings import Check
from failback.config.control_plane import ControlPlane
from failback.config.drivers import Component, ComponentSettings
from failback.config.errors import ConfigWarning
from failback.config.hosts import LOCAL, HostSpec, open_hosts
from failback.config.notifications import Notifications
from failback.config.policy import Policy
from failback.errors import FailbackError, UsageError
from failback.hosts import HostSet
from failback.model.fields import ConfigModel

__all__ = ["Service", "Site", "Topology"]


def _did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    listed = ", ".join(choices) or "none"
    return f"did you mean {close[0]!r}? known: {listed}" if close else f"known: {listed}"


class Site(ConfigModel):
    """A place that can run services: a server, a data centre, a cloud region."""

    description: str = Field("", description="Free text: where it is, who runs it.")
    runs_on: str | None = Field(
        None,
        description="The machine (a key of hosts:) components at this site run on unless "
        "they say otherwise. Default: local, the machine failback runs on.",
    )


class Service(ConfigModel):
    """What users consume: components that move together between its sites."""

    primary_site: str = Field(description="The site the service belongs to and returns to.")
    description: str = Field("", description="Free text for people reading the topology.")
    components: dict[str, Component] = Field(
        description="Parts that move together: name -> component (one driver each)."
    )
    checks: list[Check] = Field(
        default_factory=list, description="Prechecks before a failback, post-checks after it."
    )
    policy: Policy = Field(default_factory=Policy)  # type: ignore[arg-type]
    _name: str = PrivateAttr(default="")

    @model_validator(mode="after")
    def _name_components(self) -> Service:
        for name, component in self.components.items():
            component._name = name
        return self

    @property
    def name(self) -> str:
        """The service's key in the topology's ``services`` mapping."""
        return self._name

    @property
    def sites(self) -> list[str]:
        """Every site the service's components exist at: the primary first, then file order."""
        seen = [self.primary_site]
        for component in self.components.values():
            seen.extend(s for s in component.site_names if s not in seen)
        return seen

    @property
    def secondary_site(self) -> str:
        """The site the service fails over to: the first non-primary site in component order."""
        others = self.sites[1:]
        if not others:
            raise FailbackError(
                f"service {self._name or '?'} has no site other than {self.primary_site}",
                "give its components a second site to fail over to",
            )
        return others[0]

    def other_site(self, site: str) -> str:
        """The site that is not ``site`` among the primary and secondary."""
        return self.secondary_site if site == self.primary_site else self.primary_site

    def component(self, name: str) -> ComponentSettings:
        """The component called ``name``; ``FailbackError`` with did-you-mean if missing."""
        if name not in self.components:
            raise UsageError(
                f"service {self._name or '?'} has no component {name!r}",
                _did_you_mean(name, list(self.components)),
            )
        return self.components[name]

    def checks_for(self, use: Literal["precheck", "postcheck"]) -> list[Check]:
        """The checks that run as ``use``, in file order."""
        return [c for c in self.checks if use in c.use]


class Topology(ConfigModel):
    """The whole topology file, plus where it came from.

    ``path``, ``text`` and ``config_dir`` are set by the loader (they are not keys of
    the file); ``text`` is what a run snapshots so that it can be reloaded later with
    ``load_topology_text`` even if the file changed since.
    """

    version: Literal[1] = Field(1, description="Format version; only 1 exists.")
    state_dir: Path = Field(
        Path(".failback"),
        validate_default=True,
        description="Where runs, journals and locks are kept; relative to this file's "
        "directory. Default: .failback beside this file.",
    )
    hosts: dict[str, HostSpec] = Field(
        default_factory=dict,
        description="The machines components run on and how to reach them (ssh or "
        "local). `local`, the machine failback runs on, needs no entry.",
    )
    sites: dict[str, Site] = Field(description="Every place that can run a service.")
    services: dict[str, Service] = Field(description="The services failback moves.")
    api: ApiConfig | None = Field(
        None, description="Optional: how `failback serve` listens (HTTP API, dashboard)."
    )
    control_plane: ControlPlane | None = Field(
        None,
        description="Optional: several monitors coordinated through etcd (one leader acts; "
        "runs survive the loss of the machine running them). Without it: one monitor, "
        "its journal in state_dir.",
    )
    notifications: Notifications = Field(
        default_factory=Notifications,  # type: ignore[arg-type]
        description="Optional: webhooks the monitor POSTs every event to.",
    )
    baseline: Baseline | None = Field(
        None,
        description="Optional: the files and command outputs hashed by `failback baseline "
        "record SITE`, compared by the clean_room gate of a failback after an incident.",
    )
    _path: Path = PrivateAttr(default_factory=lambda: Path("failback.yaml").absolute())
    _text: str = PrivateAttr(default="")
    _warnings: list[ConfigWarning] = PrivateAttr(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _drop_extension_keys(cls, data: object) -> object:
        # `x-name:` top-level keys hold YAML anchors (&pg) reused below, as in compose files.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not str(k).startswith("x-")}
        return data

    @field_validator("state_dir", mode="before")
    @classmethod
    def _state_dir_text(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty (omit it for .failback beside this file)")
        return value

    @field_validator("state_dir")
    @classmethod
    def _state_dir_absolute(cls, value: Path, info: ValidationInfo) -> Path:
        context = info.context if isinstance(info.context, dict) else {}
        base = Path(context.get("config_dir") or Path.cwd())
        return Path(base, value.expanduser()).absolute()

    @model_validator(mode="after")
    def _name_services(self) -> Topology:
        for name, service in self.services.items():
            service._name = name
        return self

    @property
    def path(self) -> Path:
        """Absolute path of the topology file."""
        return self._path

    @property
    def text(self) -> str:
        """The file's raw text, as loaded (may contain inline secrets: do not print it)."""
        return self._text

    @property
    def warnings(self) -> list[ConfigWarning]:
        """What the loader found safe enough to accept but worth a person's attention."""
        return list(self._warnings)

    @property
    def config_dir(self) -> Path:
        """Directory of the topology file; relative paths in it are relative to this."""
        return self._path.parent

    def service(self, name: str) -> Service:
        """The service called ``name``; ``FailbackError`` with did-you-mean if missing."""
        if name not in self.services:
            raise UsageError(
                f"no service {name!r} in {self._path.name}",
                _did_you_mean(name, list(self.services)),
            )
        return self.services[name]

    def host_name(self, component: ComponentSettings, site: str) -> str:
        """The machine ``component`` runs on at ``site``: its own ``runs_on`` (for that
        site, or for all), else the site's ``runs_on``, else ``local``."""
        runs_on = component.runs_on
        if isinstance(runs_on, str):
            return runs_on
        if isinstance(runs_on, dict) and site in runs_on:
            return runs_on[site]
        declared = self.sites.get(site)
        if declared is not None and declared.runs_on is not None:
            return declared.runs_on
        return LOCAL

    def open_hosts(self) -> HostSet:
        """Every machine of this topology, connected on first use (close it after)."""
        return open_hosts(self.hosts, self.host_name)

    def site_hosts(self, site: str) -> list[str]:
        """The machines of ``site``: those its services' components run on there, and the
        site's own ``runs_on``; in file order, each once."""
        names: list[str] = []
        for service in self.services.values():
            for component in service.components.values():
                if site in component.site_names:
                    names.append(self.host_name(component, site))
        declared = self.sites.get(site)
        if declared is not None and declared.runs_on is not None:
            names.append(declared.runs_on)
        return list(dict.fromkeys(names))

    def site(self, name: str) -> Site:
        """The site called ``name``; ``FailbackError`` with did-you-mean if missing."""
        if name not in self.sites:
            raise UsageError(
                f"no site {name!r} in {self._path.name}", _did_you_mean(name, list(self.sites))
            )
        return self.sites[name]
