"""Secrets by reference: ``env:NAME``, ``file:/path`` or (allowed, discouraged) inline.

Topology files get committed, pasted into tickets and printed by ``failback plan``.
A ``SecretRef`` keeps the *reference* until a driver needs the value, and its
``repr``/``str``/serialised form never show an inline secret. A resolved value that
may come back in a command's output or a response is masked by a ``Redactor``.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, GetCoreSchemaHandler, GetJsonSchemaHandler, ValidationInfo
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from failback.errors import FailbackError

__all__ = ["MASK", "Redactor", "SecretRef", "secret_refs"]

SecretKind = Literal["env", "file", "inline"]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]{1,15}):(.*)$", re.DOTALL)
_UNSUPPORTED = {"vault", "aws", "gcp", "azure", "k8s", "kube", "secret", "secrets", "sops"}
_EXAMPLE = "write env:NAME, file:/path/to/secret, or inline:VALUE for a literal"


class SecretRef:
    """Where a secret lives; :meth:`resolve` reads it only when it is needed."""

    __slots__ = ("_value", "kind")

    def __init__(self, kind: SecretKind, value: str) -> None:
        self.kind: SecretKind = kind
        self._value = value

    @classmethod
    def parse(cls, text: str, base_dir: Path | None = None) -> SecretRef:
        """Read ``env:NAME``, ``file:PATH``, a bare absolute path, or an inline secret.

        A relative ``file:`` path is taken relative to ``base_dir`` (the directory of
        the topology file). ``inline:VALUE`` spells out a literal that would otherwise
        look like a reference. Raises ``ValueError`` with a hint; the message never
        contains the secret itself.
        """
        if text.startswith("env:"):
            name = text[4:].strip()
            if not _ENV_NAME.match(name):
                raise ValueError(
                    "env: must be followed by an environment variable name "
                    "(letters, digits, '_'), e.g. env:PGPASSWORD"
                )
            return cls("env", name)
        if text.startswith("file:"):
            raw = text[5:].strip()
            if not raw:
                raise ValueError(
                    "file: must be followed by a path, e.g. file:/etc/failback/pg.pass"
                )
            path = Path(raw).expanduser()
            if not path.is_absolute():
                if base_dir is None:
                    raise ValueError(f"file: needs an absolute path here (got {raw!r})")
                path = base_dir / path
            return cls("file", str(path))
        if text.startswith("inline:"):
            return cls("inline", text[7:])
        if text.startswith("/") and "\n" not in text and " " not in text:
            return cls("file", text)
        match = _SCHEME.match(text)
        if match:
            scheme = match.group(1)
            lowered = scheme.lower()
            if lowered in ("env", "file"):
                raise ValueError(f"write '{lowered}:' in lower case; {_EXAMPLE}")
            if lowered in _UNSUPPORTED:
                raise ValueError(f"'{scheme}:' secrets are not supported; {_EXAMPLE}")
            if difflib.get_close_matches(lowered, ["env", "file"], n=1, cutoff=0.6):
                raise ValueError(f"unknown secret reference '{scheme}:'; {_EXAMPLE}")
        if not text:
            raise ValueError(f"a secret cannot be empty; {_EXAMPLE}")
        return cls("inline", text)

    def resolve(self) -> str:
        """The secret's value; raises ``FailbackError`` (with a hint) when it is missing."""
        if self.kind == "inline":
            return self._value
        if self.kind == "env":
            value = os.environ.get(self._value)
            if value is None:
                raise FailbackError(
                    f"secret {self.describe()} is not set",
                    f"export {self._value}=... in the environment that runs failback",
                )
            return value
        try:
            value = Path(self._value).read_text(encoding="utf-8").rstrip("\r\n")
        except FileNotFoundError:
            raise FailbackError(
                f"secret {self.describe()} does not exist",
                "create the file (mode 0600) or fix the path in the topology",
            ) from None
        except (OSError, UnicodeDecodeError) as err:
            reason = getattr(err, "strerror", None) or type(err).__name__
            raise FailbackError(
                f"secret {self.describe()} cannot be read: {reason}",
                "make the file readable by the user that runs failback (and no one else)",
            ) from None
        if not value:
            raise FailbackError(
                f"secret {self.describe()} is empty", "write the secret into the file"
            )
        return value

    def describe(self) -> str:
        """A form safe to print: ``env:NAME``, ``file:/path`` or ``inline:****``."""
        return "inline:****" if self.kind == "inline" else f"{self.kind}:{self._value}"

    @property
    def reference(self) -> str | None:
        """The variable name or file path, ``None`` for an inline secret."""
        return None if self.kind == "inline" else self._value

    def __repr__(self) -> str:
        return f"SecretRef({self.describe()!r})"

    def __str__(self) -> str:
        return self.describe()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretRef):
            return NotImplemented
        return (self.kind, self._value) == (other.kind, other._value)

    def __hash__(self) -> int:
        return hash((self.kind, self._value))

    # pydantic integration -------------------------------------------------------------

    @classmethod
    def from_config(cls, value: Any, info: ValidationInfo) -> SecretRef:
        """Validate a topology value; a relative ``file:`` is taken from the file's dir."""
        if isinstance(value, SecretRef):
            return value
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"expected a secret reference; {_EXAMPLE}")
        context = info.context if isinstance(info.context, dict) else {}
        base = context.get("config_dir")
        return cls.parse(str(value), Path(base) if base is not None else None)

    _validate = from_config

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.with_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda ref: ref.describe(), when_used="always"
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "description": (
                "A secret by reference: env:NAME or file:/path (a bare absolute path works "
                "too). An inline value is accepted but ends up in the file."
            ),
            "examples": ["env:PGPASSWORD", "file:/etc/failback/pg.pass"],
        }


# redaction ----------------------------------------------------------------------------

MASK = "****"
_MIN_LEN = 4  # shorter "secrets" would mask ordinary words


def secret_refs(value: Any, seen: set[int] | None = None) -> list[SecretRef]:
    """Every ``SecretRef`` inside a (topology) model, dict or list."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return []
    seen.add(id(value))
    if isinstance(value, SecretRef):
        return [value]
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        return [r for name in fields for r in secret_refs(getattr(value, name), seen)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in secret_refs(v, seen)]
    if isinstance(value, list | tuple):
        return [r for v in value for r in secret_refs(v, seen)]
    return []


class Redactor:
    """Masks known secret values in text (values shorter than 4 characters are not)."""

    def __init__(self, secrets: list[str]) -> None:
        unique = {s for s in secrets if s and len(s) >= _MIN_LEN}
        unique |= {json.dumps(s)[1:-1] for s in unique}  # as it appears inside JSON
        self._secrets = sorted(unique, key=len, reverse=True)

    @classmethod
    def for_topology(cls, topology: Any, token: str | None) -> Redactor:
        values = [token or ""]
        for ref in secret_refs(topology):
            try:
                values.append(ref.resolve())
            except Exception:  # an unreadable secret cannot leak either
                continue
        return cls(values)

    def text(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text
