"""The import contracts (pyproject.toml) fail on the violations they are there to stop: a
copy of the package with one forbidden import added, linted with the real import-linter."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# import-linter, in a process that imports `spidernet` from the copy: the venv's editable
# install (a meta path finder) would otherwise answer for it.
RUN = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path.insert(0, sys.argv[1])
sys.argv = ["lint-imports", sys.argv[2], "--no-cache"]
from importlinter.cli import lint_imports_command
sys.exit(lint_imports_command())
"""


def copy_package(top: Path) -> Path:
    """The product's Python files and pyproject.toml under `top/spidernet`."""
    dest = top / "spidernet"
    shutil.copytree(
        ROOT,
        dest,
        ignore=shutil.ignore_patterns(
            ".venv",
            ".git",
            "tests",
            "docs",
            "deploy",
            "build",
            "*.egg-info",
            "__pycache__",
            ".*",
        ),
    )
    return dest


def lint(top: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUN, str(top), str(top / "spidernet" / "pyproject.toml")],
        cwd=top,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        (
            "control/model/labels.py",
            "import spidernet.node.netns",
            "control never imports node",
        ),
        (
            "node/netns.py",
            "import spidernet.testbed.guard",
            "the product never imports the test bed or the benchmarks",
        ),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, module: str, line: str, broken: str
) -> None:
    tree = copy_package(tmp_path)
    assert lint(tmp_path).returncode == 0
    with (tree / module).open("a") as f:
        f.write(f"\n{line}  # a deliberate violation\n")
    done = lint(tmp_path)
    assert done.returncode != 0
    out = " ".join(done.stdout.split())
    assert f"{broken} BROKEN" in out, done.stdout
