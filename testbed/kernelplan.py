"""The kernel lane's planning (testbed/kernelvm.py), all pure: the kernel's cache paths, apt's
answer, the vng command line, the script the guest runs, the console filter and the
verdict."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CACHE = Path("/var/cache/spidernet")
CACHE_ENV = "SPIDERNET_CACHE"
# Set in the guest by the script below; tests/kernel/conftest.py refuses to run without it.
LANE_ENV = "SPIDERNET_KERNEL_LANE"
META_PACKAGE = "linux-image-amd64"
TESTS = "tests/kernel"
# The modules the lane's tests need; the guest must load every one from the unpacked tree.
MODULES = ("bonding", "8021q", "ipvlan", "dummy", "macvlan", "veth", "igb", "igbvf", "e1000e")

# Python is slow under TCG: `spidernet serve` takes about a minute to answer in the guest.
SERVICE_START_TIMEOUT_S = 300.0
LOG_TAIL = 25  # lines of the VM log shown when the guest never reported back
SCRIPT_START = b"virtme-ng-init: starting script"
_KERNEL_LOG = re.compile(rb"^\[\s*\d+\.\d+\] ")
# 6.1.0-56-amd64 (bookworm), 6.12.43+deb13-amd64 (trixie): a plain directory name.
VERSION = re.compile(r"\d[\w.+-]*-amd64")
_DEPENDS = re.compile(r"^\s*\|?Depends:\s*linux-image-(\S+)\s*$", re.MULTILINE)


class KernelVmError(Exception):
    """The lane could not get a kernel or boot it; the message is one line for the summary."""


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
    timeout: float = 1500.0


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
    if not VERSION.fullmatch(version):
        raise KernelVmError(f"not a Debian amd64 kernel version: {version!r}")
    return Kernel(version, cache / version)


def parse_depends(text: str) -> str | None:
    """The kernel version `linux-image-amd64` depends on, from `apt-cache depends` output."""
    for match in _DEPENDS.finditer(text):
        if VERSION.fullmatch(match.group(1)):
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


@dataclass(frozen=True)
class Nics:
    """The guest's NICs, on one QEMU hub (a wire to nowhere but each other): an igb (Intel
    82576, SR-IOV: up to 7 VFs) behind a PCIe root port, and an e1000e, the far end of its
    wire. QEMU's own `binary` (>= 8, for igb's SR-IOV) with its firmware in `data_dirs`.
    q35 rather than virtme-ng's microvm, which has no PCI bus."""

    binary: Path
    data_dirs: tuple[Path, ...]

    def qemu_opts(self) -> str:
        opts = [f"-L {d}" for d in self.data_dirs]
        opts += [
            "-machine q35",
            "-netdev hubport,id=wire0,hubid=0",
            "-netdev hubport,id=wire1,hubid=0",
            "-device pcie-root-port,id=rp0,slot=1",
            "-device igb,bus=rp0,netdev=wire0,romfile=",
            "-device e1000e,netdev=wire1,romfile=",
        ]
        return " ".join(opts)


def vng_command(
    vng: Path,
    kernel: Kernel,
    script: str,
    rwdirs: Sequence[Path],
    spec: VmSpec,
    *,
    nics: Nics | None = None,
) -> list[str]:
    """The vng command line that boots `kernel` and runs `script` in it (with `nics`, on
    that QEMU, with those NICs).

    TCG (nested KVM hangs at boot), the host's root over 9p, and `-v`: without udev in the
    guest, virtme-ng prints the script's output on the console only, which -v shows. The
    kernel's tree is shared explicitly (`--rodir`): virtme-ng's init mounts an empty tmpfs
    on the guest's /var/cache, which would hide the default cache and with it the modules
    that /lib/modules/<version> links to."""
    cmd = [str(vng), "--run", str(kernel.image), "--disable-kvm", "--force-9p", "-v"]
    cmd += ["--memory", spec.memory, "--cpus", str(spec.cpus), f"--rodir={kernel.root}"]
    cmd += [f"--rwdir={d}" for d in rwdirs]
    cmd += ["--exec", script]
    if nics is not None:
        # (vng passes --qemu-opts last to QEMU, whatever its place here.)
        cmd += ["--qemu", str(nics.binary), "--disable-microvm", f"--qemu-opts={nics.qemu_opts()}"]
    return cmd


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


__all__ = [
    "CACHE_ENV",
    "DEFAULT_CACHE",
    "LANE_ENV",
    "LOG_TAIL",
    "META_PACKAGE",
    "MODULES",
    "SCRIPT_START",
    "SERVICE_START_TIMEOUT_S",
    "TESTS",
    "VERSION",
    "GuestRun",
    "Kernel",
    "KernelVmError",
    "Nics",
    "VmResult",
    "VmSpec",
    "cache_dir",
    "console_line",
    "explain",
    "guest_script",
    "kernel_in",
    "parse_depends",
    "parse_status",
    "spec_from_env",
    "version_key",
    "vng_command",
]
