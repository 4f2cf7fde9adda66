"""Kernel headers for bcc on a machine that may not have them where bcc looks.

bcc compiles eBPF C against the running kernel's headers, by default
/lib/modules/RELEASE/build. Debian ships them as linux-headers-R-amd64 (the generated half)
and linux-headers-R-common (the source half) under /usr/src, and a VM kernel may have no
/lib/modules at all. This finds usable headers without writing to /lib/modules: the
operator's BCC_KERNEL_SOURCE, bcc's default, the kernel's own archive (CONFIG_IKHEADERS),
or Debian's split tree (BCC_KERNEL_SOURCE at its source half, the generated half as
compiler flags).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from spidernet.node.errors import NodeError

GENERATED_CONFIG = Path("include/generated/autoconf.h")


class HeadersMissing(NodeError):
    """Raised when no kernel headers for bcc are found."""


@dataclass(frozen=True)
class Headers:
    """How bcc finds kernel headers: variables to set in the environment, extra compiler
    flags, and a description of where they are."""

    env: Mapping[str, str]
    cflags: tuple[str, ...]
    where: str


def _version_key(path: Path) -> list[int | str]:
    # re.split with a group alternates text and digits, so the keys compare position-wise.
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _source_of(build: Path) -> Path:
    """The source tree of a kernel build directory: itself, or (Debian's split packages,
    linux-headers-R-amd64 and linux-headers-R-common) the one its Makefile includes."""
    if (build / "include" / "linux").is_dir():
        return build
    try:
        makefile = (build / "Makefile").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return build
    found = re.search(r"^include\s+(\S+)/Makefile\s*$", makefile, re.MULTILINE)
    return Path(found.group(1)) if found else build


def _generated_flags(build: Path) -> tuple[str, ...]:
    """-I flags for the generated headers of a build directory whose source tree is
    elsewhere. bcc's loader (kbuild_helper.cc) runs clang in BCC_KERNEL_SOURCE and names
    every kernel include directory relative to it, so a split tree's generated half
    (autoconf.h, asm/ and uapi/ of the configured kernel) comes in as extra flags; they
    follow bcc's own and only hold what the source tree lacks."""
    flags = []
    for arch in sorted((build / "arch").glob("*/include/generated")):
        flags += [f"-I{arch}/uapi", f"-I{arch}"]
    return (*flags, f"-I{build}/include", f"-I{build}/include/generated/uapi")


def kernel_headers(
    release: str,
    environ: Mapping[str, str],
    *,
    modules: Path = Path("/lib/modules"),
    sources: Path = Path("/usr/src"),
    kheaders: Path = Path("/sys/kernel/kheaders.tar.xz"),
) -> Headers:
    """Where bcc finds headers for kernel `release`: BCC_KERNEL_SOURCE when the
    environment sets it (the operator's choice, as is); else `modules`/RELEASE/build
    (bcc's default); else the kernel's own archive (CONFIG_IKHEADERS, which bcc unpacks);
    else a linux-headers-* build directory under `sources` (the one for `release`, or
    the newest: a tc program uses only the kernel's stable UAPI, so another release's
    headers compile it), BCC_KERNEL_SOURCE pointed at its source tree. Raises
    HeadersMissing."""
    given = environ.get("BCC_KERNEL_SOURCE")
    if given:
        return Headers({}, (), f"{given} (BCC_KERNEL_SOURCE)")
    default = modules / release / "build"
    if default.is_dir():
        return Headers({}, (), str(default))
    if kheaders.is_file():
        return Headers({}, (), str(kheaders))
    builds = sorted(
        (d for d in sources.glob("linux-headers-*") if (d / GENERATED_CONFIG).is_file()),
        key=_version_key,
    )
    if not builds:
        raise HeadersMissing(
            f"no kernel headers: {default} is missing, the kernel has no {kheaders} and "
            f"{sources} holds no linux-headers-* (Debian: apt-get install linux-headers-amd64)"
        )
    exact = [b for b in builds if b.name == f"linux-headers-{release}"]
    build = (exact or builds)[-1]
    source = _source_of(build)
    flags = () if source == build else _generated_flags(build)
    where = str(build) if source == build else f"{source} and {build}"
    return Headers({"BCC_KERNEL_SOURCE": str(source)}, flags, where)


@cache
def machine_headers() -> Headers:
    """This machine's headers, found once: the first watcher sets BCC_KERNEL_SOURCE, which
    later ones would otherwise take for the operator's (a failure is not remembered)."""
    found = kernel_headers(os.uname().release, os.environ)
    os.environ.update(found.env)  # read by bcc's loader (loader.cc)
    return found
