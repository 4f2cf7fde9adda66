"""The distribution's package list matches the tree, and the CLI answers --help."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from spidernet.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_directory_is_listed() -> None:
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {"spidernet"}
    for top in ("node", "control", "cni", "netconf"):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT)
            found.add(".".join(("spidernet", *rel.parts)))
    assert found == listed


def test_help_lists_install_cni(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "install-cni" in capsys.readouterr().out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage" in capsys.readouterr().out


def test_install_cni_reports_failure_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["install-cni", "--bin-dir", str(blocker / "bin")]) == 1
    err = capsys.readouterr().err
    assert "failed to install CNI plugins" in err
    assert "Traceback" not in err
