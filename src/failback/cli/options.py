"""Options shared by every command.

``-c/--config``, ``--state-dir`` and ``--json`` can be given before the command
(``failback -c FILE --json status``, as patronictl and kubectl users type them) or
after it (``failback status -c FILE``). The root command parses the ones given
before; each command's own option falls back to them through ``_inherit``, a click
parameter callback, so ``--help`` and shell completion see ordinary options.

The same option given in both places with two different values is a usage error
(which one was meant cannot be guessed); the same value twice is accepted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from failback.errors import UsageError

GLOBAL_FLAGS = {"config": "-c/--config", "state_dir": "--state-dir", "as_json": "--json"}
"""The options the root command takes too, by parameter name."""


def _inherit(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
    """This command's value of a global option: its own, else the one before the command."""
    name = param.name or ""
    root = ctx.find_root()
    if root is ctx or ctx.resilient_parsing:
        return value
    before = root.params.get(name)
    if name == "as_json":
        return bool(value) or bool(before)
    if before is None:
        return value
    if value is not None and Path(value) != Path(before):
        flag = GLOBAL_FLAGS.get(name, name)
        raise UsageError(
            f"{flag} given twice: {before} before the command, {value} after it",
            hint=f"give {flag} once, before or after the command",
        )
    return before


ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "-c",
        "--config",
        help="Topology file [default: $FAILBACK_CONFIG or ./failback.yaml]",
        show_default=False,
        callback=_inherit,
    ),
]
StateDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="State directory [default: the topology's state_dir]",
        show_default=False,
        callback=_inherit,
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout.", callback=_inherit)
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
