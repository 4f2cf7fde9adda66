"""kernel lane: link kinds this machine's kernel lacks (bonding, 8021q, ipvlan, dummy).

These tests run only inside the VM that `tests/lanes.py kernel` boots (Debian's own kernel
under QEMU, see spidernet.testbed.kernelvm): the boot script sets SPIDERNET_KERNEL_LANE=1
in the guest and loads the modules, and this conftest refuses to run anywhere else. Like
the netns lane, everything happens in throw-away network namespaces; the VM itself is
thrown away afterwards too. The fixtures are the netns lane's: `topo`, `cni_path`, and
`service` / `start_service` (a `spidernet serve` per test).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from spidernet.node.install import install_cni
from spidernet.node.lab.service import ServiceProcess, scratch_service
from spidernet.node.lab.topology import Topology
from spidernet.testbed.kernelplan import LANE_ENV

HERE = Path(__file__).resolve().parent
REFERENCE_PLUGINS = Path("/usr/lib/cni")


def _refusal() -> str:
    """Why this is not the kernel lane's VM ("" when it is)."""
    if os.environ.get(LANE_ENV) != "1":
        return (
            f"tests/kernel runs only inside the kernel lane's VM ({LANE_ENV}=1 is unset): "
            "run 'tests/lanes.py kernel' or 'make kernel'"
        )
    if os.geteuid() != 0:
        return "the kernel lane needs root in the VM (it creates network namespaces)"
    # `modprobe -n` only looks: nothing is loaded should this run somewhere else after all.
    loadable = subprocess.run(["modprobe", "-n", "-q", "bonding"], check=False).returncode == 0
    if not (loadable or Path("/sys/module/bonding").is_dir()):
        return "this kernel cannot load the bonding module: not the kernel lane's VM"
    return ""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    ours = [item for item in items if item.path.is_relative_to(HERE)]
    for item in ours:
        item.add_marker(pytest.mark.kernel)
    why = _refusal() if ours else ""
    if why:
        raise pytest.UsageError(why)


@pytest.fixture
def topo() -> Iterator[Topology]:
    """A Topology whose namespaces are removed after the test."""
    t = Topology()
    try:
        yield t
    finally:
        errors = t.teardown()
        assert not errors, errors


@pytest.fixture(scope="session")
def cni_path(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ...]:
    """CNI_PATH: our executables (written by install-cni), then Debian's reference plugins."""
    bin_dir = tmp_path_factory.mktemp("cni-bin")
    install_cni(bin_dir, sys.executable)
    return (str(bin_dir), str(REFERENCE_PLUGINS))


@pytest.fixture(scope="session")
def service() -> Iterator[ServiceProcess]:
    """One `spidernet serve` for the whole lane: under emulation it takes most of a minute to
    start. Each test uses pools of its own, with address ranges no other test uses."""
    with scratch_service() as svc:
        yield svc
