"""The base image's recipe, as data: Debian trixie `minbase` from `debootstrap`, trimmed as
Debian's own slim images are, and the command lines that make and import it.

`debian:trixie-slim` (what deploy/Dockerfile starts from elsewhere) is made by Debian's
debuerreotype: a minbase debootstrap, then dpkg excludes for documentation and apt settings
that keep caches out of layers. This is the same recipe on this machine; imagebase runs it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from fnmatch import fnmatchcase
from pathlib import Path

SUITE = "trixie"
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
BASE = f"localhost/spidernet/debian:{SUITE}"
# Bump when the code that makes the base changes in a way base_key cannot see.
BASE_RECIPE = "1"


# What debuerreotype's slim images leave out (dpkg path-excludes, dpkg.cfg(5)), for the files
# debootstrap already installed and, through the same file in the image, for every later
# `apt-get install`. Copyright files stay.
SLIM_EXCLUDES = (
    "/usr/share/doc/*",
    "/usr/share/groff/*",
    "/usr/share/info/*",
    "/usr/share/linda/*",
    "/usr/share/lintian/*",
    "/usr/share/locale/*",
    "/usr/share/man/*",
)
SLIM_INCLUDES = ("/usr/share/doc/*/copyright",)
# The directories the excludes cover, relative to the root: where already installed files go.
SLIM_ROOTS = tuple(p.removeprefix("/").removesuffix("/*") for p in SLIM_EXCLUDES)


def slimmed(path: str) -> bool:
    """Whether dpkg leaves `path` (absolute, in the image) out under the slim excludes. As in
    dpkg, `*` matches `/` too and an include overrides the excludes."""
    excluded = any(fnmatchcase(path, p) for p in SLIM_EXCLUDES)
    return excluded and not any(fnmatchcase(path, p) for p in SLIM_INCLUDES)


def dpkg_slim_cfg() -> str:
    """/etc/dpkg/dpkg.cfg.d/spidernet-slim."""
    lines = [f"path-exclude {p}" for p in SLIM_EXCLUDES]
    lines += [f"path-include {p}" for p in SLIM_INCLUDES]
    return "# Keep documentation out, as Debian's slim images do.\n" + "\n".join(lines) + "\n"


# apt settings of Debian's official images (debuerreotype): no package or index caches in
# layers, no translations, compressed indexes.
APT_SLIM_CONF = """\
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
Acquire::GzipIndexes "true";
Apt::AutoRemove::SuggestsImportant "false";
"""  # noqa: E501 (one apt configuration statement per line)


def debian_sources() -> str:
    """/etc/apt/sources.list.d/debian.sources (deb822), as in Debian's images: the release,
    its updates and its security archive."""
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    return (
        f"Types: deb\nURIs: {MIRROR}\nSuites: {SUITE} {SUITE}-updates\n"
        f"Components: main\nSigned-By: {keyring}\n\n"
        f"Types: deb\nURIs: {SECURITY_MIRROR}\nSuites: {SUITE}-security\n"
        f"Components: main\nSigned-By: {keyring}\n"
    )


# Files written into the base after debootstrap, relative to its root.
BASE_FILES: Mapping[str, str] = {
    "etc/dpkg/dpkg.cfg.d/spidernet-slim": dpkg_slim_cfg(),
    "etc/apt/apt.conf.d/spidernet-slim": APT_SLIM_CONF,
    "etc/apt/sources.list.d/debian.sources": debian_sources(),
    # debootstrap copies the host's name; the runtime mounts the container's own over it.
    "etc/hostname": "localhost\n",
    # Empty, as in Debian's images: systemd (if ever run) makes one on first boot.
    "etc/machine-id": "",
}
# Removed from the base after debootstrap: the host's resolver configuration, the old-style
# sources list that debian.sources replaces, and apt's downloaded packages and indexes.
BASE_REMOVE = (
    "etc/resolv.conf",
    "etc/apt/sources.list",
    "var/cache/apt/archives/*.deb",
    "var/cache/apt/*.bin",
    "var/lib/apt/lists/*_*",
)
# The image configuration of Debian's own images.
BASE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    'CMD ["bash"]',
)


def debootstrap_argv(target: Path) -> list[str]:
    return ["nice", "-n", "19", "debootstrap", "--variant=minbase", SUITE, str(target), MIRROR]


def base_tar_argv(rootfs: Path, tarball: Path) -> list[str]:
    """GNU tar of the root file system, numeric owners and extended attributes (file
    capabilities live there), without what the runtime mounts over /dev, /proc and /sys."""
    return [
        "tar",
        "--numeric-owner",
        "--xattrs",
        "--xattrs-include=*",
        "--exclude=./dev/*",
        "--exclude=./proc/*",
        "--exclude=./sys/*",
        "-C",
        str(rootfs),
        "-cf",
        str(tarball),
        ".",
    ]


def import_argv(tarball: Path) -> list[str]:
    changes = [arg for change in BASE_CHANGES for arg in ("--change", change)]
    return ["podman", "import", *changes, str(tarball), BASE]


def base_key() -> str:
    """The base recipe's key: what debootstrap is asked for and what is done to its result."""
    recipe = {
        "recipe": BASE_RECIPE,
        "debootstrap": debootstrap_argv(Path("/")),
        "files": dict(BASE_FILES),
        "remove": BASE_REMOVE,
        "slim": [SLIM_EXCLUDES, SLIM_INCLUDES],
        "changes": BASE_CHANGES,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
