"""kernel lane: link kinds this machine's kernel lacks (bonding, 8021q, ipvlan, dummy).

These tests run only inside the VM that `tests/lanes.py kernel` boots (Debian's own kernel
under QEMU, see spidernet.testbed.kernelvm): the boot script sets SPIDERNET_KERNEL_LANE=1
in the guest and loads the modules, and this conftest refuses to run anywhere else. Like
the netns lane, everything happens in throw-away network namespaces; the VM itself is
thrown away afterwards too. `topo` and `cni_path` come from the test bed's plugin
(testbed/lanefixtures.py, loaded by tests/conftest.py); this file adds `service` (one
`spidernet serve` for the lane).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from spidernet.node.lab.service import ServiceProcess, scratch_service
from spidernet.testbed.kernelplan import LANE_ENV

HERE = Path(__file__).resolve().parent


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


@pytest.fixture(scope="session")
def service() -> Iterator[ServiceProcess]:
    """One `spidernet serve` for the whole lane: under emulation it takes most of a minute to
    start. Each test uses pools of its own, with address ranges no other test uses."""
    with scratch_service() as svc:
        yield svc
