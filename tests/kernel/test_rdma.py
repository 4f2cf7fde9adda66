"""RDMA on rails in Debian's kernel (rdma_rxe, which this machine's kernel lacks): a Soft-RoCE
device on each rail NIC of the node, in the RDMA subsystem's shared mode (the default), and a
pod with one macvlan NIC per rail through the chains our SpiderMultusConfig code renders with
`matchMasterSubnet` (testbed/rails.py; docs/rdma-rails.md).

In shared mode every RDMA device is visible in every network namespace, so a pod sees its
rails' devices as rdma-shared-device-plugin hands them out, and the kernel lists the address
of each macvlan NIC as a RoCE v2 GID of its master's device: the address the pod's RDMA
traffic on that rail is sent from.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from spidernet.node import netns
from spidernet.node.lab.runtime import Target
from spidernet.node.lab.service import ServiceProcess
from spidernet.node.lab.topology import Topology
from spidernet.testbed.harness import World
from spidernet.testbed.pools import add_pool, allocated
from spidernet.testbed.rails import RAILS, rail_chain, rails_world
from spidernet.testbed.waiting import wait_for

TARGET = "IgnoreUnknown=1;K8S_POD_NAMESPACE=ai;K8S_POD_NAME=trainer-0"
NICS = {"rail0": "eth0", "rail1": "net1"}


@pytest.fixture
def rails(topo: Topology) -> Iterator[World]:
    yield from rails_world(topo)


def rdma(ns: str | None, *args: str) -> str:
    """`rdma ARGS` (iproute2's RDMA tool) in namespace `ns` (None: the VM's own)."""
    argv = ["rdma", *args]
    done = subprocess.run(
        argv if ns is None else netns.exec_argv(ns, argv),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"rdma {' '.join(args)}: {done.stderr}"
    return done.stdout


def gids(device: str) -> set[str]:
    """The device's RoCE GIDs in use (port 1)."""
    table = Path("/sys/class/infiniband", device, "ports", "1", "gids")
    found = {p.read_text().strip() for p in table.iterdir()}
    return found - {ipaddress.IPv6Address(0).exploded}


def gid_of(address: str) -> str:
    """The RoCE v2 GID of an IPv4 address (its IPv4-mapped IPv6 form)."""
    return ipaddress.IPv6Address(f"::ffff:{address}").exploded


def has_gid(device: str, address: str, *, present: bool = True) -> Callable[[], bool]:
    """A probe: whether `address` is (`present`) or is not a GID of `device` now."""
    return lambda: (gid_of(address) in gids(device)) is present


@pytest.fixture
def soft_roce(rails: World) -> Iterator[dict[str, str]]:
    """An rdma_rxe device on each rail NIC of the host; removed afterwards."""
    subprocess.run(["modprobe", "rdma_rxe"], check=True)
    assert "netns shared" in rdma(None, "system", "show")
    devices = {}
    try:
        for rail in RAILS:
            rdma(rails.host, "link", "add", f"rxe_{rail}", "type", "rxe", "netdev", rail)
            devices[rail] = f"rxe_{rail}"
        yield devices
    finally:
        for device in devices.values():
            rdma(rails.host, "link", "delete", device)


def test_a_pod_sees_its_rails_rdma_devices_and_each_nics_address_is_a_roce_gid_of_its_rail(
    rails: World,
    soft_roce: dict[str, str],
    cni_path: tuple[str, ...],
    service: ServiceProcess,
    tmp_path: Path,
) -> None:
    for rail, net in RAILS.items():
        add_pool(service.client, f"{rail}-v4", f"{net}.0/24", [f"{net}.10-{net}.19"])
    pod = rails.pods[0]
    runs, got = [], {}
    for rail, nic in NICS.items():
        chain = rail_chain(service.socket, rails, cni_path, tmp_path, rail)
        target = Target("ctr-trainer", netns.path_of(pod), nic, TARGET)  # one sandbox
        (ip,) = chain.add(target).ips
        got[rail] = str(ip.address.ip)
        runs.append((chain, target))
    assert got["rail0"].startswith("10.81.0.")
    assert got["rail1"].startswith("10.82.0.")
    # Shared mode: the pod's namespace shows both rails' devices, each on its rail NIC.
    shown = rdma(pod, "link", "show").splitlines()  # "link rxe_rail0/1 state ACTIVE ..."
    seen = {line.split()[1].split("/")[0] for line in shown if line.startswith("link ")}
    assert seen == set(soft_roce.values())
    for rail, device in soft_roce.items():
        mine, other = got[rail], got["rail1" if rail == "rail0" else "rail0"]
        wait_for(f"{mine}'s GID on {device}", has_gid(device, mine))
        assert gid_of(other) not in gids(device)  # the other rail's NIC is not on this device
    for chain, target in reversed(runs):
        chain.delete(target)
    for rail, device in soft_roce.items():
        gone = has_gid(device, got[rail], present=False)
        wait_for(f"{got[rail]}'s GID gone from {device}", gone)
        assert allocated(service.client, f"{rail}-v4") == 0
