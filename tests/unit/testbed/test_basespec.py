"""The base image's recipe, as data (spidernet.testbed.basespec)."""

from __future__ import annotations

from pathlib import Path

from spidernet.testbed.basespec import (
    BASE,
    BASE_CHANGES,
    BASE_FILES,
    BASE_REMOVE,
    MIRROR,
    SLIM_ROOTS,
    base_key,
    base_tar_argv,
    debian_sources,
    debootstrap_argv,
    dpkg_slim_cfg,
    import_argv,
    slimmed,
)


def test_debootstrap_makes_trixie_minbase_from_debians_archive() -> None:
    argv = debootstrap_argv(Path("/w/rootfs"))
    assert argv[argv.index("debootstrap") :] == [
        "debootstrap",
        "--variant=minbase",
        "trixie",
        "/w/rootfs",
        "http://deb.debian.org/debian",
    ]
    assert MIRROR.startswith("http://deb.debian.org/")


def test_slim_keeps_copyrights_and_drops_documentation() -> None:
    assert slimmed("/usr/share/doc/bash/README.gz")
    assert slimmed("/usr/share/doc/bash/examples/x")  # `*` crosses `/`, as in dpkg
    assert not slimmed("/usr/share/doc/bash/copyright")
    assert slimmed("/usr/share/man/man1/ls.1.gz")
    assert slimmed("/usr/share/locale/de/LC_MESSAGES/apt.mo")
    assert not slimmed("/usr/share/zoneinfo/UTC")
    assert not slimmed("/usr/bin/bash")
    assert "usr/share/doc" in SLIM_ROOTS
    cfg = dpkg_slim_cfg().splitlines()
    assert "path-exclude /usr/share/doc/*" in cfg
    assert cfg[-1] == "path-include /usr/share/doc/*/copyright"  # after the excludes: it wins


def test_the_base_gets_debians_sources_and_none_of_the_hosts_files() -> None:
    sources = debian_sources()
    assert "Suites: trixie trixie-updates" in sources
    assert "URIs: http://deb.debian.org/debian-security\nSuites: trixie-security" in sources
    assert BASE_FILES["etc/apt/sources.list.d/debian.sources"] == sources
    assert "etc/dpkg/dpkg.cfg.d/spidernet-slim" in BASE_FILES
    assert BASE_FILES["etc/hostname"] == "localhost\n"
    assert BASE_FILES["etc/machine-id"] == ""
    assert "etc/resolv.conf" in BASE_REMOVE
    assert "etc/apt/sources.list" in BASE_REMOVE


def test_tar_and_import() -> None:
    argv = base_tar_argv(Path("/w/rootfs"), Path("/w/base.tar.partial"))
    assert argv[0] == "tar"
    assert {"--numeric-owner", "--xattrs", "--exclude=./proc/*", "--exclude=./dev/*"} <= set(argv)
    assert argv[-5:] == ["-C", "/w/rootfs", "-cf", "/w/base.tar.partial", "."]
    imported = import_argv(Path("/w/base.tar"))
    assert imported[:2] == ["podman", "import"]
    assert imported[-2:] == ["/w/base.tar", BASE]
    assert [imported[i + 1] for i, a in enumerate(imported) if a == "--change"] == list(
        BASE_CHANGES
    )
    assert BASE == "localhost/spidernet/debian:trixie"


def test_base_key_is_stable() -> None:
    assert base_key() == base_key()
    assert len(base_key()) == 64
