"""What the images' API decides without building (spidernet.testbed.images): the build
context git lists, the CA handed to pip, and a clear error when tools are missing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from spidernet.testbed.images import context_files, ensure_images, pip_ca
from spidernet.testbed.kubecluster import BuildFailed


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_the_context_is_what_git_lists_as_it_is_in_the_working_tree(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / ".gitignore").write_text("/.venv/\n*.pyc\n")
    (tmp_path / "a.py").write_text("committed\n")
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "run.sh").chmod(0o755)
    (tmp_path / "gone.py").write_text("deleted later\n")
    (tmp_path / "link").symlink_to("a.py")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    (tmp_path / "a.py").write_text("edited\n")
    (tmp_path / "gone.py").unlink()
    (tmp_path / "new.py").write_text("untracked\n")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "x.py").write_text("ignored\n")
    (tmp_path / "b.pyc").write_bytes(b"ignored")
    files = context_files(tmp_path)
    assert files == {
        ".gitignore": ("f", b"/.venv/\n*.pyc\n"),
        "a.py": ("f", b"edited\n"),
        "link": ("l", b"a.py"),
        "new.py": ("f", b"untracked\n"),
        "run.sh": ("x", b"#!/bin/sh\n"),
    }


def test_not_a_checkout(tmp_path: Path) -> None:
    with pytest.raises(BuildFailed, match="failed to list the files of checkout"):
        context_files(tmp_path / "missing")


def test_pip_ca_is_pips_bundle_when_there_is_one(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.crt"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    assert pip_ca({"PIP_CERT": str(bundle)}) == bundle
    fallback = pip_ca({"PIP_CERT": str(tmp_path / "missing.crt")})
    debian = Path("/etc/ssl/certs/ca-certificates.crt")
    assert fallback == (debian if debian.is_file() else None)


def test_missing_tools_are_named_with_their_debian_packages(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {"PATH": str(empty), "SPIDERNET_CACHE": str(tmp_path / "cache")}
    with pytest.raises(BuildFailed) as failed:
        ensure_images(lambda _: None, env=env)
    assert "buildah (buildah)" in str(failed.value)
    assert "busybox (busybox-static)" in str(failed.value)
    assert not (tmp_path / "cache").exists()  # nothing made before the check
    assert os.listdir(tmp_path) == ["bin"]
