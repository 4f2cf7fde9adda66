"""QEMU 10 from Debian's bookworm-backports for the kernel lane: its igb NIC has SR-IOV, which
Debian 12's QEMU 7.2 does not emulate.

Nothing is installed: a private apt configuration (its own sources list naming only
bookworm-backports, its own package lists and archives under the cache) downloads
`qemu-system-x86`, `qemu-system-common`, `qemu-system-data` and `seabios` from backports and
`dpkg -x` unpacks them into `$SPIDERNET_CACHE/qemu/<version>/` (`/var/cache/spidernet` by
default), renamed into place only when complete. The system's own QEMU and apt state are
left alone. The unpacked binary runs against the system's libraries (checked: `--version`);
its firmware is found with `-L` (`data_dirs`).

    python -m spidernet.testbed.qemufetch      # fetch or find it; print the binary's path
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .kernelfetch import run
from .kernelplan import CACHE_ENV, DEFAULT_CACHE, KernelVmError

SUITE = "bookworm-backports"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("qemu-system-x86", "qemu-system-common", "qemu-system-data", "seabios")
_VERSION = re.compile(r"QEMU emulator version (\d+)\.(\d+)")
MINIMUM = (8, 0)  # the first QEMU whose igb has SR-IOV


@dataclass(frozen=True)
class Qemu:
    """An unpacked QEMU: its tree and what the lane passes to vng."""

    root: Path

    @property
    def binary(self) -> Path:
        return self.root / "usr" / "bin" / "qemu-system-x86_64"

    def data_dirs(self) -> list[Path]:
        """Where its firmware lives (qemu's -L, searched in order)."""
        return [self.root / "usr" / "share" / "qemu", self.root / "usr" / "share" / "seabios"]


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE) / "qemu"


def version_of(binary: Path) -> tuple[int, int] | None:
    """(major, minor) of a QEMU binary that runs here, else None."""
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, check=False, timeout=30
        ).stdout
    except OSError:
        return None
    found = _VERSION.search(out)
    return (int(found.group(1)), int(found.group(2))) if found else None


def _apt_options(state: Path) -> list[str]:
    """apt options that keep every file under `state` and read only the backports list."""
    sources = state / "sources.list"
    sources.write_text(f"deb {MIRROR} {SUITE} main\n")
    (state / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (state / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    return [
        "-o", f"Dir::Etc::sourcelist={sources}",
        "-o", "Dir::Etc::sourceparts=/dev/null",
        "-o", f"Dir::State::Lists={state / 'lists'}",
        "-o", f"Dir::Cache={state}",
        "-o", "APT::Sandbox::User=root",
    ]  # fmt: skip


def obtain() -> Qemu:
    """The cached QEMU from backports, fetched and unpacked when missing; KernelVmError when
    it cannot be had or does not run here."""
    cache = cache_dir()
    current = Qemu(cache / "current")
    found = version_of(current.binary)
    if found is not None and found >= MINIMUM:
        return current
    cache.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".fetch-", dir=cache))
    try:
        opts = _apt_options(scratch)
        run(["apt-get", *opts, "update", "-qq"])
        run(["apt-get", *opts, "download", "-q", *(f"{p}/{SUITE}" for p in PACKAGES)], cwd=scratch)
        tree = scratch / "root"
        for deb in sorted(scratch.glob("*.deb")):
            run(["dpkg", "-x", str(deb), str(tree)])
        unpacked = Qemu(tree)
        found = version_of(unpacked.binary)
        if found is None or found < MINIMUM:
            raise KernelVmError(f"the QEMU from {SUITE} does not run here (version {found})")
        shutil.rmtree(current.root, ignore_errors=True)
        tree.rename(current.root)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return current


def main() -> int:
    try:
        qemu = obtain()
    except KernelVmError as e:
        print(f"qemufetch: {e}", file=sys.stderr)
        return 1
    print(qemu.binary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
