"""Settings of a ``command`` component: the operator's scripts per action and site."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    PlainValidator,
    ValidationInfo,
    field_validator,
    model_validator,
)

from failback.model.component import ComponentSettings, SettingsProblem
from failback.model.durations import PositiveDuration, parse_duration
from failback.model.fields import ConfigModel, NonEmptyStr
from failback.model.secrets import SecretRef

COMMAND_ACTIONS = ("observe", "promote", "demote", "fence", "unfence", "sync", "verify")
"""What a command component can do at a site, in the order a failback uses them."""

MUTATING_COMMAND_ACTIONS = ("promote", "demote", "fence", "unfence", "sync")
"""Command actions that change something (``observe`` and ``verify`` only look)."""

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class CommandAction(ConfigModel):
    """A shell command for one action, with an optional idempotence check and undo.

    Written either as a string (the command) or as a mapping; both become this model.
    """

    run: NonEmptyStr = Field(description="Command that performs the action.")
    check: NonEmptyStr | None = Field(
        None, description="Command that exits 0 when the action is already done (skip run)."
    )
    undo: NonEmptyStr | None = Field(None, description="Command that reverses the action.")
    undo_check: NonEmptyStr | None = Field(
        None,
        description="Command that exits 0 only when the undo's effect is in place (the "
        "action's effect is gone): asked after a crash inside the undo, so that it is not "
        "run twice. Any other outcome (a failure, a timeout) means 'cannot tell': the undo "
        "runs again.",
    )
    timeout: PositiveDuration | None = Field(
        None, description="Overrides the component's timeout for this action."
    )

    @model_validator(mode="after")
    def _undo_check_needs_undo(self) -> CommandAction:
        if self.undo_check and not self.undo:
            raise ValueError("undo_check proves an undo took effect: declare the undo as well")
        return self


def _action_from_text(value: Any) -> Any:
    return {"run": value} if isinstance(value, str) else value


Action = Annotated[
    CommandAction,
    BeforeValidator(_action_from_text, json_schema_input_type=str | CommandAction),
]


_SECRET_PREFIXES = ("env:", "file:", "inline:")


def _env_value(value: Any, info: ValidationInfo) -> str | SecretRef:
    """Text, or a secret by reference when it starts with ``env:``/``file:``/``inline:``."""
    if isinstance(value, SecretRef):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError("must be text (quote it), or a secret reference: env:NAME or file:/path")
    value = value.strip()
    if value.startswith(_SECRET_PREFIXES):
        return SecretRef.from_config(value, info)
    return value


EnvValue = Annotated[str | SecretRef, PlainValidator(_env_value, json_schema_input_type=str)]
"""A command's environment value: text, or ``env:NAME`` / ``file:/path`` (a secret,
read when the command runs and masked in everything failback shows)."""


class CommandOptions(ConfigModel):
    """How the command driver runs its commands."""

    timeout: PositiveDuration = Field(
        parse_duration("30s"), description="Default time limit of each command."
    )
    shell: NonEmptyStr = Field("/bin/sh", description="Shell that runs each command (-c).")
    env: dict[str, EnvValue] = Field(
        default_factory=dict,
        description=(
            "Environment variables for every command, on top of PATH, the locale and "
            "FAILBACK_*: nothing else of failback's environment reaches a command. A value "
            "env:NAME or file:/path is a secret, read when the command runs and masked as "
            "**** in its journaled output."
        ),
    )

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str | SecretRef]) -> dict[str, str | SecretRef]:
        bad = [name for name in env if not _ENV_NAME.match(name)]
        if bad:
            raise ValueError(
                f"not a valid environment variable name: {', '.join(map(repr, bad))} "
                "(letters, digits and '_', not starting with a digit)"
            )
        return env


class CommandSite(ConfigModel):
    """The commands of one site; an action left out is something this site never does."""

    observe: Action | None = Field(None, description="Exits 0 when the site is healthy.")
    promote: Action | None = Field(None, description="Makes this site active.")
    demote: Action | None = Field(None, description="Makes this site passive.")
    fence: Action | None = Field(None, description="Stops this site taking traffic or writes.")
    unfence: Action | None = Field(None, description="Reverses fence.")
    sync: Action | None = Field(None, description="Brings this site's data up to date.")
    verify: Action | None = Field(None, description="Exits 0 when the site is ready to serve.")
    fences_site: bool = Field(
        False,
        description="This site's fence stops the whole site taking writes (a power-off, "
        "a cloud stop), proven by its check: in an unplanned failover a database at this "
        "site whose machine and server no longer answer is then taken as fenced. Needs "
        "fence with a check.",
    )

    @property
    def actions(self) -> dict[str, CommandAction]:
        """The actions this site declares, by name, in the canonical order."""
        return {
            name: action for name in COMMAND_ACTIONS if (action := getattr(self, name)) is not None
        }


class CommandComponent(ComponentSettings):
    """Anything driven by scripts: a VIP, DNS, a web tier, a cloud API."""

    driver: Literal["command"]
    options: CommandOptions = Field(default_factory=CommandOptions)  # type: ignore[arg-type]
    sites: dict[str, CommandSite] = Field(description="Per-site commands: site -> actions.")

    def problems(self) -> list[SettingsProblem]:
        found = [
            SettingsProblem(
                ("sites", site),
                "no action is declared for this site",
                "declare observe, promote, demote, fence, unfence, sync or verify; "
                "or remove the site",
            )
            for site, settings in self.sites.items()
            if not settings.actions
        ]
        found += [
            SettingsProblem(
                ("sites", site, "fences_site"),
                "a site fence needs a fence command with a check that proves it held",
                "declare fence: {run: ..., check: ...} at this site, or drop fences_site",
            )
            for site, settings in self.sites.items()
            if settings.fences_site and (settings.fence is None or not settings.fence.check)
        ]
        return found

    def warnings(self) -> list[SettingsProblem]:
        """A mutating command without ``check:``: when the runner dies while it runs,
        nothing can tell on resume whether it took effect; running it again could apply
        the effect twice, skipping it could leave it undone, so the run waits for a
        person."""
        found = [
            SettingsProblem(
                ("sites", site, action),
                f"{action} has no check: if failback dies while it runs, resume cannot "
                "tell whether it took effect and waits for a person",
                f"add check: a command that exits 0 once the {action} is in place",
                about={"site": site, "action": action},
            )
            for site, settings in self.sites.items()
            for action, configured in settings.actions.items()
            if action in MUTATING_COMMAND_ACTIONS and not configured.check
        ]
        found += [
            SettingsProblem(
                ("sites", site, action, "undo"),
                f"{action}'s undo has no undo_check: if failback dies while the undo runs, "
                "the undo is run again",
                "make the undo safe to run twice, or add undo_check: a command that exits 0 "
                f"once the {action}'s effect is gone",
                about={"site": site, "action": action},
            )
            for site, settings in self.sites.items()
            for action, configured in settings.actions.items()
            if configured.undo and not configured.undo_check
        ]
        return found
