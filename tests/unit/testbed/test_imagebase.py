"""The image builds' shared effects that need no root: writing a build context, trimming a
root file system, running a step with its log (spidernet.testbed.imagebase)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spidernet.testbed.imagebase import Tools, read_state, remove_tree, slim, sync_tree, write_state
from spidernet.testbed.imagespec import Layout
from spidernet.testbed.kubecluster import BuildFailed


def test_sync_tree_writes_what_differs_and_removes_the_rest(tmp_path: Path) -> None:
    dest = tmp_path / "ctx"
    files = {
        "a.py": ("f", b"x = 1\n"),
        "bin/run": ("x", b"#!/bin/sh\n"),
        "bin/sh": ("l", b"run"),
    }
    sync_tree(dest, files)
    assert (dest / "a.py").read_bytes() == b"x = 1\n"
    assert os.access(dest / "bin/run", os.X_OK)
    assert not os.access(dest / "a.py", os.X_OK)
    assert os.readlink(dest / "bin/sh") == "run"
    os.utime(dest / "a.py", (1, 1))
    (dest / "stale" / "deep").mkdir(parents=True)
    (dest / "stale" / "deep" / "old.py").write_text("old")
    (dest / "stale-link").symlink_to("stale")
    files["bin/run"] = ("f", b"#!/bin/sh\n")  # no longer executable
    files["new.txt"] = ("f", b"new")
    sync_tree(dest, files)
    assert os.stat(dest / "a.py").st_mtime == 1  # unchanged: left alone
    assert not os.access(dest / "bin/run", os.X_OK)
    assert (dest / "new.txt").read_bytes() == b"new"
    assert not (dest / "stale").exists()
    assert not (dest / "stale-link").is_symlink()
    listed = sorted(str(p.relative_to(dest)) for p in dest.rglob("*"))
    assert listed == ["a.py", "bin", "bin/run", "bin/sh", "new.txt"]


def test_slim_trims_documentation_and_writes_the_base_files(tmp_path: Path) -> None:
    doc = tmp_path / "usr/share/doc/bash"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text("c")
    (doc / "README").write_text("r")
    (tmp_path / "usr/share/doc/libfoo").symlink_to("bash")  # Debian links some doc dirs
    (tmp_path / "usr/share/man/man1").mkdir(parents=True)
    (tmp_path / "usr/share/man/man1/ls.1.gz").write_text("m")
    (tmp_path / "var/lib/apt/lists/partial").mkdir(parents=True)
    (tmp_path / "var/lib/apt/lists/deb.debian.org_debian_dists_trixie_InRelease").write_text("i")
    (tmp_path / "var/lib/apt/lists/lock").write_text("")
    (tmp_path / "etc/apt").mkdir(parents=True)
    (tmp_path / "etc/apt/sources.list").write_text("deb http://deb.debian.org/debian trixie main")
    (tmp_path / "etc/resolv.conf").write_text("nameserver 10.0.0.1")
    slim(tmp_path)
    assert (doc / "copyright").is_file()
    assert not (doc / "README").exists()
    assert not (tmp_path / "usr/share/doc/libfoo").is_symlink()
    assert (tmp_path / "usr/share/man").is_dir()
    assert not (tmp_path / "usr/share/man/man1").exists()
    assert sorted(p.name for p in (tmp_path / "var/lib/apt/lists").iterdir()) == ["lock", "partial"]
    assert not (tmp_path / "etc/apt/sources.list").exists()
    assert not (tmp_path / "etc/resolv.conf").exists()
    assert (tmp_path / "etc/apt/sources.list.d/debian.sources").is_file()
    assert (tmp_path / "etc/hostname").read_text() == "localhost\n"


def test_remove_tree(tmp_path: Path) -> None:
    tree = tmp_path / "rootfs"
    (tree / "usr/bin").mkdir(parents=True)
    (tree / "usr/bin/x").write_text("x")
    remove_tree(tree)
    assert not tree.exists()
    remove_tree(tree)  # already gone: nothing to do


def test_state_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "state" / "x.json"
    assert read_state(path) == {}
    write_state(path, {"key": "k", "id": "i"})
    assert read_state(path) == {"key": "k", "id": "i"}
    path.write_text("[1]")
    assert read_state(path) == {}


def test_a_failing_step_raises_with_the_end_of_its_log(tmp_path: Path) -> None:
    tools = Tools(Layout(tmp_path, run=tmp_path / "run"), {"PATH": os.environ["PATH"]})
    log = tmp_path / "logs" / "step.log"
    script = "for i in $(seq 1 40); do echo line$i; done; echo oops >&2; exit 3"
    with pytest.raises(BuildFailed) as failed:
        tools.run(["sh", "-c", script], log, "build image 'x'")
    message = str(failed.value)
    assert message.startswith("failed to build image 'x': `sh` exited 3;")
    assert "line40\noops" in message
    assert "line5\n" not in message  # only the end
    assert log.read_text().startswith("$ sh -c ")
    assert tools.run(["sh", "-c", "echo ok"], log, "say ok") == "ok\n"
