"""The fake store: one directory per site, every file read and written through a Host.

A site's directory holds:

* ``data.json`` - the data, key -> value;
* ``position`` - how many writes the data holds (the replication position; a
  replica that has the same position as its source has the same data);
* ``role`` - ``primary`` (takes writes), ``replica`` (follows a source, refuses
  writes) or ``stopped`` (down: no reads, no writes; the files stay on disk, like a
  crashed server's data directory);
* ``follows`` - a replica's source: the directory of the site it copies from;
* ``fenced`` - present while the site must refuse writes whatever its role (the
  fence of a dead or returning site).

A real replica streams by itself; this one has no daemon, so it copies from its
source when asked (``pull``): the driver's catch-up and replay steps ask. That makes
the order of steps observable: a replica promoted before it pulled the final position
has lost writes, which is what the integration test checks cannot happen.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field

from failback.hosts import Host

PRIMARY = "primary"
REPLICA = "replica"
STOPPED = "stopped"
ROLES = (PRIMARY, REPLICA, STOPPED)


class KvRefused(Exception):
    """The store refused a request (a write to a replica, a fenced or stopped site)."""


@dataclass(frozen=True)
class KvFacts:
    """One site's files as read at one moment (what ``observe`` reports)."""

    exists: bool
    role: str | None = None
    fenced: bool = False
    position: int = 0
    follows: str | None = None
    data: dict[str, str] = field(default_factory=dict)


class KvStore:
    """One site of the fake store, at ``path`` on ``host``."""

    def __init__(self, host: Host, path: str) -> None:
        self.host = host
        self.path = path

    def _file(self, name: str) -> str:
        return posixpath.join(self.path, name)

    def _read(self, name: str) -> str | None:
        file = self._file(name)
        return self.host.read_text(file).strip() if self.host.exists(file) else None

    # ---------------------------------------------------------------- reading

    def read(self) -> KvFacts:
        """Everything about the site; writes nothing."""
        if not self.host.exists(self.path):
            return KvFacts(exists=False)
        role = self._read("role")
        text = self._read("data.json")
        return KvFacts(
            exists=True,
            role=role if role in ROLES else None,
            fenced=self.host.exists(self._file("fenced")),
            position=int(self._read("position") or 0),
            follows=self._read("follows") or None,
            data=dict(json.loads(text)) if text else {},
        )

    def get(self, key: str) -> str | None:
        """A client's read: refused at a stopped site."""
        facts = self.read()
        if facts.role not in (PRIMARY, REPLICA):
            raise KvRefused(f"{self.path} is {facts.role or 'missing'}")
        return facts.data.get(key)

    # ---------------------------------------------------------------- clients

    def write(self, key: str, value: str) -> int:
        """A client's write, acknowledged once this returns: its new position.

        Refused unless the site is an unfenced primary.
        """
        facts = self.read()
        if facts.role != PRIMARY:
            raise KvRefused(f"{self.path} is {facts.role or 'missing'}, not the primary")
        if facts.fenced:
            raise KvRefused(f"{self.path} is fenced")
        data = {**facts.data, key: value}
        self._store(data, facts.position + 1)
        return facts.position + 1

    # ---------------------------------------------------------------- operations

    def create(self, role: str, *, follows: str | None = None) -> None:
        """A new, empty site (the lab's setup)."""
        self.host.make_dirs(self.path, mode=0o700)
        self._store({}, 0)
        self.set_role(role, follows=follows)

    def set_role(self, role: str, *, follows: str | None = None) -> None:
        """``primary``/``stopped`` forget the source; ``replica`` needs one."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        if role == REPLICA:
            if not follows:
                raise ValueError("a replica needs a source to follow")
            self.host.write_text(self._file("follows"), follows)
        elif self.host.exists(self._file("follows")) and role == PRIMARY:
            self.host.remove(self._file("follows"))
        self.host.write_text(self._file("role"), role)

    def fence(self) -> None:
        self.host.write_text(self._file("fenced"), "fenced by failback\n")

    def unfence(self) -> None:
        if self.host.exists(self._file("fenced")):
            self.host.remove(self._file("fenced"))

    def pull(self) -> int:
        """A replica copies its source when the source is ahead: its position after.

        The source's files are read even when it is stopped (a cleanly stopped
        primary has shipped everything it wrote); a missing source leaves the
        replica as it was.
        """
        facts = self.read()
        if facts.role != REPLICA or not facts.follows:
            return facts.position
        source = KvStore(self.host, facts.follows).read()
        if source.exists and source.position > facts.position:
            self._store(source.data, source.position)
            return source.position
        return facts.position

    def copy_from(self, source: KvStore) -> int:
        """Resync: become a replica of ``source`` with exactly its data (anything this
        site wrote that the source does not have is discarded)."""
        facts = source.read()
        if not facts.exists:
            raise KvRefused(f"{source.path} does not exist")
        self.host.make_dirs(self.path, mode=0o700)
        self._store(facts.data, facts.position)
        self.set_role(REPLICA, follows=source.path)
        return facts.position

    def _store(self, data: dict[str, str], position: int) -> None:
        # data first: a crash between the two leaves a position behind the data, which
        # the next pull repairs (never a position claiming data that is not there)
        self.host.write_text(self._file("data.json"), json.dumps(data, sort_keys=True))
        self.host.write_text(self._file("position"), str(position))
