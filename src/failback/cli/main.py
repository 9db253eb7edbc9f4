"""``failback``: the command-line entry point.

Exit codes: 0 done, 1 the operation failed or was rolled back, 2 bad usage or bad
config, 3 waiting for approval. Every command takes --json.
"""

from __future__ import annotations

import sys

import click
import typer

from failback import __version__
from failback.cli.output import print_error, stderr
from failback.errors import FailbackError

app = typer.Typer(
    name="failback",
    help="Fail a service over to its secondary site and bring it home again, safely.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
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
) -> None:
    """failback: failover, and failback done right."""


def _register() -> None:
    from failback.cli import commands_config, commands_hosts, commands_lab, commands_runs

    commands_config.register(app)
    commands_runs.register(app)
    commands_hosts.register(app)
    commands_lab.register(app)
    __import__("failback.cli.commands_serve", fromlist=["register"]).register(app)
    __import__("failback.cli.commands_monitor", fromlist=["register"]).register(app)
    __import__("failback.cli.commands_cluster", fromlist=["register"]).register(app)
    __import__("failback.cli.commands_diverged", fromlist=["register"]).register(app)
    __import__("failback.cli.commands_drills", fromlist=["register"]).register(app)
    __import__("failback.cli.commands_baseline", fromlist=["register"]).register(app)
    __import__("failback.cli.commands_report", fromlist=["register"]).register(app)


_LOAD_ERROR: FailbackError | None = None
"""Why the commands could not be loaded (a bad ``$FAILBACK_DRIVERS``): ``main`` shows it
as one line with its hint, like any other FailbackError, instead of a traceback."""
try:
    _register()
except FailbackError as exc:
    _LOAD_ERROR = exc


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
        if _LOAD_ERROR is not None:
            raise _LOAD_ERROR
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
