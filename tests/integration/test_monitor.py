"""The monitor as a real process over a real lab (GitHub issue 4).

``failback lab up --auto`` (automatic policies, stability window 3 s, hold-down 30 s)
starts PostgreSQL dc1 + dc2 behind HAProxy; ``failback monitor`` runs as a subprocess,
exactly as systemd would run it, writing its events as JSON lines to a log file. The
test breaks things with ``lab break`` (SIGKILL of a postmaster) and ``lab repair``.
Webhook receivers are real HTTP servers on 127.0.0.1 (one answers, one never does).

Waits are bounded polls on what the monitor reports (its events, ``failback status``),
generous enough for a loaded machine; no assertion is about elapsed time (the
benchmark bench/failover_rto.py measures that).
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from failback.config import load_topology
from failback.drivers.haproxy.router import HaproxyRouter
from failback.drivers.pgbouncer.target import database_lines, pgbouncer_of
from failback.hosts import LocalHost
from failback.lab import lab_break, lab_repair, lab_status, lab_up
from failback.lab.probe import WriteProbe
from tests.conftest import failback_argv, run_cli
from tests.integration.labfixtures import QUICK_WINDOWS, SERVICE, Lab, lab_base, set_windows

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- helpers


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = 90.0) -> Any:
    """Poll until ``predicate`` returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        time.sleep(0.1)


@dataclass
class MonitorProcess:
    """``failback monitor`` in a subprocess, and its JSON-lines event log."""

    lab: Lab
    proc: subprocess.Popen[bytes]
    log: Path

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                event = json.loads(line)
                if kind is None or event["kind"] == kind:
                    out.append(event)
        return out

    def wait_event(self, kind: str, *, after: int = 0, timeout: float = 90.0) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            assert self.proc.poll() is None, f"monitor exited: {self.log.read_text()[-2000:]}"
            return next((e for e in self.events(kind) if (e["id"] or 0) > after), None)

        try:
            return dict(wait_for(f"event {kind} after id {after}", found, timeout))
        except AssertionError as exc:
            tail = "\n".join(
                f"  {e['id']} {e['kind']}: {e['message'][:200]}" for e in self.events()[-25:]
            )
            raise AssertionError(f"{exc}; the monitor's last events:\n{tail}") from None

    def last_id(self) -> int:
        return max((e["id"] or 0 for e in self.events()), default=0)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


@contextlib.contextmanager
def monitor(lab: Lab) -> Iterator[MonitorProcess]:
    log = lab.dir / "monitor-events.jsonl"
    err = open(lab.dir / "monitor.stderr", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        failback_argv("monitor", "-c", str(lab.config), "--log-file", str(log)),
        stdout=subprocess.DEVNULL,
        stderr=err,
    )
    mon = MonitorProcess(lab, proc, log)
    try:
        mon.wait_event("monitor.started", timeout=60)
        # every probe has reported at least once: the monitor's view is complete
        wait_for("first health records", lambda: len(monitor_doc(lab)["health"]) >= 6)
        yield mon
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        err.close()


def status_doc(lab: Lab) -> dict[str, Any]:
    result = run_cli("status", SERVICE, "--json", "-c", str(lab.config), timeout=60)
    assert result.returncode == 0, result.stderr
    return dict(result.json()["services"][0])


def monitor_doc(lab: Lab) -> dict[str, Any]:
    return dict(status_doc(lab)["monitor"])


def auto_lab(
    root: Path,
    *,
    sync: bool = False,
    webhooks: list[dict[str, Any]] | None = None,
    windows: dict[str, str] | None = QUICK_WINDOWS,
) -> Lab:
    """``lab up --auto``; its policy windows shortened unless ``windows=None``."""
    lab = set_windows(Lab(info=lab_up(root / "lab", sync=sync, auto=True), base=root), windows)
    if webhooks:
        doc = yaml.safe_load(lab.config.read_text())
        doc["notifications"] = {"webhooks": webhooks}
        lab.config.write_text(yaml.safe_dump(doc, sort_keys=False))
    return lab


def runs_of(lab: Lab, kind: str) -> list[dict[str, Any]]:
    return [r for r in lab.runs() if r["kind"] == kind]


def fence_run(lab: Lab, fenced: dict[str, Any], *, active: str = "dc2") -> dict[str, Any]:
    """The ``fence`` run a ``stale_primary.fenced`` event names, as ``failback run show
    --json`` shows it; it is listed by ``failback runs --json`` and it succeeded."""
    run_id = fenced["data"]["run_id"]
    assert run_id is not None and fenced["run_id"] == run_id, fenced
    listed = {r["id"]: r for r in runs_of(lab, "fence")}
    assert listed[run_id]["status"] == "succeeded", listed
    shown = lab.run_show(run_id)
    assert shown["run"]["kind"] == "fence" and shown["run"]["status"] == "succeeded"
    assert (shown["plan"]["from_site"], shown["plan"]["to_site"]) == (
        fenced["data"]["site"], active
    )  # fmt: skip
    return dict(shown)


def on_site(lab: Lab, site: str, ids: list[int]) -> set[int]:
    with lab.connect(site) as conn:
        rows = conn.execute("SELECT id FROM failback_probe WHERE id = ANY(%s)", (ids,)).fetchall()
    return {int(r[0]) for r in rows}


# --------------------------------------------------------------------------- webhook servers


@dataclass
class Receiver:
    """A real HTTP server that records every JSON body POSTed to it."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def kinds(self) -> list[str]:
        return [str(b["kind"]) for b in list(self.bodies)]


@contextlib.contextmanager
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            rec.bodies.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    rec.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=rec.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        rec.server.shutdown()
        rec.server.server_close()


@contextlib.contextmanager
def dead_webhook() -> Iterator[str]:
    """A port that accepts TCP connections and never answers: each delivery hangs."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    finally:
        sock.close()


# --------------------------------------------------------------------------- tests


def test_monitor_fails_over_fences_and_fails_back_with_no_lost_write() -> None:
    """SIGKILL of the primary under a writer: automatic failover, writes resume through
    the router; the repaired old primary is fenced at once and resynced, and the service
    fails back by itself after the stability window without losing an acknowledged
    write. A live webhook gets every event; a dead one delays nothing."""
    with lab_base("fb-mon-") as root, receiver() as live, dead_webhook() as dead:
        lab = auto_lab(
            root,
            webhooks=[
                {"url": live.url, "timeout": "5s", "retries": 2},
                {"url": dead, "timeout": "120s", "retries": 0},
            ],
        )
        with monitor(lab) as mon:
            probe = WriteProbe(lab.info.dsn, interval=0.01).start()
            try:
                wait_for("first writes", lambda: len(probe.stats.acknowledged) > 20)
                mark = mon.last_id()
                lab_break(lab.dir, "dc1", "db")

                # automatic failover, while the dead webhook's first delivery still hangs
                detected = mon.wait_event("failure.detected", after=mark)
                assert detected["data"]["probe"] == "db@dc1"
                finished = mon.wait_event("failover.finished", after=mark)
                assert finished["data"]["status"] == "succeeded", finished
                assert not mon.events("webhook.failed"), "the dead webhook gave up already?"
                (run,) = runs_of(lab, "failover")
                assert run["status"] == "succeeded"
                # replication is asynchronous: a write dc1 acknowledged as it died may be
                # lost by the failover (the client may even read that reply a moment after
                # the kill); every write acknowledged once the failover finished is dc2's
                failed_over_at = float(finished["ts"])
                wait_for(
                    "writes after the failover", lambda: probe.stats.acked_ids(since=failed_over_at)
                )
                after_kill = probe.stats.acked_ids(since=failed_over_at)
                assert on_site(lab, "dc2", after_kill) == set(after_kill)
                assert lab_status(lab.dir)["router"]["write_target"] == "dc2"

                # the old primary returns believing it is primary: fenced, never routed
                mark = mon.last_id()
                lab_repair(lab.dir, "dc1", "db")
                repaired_at = time.time()
                fenced = mon.wait_event("stale_primary.fenced", after=mark)
                assert fenced["data"]["site"] == "dc1"
                assert lab_status(lab.dir)["router"]["servers"]["dc1"] == "maint"
                # fenced through a journaled run of kind fence: the router's own step
                fence = fence_run(lab, fenced)
                assert [(s["action"], s["site"]) for s in fence["plan"]["steps"]] == [
                    ("haproxy.fence", "dc1")  # the pool points at dc2: left alone
                ], fence["plan"]
                assert fence["run"]["steps"][0]["status"] in ("done", "skipped")
                try:
                    acked = probe.stats.acked_ids(since=repaired_at)
                    assert on_site(lab, "dc1", acked) == set(), "a client's write reached dc1"
                except psycopg.OperationalError:
                    # only acceptable when the failback already stopped dc1 to resync it
                    # (a write it had taken would then show as lost at the end)
                    assert mon.events("failback.started"), "dc1 unreachable, no failback"

                # ... resynced and failed back automatically after the stability window
                mon.wait_event("failback.waiting_stability", after=mark)
                done = mon.wait_event("failback.finished", after=mark, timeout=120)
                assert done["data"]["status"] == "succeeded", done
                lab.wait_home_end_state()
                time.sleep(0.3)  # the client keeps writing after the failback
            finally:
                stats = probe.stop()
            acked = stats.acked_ids()
            assert stats.acked_ids(since=repaired_at)
            assert probe.missing(stats.acked_ids(since=failed_over_at)) == [], (
                "lost by the failback"
            )
            (failback_run,) = runs_of(lab, "failback")
            assert failback_run["status"] == "succeeded"
            assert acked

            doc = monitor_doc(lab)
            assert doc["running"] and doc["failback"]["code"] == "home"
            assert doc["health"]["db@dc1"]["status"] == "passing"
            assert doc["health"]["db@dc1"]["history"], doc["health"]["db@dc1"]

            # every event the monitor logged reached the live webhook, in order
            logged = [e["kind"] for e in mon.events() if not e["kind"].startswith("webhook.")]
            wait_for("webhook deliveries", lambda: live.kinds()[: len(logged)] == logged)
            for kind in ("failure.detected", "failover.started", "failover.finished",
                         "stale_primary.fenced", "failback.waiting_stability",
                         "failback.started", "failback.finished"):  # fmt: skip
                assert kind in live.kinds(), (kind, live.kinds())
            assert mon.stop() == 0  # SIGTERM: clean exit, even with a delivery hanging
            assert mon.events("monitor.stopped")


def test_flapping_primary_does_not_oscillate() -> None:
    """Break, repair, (automatic failback), break again within hold_down: the second
    failover happens, but automatic failback is suspended with the reason shown until
    a person runs `failback auto enable`."""
    with lab_base("fb-flap-") as root:
        lab = auto_lab(root)
        with monitor(lab) as mon:
            lab_break(lab.dir, "dc1", "db")
            mon.wait_event("failover.finished")
            lab_repair(lab.dir, "dc1", "db")
            mon.wait_event("failback.finished", timeout=120)
            lab.wait_home_end_state()

            mark = mon.last_id()
            lab_break(lab.dir, "dc1", "db")  # again, well within hold_down (30 s)
            suspended = mon.wait_event("failback.suspended", after=mark)
            assert "flapped at" in suspended["message"]
            mon.wait_event("failover.finished", after=mark)
            lab_repair(lab.dir, "dc1", "db")
            mon.wait_event("stale_primary.fenced", after=mark)

            policy = yaml.safe_load(lab.config.read_text())["services"][SERVICE]["policy"]
            window = float(str(policy["stability_window"]).removesuffix("s"))

            def settled_and_suspended() -> bool:
                doc = monitor_doc(lab)
                dc1 = doc["health"]["db@dc1"]
                stable = dc1["status"] == "passing" and time.time() - dc1["passing_since"] > (
                    window + 1
                )
                return stable and doc["failback"]["code"] == "suspended"

            wait_for("dc1 stable beyond the window, failback suspended", settled_and_suspended)

            # the stale primary is routed again by hand: fenced again at once, journaled
            mark = mon.last_id()
            router = HaproxyRouter(lab.info.router.socket)
            router.set_state(lab.info.router.backend, "dc1", "ready")
            refenced = mon.wait_event("stale_primary.fenced", after=mark)
            assert refenced["data"]["was_routed"] is True, refenced
            fence = fence_run(lab, refenced)
            (step,) = fence["run"]["steps"]
            assert (step["id"], step["status"]) == ("fence-router-dc1", "done"), step
            state = router.server_state(lab.info.router.backend, "dc1")
            assert not state.takes_new_sessions, state
            assert lab_status(lab.dir)["router"]["servers"]["dc1"] == "maint"

            # the pool is pointed at the stale primary by hand: its clients are held by
            # the pool's own step, which no undo may let go towards the stale primary
            mark = mon.last_id()
            pool = load_topology(lab.config).service(SERVICE).components["pool"]
            bouncer = pgbouncer_of(pool)
            bouncer.retarget(LocalHost(), database_lines(pool, "dc1"))
            held = mon.wait_event("stale_primary.fenced", after=mark)
            assert held["data"]["was_routed"] is True, held
            fence = fence_run(lab, held)
            steps = {s["id"]: s for s in fence["run"]["steps"]}
            assert list(steps) == ["pause-pool-dc1", "fence-router-dc1"], steps
            assert steps["fence-router-dc1"]["status"] == "skipped"  # fenced a moment ago
            assert steps["pause-pool-dc1"]["status"] == "done"
            (pause,) = [s for s in fence["plan"]["steps"] if s["id"] == "pause-pool-dc1"]
            assert pause["params"]["undo"] is False and not pause["point_of_no_return"]
            targets = bouncer.targets()
            assert all(targets[name].paused for name in pool.options.databases), targets
            doc = monitor_doc(lab)
            assert doc["failback"]["reason"].startswith("suspended: flapped at"), doc["failback"]
            assert doc["auto_failback"]["enabled"] is False
            assert len(runs_of(lab, "failback")) == 1  # no oscillation
            assert status_doc(lab)["active_site"] == "dc2"
            shown = run_cli("status", "-c", str(lab.config))
            assert "suspended: flapped at" in shown.stdout

            # a person decides: automatic failback again
            result = run_cli("auto", "enable", "--yes", SERVICE, "-c", str(lab.config))
            assert result.returncode == 0, result.stderr
            mon.wait_event("failback.finished", after=mark, timeout=120)
            lab.wait_home_end_state()
            assert mon.stop() == 0
