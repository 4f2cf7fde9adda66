"""SR-IOV VFs carrying pods, in Debian's kernel on QEMU's igb (Intel 82576 with SR-IOV; the
kernel lane boots QEMU 10 from bookworm-backports, testbed/qemufetch.py).

The guest's igb is the PF, wired (a QEMU hub) to an e1000e that a gateway namespace holds.
Two VFs are made the way an operator makes them (`sriov_numvfs`); the VM's own namespace is
the node (VFs appear there), and the node's PF holds 10.60.0.2/24.

The chain is what our SpiderMultusConfig code renders for `cniType: sriov` with
`matchMasterSubnet`, with the `deviceID` a device plugin would have Multus inject; its main
plugin runs as Debian's host-device (`pciBusID`), because sriov-cni cannot be had here (the
Go module proxy refuses every version of github.com/k8snetworkplumbingwg/sriov-cni). So the
VF datapath, spidernet-ipam choosing the pool by the VF's PF and spidernet-coordinator are
proven; sriov-cni's own VF settings (VLAN, rates) are not (docs/sriov.md).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from spidernet.node import netns
from spidernet.node.lab.runtime import Chain, Target
from spidernet.node.lab.service import ServiceProcess
from spidernet.node.lab.topology import Topology, iface, ping
from spidernet.node.netlink.client import netlink
from spidernet.testbed.conflists import service_chain, smc_conf
from spidernet.testbed.harness import namespace_footprint
from spidernet.testbed.leaks import diff
from spidernet.testbed.pools import add_pool, allocated

NODE = "10.60.0.2"
LINK_UP_S = 60
GATEWAY = "10.60.0.1"
NET = Path("/sys/class/net")


@dataclass(frozen=True)
class Sriov:
    """The PF, its VFs (netdev, PCI address) and the far end of the PF's wire."""

    pf: str
    vfs: tuple[tuple[str, str], ...]
    wire: str


def _by_driver(driver: str) -> str:
    for dev in sorted(NET.iterdir()):
        link = dev / "device" / "driver"
        if link.exists() and link.resolve().name == driver:
            return dev.name
    raise AssertionError(f"no {driver} NIC in the VM")


def _vfs(pf: str) -> tuple[tuple[str, str], ...]:
    found = []
    for fn in sorted((NET / pf / "device").glob("virtfn*")):
        names = list((fn / "net").iterdir()) if (fn / "net").is_dir() else []
        if names:
            found.append((names[0].name, fn.resolve().name))
    return tuple(found)


@pytest.fixture(scope="module")
def sriov() -> Iterator[Sriov]:
    """Two VFs of the igb PF, which is up with the node's address; all undone afterwards."""
    for module in ("igb", "igbvf", "e1000e"):
        subprocess.run(["modprobe", module], check=True)
    pf, wire = _by_driver("igb"), _by_driver("e1000e")
    numvfs = NET / pf / "device" / "sriov_numvfs"
    numvfs.write_text("2")
    deadline = time.monotonic() + 60
    while len(_vfs(pf)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    vfs = _vfs(pf)
    assert len(vfs) == 2, f"{pf}: VFs {vfs}"
    with netlink(None) as nl:
        nl.set_link(pf, state="up")
        nl.add_address(pf, iface(f"{NODE}/24"))
    try:
        yield Sriov(pf, vfs, wire)
    finally:
        with netlink(None) as nl:
            nl.delete_address(pf, iface(f"{NODE}/24"))
            nl.set_link(pf, state="down")
        numvfs.write_text("0")


def vf_chain(service: ServiceProcess, cni_path: tuple[str, ...], state: Path, vf: str) -> Chain:
    """Our SMC's sriov rendering for VF `vf` (host-device in sriov-cni's place)."""
    sub = {
        "resourceName": "spidernet.io/igb_vf",
        "ippools": {"ipv4": ["sriov-v4"], "matchMasterSubnet": True},
    }
    conflist = smc_conf("sriov-rail", "sriov", sub)
    main = conflist["plugins"][0]
    assert main["type"] == "sriov"
    assert main["ipam"]["match_master_subnet"] is True
    # What Multus adds from the device plugin, and host-device's own key for the same VF.
    main.update({"type": "host-device", "deviceID": vf, "pciBusID": vf})
    return service_chain(conflist, service.socket, cni_path, state, None)


def test_two_vf_pods_reach_the_gateway_each_other_and_the_node_and_del_gives_the_vfs_back(
    sriov: Sriov, topo: Topology, cni_path: tuple[str, ...], service: ServiceProcess, tmp_path: Path
) -> None:
    gw = topo.namespace("gw")
    subprocess.run(["ip", "link", "set", sriov.wire, "netns", gw], check=True)
    with netlink(netns.path_of(gw)) as nl:
        nl.set_link(sriov.wire, state="up")
        nl.add_address(sriov.wire, iface(f"{GATEWAY}/24"))
    node_before = namespace_footprint(None)
    add_pool(service.client, "sriov-v4", "10.60.0.0/24", ["10.60.0.10-10.60.0.19"], gateway=GATEWAY)
    pods = [topo.namespace(f"vf{n}") for n in range(2)]
    runs = []
    for n, ((_, pci), pod) in enumerate(zip(sriov.vfs, pods, strict=True)):
        chain = vf_chain(service, cni_path, tmp_path / str(n), pci)
        target = Target(
            f"ctr-vf{n}",
            netns.path_of(pod),
            "eth0",
            f"IgnoreUnknown=1;K8S_POD_NAMESPACE=t;K8S_POD_NAME=vf{n}",
        )
        (ip,) = chain.add(target).ips
        runs.append((chain, target, str(ip.address.ip)))
        shown = subprocess.run(
            netns.exec_argv(pod, ["ip", "-d", "-j", "link", "show", "eth0"]),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert json.loads(shown)[0]["parentdev"] == pci  # the VF itself is the pod's eth0
    assert all(address.startswith("10.60.0.1") for _, _, address in runs)
    for pod in pods:
        # VF -> igb -> the wire -> the e1000e. The emulated links come up in their own time
        # after the moves between namespaces (seconds, under TCG): a bounded wait.
        assert ping(pod, GATEWAY, deadline_s=LINK_UP_S)
        assert ping(pod, NODE)  # the node, through the coordinator's veth
    assert ping(pods[0], runs[1][2], deadline_s=LINK_UP_S)  # VF to VF, through the igb's switch
    for chain, target, _ in reversed(runs):
        # (Once: Debian's host-device answers a second DEL with "Link not found". The
        # spidernet plugins' own DEL twice is proven in the netns lane.)
        chain.delete(target)
    assert allocated(service.client, "sriov-v4") == 0
    assert _vfs(sriov.pf) == sriov.vfs  # each VF back on the node, with its own name
    assert diff(node_before, namespace_footprint(None)) == []
