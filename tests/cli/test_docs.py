"""docs/cli.md and the command tree agree: every command line it shows runs a real command with
real options, and every command is shown there."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import click

from portside.cli import main

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"

# Lines of fenced blocks that run the CLI: `portside …` in ```sh blocks, `$ portside …` in the
# example sessions.
COMMAND_LINE = re.compile(r"^(?:\$ )?portside(?: (?P<args>.*))?$")


def _documented_command_lines() -> Iterator[list[str]]:
    in_block = False
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            in_block = not in_block
            continue
        match = COMMAND_LINE.match(line.strip()) if in_block else None
        if match:
            # Usage lines write optional parts as `[--flag VALUE]` and alternatives as `a|b`.
            args = (match.group("args") or "").replace("[", " ").replace("]", " ")
            yield shlex.split(args.split(" #", 1)[0].split(" &", 1)[0])


def _resolve(words: list[str]) -> tuple[list[str], click.Command, list[str]]:
    """The command path the words name, its command, and the words after it."""
    command: click.Command = main
    path: list[str] = []
    rest = list(words)
    options = {opt for param in main.params for opt in param.opts}
    while isinstance(command, click.Group):
        # Global options may come before the command name (`portside -o json registry list`).
        while rest and rest[0] in options:
            rest = rest[2:]
        if not rest or rest[0] not in command.commands:
            break
        command = command.commands[rest[0]]
        path.append(rest.pop(0))
    return path, command, rest


def _walk(command: click.Command, path: list[str]) -> Iterator[list[str]]:
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _walk(sub, [*path, name])
    else:
        yield path


def test_every_command_line_in_the_docs_names_a_command_and_its_options() -> None:
    lines = list(_documented_command_lines())
    assert len(lines) > 20, "docs/cli.md should show the commands in fenced blocks"
    for words in lines:
        path, command, rest = _resolve(words)
        assert not isinstance(command, click.Group), f"not a command: portside {words}"
        known = {opt for param in command.params for opt in param.opts}
        for word in rest:
            flag = word.split("=", 1)[0]
            if flag.startswith("-") and flag not in ("-", "…"):
                assert flag in known, f"portside {' '.join(path)} has no option {flag}"


def test_every_command_is_shown_in_the_docs() -> None:
    documented = {" ".join(_resolve(words)[0]) for words in _documented_command_lines()}
    for path in _walk(main, []):
        assert " ".join(path) in documented, f"docs/cli.md never shows `portside {' '.join(path)}`"
