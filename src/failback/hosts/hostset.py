"""The machines of one topology, each connected on first use and kept open.

A run acts on several machines (the old primary's, the new primary's, the edge's).
Connecting once per machine and reusing the connection for every step keeps SSH
handshakes out of the write-unavailability window; closing the set closes them all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from failback.errors import UsageError
from failback.hosts.base import Host
from failback.hosts.local import LocalHost

__all__ = ["HostSet"]


LOCAL = "local"
"""The machine failback runs on: always in the set."""

Placement = Callable[[Any, str], str]
"""(component settings, site) -> the name of the machine it runs on there."""


def _everything_local(component: Any, site: str) -> str:
    return LOCAL


class HostSet:
    """Named machines; ``get(name)`` opens (once) and returns its ``Host``;
    ``for_component`` says where a component runs at a site (the topology decides)."""

    def __init__(
        self,
        openers: Mapping[str, Callable[[], Host]] | None = None,
        place: Placement = _everything_local,
    ) -> None:
        self._openers: dict[str, Callable[[], Host]] = {LOCAL: LocalHost, **(openers or {})}
        self._place = place
        self._open: dict[str, Host] = {}
        self._lock = threading.Lock()
        self._generation = 0
        """Bumped by ``close``: a warm-up started before it does not reopen a machine."""

    @property
    def names(self) -> list[str]:
        """Every machine this set can reach, in declaration order."""
        return list(self._openers)

    def get(self, name: str) -> Host:
        """The machine called ``name``, connected on first use (thread-safe)."""
        with self._lock:
            host = self._open.get(name)
            if host is not None:
                return host
            opener = self._openers.get(name)
            if opener is None:
                raise UsageError(
                    f"no host {name!r} in the topology",
                    f"declared hosts: {', '.join(self._openers)}",
                )
            host = opener()
            self._open[name] = host
            return host

    def for_component(self, component: Any, site: str) -> Host:
        """The machine ``component`` (its settings) runs on at ``site``."""
        return self.get(self._place(component, site))

    def name_for(self, component: Any, site: str) -> str:
        """The name of the machine ``component`` runs on at ``site``."""
        return self._place(component, site)

    def warm_up(self, names: list[str]) -> None:
        """Start connecting to ``names`` in the background and return at once.

        A run connects to every machine its steps will need before the first step, so
        no handshake lands inside the write-unavailability window; a machine that does
        not answer costs nothing here (its step meets the failure, once).
        """
        for name in dict.fromkeys(names):
            if name not in self._openers:
                continue
            threading.Thread(
                target=self._connect_quietly,
                args=(name, self._generation),
                name=f"connect-{name}",
                daemon=True,
            ).start()

    def _connect_quietly(self, name: str, generation: int) -> None:
        if generation != self._generation:
            return  # the set was closed since: nobody would close this connection
        try:
            host = self.get(name)
            connect = getattr(host, "connect", None)
            if callable(connect):
                connect()
        except Exception:  # the step that needs this machine reports the failure
            pass

    def cancel_commands(self, owner: int) -> int:
        """Cancel the commands thread ``owner`` runs on any machine connected so far
        (a run's step, when its abort is requested from elsewhere)."""
        with self._lock:
            opened = list(self._open.values())
        return sum(host.cancel_running(owner) for host in opened)

    def local(self) -> Host:
        """The machine failback runs on (declared checks run here)."""
        return self.get(LOCAL)

    def close(self) -> None:
        """Close every connection opened so far (a later ``get`` reconnects)."""
        with self._lock:
            opened, self._open = self._open, {}
            self._generation += 1
        for host in opened.values():
            close = getattr(host, "close", None)
            if callable(close):
                close()

    def __enter__(self) -> HostSet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
