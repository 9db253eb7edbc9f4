"""The base model and small value types shared by every section of the topology.

One base class gives every section the same rules: unknown keys are errors (a typo
must never be silently ignored), the loaded config is immutable (the planner is a
pure function of it), and an empty YAML section (``options:`` with nothing under it)
means "all defaults" rather than a type error.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, model_validator

__all__ = [
    "MAX_THRESHOLD",
    "NAME_PATTERN",
    "AbsPath",
    "ConfigModel",
    "NonEmptyStr",
    "Port",
    "StrictInt",
    "valid_name",
]


class ConfigModel(BaseModel):
    """Base of every topology model: strict keys, frozen, empty section = defaults."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        coerce_numbers_to_str=True,  # `server: 1` or `description: 2024` mean text
        str_strip_whitespace=True,
        validate_default=False,
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_section_means_defaults(cls, data: Any) -> Any:
        return {} if data is None else data


NonEmptyStr = Annotated[str, Field(min_length=1)]
"""Text that must not be empty (after stripping surrounding spaces)."""

StrictInt = Annotated[int, Strict()]
"""A whole number; ``true`` or ``5432.5`` are refused instead of silently converted."""

Port = Annotated[int, Strict(), Field(ge=1, le=65535)]
"""A TCP port, 1..65535."""

MAX_THRESHOLD = 10_000
"""Most consecutive failures a ``failure_threshold`` may ask for (a bound the engine's
arithmetic is safe with: a threshold is multiplied by an interval)."""


def _absolute(value: str) -> str:
    if not PurePosixPath(value).is_absolute():
        raise ValueError(f"must be an absolute path, starting with '/' (got {value!r})")
    return value


AbsPath = Annotated[str, Field(min_length=1), AfterValidator(_absolute)]
"""An absolute path on the host where the component runs (that host may be remote)."""

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
_NAME = re.compile(NAME_PATTERN)


def valid_name(name: str) -> bool:
    """Site, service and component names appear in commands, file names and metrics."""
    return bool(_NAME.match(name))
