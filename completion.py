"""`spidernet completion bash|zsh`: shell completion generated from the CLI's argparse parser,
so every subcommand, option and choice the parser knows completes, and nothing else.

The bash script is a few `case` tables (subcommands, options, options that take a value,
choices) and one function that walks the words typed so far to the subcommand being
completed; zsh runs the same function through its `bashcompinit` layer.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Command:
    """What completes after one command path (`""`, `"get"`, `"detect probe"`)."""

    path: str
    subcommands: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    valued: tuple[str, ...] = ()  # options that take a value
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # option -> values
    words: tuple[str, ...] = ()  # values of the positionals (choices, or given words)


def commands(
    parser: argparse.ArgumentParser, words: Mapping[str, Sequence[str]] | None = None
) -> list[Command]:
    """Every command path of `parser`, depth first; `words`: extra positional values by path
    (`{"get": ("sp", ...)}`) where a positional has no choices of its own."""
    return list(_walk(parser, "", words or {}))


def _walk(
    parser: argparse.ArgumentParser, path: str, words: Mapping[str, Sequence[str]]
) -> Iterator[Command]:
    subs: dict[str, argparse.ArgumentParser] = {}
    options: list[str] = []
    valued: list[str] = []
    choices: dict[str, tuple[str, ...]] = {}
    positional: list[str] = list(words.get(path, ()))
    for action in parser._actions:  # (argparse keeps no public list of its actions)
        if isinstance(action, argparse._SubParsersAction):
            subs.update(action.choices)
            continue
        if not action.option_strings:
            positional.extend(str(c) for c in action.choices or ())
            continue
        options.extend(action.option_strings)
        if action.nargs != 0:
            valued.extend(action.option_strings)
            if action.choices:
                for option in action.option_strings:
                    choices[option] = tuple(str(c) for c in action.choices)
    yield Command(
        path, tuple(subs), tuple(options), tuple(valued), choices, tuple(dict.fromkeys(positional))
    )
    for name, sub in subs.items():
        yield from _walk(sub, f"{path} {name}".strip(), words)


def _case(function: str, arms: Mapping[str, Sequence[str]]) -> str:
    lines = [f"{function}() {{", '    case "$1" in']
    for key, values in arms.items():
        if values:
            lines.append(f'        "{key}") echo "{" ".join(values)}" ;;')
    lines += ["    esac", "}"]
    return "\n".join(lines)


_MAIN = r"""_{fn}() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="" path="" i w
    (( COMP_CWORD > 0 )) && prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    for (( i = 1; i < COMP_CWORD; i++ )); do
        w="${{COMP_WORDS[i]}}"
        [[ $w == -* ]] && continue
        # The value of an option (`-n NS`) is no subcommand.
        if (( i > 1 )) && [[ " $(_{fn}_valued "$path") " == *" ${{COMP_WORDS[i-1]}} "* ]]; then
            continue
        fi
        if [[ " $(_{fn}_subcommands "$path") " == *" $w "* ]]; then
            path="${{path:+$path }}$w"
        fi
    done
    if [[ -n $prev && " $(_{fn}_valued "$path") " == *" $prev "* ]]; then
        local values
        values="$(_{fn}_choices "$path $prev")"
        if [[ -n $values ]]; then
            COMPREPLY=( $(compgen -W "$values" -- "$cur") )
        else
            COMPREPLY=( $(compgen -f -- "$cur") )
        fi
        return 0
    fi
    if [[ $cur == -* ]]; then
        COMPREPLY=( $(compgen -W "$(_{fn}_options "$path")" -- "$cur") )
        return 0
    fi
    COMPREPLY=( $(compgen -W "$(_{fn}_subcommands "$path") $(_{fn}_words "$path")" -- "$cur") )
}}
complete -F _{fn} {prog}
"""


def bash(parser: argparse.ArgumentParser, words: Mapping[str, Sequence[str]] | None = None) -> str:
    """The bash completion script for `parser` (its `prog`)."""
    prog = parser.prog
    fn = prog.replace("-", "_")
    cmds = commands(parser, words)
    parts = [
        f'# bash completion for {prog}: eval "$({prog} completion bash)", or save it in',
        "# /etc/bash_completion.d/. Generated from the command's own argument parser.",
        _case(f"_{fn}_subcommands", {c.path: c.subcommands for c in cmds}),
        _case(f"_{fn}_options", {c.path: c.options for c in cmds}),
        _case(f"_{fn}_valued", {c.path: c.valued for c in cmds}),
        _case(
            f"_{fn}_choices",
            {f"{c.path} {o}": v for c in cmds for o, v in c.choices.items()},
        ),
        _case(f"_{fn}_words", {c.path: c.words for c in cmds}),
        _MAIN.format(fn=fn, prog=prog),
    ]
    return "\n".join(parts)


def zsh(parser: argparse.ArgumentParser, words: Mapping[str, Sequence[str]] | None = None) -> str:
    """The zsh completion script: the bash one through zsh's bashcompinit."""
    prog = parser.prog
    head = [
        f"#compdef {prog}",
        f'# zsh completion for {prog}: eval "$({prog} completion zsh)" in ~/.zshrc (after',
        "# compinit), or save it as _" + prog + " in a directory of $fpath.",
        "autoload -U +X bashcompinit && bashcompinit",
    ]
    body = bash(parser, words).split("\n", 2)[2]  # (without the bash header)
    return "\n".join(head) + "\n" + body
