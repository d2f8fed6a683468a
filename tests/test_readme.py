"""The docs' command-options table lists exactly the options each command has."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main

from synctalk2d.cli import app

COMMANDS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "commands" / "index.md"


def cli_options() -> dict[str, set[str]]:
    options = {}
    for name, command in typer.main.get_command(app).commands.items():
        names = set()
        for param in command.params:
            if param.name == "help":
                continue
            if not param.opts[0].startswith("-"):  # an argument
                names.add(param.opts[0].upper() + ("..." if param.nargs == -1 else ""))
                continue
            flag = max(param.opts, key=len)
            names.add(flag + ("/" + max(param.secondary_opts, key=len) if param.secondary_opts else ""))
        options[name] = names
    return options


def documented_options() -> dict[str, set[str]]:
    section = COMMANDS_PAGE.read_text().split("## Command options", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z-]+)` \| (.+) \|$", section, flags=re.M)
    return {command: set(re.findall(r"`([^`]+)`", cells)) for command, cells in rows}


def test_documented_options_table_matches_the_cli():
    assert documented_options() == cli_options()
