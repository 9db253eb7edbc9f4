"""Free TCP ports below the kernel's ephemeral range, for labs that run side by side.

Ports 32768-60999 can be taken at any moment by another program's outgoing
connections (note 8 of postgres-switchover.md), so listening ports are picked
below 32768. A bind test only proves a port was free *now*: callers that start a
server on it must still retry on a clash, which ``pick_ports`` makes cheap.
"""

from __future__ import annotations

import random
import socket

from failback.errors import FailbackError

LOW, HIGH = 20000, 32767


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on host:port and it can be bound right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        return probe.connect_ex((host, port)) != 0


def pick_ports(count: int, *, host: str = "127.0.0.1", avoid: set[int] | None = None) -> list[int]:
    """``count`` distinct free ports in [20000, 32767], chosen at random.

    Random choice (rather than "the first free one") makes two labs started at
    the same moment unlikely to pick the same ports; the bind test rules out
    ports already in use.
    """
    rng = random.SystemRandom()
    chosen: list[int] = []
    taken = set(avoid or ())
    for _ in range(2000):
        if len(chosen) == count:
            return chosen
        port = rng.randint(LOW, HIGH)
        if port in taken:
            continue
        taken.add(port)
        if port_is_free(port, host):
            chosen.append(port)
    raise FailbackError(
        f"found only {len(chosen)} of {count} free TCP ports in {LOW}-{HIGH} on {host}",
        hint="stop some labs or servers listening on 127.0.0.1",
    )
