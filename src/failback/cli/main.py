"""``failback``: the command-line entry point.

Exit codes: 0 done, 1 the operation failed or was rolled back, 2 bad usage or bad
config, 3 waiting for approval. Every command takes --json. ``-c/--config``,
``--state-dir`` and ``--json`` may also come before the command (see cli/options.py).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click
import typer
from typer.core import TyperGroup

from failback import __version__
from failback.cli.options import GLOBAL_FLAGS, ConfigOpt, JsonOpt, StateDirOpt
from failback.cli.output import print_error, stderr
from failback.errors import FailbackError, UsageError

COMMANDS: dict[str, str] = {
    # commands, in the order `failback --help` lists them ...
    "validate": "failback.cli.commands_config",
    "schema": "failback.cli.commands_config",
    "status": "failback.cli.commands_config",
    "failover": "failback.cli.commands_runs",
    "failback": "failback.cli.commands_runs",
    "runs": "failback.cli.commands_runs",
    "resume": "failback.cli.commands_runs",
    "abort": "failback.cli.commands_runs",
    "approve": "failback.cli.commands_runs",
    "demo": "failback.cli.commands_lab",
    "serve": "failback.cli.commands_serve",
    "monitor": "failback.cli.commands_monitor",
    "diverged": "failback.cli.commands_diverged",
    "drill": "failback.cli.commands_drills",
    "drills": "failback.cli.commands_drills",
    "report": "failback.cli.commands_report",
    # ... then the groups of commands
    "plan": "failback.cli.commands_config",
    "run": "failback.cli.commands_runs",
    "hosts": "failback.cli.commands_hosts",
    "lab": "failback.cli.commands_lab",
    "auto": "failback.cli.commands_monitor",
    "cluster": "failback.cli.commands_cluster",
    "baseline": "failback.cli.commands_baseline",
    "incident": "failback.cli.commands_baseline",
}
"""Each command and the module whose ``register(app)`` defines it.

A command's module is imported when that command is called, not at every start: the
API server, the lab, the monitor and the report cost nothing to ``failback status``,
and typer builds the commands of one module instead of all of them (building all
took ~70 ms of every call). tests/unit/test_cli_commands.py checks that this table
and the modules' ``register`` agree."""


def command_modules() -> list[str]:
    """The modules that define commands, each once, in the order of ``COMMANDS``."""
    return list(dict.fromkeys(COMMANDS.values()))


class RootGroup(TyperGroup):
    """The root command: loads a command's module when it is called (``COMMANDS``), and
    refuses a global option given to a command that has no use for it.

    ``failback --state-dir D lab up`` would otherwise ignore D without a word (the lab
    takes ``--dir``); the check runs before the command does anything.
    """

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self._load(COMMANDS[cmd_name])
        return self.commands.get(cmd_name)

    def _load(self, module_name: str) -> None:
        """Import ``module_name`` and add the click commands its ``register`` defines.

        A FailbackError while importing it (a bad ``$FAILBACK_DRIVERS`` makes the driver
        catalog refuse to load) reaches ``main``, which shows it as one line and a hint.
        """
        module = importlib.import_module(module_name)
        commands = typer.Typer()
        commands.callback()(_no_options)  # a group, even for a module of one command
        module.register(commands)
        group = typer.main.get_command(commands)
        for name, command in getattr(group, "commands", {}).items():
            self.add_command(command, name)

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        name, cmd, rest = super().resolve_command(ctx, args)
        if cmd is not None and not ctx.resilient_parsing:
            _refuse_unused_globals(ctx, name or "", cmd, list(rest))
        return name, cmd, rest


def _refuse_unused_globals(ctx: Any, name: str, cmd: Any, rest: list[str]) -> None:
    """UsageError when an option given before the command is not one the command takes."""
    given = [n for n in GLOBAL_FLAGS if ctx.params.get(n) not in (None, False)]
    if not given or any(a in ("-h", "--help") for a in rest):
        return
    path = [name]
    while isinstance(cmd, TyperGroup):
        if not rest or rest[0].startswith("-"):
            return  # click reports the missing or unknown command itself
        sub = cmd.get_command(ctx, rest[0])
        if sub is None:
            return
        path.append(rest[0])
        cmd, rest = sub, rest[1:]
    taken = {p.name for p in cmd.params}
    unused = [GLOBAL_FLAGS[n] for n in given if n not in taken]
    if unused:
        raise UsageError(
            f"{unused[0]} does not apply to `failback {' '.join(path)}`",
            hint=f"see `failback {' '.join(path)} --help` for its options",
        )


app = typer.Typer(
    cls=RootGroup,
    name="failback",
    help="Fail a service over to its secondary site and bring it home again, safely.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"failback {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """failback: failover, and failback done right."""


def _no_options() -> None:
    """The callback that makes a module's commands a group of their own (see ``_load``)."""


def _cli_exceptions() -> tuple[tuple[type[BaseException], ...], ...]:
    """Exit, Abort and usage-error classes of click and of typer's vendored click.

    Recent typer releases vendor click (``typer._click``); older ones use click itself.
    Catching both keeps user mistakes free of tracebacks whichever is installed.
    """
    exits: list[type[BaseException]] = [click.exceptions.Exit, typer.Exit]
    aborts: list[type[BaseException]] = [click.exceptions.Abort, typer.Abort]
    errors: list[type[BaseException]] = [click.ClickException]
    tyexc = getattr(typer, "TyperException", None)
    if isinstance(tyexc, type):
        errors.append(tyexc)
    return tuple(exits), tuple(aborts), tuple(errors)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; turn user mistakes into one line + hint + exit code, never a traceback."""
    args = sys.argv[1:] if argv is None else argv
    as_json = "--json" in args
    exits, aborts, errors = _cli_exceptions()
    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name="failback", standalone_mode=False)
    except aborts:
        stderr.print("aborted: nothing was changed", style="yellow")
        sys.exit(1)
    except exits as exc:
        sys.exit(getattr(exc, "exit_code", 0))
    except FailbackError as exc:
        print_error(exc, as_json=as_json)
        sys.exit(exc.exit_code)
    except errors as exc:
        code = int(getattr(exc, "exit_code", 2) or 2)
        if as_json:
            from failback.cli.output import emit_json

            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            emit_json({"error": message, "hint": "see --help", "kind": "UsageError"})
        elif hasattr(exc, "show"):
            exc.show()
        else:
            stderr.print(f"error: {exc}", markup=False)
        sys.exit(code)
    except KeyboardInterrupt:
        stderr.print(
            "interrupted: a run in progress can be continued with `failback resume ID`",
            style="yellow",
        )
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
