"""The kernel lane's kernel (testbed/kernelvm.py): which one apt names, fetching and unpacking
it into the cache (`apt-get download`, `dpkg -x`, `depmod -b`), falling back on the cache
when apt cannot help, and byte-compiling the project for the guest."""

from __future__ import annotations

import compileall
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .kernelplan import (
    META_PACKAGE,
    VERSION,
    Kernel,
    KernelVmError,
    kernel_in,
    parse_depends,
    version_key,
)


def run(cmd: Sequence[str], *, cwd: Path | None = None, timeout: float = 600) -> str:
    """Run `cmd`; its stdout. KernelVmError naming its last line of stderr when it fails."""
    try:
        done = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, check=False, timeout=timeout
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise KernelVmError(f"{cmd[0]}: {e}") from e
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise KernelVmError(f"{shlex.join(cmd)} exited {done.returncode}: {last}")
    return done.stdout


def cached(cache: Path) -> list[Kernel]:
    """The complete kernels in `cache`, newest first."""
    if not cache.is_dir():
        return []
    found = [kernel_in(cache, d.name) for d in cache.iterdir() if VERSION.fullmatch(d.name)]
    done = [k for k in found if k.image.is_file() and (k.modules / "modules.dep").is_file()]
    return sorted(done, key=lambda k: version_key(k.version), reverse=True)


def resolve(cache: Path) -> Kernel:
    """The kernel `linux-image-amd64` names now; when apt cannot say (no package lists, no
    network), the newest kernel already in `cache`."""
    for attempt in range(2):
        try:
            version = parse_depends(run(["apt-cache", "depends", META_PACKAGE]))
        except KernelVmError:
            version = None
        if version is not None:
            return kernel_in(cache, version)
        if attempt == 0:
            try:
                run(["apt-get", "update", "-qq"])
            except KernelVmError as e:
                print(f"kernelvm: {e}", file=sys.stderr)
    have = cached(cache)
    if have:
        print(f"kernelvm: apt cannot resolve {META_PACKAGE}; using cached {have[0].version}")
        return have[0]
    raise KernelVmError(f"apt cannot resolve {META_PACKAGE} and no kernel is cached in {cache}")


def ensure(kernel: Kernel) -> bool:
    """Make `kernel` present, unpacked and depmod'ed; True when it had to be downloaded.

    The package goes to a scratch directory beside the cache and the tree is renamed into
    place only when complete, so an interrupted fetch leaves nothing that looks usable.
    Other versions in the cache (this lane's earlier kernels) are removed afterwards."""
    if kernel in cached(kernel.root.parent):
        return False
    cache = kernel.root.parent
    cache.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".fetch-", dir=cache))
    try:
        # _apt cannot write to a root-owned scratch directory: download as root, quietly.
        download = ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root"]
        run([*download, kernel.package], cwd=scratch)
        debs = sorted(scratch.glob(f"{kernel.package}_*.deb"))
        if not debs:
            raise KernelVmError(f"apt-get download left no {kernel.package} package")
        tree = scratch / "root"
        run(["dpkg", "-x", str(debs[0]), str(tree)])
        run(["depmod", "-b", str(tree), kernel.version])
        unpacked = Kernel(kernel.version, tree)
        if not (unpacked.image.is_file() and (unpacked.modules / "modules.dep").is_file()):
            raise KernelVmError(f"{debs[0].name} holds no {unpacked.image.name} or modules")
        shutil.rmtree(kernel.root, ignore_errors=True)
        tree.rename(kernel.root)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for old in cached(cache):
        if old.version != kernel.version:
            shutil.rmtree(old.root, ignore_errors=True)
    return True


def obtain(cache: Path) -> tuple[Kernel, str]:
    """The kernel to boot and how it came ("downloaded", "cached"): the one apt names, or,
    when that one cannot be had (no network), the newest one cached."""
    kernel = resolve(cache)
    try:
        return kernel, "downloaded" if ensure(kernel) else "cached"
    except KernelVmError as e:
        have = cached(cache)
        if not have:
            raise
        print(f"kernelvm: {e}; using the cached {have[0].version}", file=sys.stderr)
        return have[0], f"cached; {kernel.version} could not be fetched"


def precompile(project: Path) -> None:
    """Byte-compile the project's own modules here, at native speed. The guest cannot write
    bytecode (its view of the project is read-only), so without this every process in it
    (`spidernet serve`, each CNI plugin) would compile them again, emulated."""
    for path in sorted(project.iterdir()):
        if path.name.startswith(".") or path.name in ("tests", "build", "dist"):
            continue
        if path.is_dir() and (path / "__init__.py").is_file():
            compileall.compile_dir(path, quiet=1)
        elif path.suffix == ".py":
            compileall.compile_file(path, quiet=1)


__all__ = ["cached", "ensure", "obtain", "precompile", "resolve", "run"]
