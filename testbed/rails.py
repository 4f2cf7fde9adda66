"""Rails: a node with one subnet per rail NIC (docs/rdma-rails.md), for the netns and kernel
lanes. Each rail is a switch with its gateway (.1); the "host" namespace is on every rail
(`rail0`, `rail1`, at .2). Each rail's chain is what our SpiderMultusConfig code renders for a
macvlan SMC listing every rail's pool with `matchMasterSubnet: true`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from spidernet.node.lab.runtime import Chain
from spidernet.node.lab.topology import Topology, iface
from spidernet.testbed.conflists import service_chain, smc_conf
from spidernet.testbed.harness import World

RAILS = {"rail0": "10.81.0", "rail1": "10.82.0"}
POOLS = ["rail0-v4", "rail1-v4"]


def rails_world(topo: Topology) -> Iterator[World]:
    """Two rails, the host on both, and one pod; every namespace back to its baseline after."""
    host = topo.namespace("host")
    gateways = []
    for rail, net in RAILS.items():
        seg = topo.segment(f"sw-{rail}")
        gateways.append(topo.gateway(seg, (iface(f"{net}.1/24"),), role=f"gw-{rail}"))
        topo.attach(seg, host, rail, (iface(f"{net}.2/24"),))
    yield from World(topo, seg, host, gateways[0], [topo.namespace("pod")]).sealed()


def rail_chain(
    socket: Path, world: World, cni_path: tuple[str, ...], state: Path, master: str
) -> Chain:
    """The NAD config our SpiderMultusConfig code renders for `master`'s rail."""
    pools = {"ipv4": POOLS, "matchMasterSubnet": True}
    conflist = smc_conf(f"{master}-net", "macvlan", {"master": [master], "ippools": pools})
    assert conflist["plugins"][0]["ipam"]["match_master_subnet"] is True
    return service_chain(conflist, socket, cni_path, state, world.host)
