"""Settings of a ``postgres`` component: a primary/standby pair of clusters."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from failback.model.component import ComponentSettings, SettingsProblem
from failback.model.durations import PositiveDuration, Size, parse_duration, parse_size
from failback.model.fields import AbsPath, ConfigModel, NonEmptyStr, Port
from failback.model.secrets import SecretRef


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
    capture_diverged: bool = Field(
        True,
        description="Keep logical slots (wal2json) on the primary so that a failback can "
        "read what an unplanned failover left behind before resyncing; needs "
        "wal_level=logical. Off: the failback asks for approval to resync a diverged site.",
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


class PostgresComponent(ComponentSettings):
    """A PostgreSQL cluster with a primary at one site and a streaming standby at the other."""

    pair_only: ClassVar[bool] = True
    driver: Literal["postgres"]
    options: PostgresOptions = Field(default_factory=PostgresOptions)  # type: ignore[arg-type]
    sites: dict[str, PostgresSite] = Field(description="Per-site cluster: site name -> settings.")

    def problems(self) -> list[SettingsProblem]:
        found = []
        seen: dict[tuple[str, int], str] = {}
        for site, settings in self.sites.items():
            where = (settings.host, settings.port)
            if where in seen:
                found.append(SettingsProblem(
                    ("sites", site, "port"),
                    f"site {site!r} points at the same server as site {seen[where]!r} "
                    f"({settings.host}:{settings.port})",
                    "each site needs its own PostgreSQL cluster",
                ))  # fmt: skip
            seen.setdefault(where, site)
        return found
