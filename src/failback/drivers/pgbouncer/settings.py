"""Settings of a ``pgbouncer`` component: the pooler in front of the database."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, field_validator

from failback.drivers.pgbouncer.names import (
    DATABASE_RULE,
    HOST_RULE,
    database_problem,
    host_problem,
)
from failback.model.component import ComponentSettings
from failback.model.durations import PositiveDuration, parse_duration
from failback.model.fields import AbsPath, ConfigModel, NonEmptyStr, Port
from failback.model.secrets import SecretRef


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


class PgbouncerComponent(ComponentSettings):
    """A PgBouncer that routes clients' database traffic to the active site's primary."""

    pair_only: ClassVar[bool] = True
    driver: Literal["pgbouncer"]
    options: PgbouncerOptions
    sites: dict[str, PgbouncerSite] = Field(description="Per-site database target.")
