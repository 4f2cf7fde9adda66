"""The link kinds this machine's kernel lacks, made by Debian's kernel in the lane's VM.

Links are made through the project's netlink adapter (spidernet.node.netlink), in throw-away
namespaces, and read back from the kernel: through the adapter's records (kind, master,
parent, VLAN id, bond mode) and through pyroute2's raw messages for what the records leave
out (bond and ipvlan options, the slave kind, operstate, flags). Two data-path checks ping
across a VLAN, and from a pod's ipvlan.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import pytest

# The adapter's records omit bond/ipvlan options; tests read raw messages back directly.
from pyroute2 import IPRoute  # noqa: TID251

from spidernet.node import netns
from spidernet.node.lab.topology import Topology, iface, ping
from spidernet.node.netlink.client import Netlink, netlink
from spidernet.node.netlink.records import Link
from spidernet.testbed.kernelplan import MODULES
from spidernet.testbed.waiting import wait_for

BOND_ACTIVE_BACKUP = 1
BOND_8023AD = 4
LACP_RATE_FAST = 1
IPVLAN_L2, IPVLAN_L3 = 0, 1
IFF_UP, IFF_NOARP = 0x1, 0x80
ETH_P_8021Q = 0x8100


def links(ns: str) -> dict[str, Link]:
    with netlink(netns.path_of(ns)) as nl:
        return {link.name: link for link in nl.links()}


def raw(ns: str, name: str) -> Any:
    """The kernel's RTM_NEWLINK message for link `name` in namespace `ns` (pyroute2)."""
    with IPRoute(netns=ns, flags=0) as ipr:
        (msg,) = ipr.link("get", ifname=name)
        return msg


def info_data(msg: Any) -> dict[str, Any]:
    """IFLA_INFO_DATA of a link message as {IFLA_*: value}."""
    data = msg.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
    return dict(data["attrs"]) if data is not None else {}


def slave_kind(msg: Any) -> str | None:
    info = msg.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_SLAVE_KIND") if info is not None else None


def veth_to(nl: Netlink, name: str, switch: str, peer: str) -> None:
    """veth `name` here (left down), its end `peer` in namespace `switch`, up there."""
    nl.add_veth(name, peer, peer_netns=netns.path_of(switch))
    with netlink(netns.path_of(switch)) as sw:
        sw.set_link(peer, state="up")


def bonded(topo: Topology, options: list[tuple[str, int]]) -> tuple[str, str]:
    """Namespaces "host" and "switch": bond0 in host with `options` over eth1 and eth2, whose
    peers p1 and p2 are ports of bridge br0 in switch; everything up."""
    seg = topo.segment()
    host = topo.namespace("host")
    with netlink(netns.path_of(host)) as nl:
        for i in (1, 2):
            veth_to(nl, f"eth{i}", seg.switch, f"p{i}")
        nl.add_bond("bond0", options)
        for i in (1, 2):  # a bond takes only slaves that are down
            nl.set_link(f"eth{i}", master=nl.index("bond0"))
        nl.set_link("bond0", state="up")
    with netlink(netns.path_of(seg.switch)) as sw:
        for i in (1, 2):
            sw.set_link(f"p{i}", master=sw.index(seg.bridge))
    return host, seg.switch


def assert_enslaved(host: str) -> None:
    got = links(host)
    bond = got["bond0"]
    assert bond.kind == "bond"
    assert bond.up
    for port in ("eth1", "eth2"):
        assert got[port].master == bond.index
        assert got[port].kind == "veth"
        assert slave_kind(raw(host, port)) == "bond"
        assert raw(host, port)["flags"] & IFF_UP  # the bond opened its slaves


def test_modules_come_from_the_unpacked_debian_kernel() -> None:
    release = platform.release()
    tree = Path("/lib/modules", release).resolve()
    for module in MODULES:
        subprocess.run(["modprobe", module], check=True)
        assert Path("/sys/module", module).is_dir(), module
        path = subprocess.run(
            ["modinfo", "-n", module], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert Path(path).resolve().is_relative_to(tree), path
    # virtme-ng links the cache's tree there, not this machine's own /lib/modules
    assert tree != Path("/lib/modules", release)


def test_active_backup_bond_with_miimon(topo: Topology) -> None:
    host, _ = bonded(topo, [("mode", BOND_ACTIVE_BACKUP), ("miimon", 100)])
    assert_enslaved(host)
    assert links(host)["bond0"].bond_mode == BOND_ACTIVE_BACKUP
    data = info_data(raw(host, "bond0"))
    assert data["IFLA_BOND_MODE"] == BOND_ACTIVE_BACKUP
    assert data["IFLA_BOND_MIIMON"] == 100
    wait_for("bond0 to come up", lambda: raw(host, "bond0").get("operstate") == "UP", 20, 0.2)
    slaves = {links(host)[p].index for p in ("eth1", "eth2")}
    assert info_data(raw(host, "bond0"))["IFLA_BOND_ACTIVE_SLAVE"] in slaves


def test_8023ad_bond_with_fast_lacp(topo: Topology) -> None:
    host, _ = bonded(topo, [("mode", BOND_8023AD), ("miimon", 100), ("lacp_rate", LACP_RATE_FAST)])
    assert_enslaved(host)
    assert links(host)["bond0"].bond_mode == BOND_8023AD
    data = info_data(raw(host, "bond0"))
    assert data["IFLA_BOND_MODE"] == BOND_8023AD
    assert data["IFLA_BOND_AD_LACP_RATE"] == LACP_RATE_FAST
    assert data["IFLA_BOND_MIIMON"] == 100


def test_vlan_on_a_bond_carries_traffic(topo: Topology) -> None:
    host, switch = bonded(topo, [("mode", BOND_ACTIVE_BACKUP), ("miimon", 100)])
    with netlink(netns.path_of(host)) as nl:
        nl.add_vlan("bond0.100", "bond0", 100)
        nl.set_link("bond0.100", state="up")
        nl.add_address("bond0.100", iface("192.0.2.2/24"))
    with netlink(netns.path_of(switch)) as sw:
        sw.add_vlan("br0.100", "br0", 100)
        sw.set_link("br0.100", state="up")
        sw.add_address("br0.100", iface("192.0.2.1/24"))
    got = links(host)
    vlan = got["bond0.100"]
    assert (vlan.kind, vlan.vlan_id, vlan.link) == ("vlan", 100, got["bond0"].index)
    assert info_data(raw(host, "bond0.100"))["IFLA_VLAN_PROTOCOL"] == ETH_P_8021Q
    wait_for("bond0 to come up", lambda: raw(host, "bond0").get("operstate") == "UP", 20, 0.2)
    assert ping(host, "192.0.2.1", deadline_s=10)


def test_vlan_on_a_veth_carries_traffic(topo: Topology) -> None:
    switch = topo.namespace("switch")
    host = topo.namespace("host")
    with netlink(netns.path_of(host)) as nl:
        veth_to(nl, "eth0", switch, "p0")
        nl.set_link("eth0", state="up")
        nl.add_vlan("eth0.200", "eth0", 200)
        nl.set_link("eth0.200", state="up")
        nl.add_address("eth0.200", iface("192.0.2.2/24"))
    with netlink(netns.path_of(switch)) as sw:
        sw.add_vlan("p0.200", "p0", 200)
        sw.set_link("p0.200", state="up")
        sw.add_address("p0.200", iface("192.0.2.1/24"))
    got = links(host)
    vlan = got["eth0.200"]
    assert (vlan.kind, vlan.vlan_id, vlan.link) == ("vlan", 200, got["eth0"].index)
    assert links(switch)["p0.200"].vlan_id == 200
    assert ping(host, "192.0.2.1", deadline_s=10)


@pytest.mark.parametrize(("mode", "noarp"), [(IPVLAN_L2, False), (IPVLAN_L3, True)])
def test_ipvlan_moved_into_a_pod(topo: Topology, mode: int, noarp: bool) -> None:
    switch = topo.namespace("switch")
    host = topo.namespace("host")
    pod = topo.namespace("pod")
    with netlink(netns.path_of(host)) as nl:
        veth_to(nl, "eth0", switch, "p0")
        nl.set_link("eth0", state="up")
        nl.add_link("ipvl0", "ipvlan", link=nl.index("eth0"), ipvlan_mode=mode)
        fd = os.open(netns.path_of(pod), os.O_RDONLY | os.O_CLOEXEC)
        try:
            nl.set_link("ipvl0", net_ns_fd=fd)
        finally:
            os.close(fd)
        assert "ipvl0" not in {link.name for link in nl.links()}
    with netlink(netns.path_of(pod)) as nl:
        nl.set_link("ipvl0", state="up")
        nl.add_address("ipvl0", iface("192.0.2.11/24"))
    link = links(pod)["ipvl0"]
    assert link.kind == "ipvlan"
    assert link.link_netnsid is not None  # its parent, eth0, stayed in the host namespace
    assert link.mac == links(host)["eth0"].mac  # ipvlan shares its parent's MAC
    msg = raw(pod, "ipvl0")
    assert info_data(msg)["IFLA_IPVLAN_MODE"] == mode
    assert bool(msg["flags"] & IFF_NOARP) == noarp  # L3 mode answers no ARP itself
    if mode == IPVLAN_L2:
        with netlink(netns.path_of(switch)) as sw:
            sw.add_address("p0", iface("192.0.2.1/24"))
        assert ping(pod, "192.0.2.1", deadline_s=10)


def test_dummy(topo: Topology) -> None:
    ns = topo.namespace("node")
    with netlink(netns.path_of(ns)) as nl:
        nl.add_link("dummy0", "dummy")
        nl.set_link("dummy0", state="up")
        nl.add_address("dummy0", iface("192.0.2.53/32"))
        index = nl.index("dummy0")
        addresses = {str(a.address) for a in nl.addresses() if a.index == index}
    link = links(ns)["dummy0"]
    assert (link.kind, link.up) == ("dummy", True)
    assert "192.0.2.53/32" in addresses
    assert ping(ns, "192.0.2.53")
