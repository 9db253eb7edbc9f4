"""The optional ``baseline:`` section: what proves a site clean after a security incident.

Failing back to a site that was compromised needs proof that it is clean, not only
healthy. The proof failback can give is a comparison: the hashes of declared files
(binaries, configuration, authorized keys) and of declared commands' output (package
lists, listening sockets, users) taken on a day the site was known to be clean
(``failback baseline record SITE``), against the same hashes taken when the service is
about to return there (the ``clean_room`` gate). What to hash is the operator's
knowledge of the site, so it is declared here, once for every site, plus what only one
site has (its data directory's configuration, its own binaries).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from failback.model.durations import PositiveDuration, Size, parse_duration
from failback.model.fields import AbsPath, ConfigModel, NonEmptyStr, valid_name

__all__ = ["Baseline", "BaselineItems"]

MAX_OUTPUT = 4 * 1024 * 1024
"""Most output kept per command: the baseline file stays small enough to read whole."""

CommandName = Annotated[str, Field(min_length=1, max_length=63)]


class BaselineItems(ConfigModel):
    """Files and commands hashed on every machine of a site."""

    files: list[AbsPath] = Field(
        default_factory=list,
        description="Absolute paths, or shell globs (/usr/lib/postgresql/15/bin/*) expanded "
        "on the machine: a file that appears later under a glob is a difference.",
    )
    commands: dict[CommandName, NonEmptyStr] = Field(
        default_factory=dict,
        description="name -> shell command run on the machine (/bin/sh -c); its exit code "
        "and the sha256 of its standard output are recorded (e.g. packages: dpkg-query -W).",
    )

    @field_validator("files")
    @classmethod
    def _no_duplicates(cls, files: list[str]) -> list[str]:
        seen = [f for i, f in enumerate(files) if f in files[:i]]
        if seen:
            raise ValueError(f"{seen[0]!r} is listed twice")
        return files

    @field_validator("commands")
    @classmethod
    def _usable_names(cls, commands: dict[str, str]) -> dict[str, str]:
        for name in commands:
            if not valid_name(name):
                raise ValueError(
                    f"{name!r} is not a valid command name: use letters, digits, '-', '_' "
                    "or '.', starting with a letter or digit"
                )
        return commands


class Baseline(BaselineItems):
    """``files`` and ``commands`` for every site, ``sites`` for what one site adds."""

    timeout: PositiveDuration = Field(  # type: ignore[assignment]
        parse_duration("30s"),
        description="How long hashing the files of one machine, or one command, may take.",
    )
    max_output: Annotated[Size, Field(le=MAX_OUTPUT)] = Field(
        256 * 1024,
        description="Bytes of each command's output kept with the baseline (in the state "
        "directory, mode 0600) so that a difference shows the changed lines; 0 keeps only "
        "the hash.",
    )
    sites: dict[str, BaselineItems] = Field(
        default_factory=dict,
        description="site -> files and commands hashed there in addition to the ones above.",
    )

    def for_site(self, site: str) -> BaselineItems:
        """What is hashed at ``site``: the shared items, then the site's own."""
        own = self.sites.get(site)
        if own is None:
            return BaselineItems(files=list(self.files), commands=dict(self.commands))
        files = [*self.files, *(f for f in own.files if f not in self.files)]
        return BaselineItems(files=files, commands={**self.commands, **own.commands})
