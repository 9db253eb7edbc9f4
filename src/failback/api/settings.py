"""What ``failback serve`` needs before it listens: address, token, TLS, and the topology.

Resolved once, at start-up, so that a missing token file or a half-given TLS pair is
a clear message and exit 2 before anything listens (promise 5), not a 500 later.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from failback.config.api import DEFAULT_LISTEN, MIN_TOKEN_LENGTH, parse_listen
from failback.errors import UsageError

TOKEN_ENV = "FAILBACK_API_TOKEN"


def check_token(token: str, source: str) -> str:
    """``token`` when it is long enough; UsageError (exit 2, one line) when it is not.

    The message says how long it is, never what it is.
    """
    if len(token) < MIN_TOKEN_LENGTH:
        raise UsageError(
            f"the API token ({source}) is {len(token)} characters long: it must have at"
            f" least {MIN_TOKEN_LENGTH}",
            hint="generate one with: head -c 24 /dev/urandom | base64",
        )
    return token


@dataclass(frozen=True)
class ApiSettings:
    """Everything the app and the server are built from."""

    topology: Any
    state_dir: Path
    token: str | None = field(default=None, repr=False)
    host: str = "127.0.0.1"
    port: int = 8080
    tls_cert: Path | None = None
    tls_key: Path | None = None
    token_source: str = "none"

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @property
    def loopback_only(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"


def read_token_file(path: Path) -> str:
    """The token in ``path`` (surrounding whitespace dropped); UsageError says why not."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise UsageError(
            f"the API token file {path} does not exist",
            hint="create it (mode 0600) or fix api.token_file in the topology",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise UsageError(
            f"the API token file {path} cannot be read: {reason}",
            hint="make it readable by the user that runs failback serve (and no one else)",
        ) from None
    if not token:
        raise UsageError(f"the API token file {path} is empty", hint="write the token into it")
    return token


def resolve_settings(
    topology: Any,
    *,
    state_dir: Path | None = None,
    listen: str | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    environ: dict[str, str] | None = None,
) -> ApiSettings:
    """Command-line options first, then the topology's ``api:`` section, then defaults.

    The token comes from ``$FAILBACK_API_TOKEN``, else from ``api.token_file``; with
    neither, the API is read-only (every mutating request is refused). A token shorter
    than ``MIN_TOKEN_LENGTH`` is refused here, before anything listens (``failback
    serve`` and ``failback monitor --listen`` both resolve their settings here).
    """
    env = os.environ if environ is None else environ
    section = getattr(topology, "api", None)
    address = listen or (section.listen if section else DEFAULT_LISTEN)
    try:
        host, port = parse_listen(address)
    except ValueError as exc:
        raise UsageError(f"--listen: {exc}", hint=f"e.g. --listen {DEFAULT_LISTEN}") from None
    cert = tls_cert or (section.tls_cert if section else None)
    key = tls_key or (section.tls_key if section else None)
    if (cert is None) != (key is None):
        raise UsageError(
            "TLS needs both a certificate and its key",
            hint="give --tls-cert and --tls-key together (or api.tls_cert and api.tls_key)",
        )
    for what, path in (("certificate", cert), ("key", key)):
        if path is not None and not Path(path).is_file():
            raise UsageError(f"the TLS {what} {path} does not exist", hint="fix the path")
    token: str | None = env.get(TOKEN_ENV) or None
    source = f"${TOKEN_ENV}" if token else "none"
    if token is None and section is not None and section.token_file is not None:
        token = read_token_file(section.token_file)
        source = f"file {section.token_file}"
    if token is not None:
        check_token(token, source)
    return ApiSettings(
        topology=topology,
        state_dir=Path(state_dir or topology.state_dir),
        token=token,
        host=host,
        port=port,
        tls_cert=Path(cert) if cert else None,
        tls_key=Path(key) if key else None,
        token_source=source,
    )
