"""docs/CLI.md cannot drift from the command line (in the manner of sqlite-utils' test_docs.py):
every command in its table exists with every option the row names, and every command and option
the CLI has is in the table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main
from typer.core import TyperCommand, TyperGroup, TyperOption

from monitor.cli import app

CLI_MD = Path(__file__).resolve().parents[2] / "docs" / "CLI.md"
OPTION = re.compile(r"--[a-z][a-z0-9-]*")


def documented() -> dict[str, set[str]]:
    """Command path ("quarantine list") -> the options its row names, from the built commands' table."""
    text = CLI_MD.read_text(encoding="utf-8")
    table = text[text.index("## Commands"):text.index("Planned, not built yet")]
    found: dict[str, set[str]] = {}
    for row in table.splitlines():
        if not row.startswith("| `monitor "):
            continue
        usage = row.split("`")[1].split()[1:]  # the words after `monitor`
        name = usage[0]
        if len(usage) > 1 and re.fullmatch(r"[a-z]+(-[a-z]+)*", usage[1]):  # a subcommand: `monitor quarantine list`
            name = f"{name} {usage[1]}"
        found.setdefault(name, set()).update(OPTION.findall(row))
    return found


def commands() -> dict[str, TyperCommand]:
    """Command path -> the command behind it; a group's subcommands as "group sub"."""
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    found: dict[str, TyperCommand] = {}
    for name, command in root.commands.items():
        if isinstance(command, TyperGroup):
            found.update({f"{name} {sub}": c for sub, c in command.commands.items() if isinstance(c, TyperCommand)})
        elif isinstance(command, TyperCommand):
            found[name] = command
    return found


def options(command: TyperCommand) -> set[str]:
    return {o for p in command.params if isinstance(p, TyperOption) for o in p.opts if o.startswith("--")}


def test_every_command_the_cli_has_is_documented_and_every_documented_command_exists() -> None:
    assert set(documented()) == set(commands())


@pytest.mark.parametrize("name", sorted(commands()))
def test_every_option_a_row_names_exists_and_every_option_is_in_its_row(name: str) -> None:
    named = documented()[name] - {"--help"}
    real = options(commands()[name]) - {"--help"}
    assert named - real == set(), f"docs/CLI.md names options `monitor {name}` does not have"
    assert real - named == set(), f"`monitor {name}` has options docs/CLI.md does not name"
