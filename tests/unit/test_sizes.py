"""Sizes stay readable (STYLE.md §10, issue 18): no Python module of the repository over 500
lines and no function over 80, tests, the test bed and the benchmarks included."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
SKIPPED_DIRS = {".venv", ".git", "__pycache__", "build", "dist"}


def python_files() -> list[str]:
    """The repository's Python files, relative to ROOT: git's tracked and new ones, or, out
    of a git checkout, every one outside the virtualenv and build directories."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        listed = [
            str(p.relative_to(ROOT))
            for p in ROOT.rglob("*.py")
            if not SKIPPED_DIRS & set(p.relative_to(ROOT).parts)
        ]
    return sorted(f for f in listed if (ROOT / f).is_file())


def long_functions(source: str, path: str) -> dict[str, int]:
    """`path::name` -> lines of each function (nested ones too, by their own name) of
    `source` over MAX_FUNCTION_LINES, counted from `def` to its last line."""
    out = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_FUNCTION_LINES:
                out[f"{path}::{node.name}"] = lines
    return out


def test_no_module_is_over_500_lines() -> None:
    files = python_files()
    assert len(files) > 300  # the listing found the repository
    over = {
        f: n for f in files if (n := len((ROOT / f).read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert over == {}


def test_no_function_is_over_80_lines() -> None:
    found: dict[str, int] = {}
    for f in python_files():
        found.update(long_functions((ROOT / f).read_text(), f))
    assert found == {}, "split these along their phases into named helpers"


def test_the_measure_sees_a_long_function_and_a_long_method() -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    source = f"def long():\n{body}\n\nclass C:\n    async def short(self):\n        pass\n"
    nested = "class D:\n    def method(self):\n" + body.replace("    ", "        ")
    assert long_functions(source, "m.py") == {"m.py::long": MAX_FUNCTION_LINES + 1}
    assert long_functions(nested, "n.py") == {"n.py::method": MAX_FUNCTION_LINES + 1}
