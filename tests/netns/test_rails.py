"""Rails: a node with one subnet per rail NIC, and pods with one NIC per rail
(docs/rdma-rails.md). Each rail's chain is what our SpiderMultusConfig code renders for a
macvlan SMC listing every rail's pool with `matchMasterSubnet: true`: macvlan +
spidernet-ipam + spidernet-coordinator, run as a runtime runs them. The master's subnet picks
each NIC's pool, so the same pool list serves every rail.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from spidernet.node import netns
from spidernet.node.lab.runtime import Chain, PluginFailed, Target
from spidernet.node.lab.service import ServiceProcess
from spidernet.node.lab.topology import Topology, ping
from spidernet.node.netlink.client import netlink
from spidernet.testbed.harness import World
from spidernet.testbed.pools import add_pool, allocated
from spidernet.testbed.rails import RAILS, rail_chain, rails_world

TARGET = "IgnoreUnknown=1;K8S_POD_NAMESPACE=ai;K8S_POD_NAME=trainer-0"


@pytest.fixture
def rails(topo: Topology) -> Iterator[World]:
    yield from rails_world(topo)


def rail_network(
    service: ServiceProcess, world: World, cni_path: tuple[str, ...], state: Path, master: str
) -> Chain:
    return rail_chain(service.socket, world, cni_path, state, master)


def test_each_rail_nic_gets_its_rails_pool_and_reaches_its_rails_gateway(
    rails: World, cni_path: tuple[str, ...], service: ServiceProcess, tmp_path: Path
) -> None:
    for rail, net in RAILS.items():
        add_pool(
            service.client, f"{rail}-v4", f"{net}.0/24", [f"{net}.10-{net}.19"], gateway=f"{net}.1"
        )
    pod = rails.pods[0]
    chains = {
        "eth0": rail_network(service, rails, cni_path, tmp_path, "rail0"),
        "net1": rail_network(service, rails, cni_path, tmp_path, "rail1"),
    }
    targets = {nic: Target("ctr-1", netns.path_of(pod), nic, TARGET) for nic in chains}
    got = {}
    for nic, chain in chains.items():
        (ip,) = chain.add(targets[nic]).ips
        got[nic] = str(ip.address.ip)
    assert got["eth0"].startswith("10.81.0.")
    assert got["net1"].startswith("10.82.0.")
    assert (allocated(service.client, "rail0-v4"), allocated(service.client, "rail1-v4")) == (1, 1)
    with netlink(netns.path_of(pod)) as nl:
        names = {link.index: link.name for link in nl.links()}
        held = {(str(a.address.ip), names[a.index]) for a in nl.addresses()}
    assert (got["eth0"], "eth0") in held
    assert (got["net1"], "net1") in held
    assert ping(pod, "10.81.0.1")  # each rail's gateway, over its own NIC
    assert ping(pod, "10.82.0.1")
    for nic in reversed(list(chains)):
        chains[nic].delete(targets[nic])
    assert (allocated(service.client, "rail0-v4"), allocated(service.client, "rail1-v4")) == (0, 0)


def test_a_master_in_no_listed_pools_subnet_fails_and_leaves_nothing(
    rails: World, cni_path: tuple[str, ...], service: ServiceProcess, tmp_path: Path
) -> None:
    add_pool(service.client, "rail0-v4", "10.81.0.0/24", ["10.81.0.20-10.81.0.29"])
    add_pool(service.client, "rail1-v4", "10.99.0.0/24", ["10.99.0.20-10.99.0.29"])
    chain = rail_network(service, rails, cni_path, tmp_path, "rail1")
    target = Target("ctr-2", netns.path_of(rails.pods[0]), "net1", TARGET)
    with pytest.raises(PluginFailed) as info:
        chain.add(target)
    out = info.value.outcome.stdout
    assert "holds no address of master rail1 (10.82.0.2/24)" in out
    assert (allocated(service.client, "rail0-v4"), allocated(service.client, "rail1-v4")) == (0, 0)
    chain.delete(target)  # the runtime's DEL after a failed ADD
