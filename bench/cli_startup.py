"""What a ``failback`` invocation costs before it does anything, as one JSON document.

    python bench/cli_startup.py [--rounds N]

Every command, and the shell completion typer answers with ``_FAILBACK_COMPLETE``,
pays for Python's start and the CLI's imports. Measured ``--rounds`` times each, in a
new process: ``failback --version``, ``failback --help``, and one completion request
(``failback run show --f<TAB>``). Also the import time of ``typer.completion`` (what
``--install-completion`` / ``--show-completion`` add to every start), from
``python -X importtime``. Wall-clock milliseconds (median, p95 by nearest rank).
Figures only; nothing is asserted (machines here are shared and noisy).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time

CLI = [sys.executable, "-m", "failback.cli.main"]


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=True, env=env, timeout=120)
    return (time.perf_counter() - started) * 1000


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return {"median_ms": round(statistics.median(ordered), 1), "p95_ms": round(p95, 1)}


def completion_import_ms() -> float:
    probe = "import failback.cli.main, typer.main as m; m.get_command(failback.cli.main.app)"
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", probe],
        capture_output=True, text=True, check=True, timeout=120,
    ).stderr  # fmt: skip
    for line in err.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s+typer\.completion$", line.strip())
        if match:
            return int(match.group(1)) / 1000
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    rounds = parser.parse_args().rounds
    complete_env = {**os.environ, "_FAILBACK_COMPLETE": "complete_bash",
                    "COMP_WORDS": "failback run show --f", "COMP_CWORD": "3"}  # fmt: skip
    cases = {
        "version": ([*CLI, "--version"], None),
        "help": ([*CLI, "--help"], None),
        "complete": (CLI, complete_env),
    }
    result: dict[str, object] = {"rounds": rounds}
    for name, (argv, env) in cases.items():
        timed(argv, env)  # warm the page cache
        result[name] = summary([timed(argv, env) for _ in range(rounds)])
    result["typer_completion_import_ms"] = round(completion_import_ms(), 2)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
