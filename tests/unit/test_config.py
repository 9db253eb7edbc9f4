"""Tests of the topology loader: valid files load, every bad file is explained at FILE:LINE."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from failback.config import (
    ConfigError,
    Problem,
    SecretRef,
    Topology,
    format_duration,
    load_topology,
    load_topology_text,
    parse_duration,
    parse_size,
    topology_json_schema,
)
from failback.drivers.command.settings import CommandAction, CommandComponent
from failback.drivers.postgres.settings import PostgresComponent
from failback.errors import FailbackError

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "topologies"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
GOOD = sorted((DATA / "good").glob("*.yaml"))
BAD = sorted((DATA / "bad").glob("*.yaml"))
EXPECT = re.compile(r"^# expect: (\S+) (.+)$")

MINIMAL = """\
sites:
  dc1: {}
  dc2: {}
services:
  app:
    primary_site: dc1
    components:
      db:
        driver: postgres
        sites:
          dc1: {port: 5432, pgdata: /srv/pg1}
          dc2: {port: 5433, pgdata: /srv/pg2}
"""


def problems_of(text: str, path: str = "t.yaml") -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        load_topology_text(text, path)
    return info.value.problems


# --- valid files ------------------------------------------------------------------------


def test_there_are_examples_and_good_files() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"failback.yaml", "command-only.yaml"} <= names
    assert GOOD


@pytest.mark.parametrize("path", EXAMPLES + GOOD, ids=lambda p: p.name)
def test_valid_files_load(path: Path) -> None:
    topology = load_topology(path)
    assert isinstance(topology, Topology)
    assert topology.path == path.absolute()
    assert topology.text == path.read_text()
    assert topology.config_dir == path.parent.absolute()
    assert topology.state_dir.is_absolute()
    for name, service in topology.services.items():
        assert service.name == name
        assert service.primary_site in topology.sites
        assert service.secondary_site in topology.sites
        assert service.secondary_site != service.primary_site
        for comp_name, component in service.components.items():
            assert component.name == comp_name


def test_full_example_model() -> None:
    topology = load_topology(ROOT / "examples" / "failback.yaml")
    app = topology.service("app")
    assert (app.primary_site, app.secondary_site) == ("dc1", "dc2")
    assert app.other_site("dc2") == "dc1"
    db = app.component("db")
    assert isinstance(db, PostgresComponent)
    assert db.options.max_lag_bytes == 16 * 1024 * 1024
    assert db.options.catchup_timeout == 300.0
    assert db.options.password == SecretRef("env", "FAILBACK_PGPASSWORD")
    assert db.site("dc1").conf_dir == "/etc/postgresql/16/main"
    assert [c.name for c in app.checks_for("precheck")] == ["db-port", "api-health"]
    assert [c.name for c in app.checks_for("postcheck")] == [
        "api-health",
        "orders-readable",
        "smoke",
    ]
    vip = app.component("vip")
    assert isinstance(vip, CommandComponent)
    promote = vip.sites["dc1"].promote
    assert promote == CommandAction(
        run="/opt/failback/vip-up dc1",
        check="/opt/failback/vip-is-here dc1",
        undo="/opt/failback/vip-down dc1",
        undo_check="! /opt/failback/vip-is-here dc1",
        timeout=10.0,
    )
    assert vip.sites["dc1"].demote == CommandAction(run="/opt/failback/vip-down dc1")
    assert list(vip.sites["dc2"].actions) == ["observe", "promote", "demote", "fence"]
    assert app.policy.traffic_steps == [10, 25, 50, 100]
    assert app.policy.hold_down == 1800.0
    assert [c.name for c in app.components.values() if c.driver == "haproxy"] == ["router", "web"]
    assert app.component("web").options.tier == "stateless"
    pool = app.component("pool")
    assert pool.options.databases == ["orders"]
    assert pool.options.admin_password == SecretRef("env", "PGBOUNCER_ADMIN_PASSWORD")
    assert app.policy.traffic_gate.max_response_ms == 500


def test_defaults() -> None:
    topology = load_topology_text(MINIMAL, "/etc/failback/failback.yaml")
    assert topology.state_dir == Path("/etc/failback/.failback")
    assert topology.version == 1
    app = topology.service("app")
    db = app.components["db"]
    assert isinstance(db, PostgresComponent)
    options = db.options
    assert (options.user, options.replication_user, options.dbname) == (
        "postgres",
        "postgres",
        "postgres",
    )
    assert options.password is None
    assert options.connect_timeout == 2.0
    assert options.switchover_timeout == 30.0
    assert db.sites["dc1"].host == "127.0.0.1"
    policy = app.policy
    assert (policy.failover, policy.failback, policy.approval) == ("manual", "manual", "required")
    assert policy.stability_window == 300.0
    assert policy.bake_time == 30.0
    assert policy.observation_window == 300.0
    assert policy.max_failbacks_per_day == 3
    assert app.checks == []


def test_replication_user_defaults_to_user() -> None:
    text = MINIMAL.replace("driver: postgres", "driver: postgres\n        options: {user: fb}")
    db = load_topology_text(text, "t.yaml").service("app").components["db"]
    assert isinstance(db, PostgresComponent)
    assert db.options.replication_user == "fb"


def test_relative_state_dir_and_secret_file_resolve_against_config_dir() -> None:
    text = "state_dir: run/state\n" + MINIMAL.replace(
        "driver: postgres", "driver: postgres\n        options: {password: 'file:secrets/pg'}"
    )
    topology = load_topology_text(text, "/srv/conf/failback.yaml")
    assert topology.state_dir == Path("/srv/conf/run/state")
    db = topology.service("app").components["db"]
    assert isinstance(db, PostgresComponent)
    assert db.options.password is not None
    assert db.options.password.describe() == "file:/srv/conf/secrets/pg"


def test_topology_is_frozen() -> None:
    topology = load_topology_text(MINIMAL, "t.yaml")
    with pytest.raises(ValueError):
        topology.service("app").primary_site = "dc2"  # type: ignore[misc]


def test_service_lookup_suggests() -> None:
    topology = load_topology_text(MINIMAL, "t.yaml")
    with pytest.raises(FailbackError) as info:
        topology.service("ap")
    assert info.value.hint is not None and "'app'" in info.value.hint
    with pytest.raises(FailbackError):
        topology.service("app").component("bd")
    with pytest.raises(FailbackError):
        topology.site("dc9")


# --- the bad corpus ---------------------------------------------------------------------


def _expectations(path: Path) -> list[tuple[int | None, str]]:
    found = []
    for line in path.read_text().splitlines():
        match = EXPECT.match(line)
        if match:
            number, key = match.groups()
            found.append((None if number == "-" else int(number), "" if key == "-" else key))
    return found


def test_bad_corpus_is_large_enough() -> None:
    assert len(BAD) >= 20
    for path in BAD:
        assert _expectations(path), f"{path.name} has no '# expect: LINE key' header"


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_bad_file_is_explained_at_its_line(path: Path) -> None:
    shown = str(path.relative_to(ROOT))
    cwd = Path.cwd()
    os.chdir(ROOT)
    try:
        with pytest.raises(ConfigError) as info:
            load_topology(shown)
    finally:
        os.chdir(cwd)
    err = info.value
    found = {(p.line, p.key) for p in err.problems}
    for expected in _expectations(path):
        assert expected in found, f"expected {expected} among:\n{err.render()}"
    assert err.exit_code == 2
    assert isinstance(err, FailbackError)
    assert re.fullmatch(rf"{re.escape(shown)}: \d+ problems?", err.message)
    for problem in err.problems:
        assert problem.file == shown
        assert problem.message
        rendered = problem.render()
        assert rendered.startswith(shown)
        if problem.line is not None:
            assert rendered.startswith(f"{shown}:{problem.line}: ")
        assert "Traceback" not in rendered


def test_every_problem_is_listed_not_just_the_first() -> None:
    text = """\
sites:
  dc1: {}
  dc2: {}
services:
  app:
    primary_site: dc1
    components:
      db:
        driver: postgres
        options: {max_lag_bytes: huge, connect_timeout: -1}
        sites:
          dc1: {port: 0, pgdata: /srv/pg1}
          dc2: {port: 5433, pgdata: relative}
  web:
    primary_site: dc3
    components:
      lb:
        driver: haproxy
        options: {socket: /run/h.sock, backend: web}
        sites:
          dc1: {server: a}
          dc2: {server: b}
"""
    problems = problems_of(text)
    assert {(p.line, p.key) for p in problems} == {
        (10, "services.app.components.db.options.max_lag_bytes"),
        (10, "services.app.components.db.options.connect_timeout"),
        (12, "services.app.components.db.sites.dc1.port"),
        (13, "services.app.components.db.sites.dc2.pgdata"),
        # `web` validated on its own: its cross-reference problem is still reported.
        (15, "services.web.primary_site"),
    }


def test_undeclared_sites_are_reported_beside_type_errors() -> None:
    text = MINIMAL.replace("dc2: {port: 5433", "dc3: {port: x").replace(
        "primary_site: dc1", "primary_site: dc9"
    )
    problems = problems_of(text)
    assert {(p.line, p.key) for p in problems} == {
        (6, "services.app.primary_site"),
        (12, "services.app.components.db.sites.dc3"),
        (12, "services.app.components.db.sites.dc3.port"),
    }


def test_a_misspelt_required_key_is_one_problem() -> None:
    [problem] = problems_of(MINIMAL.replace("primary_site", "primary_stie"))
    assert (problem.line, problem.key) == (6, "services.app.primary_stie")
    assert problem.hint == "did you mean 'primary_site'?"


def test_value_errors_put_the_example_in_the_hint() -> None:
    [problem] = problems_of(MINIMAL + "    policy: {bake_time: 5 minutes}\n")
    assert problem.key == "services.app.policy.bake_time"
    assert problem.message == "'5 minutes' is not a duration"
    assert problem.hint and problem.hint.startswith("write e.g. 500ms")


def test_problem_rendering() -> None:
    problem = Problem("f.yaml", 3, "services.app.primary_site", "is wrong", "fix it")
    assert str(problem) == "f.yaml:3: services.app.primary_site: is wrong (hint: fix it)"
    assert Problem("f.yaml", None, "", "no such file", None).render() == "f.yaml: no such file"
    err = ConfigError([problem, Problem("f.yaml", 1, "x", "y", None)])
    assert err.message == "f.yaml: 2 problems"
    assert err.render().splitlines()[1] == "  f.yaml:1: x: y"
    assert err.to_dict()["problems"] == [
        {"file": "f.yaml", "line": 1, "key": "x", "message": "y", "hint": None},
        problem.to_dict(),
    ]
    single = ConfigError([problem])
    assert single.message == "f.yaml: 1 problem"
    assert single.hint == "fix it"


# --- whole-file problems ----------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_topology(tmp_path / "nope.yaml")
    [problem] = info.value.problems
    assert (problem.line, problem.key, problem.message) == (None, "", "no such file")
    assert problem.hint and "examples/failback.yaml" in problem.hint


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "failback.yaml").write_text(MINIMAL)
    with pytest.raises(ConfigError) as info:
        load_topology(tmp_path)
    [problem] = info.value.problems
    assert problem.line is None
    assert "directory" in problem.message
    assert problem.hint == f"did you mean {tmp_path / 'failback.yaml'}?"


def test_unreadable_file(tmp_path: Path) -> None:
    """Root reads any file, so as root the loader runs as ``nobody`` in a child process.

    In a directory ``nobody`` can traverse (pytest's tmp_path is 0700: there every
    file is unreachable, and the test would pass whatever the file's mode), beside a
    readable copy that must load: only the file's own mode can make the load fail."""
    path = tmp_path / "failback.yaml"
    path.write_text(MINIMAL)
    path.chmod(0)
    if os.geteuid() != 0:
        with pytest.raises(ConfigError) as info:
            load_topology(path)
        [problem] = info.value.problems
        assert "permission denied" in problem.message
        return
    import shutil
    import subprocess
    import sys
    import tempfile

    shared = Path(tempfile.mkdtemp(prefix="fb-unreadable-", dir="/tmp"))
    try:
        shared.chmod(0o755)
        readable, unreadable = shared / "readable.yaml", shared / "failback.yaml"
        readable.write_text(MINIMAL)
        readable.chmod(0o644)
        unreadable.write_text(MINIMAL)
        unreadable.chmod(0)
        code = (
            "import os, pwd, sys\n"
            "from failback.config import ConfigError, load_topology\n"
            "nobody = pwd.getpwnam('nobody')\n"
            # loaded once as root first: every module the loader imports lazily is
            # imported then (nobody may not read the interpreter's own library)
            f"load_topology({str(readable)!r})\n"
            "os.setgroups([]); os.setgid(nobody.pw_gid); os.setuid(nobody.pw_uid)\n"
            f"load_topology({str(readable)!r})\n"
            "print('readable copy loaded')\n"
            "try:\n"
            f"    load_topology({str(unreadable)!r})\n"
            "except ConfigError as exc:\n"
            "    print(exc.problems[0].message)\n"
            "    sys.exit(2)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
    finally:
        shutil.rmtree(shared)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "readable copy loaded" in result.stdout
    assert "permission denied" in result.stdout


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "failback.yaml"
    path.write_bytes(b"sites:\n  dc1: {description: \xff}\n")
    with pytest.raises(ConfigError) as info:
        load_topology(path)
    [problem] = info.value.problems
    assert problem.line == 2
    assert "UTF-8" in problem.message


@pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n", "---\n"])
def test_empty(text: str) -> None:
    [problem] = problems_of(text)
    assert (problem.line, problem.key) == (None, "")
    assert "empty" in problem.message


@pytest.mark.parametrize("text", ["42\n", "just text\n", "[1, 2]\n"])
def test_top_level_not_a_mapping(text: str) -> None:
    [problem] = problems_of(text)
    assert problem.line == 1
    assert "mapping" in problem.message


def test_recursive_alias_does_not_hang() -> None:
    problems = problems_of("a: &x [*x]\n")
    assert all(p.line is not None for p in problems)


def test_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    problems = problems_of("\n".join(lines) + "\n")
    assert any("too many" in p.message for p in problems)


@pytest.mark.parametrize(
    "text",
    ["sites: !!python/object:os.system {}\n", "sites: {a: !vault x}\n", "sites: !!omap []\n"],
)
def test_unknown_yaml_tag(text: str) -> None:
    problems = problems_of(text)
    assert any(p.line == 1 and "tag" in p.message for p in problems), problems


def test_yaml_merge_keys_are_not_duplicates() -> None:
    topology = load_topology(DATA / "good" / "anchors.yaml")
    db = topology.service("app").components["db"]
    assert isinstance(db, PostgresComponent)
    assert db.sites["dc2"].host == "10.0.0.2"
    assert db.sites["no"].os_user == "postgres"
    assert list(topology.sites) == ["no", "dc2"]


def test_unquoted_yaml_boolean_site_key_stays_a_name() -> None:
    text = MINIMAL.replace("dc2", "no")
    topology = load_topology_text(text, "t.yaml")
    assert topology.service("app").secondary_site == "no"


def test_snapshot_reload_uses_given_path() -> None:
    original = load_topology(ROOT / "examples" / "failback.yaml")
    again = load_topology_text(original.text, str(original.path))
    assert again == original
    assert again.path == original.path


def test_three_sites_secondary_is_first_non_primary() -> None:
    topology = load_topology(DATA / "good" / "three-sites.yaml")
    dns = topology.service("dns")
    assert dns.sites == ["dc1", "dc2", "dc3"]
    assert dns.secondary_site == "dc2"


def test_pair_components_must_share_the_same_two_sites() -> None:
    problems = problems_of(load_bad("36-mismatched-pair-sites.yaml"))
    assert any("dc1 and dc2" in p.message for p in problems)


def load_bad(name: str) -> str:
    return (DATA / "bad" / name).read_text()


# --- durations and sizes ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        ("2 m", 120.0),
        ("10", 10.0),
        (0, 0.0),
        (7, 7.0),
        (0.25, 0.25),
        ("0s", 0.0),
        ("5M", 300.0),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "bad", ["", "-5s", -1, "5 minutes", "s", "1y", "abc", True, "nan", float("inf"), "1h-5m"]
)
def test_parse_duration_refuses(bad: object) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(bad)  # type: ignore[arg-type]
    assert "e.g." in str(info.value) or "expected" in str(info.value)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512kB", 512 * 1024),
        ("16MB", 16 * 1024**2),
        ("1GB", 1024**3),
        ("1TB", 1024**4),
        ("16MiB", 16 * 1024**2),
        ("100B", 100),
        ("1.5GB", 1536 * 1024**2),
        ("4096", 4096),
        (0, 0),
        (123, 123),
        ("16mb", 16 * 1024**2),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "-1MB", -5, "lots", "16 megs", "MB", 1.5, False, "1PB"])
def test_parse_size_refuses(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_size(bad)  # type: ignore[arg-type]


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0.5, 30, 300, 5400, 86400, 0)] == [
        "500ms",
        "30s",
        "5m",
        "90m",
        "1d",
        "0s",
    ]


# --- secrets ----------------------------------------------------------------------------


def test_secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    ref = SecretRef.parse("env:FB_TEST_SECRET")
    monkeypatch.setenv("FB_TEST_SECRET", "s3cret")
    assert ref.resolve() == "s3cret"
    monkeypatch.delenv("FB_TEST_SECRET")
    with pytest.raises(FailbackError) as info:
        ref.resolve()
    assert "FB_TEST_SECRET" in info.value.message
    assert info.value.hint and "export FB_TEST_SECRET" in info.value.hint


def test_secret_file(tmp_path: Path) -> None:
    path = tmp_path / "pg.pass"
    path.write_text("hunter2\n")
    assert SecretRef.parse(f"file:{path}").resolve() == "hunter2"
    assert SecretRef.parse(str(path)).kind == "file"
    assert SecretRef.parse("file:pg.pass", tmp_path).resolve() == "hunter2"
    with pytest.raises(FailbackError) as info:
        SecretRef.parse(f"file:{tmp_path / 'missing'}").resolve()
    assert info.value.hint
    with pytest.raises(FailbackError):
        SecretRef.parse(f"file:{tmp_path}").resolve()  # a directory
    (tmp_path / "empty").write_text("")
    with pytest.raises(FailbackError):
        SecretRef.parse(f"file:{tmp_path / 'empty'}").resolve()


def test_inline_secret_is_never_shown() -> None:
    ref = SecretRef.parse("hunter2")
    assert ref.kind == "inline"
    assert ref.resolve() == "hunter2"
    for shown in (repr(ref), str(ref), ref.describe()):
        assert "hunter2" not in shown
    assert SecretRef.parse("inline:env:X").resolve() == "env:X"
    text = MINIMAL.replace(
        "driver: postgres", "driver: postgres\n        options: {password: hunter2}"
    )
    topology = load_topology_text(text, "t.yaml")
    assert "hunter2" not in repr(topology)
    assert "hunter2" not in json.dumps(topology.model_dump(mode="json"))


@pytest.mark.parametrize(
    "bad", ["env:", "env:1ABC", "env:MY-VAR", "file:", "evn:PGPASSWORD", "ENV:X", "vault:kv/pg", ""]
)
def test_bad_secret_refs(bad: str) -> None:
    with pytest.raises(ValueError) as info:
        SecretRef.parse(bad)
    assert "env:" in str(info.value) or "file:" in str(info.value)


def test_bad_secret_message_does_not_echo_value() -> None:
    text = MINIMAL.replace(
        "driver: postgres", "driver: postgres\n        options: {password: 'evn:Sup3rSecret'}"
    )
    [problem] = problems_of(text)
    assert "Sup3rSecret" not in problem.render()


# --- schema -----------------------------------------------------------------------------


def test_json_schema() -> None:
    schema = topology_json_schema()
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["title"] == "failback topology"
    assert set(schema["required"]) == {"sites", "services"}
    assert schema["additionalProperties"] is False
    defs = schema["$defs"]
    assert {"PostgresComponent", "HaproxyComponent", "CommandComponent", "Policy"} <= set(defs)
    components = defs["Service"]["properties"]["components"]["additionalProperties"]
    assert components["discriminator"]["propertyName"] == "driver"
    timeout = defs["HaproxyOptions"]["properties"]["timeout"]
    assert "anyOf" in timeout
    json.dumps(schema)  # serialisable


def test_docs_example_is_valid() -> None:
    """docs/topology.md opens with an example: it must stay a valid topology."""
    doc = (ROOT / "docs" / "topology.md").read_text()
    match = re.search(r"```yaml\n(.*?)```", doc, re.DOTALL)
    assert match is not None
    topology = load_topology_text(match.group(1), str(ROOT / "docs" / "failback.yaml"))
    assert topology.service("app").secondary_site == "dc2"
