"""Component models, one per driver, chosen by the ``driver:`` key.

Each component has ``options`` shared by all its sites and ``sites``: the per-site
settings. The union is discriminated on ``driver`` so that a mistake is reported
against the one model the user meant, not as a pile of "did not match any of" errors.
Adding a driver (e.g. ``pgbouncer``) is one ``*Component`` class added to
``COMPONENT_MODELS`` and to the ``Component`` union below.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainValidator,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from failback.drivers.haproxy.names import NAME_RULE as HAPROXY_NAME_RULE
from failback.drivers.haproxy.names import name_problem as haproxy_name_problem
from failback.drivers.pgbouncer.names import (
    DATABASE_RULE,
    HOST_RULE,
    database_problem,
    host_problem,
)
from failback.errors import FailbackError
from failback.model.durations import PositiveDuration, Size, parse_duration, parse_size
from failback.model.secrets import SecretRef
from failback.model.settings import (
    AbsPath,
    ConfigModel,
    NonEmptyStr,
    Port,
    StrictInt,
)

__all__ = [
    "COMMAND_ACTIONS",
    "COMPONENT_MODELS",
    "CommandAction",
    "CommandComponent",
    "CommandOptions",
    "CommandSite",
    "Component",
    "ComponentBase",
    "HaproxyComponent",
    "HaproxyOptions",
    "HaproxySite",
    "PgbouncerComponent",
    "PgbouncerOptions",
    "PgbouncerSite",
    "PostgresComponent",
    "PostgresOptions",
    "PostgresSite",
]


class ComponentBase(ConfigModel):
    """What every component has, whatever its driver."""

    pair_only: ClassVar[bool] = False
    """True when the component exists at exactly two sites: the primary and the secondary
    (a replicated database, a router that points at one of two backends)."""

    driver: str = Field(description="Which driver observes and acts on this component.")
    description: str = Field("", description="Free text for people reading the topology.")
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


# --- postgres ---------------------------------------------------------------------------


class PostgresOptions(ConfigModel):
    """Settings shared by the PostgreSQL clusters of every site."""

    user: NonEmptyStr = Field("postgres", description="Role failback connects as.")
    password: SecretRef | None = Field(
        None, description="Password of `user`; omit for trust/peer/.pgpass authentication."
    )
    dbname: NonEmptyStr = Field("postgres", description="Database failback connects to.")
    replication_user: NonEmptyStr = Field(
        "postgres", description="Role the standby streams with; defaults to `user`."
    )
    replication_password: SecretRef | None = Field(
        None, description="Password of `replication_user`; defaults to none."
    )
    bin_dir: AbsPath | None = Field(
        None, description="Directory of pg_ctl, pg_rewind, pg_basebackup; found when omitted."
    )
    connect_timeout: PositiveDuration = Field(
        parse_duration("2s"), description="How long one connection attempt may take."
    )
    max_lag_bytes: Size = Field(
        parse_size("16MB"),
        description="Replication lag under which the switchover may start (catch-up done).",
    )
    catchup_timeout: PositiveDuration = Field(
        parse_duration("5m"), description="How long a returning site may take to catch up."
    )
    switchover_timeout: PositiveDuration = Field(
        parse_duration("30s"),
        description="How long writes may be paused while roles switch before giving up.",
    )

    @model_validator(mode="before")
    @classmethod
    def _replication_user_defaults_to_user(cls, data: Any) -> Any:
        if isinstance(data, dict) and "replication_user" not in data and "user" in data:
            return {**data, "replication_user": data["user"]}
        return data


class PostgresSite(ConfigModel):
    """Where one site's PostgreSQL cluster runs."""

    host: NonEmptyStr = Field("127.0.0.1", description="Address failback connects to.")
    port: Port = Field(description="TCP port PostgreSQL listens on at this site, e.g. 5432.")
    pgdata: AbsPath = Field(description="Data directory, e.g. /var/lib/postgresql/16/main.")
    os_user: NonEmptyStr | None = Field(
        None, description="OS user that owns pgdata and runs pg_ctl (e.g. postgres)."
    )
    conf_dir: AbsPath | None = Field(
        None,
        description="Where postgresql.conf lives when not in pgdata "
        "(Debian: /etc/postgresql/16/main).",
    )


class PostgresComponent(ComponentBase):
    """A PostgreSQL cluster with a primary at one site and a streaming standby at the other."""

    pair_only: ClassVar[bool] = True
    driver: Literal["postgres"]
    options: PostgresOptions = Field(default_factory=PostgresOptions)  # type: ignore[arg-type]
    sites: dict[str, PostgresSite] = Field(description="Per-site cluster: site name -> settings.")


# --- haproxy ----------------------------------------------------------------------------


class HaproxyOptions(ConfigModel):
    """The HAProxy backend whose servers failback enables, drains and weights."""

    socket: AbsPath = Field(description="HAProxy admin socket, e.g. /run/haproxy/admin.sock.")
    backend: NonEmptyStr = Field(description="Backend that holds one server per site.")
    timeout: PositiveDuration = Field(
        parse_duration("2s"), description="How long one admin-socket command may take."
    )
    tier: Literal["database", "stateless"] = Field(
        "database",
        description="database: the backend is the write endpoint of the database (one "
        "server takes traffic); stateless: a tier whose traffic failback shifts between the "
        "sites in steps by server weight, with health gates.",
    )
    endpoint: NonEmptyStr | None = Field(
        None,
        pattern=r"^[^\s:]+:[0-9]{1,5}$",
        description="host:port clients use (the frontend): failback writes through it to "
        "verify that writes land on the new primary.",
    )

    @field_validator("backend")
    @classmethod
    def _backend_name(cls, backend: str) -> str:
        return _haproxy_name("backend", backend)


class HaproxySite(ConfigModel):
    """The server of the backend that sends traffic to this site."""

    server: NonEmptyStr = Field(description="Server name inside the backend.")
    weight: Annotated[StrictInt, Field(ge=0, le=256)] | None = Field(
        None, description="Weight at full traffic (0..256); the server's own weight if omitted."
    )

    @field_validator("server")
    @classmethod
    def _server_name(cls, server: str) -> str:
        return _haproxy_name("server", server)


def _haproxy_name(kind: str, name: str) -> str:
    """The runtime's own rule (drivers/haproxy/names.py), checked before any run."""
    problem = haproxy_name_problem(kind, name)
    if problem is not None:
        raise ValueError(f"{problem}; {HAPROXY_NAME_RULE}")
    return name


class HaproxyComponent(ComponentBase):
    """An HAProxy backend that routes clients to the active site."""

    pair_only: ClassVar[bool] = True
    driver: Literal["haproxy"]
    options: HaproxyOptions
    sites: dict[str, HaproxySite] = Field(description="Per-site server: site name -> server.")


# --- pgbouncer --------------------------------------------------------------------------


def _pgbouncer_value(problem: str | None, rule: str) -> None:
    """The driver's own rules (drivers/pgbouncer/names.py), checked before any run."""
    if problem is not None:
        raise ValueError(f"{problem}; use {rule}")


def _pooled_name(name: str) -> str:
    _pgbouncer_value(database_problem(name), DATABASE_RULE)
    return name


PooledName = Annotated[NonEmptyStr, AfterValidator(_pooled_name)]
"""A database name PgBouncer pools (a ``[databases]`` key, a PAUSE/RESUME argument)."""


class PgbouncerOptions(ConfigModel):
    """The PgBouncer in front of the database: its admin console and the file failback owns.

    A switchover PAUSEs the pooled databases (clients' queries wait instead of failing),
    rewrites ``databases_file`` to point at the new primary, RELOADs and RESUMEs.
    """

    host: NonEmptyStr = Field("127.0.0.1", description="Where PgBouncer listens.")
    port: Port = Field(description="PgBouncer's port (clients and the admin console).")
    admin_user: NonEmptyStr = Field(description="A user listed in PgBouncer's admin_users.")
    admin_password: SecretRef | None = Field(None, description="Password of `admin_user`.")
    databases: list[PooledName] = Field(
        min_length=1, description="Pooled database names failback switches (PAUSE/RESUME)."
    )
    databases_file: AbsPath = Field(
        description="File holding the [databases] lines, included from pgbouncer.ini with "
        "%include; failback rewrites it to point at the primary."
    )
    os_user: NonEmptyStr | None = Field(
        None, description="Owner of `databases_file` (the OS user PgBouncer runs as)."
    )
    pause_timeout: PositiveDuration = Field(
        parse_duration("10s"),
        description="How long PAUSE may wait for running transactions before giving up.",
    )

    @field_validator("databases")
    @classmethod
    def _databases_once(cls, databases: list[str]) -> list[str]:
        if len(set(databases)) != len(databases):
            raise ValueError("lists the same database twice")
        return databases


class PgbouncerSite(ConfigModel):
    """Where the pooled databases live when this site is primary."""

    host: NonEmptyStr = Field(description="Database host of this site.")
    port: Port = Field(description="Database port of this site.")
    dbname: NonEmptyStr | None = Field(
        None, description="Database name on the server (default: the pooled name)."
    )

    @field_validator("host")
    @classmethod
    def _host(cls, host: str) -> str:
        _pgbouncer_value(host_problem(host), HOST_RULE)
        return host

    @field_validator("dbname")
    @classmethod
    def _dbname(cls, dbname: str | None) -> str | None:
        if dbname is not None:
            _pgbouncer_value(database_problem(dbname), DATABASE_RULE)
        return dbname


class PgbouncerComponent(ComponentBase):
    """A PgBouncer that routes clients' database traffic to the active site's primary."""

    pair_only: ClassVar[bool] = True
    driver: Literal["pgbouncer"]
    options: PgbouncerOptions
    sites: dict[str, PgbouncerSite] = Field(description="Per-site database target.")


# --- command ----------------------------------------------------------------------------

COMMAND_ACTIONS = ("observe", "promote", "demote", "fence", "unfence", "sync", "verify")
"""What a command component can do at a site, in the order a failback uses them."""

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
    timeout: PositiveDuration | None = Field(
        None, description="Overrides the component's timeout for this action."
    )


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

    @property
    def actions(self) -> dict[str, CommandAction]:
        """The actions this site declares, by name, in the canonical order."""
        return {
            name: action for name in COMMAND_ACTIONS if (action := getattr(self, name)) is not None
        }


class CommandComponent(ComponentBase):
    """Anything driven by scripts: a VIP, DNS, a web tier, a cloud API."""

    driver: Literal["command"]
    options: CommandOptions = Field(default_factory=CommandOptions)  # type: ignore[arg-type]
    sites: dict[str, CommandSite] = Field(description="Per-site commands: site -> actions.")


COMPONENT_MODELS: tuple[type[ComponentBase], ...] = (
    PostgresComponent,
    HaproxyComponent,
    PgbouncerComponent,
    CommandComponent,
)
"""Every component model; their ``driver`` literals are the known driver names."""

Component = Annotated[
    PostgresComponent | HaproxyComponent | PgbouncerComponent | CommandComponent,
    Field(discriminator="driver"),
]
"""A component of any driver; pydantic picks the model from ``driver:``."""
