"""A client inside a site's machine, writing to that site's PostgreSQL directly (never
through the edge): what the netns control-plane test runs in dc1's namespace to see
whether a partitioned primary still acknowledges writes. One connection per write
(a fence that ends sessions must not hide behind a dead connection), one JSON line
per attempt on stdout: ``{"i", "t", "ok", "error"}`` with ``t`` the time of the ack.

Usage: python inside_writer.py DSN SECONDS
"""

from __future__ import annotations

import json
import sys
import time

import psycopg


def main() -> None:
    dsn, seconds = sys.argv[1], float(sys.argv[2])
    end = time.time() + seconds
    i = 0
    while time.time() < end:
        i += 1
        line: dict[str, object] = {"i": i}
        try:
            with psycopg.connect(dsn, connect_timeout=1, autocommit=True) as conn:
                conn.execute("INSERT INTO inside_writes (i) VALUES (%s)", (i,))
            line.update(ok=True, t=time.time())
        except psycopg.Error as exc:
            line.update(ok=False, t=time.time(), error=str(exc).splitlines()[0][:160])
        print(json.dumps(line), flush=True)
        time.sleep(0.02)


if __name__ == "__main__":
    main()
