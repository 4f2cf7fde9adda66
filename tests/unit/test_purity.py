"""The pure core takes its world as arguments (STYLE.md §8): no clocks, sockets, files,
subprocesses or databases inside the allocator and the resource model."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE = ["control/allocator", "control/model"]
EFFECTS = {"socket", "subprocess", "time", "sqlite3", "threading", "os", "shutil", "urllib", "http"}


def imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", PURE)
def test_pure_packages_import_no_effects(package: str) -> None:
    files = sorted((ROOT / package).glob("*.py"))
    assert files
    offenders = {
        str(f.relative_to(ROOT)): sorted(imported(f) & EFFECTS)
        for f in files
        if imported(f) & EFFECTS
    }
    assert offenders == {}


def test_the_check_sees_an_effect(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("import time\nfrom socket import socket\n")
    assert imported(sample) & EFFECTS == {"time", "socket"}
