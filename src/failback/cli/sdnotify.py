"""systemd's readiness protocol (``Type=notify``), for ``failback monitor`` and ``serve``.

systemd passes ``$NOTIFY_SOCKET``, a unix datagram socket (a path, or ``@name`` in the
abstract namespace); the service sends ``READY=1`` once it really serves, so units
ordered after it start only then, and ``STOPPING=1`` when it begins to stop. Without
the variable (a terminal, a test) every call does nothing. A dozen lines of our own
rather than a dependency: the protocol is one ``sendto``.
"""

from __future__ import annotations

import os
import socket

STATES = {"ready": "READY=1", "stopping": "STOPPING=1", "alive": "WATCHDOG=1"}


def notify(message: str) -> bool:
    """Send ``message`` (``READY=1``...) to $NOTIFY_SOCKET; False when there is none."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode(), address)
    except OSError:  # systemd went away: nothing to tell, nothing to fail for
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings when the unit sets ``WatchdogSec=`` (half of
    it, as systemd advises), else None. Meant for this process only (``WATCHDOG_PID``)."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not os.environ.get("NOTIFY_SOCKET") or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec), 1) / 2e6
    except ValueError:
        return None


def lifecycle(state: str) -> None:
    """``ready`` / ``stopping`` / ``alive`` (the monitor's and the API server's words)."""
    message = STATES.get(state)
    if message is not None:
        extra = f"\nMAINPID={os.getpid()}" if state == "ready" else ""
        notify(message + extra)
