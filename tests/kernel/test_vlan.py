"""The vlan CNI in Debian's kernel (8021q, which this machine's kernel lacks): the chain our
SpiderMultusConfig code renders for `cniType: vlan` (Debian's vlan plugin + spidernet-ipam +
spidernet-coordinator), one network per VLAN on the same trunk, run as a runtime runs them.

The host's eth0 is a trunk into a switch; each VLAN's gateway lives in a namespace of its own
behind a VLAN link on that switch's far side, and forwards nowhere. A pod on VLAN 100 reaches
VLAN 100's gateway and the host (through the coordinator's veth), not VLAN 200's gateway.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from spidernet.node import netns
from spidernet.node.lab.runtime import Chain, Target
from spidernet.node.lab.service import ServiceProcess
from spidernet.node.lab.topology import Topology, iface, ping
from spidernet.node.netlink.client import netlink
from spidernet.testbed.conflists import service_chain, smc_conf
from spidernet.testbed.harness import World
from spidernet.testbed.pools import add_pool, allocated

VLANS = {100: "10.100.0", 200: "10.200.0"}
HOST = "192.0.2.2"


@pytest.fixture
def trunk(topo: Topology) -> Iterator[World]:
    """host eth0 (192.0.2.2, untagged) into a switch; per VLAN a gateway namespace whose
    eth0.<vlan> holds .1 of its VLAN's subnet; two pods."""
    seg = topo.segment()
    host = topo.namespace("host")
    topo.attach(seg, host, "eth0", (iface(f"{HOST}/24"),))
    gateways = []
    for vlan, net in VLANS.items():
        gw = topo.namespace(f"gw{vlan}")
        topo.attach(seg, gw, "eth0")
        with netlink(netns.path_of(gw)) as nl:
            nl.add_link(f"eth0.{vlan}", "vlan", link=nl.index("eth0"), vlan_id=vlan)
            nl.set_link(f"eth0.{vlan}", state="up")
            nl.add_address(f"eth0.{vlan}", iface(f"{net}.1/24"))
        gateways.append(gw)
    pods = [topo.namespace("pa"), topo.namespace("pb")]
    yield from World(topo, seg, host, gateways[0], pods).sealed()


def vlan_chain(
    service: ServiceProcess, world: World, cni_path: tuple[str, ...], state: Path, vlan: int
) -> Chain:
    """The NAD config our SpiderMultusConfig code renders for VLAN `vlan` on eth0."""
    sub = {"master": ["eth0"], "vlanID": vlan, "ippools": {"ipv4": [f"vlan-cni-{vlan}"]}}
    conflist = smc_conf(f"vlan{vlan}", "vlan", sub)
    assert [p["type"] for p in conflist["plugins"]] == ["vlan", "spidernet-coordinator"]
    return service_chain(conflist, service.socket, cni_path, state, world.host)


def test_vlan_pods_reach_their_own_vlans_gateway_and_the_host_only(
    trunk: World, cni_path: tuple[str, ...], service: ServiceProcess, tmp_path: Path
) -> None:
    chains, targets, got = {}, {}, {}
    for (vlan, net), pod in zip(VLANS.items(), trunk.pods, strict=True):
        add_pool(
            service.client,
            f"vlan-cni-{vlan}",
            f"{net}.0/24",
            [f"{net}.10-{net}.19"],
            gateway=f"{net}.1",
        )
        chains[vlan] = vlan_chain(service, trunk, cni_path, tmp_path / str(vlan), vlan)
        targets[vlan] = Target(
            f"ctr-{vlan}",
            netns.path_of(pod),
            "eth0",
            f"IgnoreUnknown=1;K8S_POD_NAMESPACE=t;K8S_POD_NAME={pod}",
        )
        (ip,) = chains[vlan].add(targets[vlan]).ips
        got[vlan] = str(ip.address.ip)
        assert got[vlan].startswith(f"{net}.")
        with netlink(netns.path_of(pod)) as nl:
            link = nl.link("eth0")
        assert link.kind == "vlan"
    pa, pb = trunk.pods
    assert ping(pa, "10.100.0.1")
    assert ping(pb, "10.200.0.1")
    assert not ping(pa, "10.200.0.1")  # another VLAN's gateway: no path
    assert not ping(pb, "10.100.0.1")
    assert ping(pa, HOST)  # the host, through the coordinator's veth
    for vlan in VLANS:
        # (No CHECK: the rendered config is CNI 0.3.1, Spiderpool's default, which has none.)
        chains[vlan].delete(targets[vlan])
        chains[vlan].delete(targets[vlan])  # DEL twice
        assert allocated(service.client, f"vlan-cni-{vlan}") == 0
    for pod in trunk.pods:
        with netlink(netns.path_of(pod)) as nl:
            assert [x.name for x in nl.links()] == ["lo"]
