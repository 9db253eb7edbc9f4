"""The lab's stateless tier: a small real HTTP application, one instance per site.

Each request reads and writes the database through the lab's database endpoint
(PgBouncer), the way an application tier does; ``GET /health`` answers without the
database (HAProxy itself only TCP-checks the instances). While the site's *broken
flag* file exists the instance answers 500 to everything: `failback lab break SITE web`.

    python -m failback.lab.webapp --site dc1 --port 8081 --dsn-file F --broken-flag B
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import psycopg

from failback.http_server import LocalHTTPServer

TABLE = "web_hits"


class App:
    """State shared by the request handlers of one instance."""

    def __init__(self, site: str, dsn: str, broken_flag: Path) -> None:
        self.site = site
        self.dsn = dsn
        self.broken_flag = broken_flag
        self.local = threading.local()

    @property
    def broken(self) -> bool:
        return self.broken_flag.exists()

    def connection(self) -> psycopg.Connection[Any]:
        conn = getattr(self.local, "conn", None)
        if conn is None or conn.closed:
            conn = psycopg.connect(
                self.dsn, autocommit=True, connect_timeout=5, prepare_threshold=None
            )
            self.local.conn = conn
        return conn

    def hit(self) -> dict[str, Any]:
        """One read-write round trip, as an application request would make."""
        conn = self.connection()
        try:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY,"
                " site text NOT NULL, at timestamptz NOT NULL DEFAULT now())"
            )
            conn.execute(f"INSERT INTO {TABLE} (site) VALUES (%s)", (self.site,))
            row = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
        except psycopg.Error:
            conn.close()
            raise
        return {"site": self.site, "hits": int(row[0]) if row else 0}


def create_table(dsn: str) -> None:
    """Once, at start: concurrent CREATE TABLE IF NOT EXISTS can collide in pg_type."""
    conn = psycopg.connect(dsn, autocommit=True, connect_timeout=5, prepare_threshold=None)
    with conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(4242)")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY,"
            " site text NOT NULL, at timestamptz NOT NULL DEFAULT now())"
        )


def make_handler(app: App) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = (json.dumps(body) + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Site", app.site)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if app.broken:
                self._send(500, {"site": app.site, "error": "broken (lab break)"})
                return
            if self.path.startswith("/health"):
                self._send(200, {"site": app.site, "status": "ok"})
                return
            try:
                self._send(200, app.hit())
            except psycopg.Error as exc:
                self._send(503, {"site": app.site, "error": str(exc).strip()[:200]})

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="failback lab: one web tier instance")
    parser.add_argument("--site", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--dsn-file", type=Path, required=True)
    parser.add_argument("--broken-flag", type=Path, required=True)
    parser.add_argument("--pidfile", type=Path, required=True)
    args = parser.parse_args(argv)
    app = App(args.site, args.dsn_file.read_text().strip(), args.broken_flag)
    create_table(app.dsn)
    server = LocalHTTPServer((args.bind, args.port), make_handler(app))
    server.daemon_threads = True
    args.pidfile.write_text(f"{os.getpid()}\n")
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        args.pidfile.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
