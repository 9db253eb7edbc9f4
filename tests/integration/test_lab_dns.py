"""``failback lab up --dns``: the service's name follows every failover and failback.

One lab for the module, made through the real CLI (``lab up --dns --json``): real
PostgreSQL, HAProxy, PgBouncer and two BIND 9 ``named`` processes (the zone's primary
and a caching resolver), children of the lab. Failover and failback run through the
CLI; the name is then asked from the authoritative server itself. The lab's TSIG secret
is looked for in every output, in the journal's events, in the API's answers and in
the journal file: it must be nowhere. A wrong secret refuses a run before anything
changes, with one line and a hint.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from failback.api import ApiServer, resolve_settings
from failback.config import load_topology
from failback.drivers.dns.client import ask_resolver
from failback.hosts import LocalHost
from failback.lab import dns as lab_dns
from failback.lab import lab_break, lab_repair, lab_status
from failback.lab.info import load_info
from tests.conftest import CliResult, run_cli
from tests.integration.labfixtures import Lab, lab_base

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(lab_dns.NAMED_BIN).exists(),
                       reason="BIND 9 (named) is not installed: run `make setup`"),
]  # fmt: skip

TOKEN = "dns-lab-api-token-7c1e"


@pytest.fixture(scope="module")
def made() -> Iterator[tuple[Lab, dict[str, Any]]]:
    """The lab, and the document ``lab up --dns --json`` printed."""
    with lab_base("fb-dns-") as root:
        result = run_cli("lab", "up", "--dir", str(root / "lab"), "--dns", "--json", timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        info = load_info(LocalHost(), root / "lab")
        yield Lab(info=info, base=root), result.json()


@pytest.fixture(scope="module")
def lab(made: tuple[Lab, dict[str, Any]]) -> Lab:
    return made[0]


@pytest.fixture(scope="module")
def seen() -> list[str]:
    """Every text failback showed in this module: the secret is looked for in all of it."""
    return []


def secret(lab: Lab) -> str:
    assert lab.info.dns is not None
    return Path(lab.info.dns.secret_file).read_text().strip()


def answer(lab: Lab) -> list[str]:
    """The name as the authoritative server answers it."""
    dns = lab.info.dns
    assert dns is not None
    return sorted(ask_resolver(dns.server, dns.port, dns.name, "A", 2.0).records)


def site_address(lab: Lab, site: str) -> list[str]:
    assert lab.info.dns is not None
    return [lab.info.dns.addresses[site]]


def cli(lab: Lab, seen: list[str], *args: str) -> CliResult:
    result = lab.cli(*args, timeout=300)
    seen.append(result.stdout + result.stderr)
    return result


def ok(result: CliResult) -> Any:
    assert result.returncode == 0, result.stdout + result.stderr
    doc = result.json()
    if isinstance(doc, dict) and "status" in doc and "run_id" in doc:
        assert doc["status"] == "succeeded", doc
    return doc


def test_lab_up_describes_the_dns_and_the_name_answers_dc1(
    made: tuple[Lab, dict[str, Any]], seen: list[str]
) -> None:
    lab, doc = made
    seen.append(json.dumps(doc))
    assert {"server", "port", "zone", "name"} <= set(doc["dns"])
    assert (doc["dns"]["server"], doc["dns"]["zone"], doc["dns"]["name"]) == (
        "127.0.0.1", "lab.test.", "app.lab.test.",
    )  # fmt: skip
    assert answer(lab) == site_address(lab, "dc1")
    status = lab_status(lab.dir)
    assert status["up"] and status["dns"]["up"] and status["dns"]["site"] == "dc1", status
    topology = load_topology(str(lab.config)).service("app").components["dns"]
    assert topology.options.key.secret.describe().startswith("file:")
    service = ok(cli(lab, seen, "status", "app", "--json"))["services"][0]
    dns = {c["site"]: c for c in service["components"] if c["component"] == "dns"}
    assert dns["dc1"]["role"] == "active" and dns["dc2"]["role"] == "standby", dns
    assert "resolver agrees" in dns["dc1"]["detail"] or "resolver" in dns["dc1"]["data"]


def test_the_name_follows_failover_and_failback(lab: Lab, seen: list[str]) -> None:
    lab_break(lab.dir, "dc1", "db")
    ok(cli(lab, seen, "failover", "app", "--yes", "--json"))
    assert answer(lab) == site_address(lab, "dc2")

    lab_repair(lab.dir, "dc1", "db")
    doc = ok(cli(lab, seen, "failback", "app", "--yes", "--json"))
    assert answer(lab) == site_address(lab, "dc1")
    steps = {s["id"]: s for s in doc["report"]["steps"]}
    # address records move whole: only at the last traffic step, after the switchover
    assert steps["dns-dns-dc1-100"]["status"] == "done"
    assert steps["gate-dns-dc1-100"]["status"] == "done"
    assert "dns-dns-dc1-50" not in steps
    assert list(steps).index("dns-dns-dc1-100") > list(steps).index("promote-dc1")
    # the resolver clients ask answered home once the gate had waited out the TTL
    assert lab.info.dns is not None
    assert set(steps["gate-dns-dc1-100"]["output"]["resolver"]) == set(site_address(lab, "dc1"))


def test_the_secret_is_in_no_output_event_answer_or_journal(lab: Lab, seen: list[str]) -> None:
    key = secret(lab)
    runs = ok(cli(lab, seen, "runs", "--json"))["runs"]
    assert runs, "the flow test made runs"
    for run in runs:
        cli(lab, seen, "run", "show", str(run["id"]), "--json")
    cli(lab, seen, "plan", "failover", "app", "--json")
    cli(lab, seen, "validate", "--json")
    seen.append(json.dumps(lab_status(lab.dir)))
    seen.append(lab.config.read_text())

    settings = resolve_settings(
        load_topology(lab.config), listen="127.0.0.1:0", environ={"FAILBACK_API_TOKEN": TOKEN}
    )
    server = ApiServer(settings, log_level="warning").start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            paths = ["/api/v1/status", "/api/v1/services/app", "/api/v1/topology",
                     "/api/v1/runs", "/api/v1/events", "/metrics"]  # fmt: skip
            for run in runs:
                paths += [f"/api/v1/runs/{run['id']}", f"/api/v1/runs/{run['id']}/events",
                          f"/api/v1/runs/{run['id']}/report"]  # fmt: skip
            for path in paths:
                response = client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
                assert response.status_code == 200, (path, response.text)
                seen.append(response.text)
    finally:
        server.stop()

    shown = "\n".join(seen)
    assert "app.lab.test." in shown  # the name is shown: the search looks where it should
    assert key not in shown
    journal = b"".join(p.read_bytes() for p in (lab.dir / "state").glob("journal.sqlite3*"))
    assert journal and key.encode() not in journal


def test_a_wrong_key_is_refused_clearly_and_changes_nothing(lab: Lab, seen: list[str]) -> None:
    assert lab.info.dns is not None
    secret_file = Path(lab.info.dns.secret_file)
    saved = secret_file.read_text()
    runs_before = len(lab.runs())
    name_before = answer(lab)
    wrong = "d3JvbmcgYnV0IHdlbGwgZm9ybWVkIGJhc2U2NCBrZXkgZm9yIHRlc3Q="
    try:
        secret_file.write_text(wrong + "\n")
        result = cli(lab, seen, "failover", "app", "--planned", "--yes")
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
        error, hint = result.stderr.strip().splitlines()  # one line, and its hint
        assert error.startswith("error: ") and hint.startswith("hint: "), result.stderr
        assert "BADSIG" in error and "failback-lab." in error, error
        assert str(secret_file) in hint and "nothing was changed" in hint, hint
        assert wrong not in result.stdout + result.stderr
        status = lab.status()
        dns = [c for c in status.doc["components"] if c["component"] == "dns"]
        assert all(not c["healthy"] and "BADSIG" in c["detail"] for c in dns), dns
        assert status.active_site == "dc1" and status.db("dc1")["role"] == "primary"
    finally:
        secret_file.write_text(saved)
    assert len(lab.runs()) == runs_before
    assert answer(lab) == name_before == site_address(lab, "dc1")


def test_lab_down_stops_named(made: tuple[Lab, dict[str, Any]]) -> None:
    lab, _doc = made
    assert lab.info.dns is not None
    pids = lab_dns.pids(LocalHost(), lab.info.dns)
    assert all(pid is not None for pid in pids.values())
    result = run_cli("lab", "down", "--dir", str(lab.dir), "--json")
    assert result.returncode == 0, result.stderr
    assert {"named@auth", "named@resolver"} <= set(result.json()["stopped"])
    assert all(p is None for p in lab_dns.pids(LocalHost(), lab.info.dns).values())
    assert shutil.which("true")  # the module's lab_base purges the directory afterwards
