"""The kernel lane's planning: cache paths, apt's answer, the vng command line, the guest's
script, the console filter and the verdict; and the cache being reused without apt."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from spidernet.testbed import kernelfetch
from spidernet.testbed.kernelfetch import cached, ensure, obtain, precompile, resolve
from spidernet.testbed.kernelplan import (
    GuestRun,
    Kernel,
    KernelVmError,
    Nics,
    VmResult,
    VmSpec,
    cache_dir,
    console_line,
    explain,
    guest_script,
    kernel_in,
    parse_depends,
    parse_status,
    spec_from_env,
    vng_command,
)
from spidernet.testbed.kernelvm import descendants

APT_CACHE_DEPENDS = """linux-image-amd64
  Depends: linux-image-6.1.0-56-amd64
"""


def unpacked(cache: Path, version: str) -> Kernel:
    """A fake complete kernel tree in `cache`, as ensure() leaves one."""
    kernel = kernel_in(cache, version)
    kernel.image.parent.mkdir(parents=True)
    kernel.image.write_bytes(b"")
    kernel.modules.mkdir(parents=True)
    (kernel.modules / "modules.dep").write_text("")
    return kernel


def test_cache_is_under_var_cache_unless_spidernet_cache_says_otherwise() -> None:
    assert cache_dir({}) == Path("/var/cache/spidernet/kernel")
    assert cache_dir({"SPIDERNET_CACHE": "/srv/c"}) == Path("/srv/c/kernel")
    assert cache_dir({"SPIDERNET_CACHE": ""}) == Path("/var/cache/spidernet/kernel")


def test_the_vm_is_sized_from_the_environment() -> None:
    assert spec_from_env({}) == VmSpec()
    env = {"SPIDERNET_KERNEL_TIMEOUT": "1200", "SPIDERNET_KERNEL_CPUS": "2"}
    assert spec_from_env(env) == VmSpec(memory=VmSpec().memory, cpus=2, timeout=1200.0)
    assert spec_from_env({"SPIDERNET_KERNEL_MEMORY": "3G"}).memory == "3G"
    with pytest.raises(KernelVmError, match="SPIDERNET_KERNEL_"):
        spec_from_env({"SPIDERNET_KERNEL_CPUS": "two"})


def test_a_kernel_is_the_unpacked_package_tree() -> None:
    k = kernel_in(Path("/c/kernel"), "6.1.0-56-amd64")
    assert k.package == "linux-image-6.1.0-56-amd64"
    assert k.root == Path("/c/kernel/6.1.0-56-amd64")
    assert k.image == k.root / "boot/vmlinuz-6.1.0-56-amd64"
    assert k.modules == k.root / "lib/modules/6.1.0-56-amd64"


@pytest.mark.parametrize("bad", ["../etc", "6.1.0-56-arm64", "", "6.1.0/../x-amd64", "latest"])
def test_a_version_that_is_no_debian_amd64_kernel_is_refused(bad: str) -> None:
    with pytest.raises(KernelVmError):
        kernel_in(Path("/c"), bad)


def test_apt_cache_depends_names_the_versioned_package() -> None:
    assert parse_depends(APT_CACHE_DEPENDS) == "6.1.0-56-amd64"
    trixie = "linux-image-amd64\n  Depends: linux-image-6.12.43+deb13-amd64\n"
    assert parse_depends(trixie) == "6.12.43+deb13-amd64"
    alternatives = "linux-image-amd64\n |Depends: linux-image-6.1.0-57-amd64\n"
    assert parse_depends(alternatives) == "6.1.0-57-amd64"


def test_no_versioned_package_is_none() -> None:
    assert parse_depends("") is None
    assert parse_depends("linux-image-amd64\n  Depends: initramfs-tools\n") is None
    assert parse_depends("W: Unable to locate package linux-image-amd64\n") is None


def test_the_guest_runs_the_lane_tests_and_reports_to_the_shared_directory() -> None:
    run = GuestRun(
        project=Path("/work/my project"),
        python=Path("/work/my project/.venv/bin/python"),
        junit=Path("/work/my project/.build/junit-kernel.xml"),
        status=Path("/work/my project/.build/kernel-guest-status"),
    )
    script = guest_script(run)
    steps = script.split("; ")
    assert "export SPIDERNET_KERNEL_LANE=1 PYTHONDONTWRITEBYTECODE=1" in steps
    assert "sysctl -qw net.core.fb_tunnels_only_for_init_net=2" in steps  # as on the host
    assert "cd '/work/my project' || exit 1" in steps
    pytest_step = next(s for s in steps if " -m pytest " in s)
    assert pytest_step.startswith("'/work/my project/.venv/bin/python' -m pytest tests/kernel ")
    assert "'--junitxml=/work/my project/.build/junit-kernel.xml'" in pytest_step
    assert "no:cacheprovider" in pytest_step  # the guest's view of the project is read-only
    # pytest's exit status goes to the status file, after pytest
    assert steps[-1] == "echo $? > '/work/my project/.build/kernel-guest-status'"
    assert steps.index(pytest_step) == len(steps) - 2
    # valid sh (only parsed: the script changes the console log level, a guest's business)
    subprocess.run(["sh", "-n", "-c", script], check=True)


def test_vng_boots_the_cached_kernel_under_tcg_with_the_shares() -> None:
    kernel = kernel_in(Path("/c/kernel"), "6.1.0-56-amd64")
    cmd = vng_command(
        Path("/v/bin/vng"), kernel, "echo hi", [Path("/w/.build")], VmSpec("2G", 1, 60)
    )
    assert cmd[:3] == [
        "/v/bin/vng",
        "--run",
        "/c/kernel/6.1.0-56-amd64/boot/vmlinuz-6.1.0-56-amd64",
    ]
    for flag in ("--disable-kvm", "--force-9p", "-v"):
        assert flag in cmd
    assert cmd[cmd.index("--memory") + 1] == "2G"
    assert cmd[cmd.index("--cpus") + 1] == "1"
    assert "--rodir=/c/kernel/6.1.0-56-amd64" in cmd  # the guest's /var/cache is a tmpfs
    assert "--rwdir=/w/.build" in cmd
    assert cmd[-2:] == ["--exec", "echo hi"]


def test_with_nics_vng_boots_that_qemu_on_q35_with_the_igb_and_its_wire() -> None:
    kernel = kernel_in(Path("/c/kernel"), "6.1.0-56-amd64")
    nics = Nics(Path("/q/usr/bin/qemu-system-x86_64"), (Path("/q/share/qemu"), Path("/q/bios")))
    cmd = vng_command(Path("/v/bin/vng"), kernel, "echo hi", [], VmSpec("2G", 1, 60), nics=nics)
    assert cmd[cmd.index("--qemu") + 1] == "/q/usr/bin/qemu-system-x86_64"
    assert "--disable-microvm" in cmd  # microvm has no PCI bus
    opts = cmd[-1].removeprefix("--qemu-opts=").split()
    assert opts[:4] == ["-L", "/q/share/qemu", "-L", "/q/bios"]
    assert opts[opts.index("-machine") + 1] == "q35"
    devices = [opts[i + 1] for i, o in enumerate(opts) if o == "-device"]
    assert devices == [
        "pcie-root-port,id=rp0,slot=1",
        "igb,bus=rp0,netdev=wire0,romfile=",
        "e1000e,netdev=wire1,romfile=",
    ]
    # both NICs on one hub and nothing else: the guest's traffic goes nowhere but each other
    netdevs = [opts[i + 1] for i, o in enumerate(opts) if o == "-netdev"]
    assert netdevs == ["hubport,id=wire0,hubid=0", "hubport,id=wire1,hubid=0"]


def test_the_console_shows_the_script_not_the_boot() -> None:
    lines = [
        b"[    0.000000] Linux version 6.1.0-56-amd64\n",
        b"virtme initramfs: loading 9p.ko...\n",
        b"[    9.0] virtme-ng-init: starting script (console fallback)\n",
        b"....F  [ 50%]\n",
        b"[   60.1] br0: port 2(p2) entered disabled state\n",
        b"[  227.0] virtme-ng-init: script exited with code 0\n",
    ]
    shown, started = [], False
    for line in lines:
        show, started = console_line(line, started)
        if show:
            shown.append(line)
    assert shown == [lines[2], lines[3], lines[5]]


def test_the_status_file_holds_pytests_exit_code() -> None:
    assert parse_status("0\n") == 0
    assert parse_status("5\n") == 5
    assert parse_status("") is None
    assert parse_status("garbage") is None


SPEC = VmSpec(timeout=900)


def test_a_run_that_wrote_status_and_report_is_fine() -> None:
    assert explain(VmResult(255, False, 0, 1.0), True, SPEC) == ""


@pytest.mark.parametrize(
    ("result", "junit", "reason"),
    [
        (VmResult(None, True, None, 900.0), False, "VM timed out after 900s; its qemu was killed"),
        (VmResult(1, False, None, 3.0), False, "VM exited 1 before the tests finished"),
        (VmResult(255, False, 4, 30.0), False, "pytest in the VM exited 4 without a JUnit report"),
        (VmResult(255, False, 1, 30.0), True, "pytest in the VM exited 1"),
    ],
)
def test_a_failed_run_says_why_in_one_line(result: VmResult, junit: bool, reason: str) -> None:
    why = explain(result, junit, SPEC)
    assert why.startswith(reason)
    assert "\n" not in why


def test_cached_lists_complete_kernels_newest_first(tmp_path: Path) -> None:
    old = unpacked(tmp_path, "6.1.0-9-amd64")
    new = unpacked(tmp_path, "6.1.0-56-amd64")
    (tmp_path / "6.1.0-60-amd64" / "boot").mkdir(parents=True)  # interrupted: no modules.dep
    (tmp_path / ".fetch-abc").mkdir()
    assert cached(tmp_path) == [new, old]
    assert cached(tmp_path / "missing") == []


def no_commands(cmd: Sequence[str], **_: object) -> str:
    raise AssertionError(f"ran {list(cmd)}")


def test_a_cached_kernel_is_reused_without_downloading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel = unpacked(tmp_path, "6.1.0-56-amd64")
    monkeypatch.setattr(kernelfetch, "run", no_commands)
    assert ensure(kernel) is False
    assert kernel.image.exists()


def test_without_apt_the_newest_cached_kernel_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(cmd: Sequence[str], **_: object) -> str:
        raise KernelVmError(f"{cmd[0]}: no network")

    monkeypatch.setattr(kernelfetch, "run", offline)
    with pytest.raises(KernelVmError, match="no kernel is cached"):
        resolve(tmp_path)
    unpacked(tmp_path, "6.1.0-9-amd64")
    newest = unpacked(tmp_path, "6.1.0-56-amd64")
    assert resolve(tmp_path) == newest


def test_apt_decides_which_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def apt(cmd: Sequence[str], **_: object) -> str:
        calls.append(list(cmd))
        return APT_CACHE_DEPENDS

    monkeypatch.setattr(kernelfetch, "run", apt)
    unpacked(tmp_path, "6.1.0-9-amd64")
    assert resolve(tmp_path) == kernel_in(tmp_path, "6.1.0-56-amd64")
    assert calls == [["apt-cache", "depends", "linux-image-amd64"]]


def test_descendants_finds_a_child_process() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert child.pid in descendants(os.getpid())
    finally:
        child.kill()
        child.wait()


def test_a_kernel_that_cannot_be_fetched_falls_back_to_the_cached_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def apt(cmd: Sequence[str], **_: object) -> str:
        if cmd[:2] == ["apt-cache", "depends"]:
            return APT_CACHE_DEPENDS.replace("-56-", "-57-")  # a newer ABI than cached
        raise KernelVmError(f"{cmd[0]}: no network")

    monkeypatch.setattr(kernelfetch, "run", apt)
    with pytest.raises(KernelVmError, match="no network"):
        obtain(tmp_path)
    old = unpacked(tmp_path, "6.1.0-56-amd64")
    kernel, how = obtain(tmp_path)
    assert kernel == old
    assert how == "cached; 6.1.0-57-amd64 could not be fetched"


def test_the_projects_own_modules_are_byte_compiled_before_boot(tmp_path: Path) -> None:
    files = ["__init__.py", "node/__init__.py", "node/lab/x.py", "tests/t.py", ".venv/v.py"]
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("X = 1\n")
    precompile(tmp_path)
    compiled = {
        n for n in files if Path(importlib.util.cache_from_source(str(tmp_path / n))).exists()
    }
    assert compiled == {"__init__.py", "node/__init__.py", "node/lab/x.py"}
