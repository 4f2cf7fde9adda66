"""The kernel test lane: boot Debian's own kernel under QEMU and run tests/kernel inside it.

This machine's kernel lacks bonding, 8021q, ipvlan and dummy. Debian's `linux-image-amd64`
has them as modules, so the lane fetches that package's versioned kernel (`apt-get download`,
never installed), unpacks it with `dpkg -x` into a cache outside the repository
(`$SPIDERNET_CACHE/kernel/<version>/`, `/var/cache/spidernet` by default), makes its modules
visible with `depmod -b`, and boots it with virtme-ng: TCG (`--disable-kvm`; nested KVM hangs
at boot), the host's root filesystem over 9p (`--force-9p`), read-only except for the
directory the JUnit report goes to (`--rwdir`). virtme-ng finds the modules beside the image
(`<dir>/lib/modules/<version>`) and links them at the guest's `/lib/modules/<version>`.

The planning (paths, the vng command line, the script the guest runs, reading the outcome) is
pure, in kernelplan.py; getting the kernel (apt, dpkg, depmod) is kernelfetch.py; booting the
VM and running the lane are here.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from . import qemufetch
from .kernelfetch import obtain, precompile
from .kernelplan import (
    LOG_TAIL,
    TESTS,
    GuestRun,
    KernelVmError,
    Nics,
    VmResult,
    VmSpec,
    cache_dir,
    console_line,
    explain,
    guest_script,
    parse_status,
    spec_from_env,
    vng_command,
)

# -- effects: the VM -------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return kids
    for task in tasks:
        try:
            kids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return kids


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc/<pid>/task/*/children)."""
    found: list[int] = []
    todo = _children(pid)
    while todo:
        p = todo.pop()
        found.append(p)
        todo += _children(p)
    return found


def _is_qemu(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().startswith("qemu-system")
    except OSError:
        return False


def _kill_qemu_of(proc: subprocess.Popen[bytes]) -> None:
    """Kill the qemu this vng started (and, should it not end, that vng itself)."""
    for pid in descendants(proc.pid):
        if _is_qemu(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _pump(source: IO[bytes], log: IO[bytes]) -> None:
    started = False
    for line in iter(source.readline, b""):
        log.write(line)
        show, started = console_line(line, started)
        if show:
            sys.stdout.buffer.write(line)
            sys.stdout.flush()


def boot(cmd: Sequence[str], spec: VmSpec, log: Path, status: Path) -> VmResult:
    """Run `cmd` (vng) for at most `spec.timeout` seconds, all its output (the guest's kernel
    log too) into `log` and the guest script's on stdout; then read the status file the
    guest wrote. At the time limit, the qemu that this vng started is killed."""
    status.unlink(missing_ok=True)
    env = dict(os.environ)
    # vng starts virtme-run by name: the venv's bin directory comes first.
    env["PATH"] = f"{Path(cmd[0]).parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    start = time.monotonic()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
        )
        assert proc.stdout is not None
        expired = threading.Event()

        def on_timeout() -> None:
            expired.set()
            _kill_qemu_of(proc)

        timer = threading.Timer(spec.timeout, on_timeout)
        timer.daemon = True
        timer.start()
        try:
            _pump(proc.stdout, out)
            code = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                _kill_qemu_of(proc)
    try:
        guest = parse_status(status.read_text())
    except OSError:
        guest = None
    if guest is None:
        tail = log.read_bytes().splitlines()[-LOG_TAIL:]
        sys.stdout.buffer.write(b"\n".join([b"--- end of the VM log ---", *tail, b""]))
        sys.stdout.flush()
    return VmResult(
        None if expired.is_set() else code, expired.is_set(), guest, time.monotonic() - start
    )


def vng_binary() -> Path:
    """virtme-ng's vng beside this interpreter (the project's venv)."""
    vng = Path(sys.executable).parent / "vng"
    if not vng.exists():
        found = shutil.which("vng")
        if found is None:
            raise KernelVmError("virtme-ng (vng) is not installed: run 'make test'")
        vng = Path(found)
    if shutil.which("qemu-system-x86_64") is None:
        raise KernelVmError("qemu-system-x86_64 is missing: run 'make test'")
    return vng


@dataclass(frozen=True)
class LaneRun:
    """The lane's verdict: `ok`, a one-line `note`, and where the time went."""

    ok: bool
    note: str
    fetch_seconds: float = 0.0
    vm_seconds: float = 0.0


def run_lane(project: Path, junit: Path, spec: VmSpec | None = None, tests: str = TESTS) -> LaneRun:
    """Get the kernel, boot it, run `tests` in it; the JUnit report ends up at `junit` (its
    directory is shared read-write with the guest). `spec` defaults to spec_from_env."""
    start = time.monotonic()
    try:
        spec = spec or spec_from_env(os.environ)
        vng = vng_binary()
        kernel, how = obtain(cache_dir(os.environ))
    except KernelVmError as e:
        return LaneRun(False, str(e), time.monotonic() - start)
    try:
        qemu = qemufetch.obtain()
    except KernelVmError as e:
        return LaneRun(False, str(e), time.monotonic() - start)
    nics = Nics(qemu.binary, tuple(qemu.data_dirs()))
    precompile(project)
    fetched = time.monotonic() - start
    print(f"kernelvm: Debian kernel {kernel.version} ({how}, {fetched:.1f}s) in {kernel.root}")
    shared = junit.parent
    shared.mkdir(parents=True, exist_ok=True)
    status = shared / "kernel-guest-status"
    run = GuestRun(project, Path(sys.executable), junit, status, tests)
    cmd = vng_command(vng, kernel, guest_script(run), [shared], spec, nics=nics)
    result = boot(cmd, spec, shared / "kernel-vm.log", status)
    why = explain(result, junit.exists(), spec)
    if why:
        why += f" (log: {shared / 'kernel-vm.log'})"
    note = why or f"Debian kernel {kernel.version} ({how}); VM {result.seconds:.0f}s"
    return LaneRun(not why, note, fetched, result.seconds)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m spidernet.testbed.kernelvm`: fetch the kernel, or run the lane."""
    parser = argparse.ArgumentParser(prog="python -m spidernet.testbed.kernelvm")
    parser.add_argument("--fetch-only", action="store_true", help="only fetch and unpack")
    parser.add_argument("--project", type=Path, default=Path.cwd())
    parser.add_argument("--junit", type=Path, help="default: <project>/.build/junit-kernel.xml")
    parser.add_argument("--tests", default=TESTS, help=f"what pytest runs (default: {TESTS})")
    parser.add_argument("--timeout", type=float, help="seconds (SPIDERNET_KERNEL_TIMEOUT)")
    parser.add_argument("--memory", help="qemu -m (SPIDERNET_KERNEL_MEMORY)")
    parser.add_argument("--cpus", type=int, help="vCPUs (SPIDERNET_KERNEL_CPUS)")
    args = parser.parse_args(argv)
    if args.fetch_only:
        try:
            kernel, how = obtain(cache_dir(os.environ))
        except KernelVmError as e:
            print(f"kernelvm: {e}", file=sys.stderr)
            return 1
        print(f"{kernel.version} ({how}) in {kernel.root}")
        return 0
    project = args.project.resolve()
    junit = args.junit or project / ".build" / "junit-kernel.xml"
    try:
        env = spec_from_env(os.environ)
    except KernelVmError as e:
        print(f"kernelvm: {e}", file=sys.stderr)
        return 1
    spec = VmSpec(args.memory or env.memory, args.cpus or env.cpus, args.timeout or env.timeout)
    lane = run_lane(project, junit.resolve(), spec, args.tests)
    print(f"kernelvm: {'ok' if lane.ok else 'FAILED'}: {lane.note}", file=sys.stderr)
    return 0 if lane.ok else 1


if __name__ == "__main__":
    sys.exit(main())
