"""`spidernet completion`: scripts generated from the parser, valid, and completing what the
parser knows (run in a real bash with the COMP_* variables set as bash sets them)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

import pytest

from spidernet import completion
from spidernet.cli import build_parser, main

BASH = shutil.which("bash")
needs_bash = pytest.mark.skipif(BASH is None, reason="no bash on this machine")


def small_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tool")
    sub = parser.add_subparsers(dest="command")
    show = sub.add_parser("show", help="h")
    show.add_argument("what", choices=["a", "b"], help="h")
    show.add_argument("-o", "--output", choices=["json", "yaml"], help="h")
    show.add_argument("-n", help="h")
    show.add_argument("--all", action="store_true", help="h")
    inner = sub.add_parser("net", help="h").add_subparsers(dest="x")
    inner.add_parser("up", help="h")
    return parser


def test_the_commands_of_a_parser() -> None:
    assert completion.commands(small_parser(), {"net up": ("extra",)}) == [
        completion.Command("", ("show", "net"), ("-h", "--help")),
        completion.Command(
            "show",
            (),
            ("-h", "--help", "-o", "--output", "-n", "--all"),
            ("-o", "--output", "-n"),
            {"-o": ("json", "yaml"), "--output": ("json", "yaml")},
            ("a", "b"),
        ),
        completion.Command("net", ("up",), ("-h", "--help")),
        completion.Command("net up", (), ("-h", "--help"), words=("extra",)),
    ]


def complete(script: str, tmp_path: Path, *words: str) -> list[str]:
    """What the script's completion function offers for `words` (the last one being typed)."""
    path = tmp_path / "completion.sh"
    path.write_text(script)
    quoted = " ".join(f"'{w}'" for w in words)
    program = (
        f"source {path}\n"
        f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}\n"
        f'COMP_LINE="${{COMP_WORDS[*]}}"; COMP_POINT=${{#COMP_LINE}}\n'
        # the function `complete -p` names for the command is the one bash would call
        f"fn=$(complete -p {words[0]} | sed -E 's/.*-F ([^ ]+).*/\\1/')\n"
        '"$fn"; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    assert BASH is not None
    done = subprocess.run(
        [BASH, "--norc", "--noprofile", "-c", program],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert done.stderr == ""
    return [line for line in done.stdout.splitlines() if line]


@needs_bash
def test_a_small_parser_completes(tmp_path: Path) -> None:
    script = completion.bash(small_parser())
    assert complete(script, tmp_path, "tool", "") == ["show", "net"]
    assert complete(script, tmp_path, "tool", "show", "") == ["a", "b"]
    assert complete(script, tmp_path, "tool", "show", "--") == ["--help", "--output", "--all"]
    assert complete(script, tmp_path, "tool", "show", "-o", "") == ["json", "yaml"]
    # The value of -n is not taken for a subcommand; after it, options and words again.
    assert complete(script, tmp_path, "tool", "show", "-n", "net", "") == ["a", "b"]
    assert complete(script, tmp_path, "tool", "net", "u") == ["up"]


@needs_bash
def test_spidernets_bash_script_is_valid_and_completes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    path = tmp_path / "spidernet.bash"
    path.write_text(script)
    assert BASH is not None
    subprocess.run([BASH, "-n", str(path)], check=True, timeout=30)
    commands = complete(script, tmp_path, "spidernet", "")
    assert {"get", "apply", "ip", "gc", "completion", "diag"} <= set(commands)
    assert complete(script, tmp_path, "spidernet", "get", "s") == [
        "sp",
        "subnets",
        "subnet",
        "ss",
        "sr",
        "se",
        "scc",
        "smc",
        "statefulsets",
    ]
    assert complete(script, tmp_path, "spidernet", "get", "sp", "-o", "") == [
        "table",
        "wide",
        "json",
        "yaml",
        "name",
    ]
    assert complete(script, tmp_path, "spidernet", "ip", "") == ["who", "release"]
    assert complete(script, tmp_path, "spidernet", "completion", "") == ["bash", "zsh"]
    assert "--dry-run" in complete(script, tmp_path, "spidernet", "gc", "--")


def test_the_zsh_script_runs_the_bash_function(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "zsh"]) == 0
    script = capsys.readouterr().out
    assert script.startswith("#compdef spidernet\n")
    assert "bashcompinit && bashcompinit" in script
    assert script.rstrip().endswith("complete -F _spidernet spidernet")
    # The same tables and function as the bash script (without its bash-only header).
    bash_body = completion.bash(build_parser()).split("\n", 2)[2]
    assert bash_body.split("_spidernet_words() {")[0] in script
