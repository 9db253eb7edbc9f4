"""The CLI's table of commands (cli/main.py ``COMMANDS``) and what the modules define.

The root command imports a command's module only when that command is called; the table
says which module that is. A command added to a module's ``register`` but not to the
table would be missing from ``failback --help`` and unknown to the CLI; one in the table
that no module defines would be listed and then fail. Both are caught here.
"""

from __future__ import annotations

import importlib

import typer
import typer.main

from failback.cli.main import COMMANDS, app, command_modules


def defined_by(module_name: str) -> list[str]:
    """The command names ``module_name``'s ``register`` adds, in its order."""
    commands = typer.Typer()
    commands.callback()(lambda: None)
    importlib.import_module(module_name).register(commands)
    return list(typer.main.get_command(commands).commands)  # type: ignore[attr-defined]


def test_every_command_a_module_defines_is_in_the_table_with_that_module() -> None:
    for module_name in command_modules():
        for name in defined_by(module_name):
            assert COMMANDS.get(name) == module_name, (name, module_name)


def test_every_command_in_the_table_is_defined_by_its_module() -> None:
    for name, module_name in COMMANDS.items():
        assert name in defined_by(module_name), (name, module_name)


def test_the_root_lists_the_table_and_loads_a_command_with_its_module_only() -> None:
    root = typer.main.get_command(app)
    ctx = root.make_context("failback", ["--help"], resilient_parsing=True)
    assert root.list_commands(ctx) == list(COMMANDS)  # type: ignore[attr-defined]
    status = root.get_command(ctx, "status")  # type: ignore[attr-defined]
    assert status is not None and status.name == "status"
    assert "run" not in root.commands  # type: ignore[attr-defined]  # another module's
    assert root.get_command(ctx, "no-such-command") is None  # type: ignore[attr-defined]
