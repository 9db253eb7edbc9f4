"""The ``dns`` driver against a real BIND 9 (named), through the real CLI and engine.

One authoritative named and one caching resolver for the whole module, started by the
lab's own helpers (``failback.lab.dns``) in a temporary directory; the service ``app``
has one component, a weighted SRV name, so a failback shifts it in steps, each gate
waiting out the record's TTL until the resolver answers the new records. A second TSIG
key (``reader.``) is known to the server but not allowed to update: the update is then
refused at its step, after a plan that looked fine.

Nothing is a mock: queries, updates and TSIG signatures go to named over UDP and TCP.
"""

from __future__ import annotations

import base64
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from failback.config import load_topology
from failback.drivers.dns.client import (
    Answer,
    Zone,
    ask_authoritative,
    ask_resolver,
    replace_records,
)
from failback.drivers.dns.errors import KeyRefused, UpdateRefused
from failback.hosts import LocalHost
from failback.lab import dns as lab_dns
from failback.model.secrets import SecretRef
from tests.conftest import CliResult, run_cli

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("named") is None and not Path(lab_dns.NAMED_BIN).exists(),
                       reason="BIND 9 (named) is not installed: run `make setup`"),
]  # fmt: skip

NAME = "app.lab.test."
READER = "reader."


@pytest.fixture(scope="module")
def named(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab_dns.LabDns]:
    base = tmp_path_factory.mktemp("dns")
    (base / "secrets").mkdir(mode=0o700)
    h = LocalHost()
    avoid: set[int] = set()
    dns = lab_dns.LabDns(
        dir=str(base / "dns"), port=lab_dns.pick_port(avoid),
        resolver_port=lab_dns.pick_port(avoid), addresses=dict(lab_dns.LOCAL_ADDRESSES),
    )  # fmt: skip
    lab_dns.write_files(h, dns, "dc1")
    reader = base64.b64encode(secrets.token_bytes(32)).decode()
    key_file = Path(dns.dir) / "tsig.key"
    key_file.write_text(
        key_file.read_text() + f'key "{READER}" {{ algorithm hmac-sha256; secret "{reader}"; }};\n'
    )
    (base / "secrets" / "reader.secret").write_text(reader + "\n")
    dns = lab_dns.start(h, dns, avoid)
    try:
        yield dns
    finally:
        lab_dns.stop(h, dns)


def topology(
    tmp: Path, dns: lab_dns.LabDns, *, secret: str | None = None, key: str = "",
    file: str = "failback.yaml",
) -> Path:  # fmt: skip
    """Service ``app`` whose one component is the weighted SRV name (state in tmp/state,
    whichever ``file``)."""
    secret = secret or f"file:{dns.secret_file}"
    path = tmp / file
    path.write_text(f"""\
state_dir: {tmp / "state"}
sites: {{dc1: {{}}, dc2: {{}}}}
services:
  app:
    primary_site: dc1
    components:
      dns:
        driver: dns
        options:
          server: {dns.server}
          port: {dns.port}
          zone: {dns.zone}
          name: {NAME}
          type: SRV
          ttl: 1s
          key: {{name: {key or dns.key_name}, secret: "{secret}"}}
          resolver: "{dns.server}:{dns.resolver_port}"
        sites:
          dc1: {{target: web1.lab.test., port: 8001}}
          dc2: {{target: web2.lab.test., port: 8002}}
    policy:
      approval: none
      stability_window: 0s
      traffic_steps: [50, 100]
      bake_time: 0s
      observation_window: 0s
""")
    return path


def cli(config: Path, *args: str) -> CliResult:
    return run_cli(*args, "-c", str(config))


def ok(result: CliResult) -> Any:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.json()


def authoritative(config: Path) -> Answer:
    return ask_authoritative(Zone.of(load_topology(str(config)).service("app").components["dns"]))


def records(config: Path) -> set[str]:
    return set(authoritative(config).records)


def server_records(dns: lab_dns.LabDns) -> set[str]:
    """The SRV records as the server holds them, asked with the lab's own key."""
    zone = Zone(
        server=dns.server, port=dns.port, zone=dns.zone, name=NAME, rdtype="SRV",
        timeout=2.0, key_name=dns.key_name, algorithm=dns.algorithm,
        secret=SecretRef.parse(f"file:{dns.secret_file}"),
    )  # fmt: skip
    return set(ask_authoritative(zone).records)


WEB1 = "0 100 8001 web1.lab.test."
WEB2 = "0 100 8002 web2.lab.test."


def test_failover_then_failback_shifts_the_weights_and_waits_out_the_ttl(
    named: lab_dns.LabDns, tmp_path: Path
) -> None:
    config = topology(tmp_path, named)
    doc = ok(cli(config, "failover", "app", "--planned", "--yes", "--json"))
    assert doc["status"] == "succeeded", doc
    assert records(config) == {WEB2}
    assert authoritative(config).ttl == 1

    status = ok(cli(config, "status", "--json"))["services"][0]
    shares = {c["site"]: c["data"]["traffic_percent"] for c in status["components"]}
    assert shares == {"dc1": 0.0, "dc2": 100.0}

    doc = ok(cli(config, "failback", "app", "--yes", "--json"))
    assert doc["status"] == "succeeded", doc
    assert records(config) == {WEB1}
    steps = {s["id"]: s for s in doc["report"]["steps"]}
    assert [i for i in steps if i.startswith(("dns-", "gate-dns"))] == [
        "dns-dns-dc1-50", "gate-dns-dc1-50", "dns-dns-dc1-100", "gate-dns-dc1-100",
    ]  # fmt: skip
    for gate in ("gate-dns-dc1-50", "gate-dns-dc1-100"):
        assert steps[gate]["status"] == "done", steps[gate]
    # after each gate the caching resolver answered what the server held: its cached
    # answer had expired, which is what the gate waited for
    resolver = ask_resolver(named.server, named.resolver_port, NAME, "SRV", 2.0)
    assert set(resolver.records) == {WEB1}


def test_the_half_step_sends_half_of_the_weight(named: lab_dns.LabDns, tmp_path: Path) -> None:
    """What the 50% step writes: both sites, equal weights (checked on the server)."""
    config = topology(tmp_path, named)
    zone = Zone.of(load_topology(str(config)).service("app").components["dns"])
    replace_records(zone, {"0 50 8001 web1.lab.test.", "0 50 8002 web2.lab.test."}, 1)
    status = ok(cli(config, "status", "--json"))["services"][0]
    shares = {c["site"]: c["data"]["traffic_percent"] for c in status["components"]}
    assert shares == {"dc1": 50.0, "dc2": 50.0}
    replace_records(zone, {WEB1}, 1)


def test_a_wrong_secret_is_refused_before_anything_changes(
    named: lab_dns.LabDns, tmp_path: Path
) -> None:
    wrong = base64.b64encode(secrets.token_bytes(32)).decode()
    (tmp_path / "wrong.secret").write_text(wrong + "\n")
    config = topology(tmp_path, named, secret=f"file:{tmp_path / 'wrong.secret'}")
    before = server_records(named)
    status = ok(cli(config, "status", "--json"))["services"][0]
    dns = [c for c in status["components"] if c["component"] == "dns"]
    assert all(not c["healthy"] and "BADSIG" in c["detail"] for c in dns), dns

    result = cli(config, "failover", "app", "--planned", "--yes")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and "BADSIG" in lines[0], lines
    assert lines[1].startswith("hint: ") and "nothing was changed" in lines[1], lines
    assert "Traceback" not in result.stdout + result.stderr
    assert wrong not in result.stdout + result.stderr
    assert ok(cli(config, "runs", "--json"))["runs"] == []
    assert server_records(named) == before


def test_an_update_the_server_refuses_rolls_the_failback_back(
    named: lab_dns.LabDns, tmp_path: Path
) -> None:
    """``reader.`` is a key the server knows (queries pass) but may not update with: the
    plan looks fine, the first traffic step is refused, and the run undoes nothing it
    did not do: the name is as it was."""
    good = topology(tmp_path, named)
    ok(cli(good, "failover", "app", "--planned", "--yes", "--json"))
    assert records(good) == {WEB2}
    config = topology(
        tmp_path, named, secret=f"file:{Path(named.dir).parent / 'secrets' / 'reader.secret'}",
        key=READER, file="reader.yaml",
    )  # fmt: skip
    result = cli(config, "failback", "app", "--yes", "--json")
    assert result.returncode != 0, result.stdout
    doc = result.json()
    assert doc["status"] == "rolled-back", doc
    assert "refused the update of app.lab.test. SRV: REFUSED" in doc["error"], doc
    # (the step's hint, the update-policy, is not carried to a rolled-back run's outcome
    # by the engine; the error names the server, the name and the answer)
    assert records(good) == {WEB2}
    # the same run with the right key goes home
    assert ok(cli(good, "failback", "app", "--yes", "--json"))["status"] == "succeeded"
    assert records(good) == {WEB1}


def test_the_client_names_the_key_and_never_shows_the_secret(named: lab_dns.LabDns) -> None:
    secret = Path(named.secret_file).read_text().strip()
    zone = Zone(
        server=named.server, port=named.port, zone=named.zone, name=NAME, rdtype="A",
        timeout=2.0, key_name="unknown-key.", algorithm="hmac-sha256",
        secret=_Ref(secret),
    )  # fmt: skip
    with pytest.raises(KeyRefused) as caught:
        replace_records(zone, {"127.0.9.9"}, 1)
    assert "BADKEY" in caught.value.message and "unknown-key." in caught.value.message
    assert secret not in caught.value.message + str(caught.value.hint)
    unsigned_is_refused = Zone(**{**zone.__dict__, "key_name": READER})
    with pytest.raises((KeyRefused, UpdateRefused)):
        replace_records(unsigned_is_refused, {"127.0.9.9"}, 1)


class _Ref:
    """A secret reference holding its value (as an inline ``SecretRef`` would)."""

    def __init__(self, value: str) -> None:
        self.value = value

    def resolve(self) -> str:
        return self.value

    def describe(self) -> str:
        return "inline:****"
