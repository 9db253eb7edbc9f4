"""HAProxy and PgBouncer names: the loader and the runtime apply one rule.

``failback validate`` must refuse exactly what the drivers would refuse at run time
(else a run fails half-way on a name the file was "valid" with), and the runtime must
still refuse what the loader refuses (a run's saved topology, a caller that is not
the loader). Both sides call the same functions (drivers/*/names.py); these tests
compare the two sides on arbitrary text.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from failback.drivers.haproxy.errors import HaproxyError
from failback.drivers.haproxy.runtime import HaproxyRuntime, _check_name
from failback.drivers.haproxy.settings import HaproxyOptions, HaproxySite
from failback.drivers.pgbouncer.admin import PgbouncerError, _ident
from failback.drivers.pgbouncer.settings import (
    PgbouncerComponent,
    PgbouncerOptions,
    PgbouncerSite,
)
from failback.drivers.pgbouncer.target import database_lines

names = st.one_of(
    st.text(max_size=70),
    st.text(alphabet="abcXYZ019_.:-/ ;=#'\"\n\té", max_size=70),
    st.from_regex(r"[A-Za-z0-9_.:/-]{1,300}", fullmatch=True),
)


def config_value(build: object, field: str) -> str | None:
    """The value the loader keeps (it strips surrounding spaces), None when it refuses."""
    try:
        model = build()  # type: ignore[operator]
    except ValidationError:
        return None
    value = getattr(model, field)
    return str(value[0] if isinstance(value, list) else value)


def config_accepts(build: object) -> bool:
    return config_value(build, "__class__") is not None


def runtime_accepts(check: object) -> bool:
    try:
        check()  # type: ignore[operator]
    except (HaproxyError, PgbouncerError):
        return False
    return True


# --- haproxy --------------------------------------------------------------------------------


def agree(name: str, kept: str | None, runtime: object) -> None:
    """What the loader keeps, the runtime takes; what the runtime takes, the loader keeps."""
    if kept is not None:
        assert runtime(kept), f"valid in the file, refused at run time: {kept!r}"  # type: ignore[operator]
    if runtime(name):  # type: ignore[operator]
        assert kept == name, f"refused by validate, fine at run time: {name!r}"


@settings(max_examples=300, deadline=None)
@given(names)
def test_haproxy_names_config_and_runtime_agree(name: str) -> None:
    def runtime(value: str) -> bool:
        return runtime_accepts(lambda: _check_name("server", value))

    agree(name, config_value(lambda: HaproxySite(server=name), "server"), runtime)
    backend = config_value(lambda: HaproxyOptions(socket="/s", backend=name), "backend")
    agree(name, backend, runtime)


def test_haproxy_rule_is_haproxys_own() -> None:
    assert config_accepts(lambda: HaproxySite(server="pg-dc1.a:b_2"))
    for bad in ("pg dc1", "pg/dc1", "a;shutdown sessions", "é", "a\nb"):
        assert not config_accepts(lambda bad=bad: HaproxySite(server=bad))  # type: ignore[misc]
        with pytest.raises(HaproxyError):
            HaproxyRuntime("/nonexistent").set_weight("be", bad, 1)


# --- pgbouncer ------------------------------------------------------------------------------


def component(databases: list[str], host: str, dbname: str | None) -> PgbouncerComponent:
    """The real model, built without validation: what an unchecked caller could pass."""
    options = PgbouncerOptions.model_construct(
        host="127.0.0.1",
        port=6432,
        admin_user="a",
        databases=databases,
        databases_file="/f",
    )
    site = PgbouncerSite.model_construct(host=host, port=5432, dbname=dbname)
    return PgbouncerComponent.model_construct(
        driver="pgbouncer", options=options, sites={"dc1": site}
    )


@settings(max_examples=300, deadline=None)
@given(names)
def test_pgbouncer_database_names_config_and_runtime_agree(name: str) -> None:
    def console(value: str) -> bool:
        return runtime_accepts(lambda: _ident(value))

    def pooled(value: str) -> bool:
        return runtime_accepts(lambda: database_lines(component([value], "h", None), "dc1"))

    def on_server(value: str) -> bool:
        if not value:  # no dbname means "the pooled name" at run time; the file omits the key
            return False
        return runtime_accepts(lambda: database_lines(component(["app"], "h", value), "dc1"))

    options = {"port": 6432, "admin_user": "a", "databases_file": "/f"}
    kept = config_value(lambda: PgbouncerOptions(databases=[name], **options), "databases")
    agree(name, kept, console)
    agree(name, kept, pooled)
    kept = config_value(lambda: PgbouncerSite(host="h", port=1, dbname=name), "dbname")
    agree(name, kept, on_server)


@settings(max_examples=300, deadline=None)
@given(names)
def test_pgbouncer_hosts_config_and_runtime_agree(host: str) -> None:
    def runtime(value: str) -> bool:
        return runtime_accepts(lambda: database_lines(component(["app"], value, None), "dc1"))

    agree(host, config_value(lambda: PgbouncerSite(host=host, port=5432), "host"), runtime)


def test_pgbouncer_values_that_would_change_the_databases_file_are_refused() -> None:
    assert database_lines(component(["app", "my-db"], "/var/run/pg", "app.v2"), "dc1") == {
        "app": "host=/var/run/pg port=5432 dbname=app.v2",
        "my-db": "host=/var/run/pg port=5432 dbname=app.v2",
    }
    for databases, host, dbname in (
        (["app\nevil = host=10.6.6.6"], "h", None),
        (["app"], "10.0.0.1 sslmode=disable", None),
        (["app"], "h", "app user=postgres"),
        (["a" * 64], "h", None),
    ):
        with pytest.raises(PgbouncerError):
            database_lines(component(databases, host, dbname), "dc1")


def test_pgbouncer_console_names_are_quoted() -> None:
    """PgBouncer reads an unquoted console argument as [0-9a-z_]+: 'PAUSE my-db' is a
    syntax error there, 'PAUSE "my-db"' is not (tests/integration/test_driver_names.py)."""
    assert _ident("my-db") == '"my-db"' and _ident("app") == '"app"'
    with pytest.raises(PgbouncerError):
        _ident('a"b')
