"""PostgreSQL driver errors: one-line cause plus a hint, never a raw libpq traceback."""

from __future__ import annotations

from failback.errors import FailbackError, SafetyRefusal, StepFailed


class PgError(FailbackError):
    """Base class of every error the PostgreSQL driver raises on purpose."""


class PgUnreachable(PgError):
    """Nothing answered at host:port (refused, timed out, no route)."""


class PgAuthFailed(PgError):
    """The server answered but refused the user/password."""


class PgWrongDatabase(PgError):
    """The server answered but the configured database does not exist."""


class PgNotReady(PgError):
    """The server answered but is starting up, shutting down or in crash recovery."""


class PgWrongCluster(PgError, SafetyRefusal):
    """Two nodes that should hold the same data belong to different clusters."""


class PgCommandFailed(PgError, StepFailed):
    """A PostgreSQL program (initdb, pg_ctl, pg_rewind, pg_basebackup...) failed."""


class PgTimeout(PgError, StepFailed):
    """A wait (start, stop, promote, replay, catch-up) did not finish in time."""


class PgRewindFailed(PgCommandFailed):
    """pg_rewind could not run or failed; the caller may fall back to a re-clone."""


class PgStateError(PgError, StepFailed):
    """The node is not in the state the action needs (running / stopped / primary...)."""
