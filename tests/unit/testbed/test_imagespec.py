"""The images' names, layout, tool configuration and command lines, as data
(spidernet.testbed.imagespec), and what deploy/Dockerfile must take from the test bed."""

from __future__ import annotations

import re
import shlex
import struct
import tomllib
from pathlib import Path

import pytest

from spidernet.testbed.basespec import BASE
from spidernet.testbed.imagespec import (
    BUSYBOX,
    BUSYBOX_CONTAINERFILE,
    PAUSE,
    PAUSE_CONTAINERFILE,
    PAUSE_SCRIPT,
    PIP_CA_SECRET,
    Layout,
    applet_links,
    bud_argv,
    built_ids,
    containers_conf,
    content_key,
    dockerignore_patterns,
    ignored,
    is_static_elf,
    layout,
    save_argv,
    short_name,
    spidernet_image,
    storage_conf,
    tool_env,
    tree_key,
)

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def test_names_and_their_files() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert spidernet_image(version) == f"localhost/spidernet/spidernet:{version}"
    assert short_name(spidernet_image("0.1.0")) == "spidernet-0.1.0"
    assert short_name(PAUSE) == "pause-1"
    assert short_name(BUSYBOX) == "busybox-1"
    assert short_name(BASE) == "debian-trixie"
    lay = layout({"SPIDERNET_CACHE": "/c"})
    assert lay.root == Path("/c/images")
    assert lay.archive(PAUSE) == Path("/c/images/archives/pause-1.tar")
    assert lay.state(PAUSE) == Path("/c/images/state/pause-1.json")
    assert lay.base_tarball.parent == Path("/c/images/base")
    assert lay.base_tarball.name.startswith("debian-trixie-minbase-")
    assert layout({}).root == Path("/var/cache/spidernet/images")
    # Each store has run-time state of its own, under /run.
    assert lay.run.parent == layout({}).run.parent == Path("/run/spidernet-testbed")
    assert lay.run != layout({}).run
    assert layout({"SPIDERNET_CACHE": "/c"}).run == lay.run


def test_podman_and_buildah_run_with_runc_and_touch_no_host_network() -> None:
    lay = Layout(Path("/c/images"), run=Path("/run/x"))
    conf = tomllib.loads(containers_conf(lay))
    assert conf["engine"]["runtime"] == "runc"
    assert conf["containers"]["default_ulimits"] == []
    assert conf["engine"]["cgroup_manager"] == "cgroupfs"
    assert conf["engine"]["events_logger"] == "file"
    # Nothing defaults to podman's bridge, and Debian's bridge network file is never read.
    assert conf["containers"]["netns"] == "none"
    assert conf["network"]["network_config_dir"] == "/c/images/cni"
    assert conf["engine"]["tmp_dir"].startswith("/run/x/")
    storage = tomllib.loads(storage_conf(lay))["storage"]
    assert storage["graphroot"] == "/c/images/storage"
    assert storage["runroot"].startswith("/run/x/")
    env = tool_env(lay, {"PATH": "/bin"})
    assert env == {
        "PATH": "/bin",
        "CONTAINERS_CONF": "/c/images/containers.conf",
        "CONTAINERS_STORAGE_CONF": "/c/images/storage.conf",
    }


def test_bud_never_pulls_and_keeps_its_layers() -> None:
    argv = bud_argv(
        "localhost/x:1",
        Path("/ctx/deploy/Dockerfile"),
        Path("/ctx"),
        network="host",
        build_args={"BASE_IMAGE": BASE},
        secrets={PIP_CA_SECRET: Path("/ca.crt")},
        runtime_root=Path("/run/store/runc"),
    )
    bud = argv[argv.index("buildah") :]
    assert "--runtime-flag=root=/run/store/runc" in bud  # never this machine's /run/runc
    assert bud[:2] == ["buildah", "bud"]
    assert {"--layers", "--pull=never", "--force-rm", "--network=host"} <= set(bud)
    assert bud[bud.index("--build-arg") + 1] == f"BASE_IMAGE={BASE}"
    assert bud[bud.index("--secret") + 1] == "id=pip-ca,src=/ca.crt"
    assert bud[-5:] == ["-f", "/ctx/deploy/Dockerfile", "-t", "localhost/x:1", "/ctx"]
    plain = bud_argv("localhost/x:1", Path("/c/F"), Path("/c"), network="none")
    assert "--secret" not in plain
    assert "--build-arg" not in plain
    assert not [a for a in plain if a.startswith("--runtime-flag")]


def test_archives_are_docker_archives_named_by_the_image() -> None:
    argv = save_argv(PAUSE, Path("/a/pause-1.tar"))
    assert argv == [
        "podman",
        "save",
        "--format",
        "docker-archive",
        "-o",
        "/a/pause-1.tar",
        PAUSE,
    ]


def test_tree_key_sees_content_kind_and_path_not_order() -> None:
    files = [("a.py", "f", b"x = 1\n"), ("bin/run", "x", b"#!/bin/sh\n")]
    key = tree_key(files)
    assert tree_key(reversed(files)) == key
    assert tree_key([("a.py", "f", b"x = 2\n"), files[1]]) != key
    assert tree_key([files[0], ("bin/run", "f", b"#!/bin/sh\n")]) != key
    assert tree_key([("b.py", "f", b"x = 1\n"), files[1]]) != key
    # Length-prefixed: moving bytes between a path and its content changes the key.
    assert tree_key([("ab", "f", b"c")]) != tree_key([("a", "f", b"bc")])
    assert content_key("base", key) != content_key("other-base", key)
    assert content_key("base", key) == content_key("base", key)


def test_built_ids_reads_cache_hits_and_new_layers() -> None:
    output = (
        "[1/2] STEP 2/7: RUN apt-get update\n"
        "--> Using cache 8d16576b998e89997d1eaa7c16ed3d007e6b5831785f37f8920f27d84d3123e9\n"
        "--> 8d16576b998\n"
        "[1/2] STEP 6/7: COPY . /src/spidernet\n"
        "--> e1a400d2dca\n"
        "Processing /wheels/deps/x.whl --> not an id\n"
        "Successfully tagged localhost/spidernet/spidernet:0.1.0\n"
    )
    assert built_ids(output) == [
        "8d16576b998e89997d1eaa7c16ed3d007e6b5831785f37f8920f27d84d3123e9",
        "8d16576b998",
        "e1a400d2dca",
    ]


def _elf(program_header_types: list[int]) -> bytes:
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x20, 64)  # e_phoff
    struct.pack_into("<HH", header, 0x36, 56, len(program_header_types))
    for t in program_header_types:
        header += struct.pack("<I", t) + bytes(52)
    return bytes(header)


def test_is_static_elf() -> None:
    pt_load, pt_interp, pt_note = 1, 3, 4
    assert is_static_elf(_elf([pt_load, pt_load, pt_note]))
    assert not is_static_elf(_elf([pt_load, pt_interp, pt_load]))
    assert not is_static_elf(b"#!/bin/sh\n")
    assert not is_static_elf(_elf([pt_load])[:70])  # truncated program headers


def test_applet_links() -> None:
    assert applet_links("sh\nbusybox\nping\n\nip\nsh\n") == ["ip", "ping", "sh"]


def test_pause_exits_on_sigterm_and_sigint_and_busybox_has_its_applets() -> None:
    assert "COPY rootfs/bin/busybox /bin/busybox" in PAUSE_CONTAINERFILE
    assert PAUSE_SCRIPT.startswith("trap 'exit 0' TERM INT;")
    entrypoint = re.search(r"^ENTRYPOINT (.*)$", PAUSE_CONTAINERFILE, re.MULTILINE)
    assert entrypoint is not None
    assert PAUSE_SCRIPT in entrypoint.group(1)
    assert "COPY rootfs/ /" in BUSYBOX_CONTAINERFILE
    assert "ENV PATH=" in BUSYBOX_CONTAINERFILE


def _instructions() -> list[str]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_dockerfile_takes_the_base_as_an_argument_defaulting_to_debian_slim() -> None:
    lines = _instructions()
    assert lines[0] == "ARG BASE_IMAGE=debian:trixie-slim"
    froms = [line for line in lines if line.startswith("FROM ")]
    assert froms == ["FROM ${BASE_IMAGE} AS build", "FROM ${BASE_IMAGE}"]


def test_dockerfile_pip_steps_use_the_ca_secret_only_when_it_is_there() -> None:
    steps = [line for line in _instructions() if "/bin/pip " in line and line.startswith("RUN")]
    downloading = [s for s in steps if "--no-index" not in s]
    assert downloading, "the dependencies are downloaded in some step"
    for step in downloading:
        words = shlex.split(step)
        assert f"--mount=type=secret,id={PIP_CA_SECRET}" in words
        assert f"if [ -f /run/secrets/{PIP_CA_SECRET} ]; then export PIP_CERT=" in step
    for step in steps:
        if step not in downloading:
            assert "secret" not in step  # offline steps get no CA
    assert "PIP_CERT" not in "".join(line for line in _instructions() if line.startswith("ENV"))


def test_dockerfile_downloads_before_it_copies_the_source() -> None:
    lines = _instructions()
    copy_all = lines.index("COPY . /src/spidernet")
    downloading = [i for i, line in enumerate(lines) if "--mount=type=secret" in line]
    assert downloading
    assert max(downloading) < copy_all
    apt = [i for i, line in enumerate(lines) if "apt-get install" in line]
    assert len(apt) == 2
    assert apt[0] < copy_all


def test_dockerignore_matches_as_docker_does() -> None:
    patterns = dockerignore_patterns("# c\n\n/.git\n./build/\n**/__pycache__\n*.egg-info\n")
    assert patterns == [".git", "build", "**/__pycache__", "*.egg-info"]
    assert ignored(".git/config", patterns)
    assert ignored("build/lib/x.py", patterns)
    assert not ignored("node/build/x.py", patterns)  # anchored at the context's root
    assert ignored("__pycache__/x.pyc", patterns)
    assert ignored("cni/__pycache__/skel.pyc", patterns)
    assert ignored("spidernet.egg-info/PKG-INFO", patterns)
    assert not ignored("node/x.egg-info", patterns)  # `*` does not cross `/`
    assert not ignored("cni/skel.py", patterns)
    with pytest.raises(ValueError, match="exception"):
        dockerignore_patterns("tests\n!tests/keep.py\n")


def test_the_public_context_holds_what_the_wheel_needs_and_no_tests() -> None:
    patterns = dockerignore_patterns((ROOT / "deploy" / "Dockerfile.dockerignore").read_text())
    for kept in (
        "pyproject.toml",
        "README.md",
        "cli.py",
        "bpf/conflict_watch.c",
        "cni/forward.c",
    ):
        assert not ignored(kept, patterns), kept
    # (The Dockerfile reaches the builder apart from the context: `-f`.)
    for left_out in (
        "tests/unit/conftest.py",
        "testbed/images.py",
        "bench/ipam.py",
        "docs/x.md",
        "deploy/kustomization.yaml",
        "deploy/Dockerfile",
        "Makefile",
    ):
        assert ignored(left_out, patterns), left_out
