"""The optional ``api:`` section: where ``failback serve`` listens and how it is protected.

Every key is optional: without the section the API listens on 127.0.0.1:8080 (never on
a public address unless told), takes its token from ``$FAILBACK_API_TOKEN`` only, and
speaks plain HTTP. The token itself never appears in the file: ``token_file`` names a
file that holds it, so the topology can be committed and pasted like any other.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator, model_validator

from failback.model.fields import ConfigModel

__all__ = ["DEFAULT_LISTEN", "MIN_TOKEN_LENGTH", "ApiConfig", "parse_listen"]

DEFAULT_LISTEN = "127.0.0.1:8080"
MIN_TOKEN_LENGTH = 16
"""Shorter API tokens can be guessed; ``head -c 24 /dev/urandom | base64`` gives 32."""
_TOKEN_READ_LIMIT = 4096


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port); ValueError says what is wrong.

    Port 0 asks the system for a free port (tests, and a monitor beside other servers).
    """
    value = text.strip()
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected HOST:PORT such as {DEFAULT_LISTEN} (got {text!r})")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"the port must be a number from 0 to 65535 (got {port_text!r})")
    return host, int(port_text)


class ApiConfig(ConfigModel):
    """``failback serve``: listen address, token file, TLS certificate and key."""

    listen: str = Field(
        DEFAULT_LISTEN,
        description="HOST:PORT the HTTP API and dashboard listen on. Default: 127.0.0.1:8080 "
        "(this machine only); choose another address on purpose.",
    )
    token_file: Path | None = Field(
        None,
        description="File holding the bearer token that mutating endpoints require "
        "(relative to this file's directory). $FAILBACK_API_TOKEN takes precedence.",
    )
    tls_cert: Path | None = Field(
        None, description="PEM certificate: serve HTTPS (needs tls_key too)."
    )
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert.")

    @field_validator("listen")
    @classmethod
    def _listen_is_host_port(cls, value: str) -> str:
        parse_listen(value)
        return value

    @field_validator("token_file", "tls_cert", "tls_key")
    @classmethod
    def _relative_to_config(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        context = info.context if isinstance(info.context, dict) else {}
        base = Path(context.get("config_dir") or Path.cwd())
        return Path(base, value.expanduser()).absolute()

    @field_validator("token_file")
    @classmethod
    def _token_long_enough(cls, value: Path | None) -> Path | None:
        """A token file this user can read must hold a token of ``MIN_TOKEN_LENGTH``
        characters at least (one it cannot read, or that is missing, is left to
        ``failback serve``, which says why at start-up). The message never shows it."""
        if value is None:
            return None
        try:
            with open(value, "rb") as handle:
                token = handle.read(_TOKEN_READ_LIMIT).decode("utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return value
        if token and len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"the token in {value} is {len(token)} characters long: it must have at least"
                f" {MIN_TOKEN_LENGTH} (generate one with: head -c 24 /dev/urandom | base64)"
            )
        return value

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> ApiConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both, or neither")
        return self
