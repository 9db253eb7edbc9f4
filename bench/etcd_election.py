"""How long etcd answers no lease renewal when its raft leader dies, as one JSON document.

    python bench/etcd_election.py [--kills N] [--election-ms MS] [--heartbeat-ms MS]

Three etcd members (``/usr/bin/etcd``, Debian's 3.4) are started on 127.0.0.1 in a
temporary directory, with the lab's flags (``--pre-vote=true``) and the given raft
timings (default: the lab's, ``failback.lab.etcd``; etcd's own defaults are 1000 ms and
100 ms). One lease (TTL 3 s) is renewed through each member every 20 ms, each renewal
followed by a linearizable read, as a monitor's renewal is (``confirm_renewal``), with
0.25 s timeouts. ``--kills`` times: the raft leader's member is SIGKILLed; per
surviving member, the time from the kill until a renewal through it succeeded again
(``answers_again_s``); 3 s later the killed member is started again with its data
directory, and for 2 s every renewal through the two others is watched
(``unanswered_after_rejoin``) along with the raft term (``term_changed_by_rejoin``):
does a member that rejoins disturb the cluster?

Why it matters (docs/control-plane.md, "Size the lease"): a monitor that leads stops
acting ``lease_ttl - safety_margin`` after the last renewal it sent; an etcd election
longer than that, minus a renewal period, makes it step down. Figures only; nothing is
asserted. Everything started is stopped and the directory removed at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from failback.lab.etcd import ELECTION_MS, ETCD, HEARTBEAT_MS
from failback.lab.ports import pick_ports

NAMES = ("m1", "m2", "m3")
TIMEOUT_S = 0.25
EVERY_S = 0.02


class Cluster:
    """Three members on 127.0.0.1 with the given raft timings."""

    def __init__(self, base: Path, election_ms: int, heartbeat_ms: int) -> None:
        ports = pick_ports(2 * len(NAMES))
        self.base = base
        self.client = {n: ports[2 * i] for i, n in enumerate(NAMES)}
        self.peer = {n: ports[2 * i + 1] for i, n in enumerate(NAMES)}
        self.timings = [f"--election-timeout={election_ms}", f"--heartbeat-interval={heartbeat_ms}"]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        cluster = ",".join(f"{n}=http://127.0.0.1:{self.peer[n]}" for n in NAMES)
        self.procs[name] = subprocess.Popen(
            [ETCD, f"--name={name}", f"--data-dir={self.base / name}",
             f"--listen-client-urls=http://127.0.0.1:{self.client[name]}",
             f"--advertise-client-urls=http://127.0.0.1:{self.client[name]}",
             f"--listen-peer-urls=http://127.0.0.1:{self.peer[name]}",
             f"--initial-advertise-peer-urls=http://127.0.0.1:{self.peer[name]}",
             f"--initial-cluster={cluster}", "--initial-cluster-token=bench",
             "--initial-cluster-state=new", "--pre-vote=true", *self.timings,
             "--logger=zap", "--log-outputs=stderr"],
            stdout=subprocess.DEVNULL, stderr=(self.base / f"{name}.log").open("ab"),
        )  # fmt: skip

    def alive(self, name: str) -> bool:
        return self.procs[name].poll() is None

    def post(self, name: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.client[name]}/v3{path}"
        answer = httpx.post(url, json=body, timeout=TIMEOUT_S)
        data = json.loads(answer.text.splitlines()[0])
        if "error" in data or answer.status_code >= 400:
            raise RuntimeError(str(data)[:120])
        return dict(data.get("result", data))

    def status(self, name: str) -> tuple[int, str] | None:
        """(raft term, leader's member name) as ``name`` sees them, None: no answer."""
        try:
            mine = self.post(name, "/maintenance/status", {})
        except (httpx.HTTPError, RuntimeError, ValueError):
            return None
        ids = {}
        for n in NAMES:
            try:
                ids[self.post(n, "/maintenance/status", {})["header"]["member_id"]] = n
            except (httpx.HTTPError, RuntimeError, ValueError, KeyError):
                continue
        return int(mine["raftTerm"]), ids.get(mine["leader"], "?")

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.kill()
            proc.wait()


class Renewals:
    """One thread per member renewing the lease and reading back: when each succeeded."""

    def __init__(self, cluster: Cluster, lease: str) -> None:
        self.cluster = cluster
        self.lease = lease
        self.ok: dict[str, list[float]] = {n: [] for n in NAMES}
        self.failed: dict[str, list[float]] = {n: [] for n in NAMES}
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._loop, args=(n,)) for n in NAMES]

    def _loop(self, name: str) -> None:
        while not self.stop.is_set():
            began = time.monotonic()
            if self.cluster.alive(name):
                try:
                    self.cluster.post(name, "/lease/keepalive", {"ID": self.lease})
                    self.cluster.post(name, "/kv/range", {"key": "YmVuY2g="})
                    self.ok[name].append(time.monotonic())
                except (httpx.HTTPError, RuntimeError, ValueError):
                    self.failed[name].append(began)
            time.sleep(max(0.0, EVERY_S - (time.monotonic() - began)))


def _round(cluster: Cluster, renewals: Renewals) -> dict[str, Any]:
    before = next(s for n in NAMES if (s := cluster.status(n)))
    term, victim = before
    killed_at = time.monotonic()
    cluster.procs[victim].kill()
    cluster.procs[victim].wait()
    time.sleep(3.0)
    survivors = [n for n in NAMES if n != victim]
    answers = {}
    for n in survivors:
        later = [t for t in renewals.ok[n] if t > killed_at]
        answers[n] = round(later[0] - killed_at, 3) if later else None
    term_before = max((s[0] for n in survivors if (s := cluster.status(n))), default=0)
    rejoined_at = time.monotonic()
    cluster.start(victim)
    time.sleep(2.0)
    unanswered = sum(1 for n in survivors for t in renewals.failed[n] if rejoined_at <= t)
    term_after = max((s[0] for n in NAMES if (s := cluster.status(n))), default=0)
    return {
        "raft_leader_killed": victim,
        "term": term,
        "answers_again_s": answers,
        "unanswered_after_rejoin": unanswered,
        "term_changed_by_rejoin": term_after != term_before,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--election-ms", type=int, default=ELECTION_MS)
    parser.add_argument("--heartbeat-ms", type=int, default=HEARTBEAT_MS)
    args = parser.parse_args()
    if not Path(ETCD).exists():
        print(json.dumps({"error": f"{ETCD} is not installed (apt-get install etcd-server)"}))
        return 2
    base = Path(tempfile.mkdtemp(prefix="fb-etcd-bench-"))
    cluster = Cluster(base, args.election_ms, args.heartbeat_ms)
    rounds: list[dict[str, Any]] = []
    renewals: Renewals | None = None
    started = time.time()
    try:
        for n in NAMES:
            cluster.start(n)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(cluster.status(n) for n in NAMES):
            time.sleep(0.2)
        lease = str(cluster.post("m1", "/lease/grant", {"TTL": 3})["ID"])
        renewals = Renewals(cluster, lease)
        for thread in renewals.threads:
            thread.start()
        for _ in range(args.kills):
            time.sleep(2.0)
            rounds.append(_round(cluster, renewals))
            print(json.dumps(rounds[-1]), file=sys.stderr, flush=True)
    finally:
        if renewals is not None:
            renewals.stop.set()
            for thread in renewals.threads:
                thread.join()
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    gaps = [g for r in rounds for g in r["answers_again_s"].values() if g is not None]
    print(
        json.dumps(
            {
                "benchmark": "etcd_election",
                "election_timeout_ms": args.election_ms,
                "heartbeat_ms": args.heartbeat_ms,
                "kills": len(rounds),
                "answers_again_s": {
                    "min": min(gaps, default=None),
                    "median": round(statistics.median(gaps), 3) if gaps else None,
                    "max": max(gaps, default=None),
                },
                "unanswered_after_rejoin": sum(r["unanswered_after_rejoin"] for r in rounds),
                "term_changed_by_rejoin": sum(r["term_changed_by_rejoin"] for r in rounds),
                "per_kill": rounds,
                "duration_s": round(time.time() - started, 1),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
