"""Planned failbacks through PgBouncer under a writer, as one JSON document.

    python bench/failback_stall.py [--rounds N] [--dir DIR] [--hosts local|netns]

The client writes through PgBouncer (transaction pooling); each switch PAUSEs it,
switches the primary and RESUMEs, so the client should see a stall, never an error.
Prints failed client transactions, lost acknowledged writes, and the median / max
commit stall (longest gap between two acknowledged commits around each switch).
Exit status 1 if any acknowledged write was lost or a run failed. Figures only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from failback_downtime import run  # the shared round-trip driver


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="round trips (default 5)")
    parser.add_argument("--dir", type=Path, default=None, help="lab directory (new or empty)")
    parser.add_argument(
        "--hosts", choices=("local", "netns"), default="local",
        help="the lab's machines: all on 127.0.0.1, or one network namespace per site",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    doc, code = run(args.rounds, args.dir, endpoint="pool", hosts=args.hosts)
    stall = doc["write_unavailability_s"]["client_seen"]
    json.dump(
        {
            "benchmark": "failback_stall",
            "rounds": args.rounds,
            "client_endpoint": "pgbouncer",
            "hosts": args.hosts,
            "failed_client_transactions": doc["client_failed_writes"],
            "lost_acknowledged_writes": doc["lost_acknowledged_writes"],
            "commit_stall_s": stall,
            "run_measured_write_unavailability_s": doc["write_unavailability_s"]["run_measured"],
            "all_runs_succeeded": doc["all_runs_succeeded"],
            "switches": doc["switches"],
            "total_s": doc["total_s"],
        },
        sys.stdout,
        indent=2,
    )
    sys.stdout.write("\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
