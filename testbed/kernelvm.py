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
pure; the effects (apt, dpkg, depmod, the VM) are the functions below it.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

DEFAULT_CACHE = Path("/var/cache/spidernet")
CACHE_ENV = "SPIDERNET_CACHE"
# Set in the guest by the script below; tests/kernel/conftest.py refuses to run without it.
LANE_ENV = "SPIDERNET_KERNEL_LANE"
META_PACKAGE = "linux-image-amd64"
TESTS = "tests/kernel"
# The modules the lane's tests need; the guest must load every one from the unpacked tree.
MODULES = ("bonding", "8021q", "ipvlan", "dummy", "macvlan", "veth")

# Python is slow under TCG: `spidernet serve` takes about a minute to answer in the guest.
SERVICE_START_TIMEOUT_S = 300.0
LOG_TAIL = 25  # lines of the VM log shown when the guest never reported back
SCRIPT_START = b"virtme-ng-init: starting script"
_KERNEL_LOG = re.compile(rb"^\[\s*\d+\.\d+\] ")
# 6.1.0-56-amd64 (bookworm), 6.12.43+deb13-amd64 (trixie): a plain directory name.
_VERSION = re.compile(r"\d[\w.+-]*-amd64")
_DEPENDS = re.compile(r"^\s*\|?Depends:\s*linux-image-(\S+)\s*$", re.MULTILINE)


class KernelVmError(Exception):
    """The lane could not get a kernel or boot it; the message is one line for the summary."""


# -- planning (pure) -------------------------------------------------------------------------


@dataclass(frozen=True)
class Kernel:
    """Debian's kernel `version` (e.g. 6.1.0-56-amd64) unpacked in `root`."""

    version: str
    root: Path

    @property
    def package(self) -> str:
        return f"linux-image-{self.version}"

    @property
    def image(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.version}"

    @property
    def modules(self) -> Path:
        return self.root / "lib" / "modules" / self.version


@dataclass(frozen=True)
class VmSpec:
    """The guest's size and the wall-clock limit on the whole VM run, in seconds.

    One vCPU: on this two-core machine a second one made the lane slower (399 s against
    327 s for the same tests), and with two the console lost the script's last lines."""

    memory: str = "2G"
    cpus: int = 1
    timeout: float = 900.0


@dataclass(frozen=True)
class GuestRun:
    """What the guest runs: pytest on `tests` from `project` with `python`, writing the JUnit
    report to `junit` and pytest's exit status to `status` (both on a read-write share)."""

    project: Path
    python: Path
    junit: Path
    status: Path
    tests: str = TESTS
    pytest_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class VmResult:
    """What one VM run did: vng's exit code (None when killed at the time limit), whether it
    timed out, pytest's exit status as the guest wrote it (None when it wrote none)."""

    returncode: int | None
    timed_out: bool
    guest_status: int | None
    seconds: float


def spec_from_env(env: Mapping[str, str]) -> VmSpec:
    """VmSpec's defaults, each overridable: SPIDERNET_KERNEL_TIMEOUT (seconds),
    SPIDERNET_KERNEL_CPUS, SPIDERNET_KERNEL_MEMORY (qemu's -m, e.g. 2G)."""
    default = VmSpec()
    try:
        return VmSpec(
            memory=env.get("SPIDERNET_KERNEL_MEMORY") or default.memory,
            cpus=int(env.get("SPIDERNET_KERNEL_CPUS") or default.cpus),
            timeout=float(env.get("SPIDERNET_KERNEL_TIMEOUT") or default.timeout),
        )
    except ValueError as e:
        raise KernelVmError(f"bad SPIDERNET_KERNEL_* setting: {e}") from e


def cache_dir(env: Mapping[str, str]) -> Path:
    """Where unpacked kernels live: `$SPIDERNET_CACHE/kernel`, else /var/cache/spidernet/kernel."""
    return Path(env.get(CACHE_ENV) or DEFAULT_CACHE) / "kernel"


def kernel_in(cache: Path, version: str) -> Kernel:
    """The kernel `version` as unpacked under `cache`."""
    if not _VERSION.fullmatch(version):
        raise KernelVmError(f"not a Debian amd64 kernel version: {version!r}")
    return Kernel(version, cache / version)


def parse_depends(text: str) -> str | None:
    """The kernel version `linux-image-amd64` depends on, from `apt-cache depends` output."""
    for match in _DEPENDS.finditer(text):
        if _VERSION.fullmatch(match.group(1)):
            return match.group(1)
    return None


def version_key(version: str) -> tuple[int, ...]:
    """A sort key: 6.1.0-56-amd64 -> (6, 1, 0, 56)."""
    return tuple(int(n) for n in re.findall(r"\d+", version))


def guest_script(run: GuestRun) -> str:
    """The shell script the guest runs: pytest from the project, then its exit status into
    `run.status`. No cache or bytecode writes: the shared root is read-only in the guest."""
    pytest = [
        str(run.python),
        "-m",
        "pytest",
        run.tests,
        f"--junitxml={run.junit}",
        "-q",
        "-p",
        "no:cacheprovider",
        "--color=no",
        *run.pytest_args,
    ]
    return "; ".join(
        [
            # Only warnings and worse from the kernel on the console from here on: its info
            # lines would land in the middle of pytest's.
            "dmesg -n 4",
            # New namespaces get no fallback tunnels (tunl0, gre0, ...) once something loads
            # ipip or gre, as on the host's kernel, which has neither.
            "sysctl -qw net.core.fb_tunnels_only_for_init_net=2",
            f"export {LANE_ENV}=1 PYTHONDONTWRITEBYTECODE=1",
            f"export SPIDERNET_SERVICE_START_TIMEOUT={SERVICE_START_TIMEOUT_S:.0f}",
            f"cd {shlex.quote(str(run.project))} || exit 1",
            shlex.join(pytest),
            f"echo $? > {shlex.quote(str(run.status))}",
        ]
    )


def vng_command(
    vng: Path, kernel: Kernel, script: str, rwdirs: Sequence[Path], spec: VmSpec
) -> list[str]:
    """The vng command line that boots `kernel` and runs `script` in it.

    TCG (nested KVM hangs at boot), the host's root over 9p, and `-v`: without udev in the
    guest, virtme-ng prints the script's output on the console only, which -v shows. The
    kernel's tree is shared explicitly (`--rodir`): virtme-ng's init mounts an empty tmpfs
    on the guest's /var/cache, which would hide the default cache and with it the modules
    that /lib/modules/<version> links to."""
    cmd = [str(vng), "--run", str(kernel.image), "--disable-kvm", "--force-9p", "-v"]
    cmd += ["--memory", spec.memory, "--cpus", str(spec.cpus), f"--rodir={kernel.root}"]
    cmd += [f"--rwdir={d}" for d in rwdirs]
    return [*cmd, "--exec", script]


def console_line(line: bytes, started: bool) -> tuple[bool, bool]:
    """Whether to show one line of the VM's console, and whether the script has started.

    Shown: from virtme-ng's "starting script" on, the script's own lines and virtme-ng's,
    not the kernel's log (which stays in the log file)."""
    started = started or SCRIPT_START in line
    own = not _KERNEL_LOG.match(line) or b"virtme-ng-init:" in line
    return started and own, started


def parse_status(text: str) -> int | None:
    """pytest's exit status as the guest wrote it, or None when the file holds no number."""
    text = text.strip()
    return int(text) if text.isdigit() else None


def explain(result: VmResult, junit_exists: bool, spec: VmSpec) -> str:
    """One line saying why a run failed ("" when it did not)."""
    if result.timed_out:
        return f"VM timed out after {spec.timeout:.0f}s; its qemu was killed"
    if result.guest_status is None:
        return f"VM exited {result.returncode} before the tests finished (no status from the guest)"
    if not junit_exists:
        return f"pytest in the VM exited {result.guest_status} without a JUnit report"
    if result.guest_status != 0:
        return f"pytest in the VM exited {result.guest_status}"
    return ""


# -- effects: the kernel ---------------------------------------------------------------------


def _run(cmd: Sequence[str], *, cwd: Path | None = None, timeout: float = 600) -> str:
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
    found = [kernel_in(cache, d.name) for d in cache.iterdir() if _VERSION.fullmatch(d.name)]
    done = [k for k in found if k.image.is_file() and (k.modules / "modules.dep").is_file()]
    return sorted(done, key=lambda k: version_key(k.version), reverse=True)


def resolve(cache: Path) -> Kernel:
    """The kernel `linux-image-amd64` names now; when apt cannot say (no package lists, no
    network), the newest kernel already in `cache`."""
    for attempt in range(2):
        try:
            version = parse_depends(_run(["apt-cache", "depends", META_PACKAGE]))
        except KernelVmError:
            version = None
        if version is not None:
            return kernel_in(cache, version)
        if attempt == 0:
            try:
                _run(["apt-get", "update", "-qq"])
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
        _run([*download, kernel.package], cwd=scratch)
        debs = sorted(scratch.glob(f"{kernel.package}_*.deb"))
        if not debs:
            raise KernelVmError(f"apt-get download left no {kernel.package} package")
        tree = scratch / "root"
        _run(["dpkg", "-x", str(debs[0]), str(tree)])
        _run(["depmod", "-b", str(tree), kernel.version])
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
    precompile(project)
    fetched = time.monotonic() - start
    print(f"kernelvm: Debian kernel {kernel.version} ({how}, {fetched:.1f}s) in {kernel.root}")
    shared = junit.parent
    shared.mkdir(parents=True, exist_ok=True)
    status = shared / "kernel-guest-status"
    run = GuestRun(project, Path(sys.executable), junit, status, tests)
    cmd = vng_command(vng, kernel, guest_script(run), [shared], spec)
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
