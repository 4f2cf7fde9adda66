"""Every argument of every subcommand says what it is for (`spidernet X --help`)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from spidernet.cli import build_parser


def parsers(
    parser: argparse.ArgumentParser, path: str = "spidernet"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, f"{path} {name}")


def test_every_argument_has_help() -> None:
    missing = [
        f"{path}: {'/'.join(action.option_strings) or action.dest}"
        for path, parser in parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction)
        and not (action.help or "").strip()
        and action.help != argparse.SUPPRESS
    ]
    assert missing == []


def test_every_subcommand_has_help() -> None:
    missing = [
        f"{path} {choice.dest}"
        for path, parser in parsers(build_parser())
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for choice in action._choices_actions
        if not (choice.help or "").strip()
    ]
    assert missing == []


def test_the_walk_sees_nested_subcommands() -> None:
    paths = {path for path, _ in parsers(build_parser())}
    assert {"spidernet get", "spidernet ip who", "spidernet detect probe"} <= paths
